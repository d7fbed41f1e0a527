// Loaded before require.js and embed-amd.js on pages with widgets (nb_ipywidgets_js in _config.yml).
// embed-amd.js fetches its Font Awesome fonts from the folder of its RequireJS module,
// "@jupyter-widgets/html-manager/dist/libembed-amd", which RequireJS places under the page's own
// folder unless configured. A global `require` object defined before require.js loads is its
// configuration: map that module folder to this script's folder, where book/vendor_widgets.sh puts
// the fonts, so that no request fails (offline or not).
var require = {
  paths: {
    "@jupyter-widgets/html-manager/dist": document.currentScript.src.replace(/\/[^/]*$/, ""),
  },
};
