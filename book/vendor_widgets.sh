#!/usr/bin/env bash
# Vendors the JavaScript that renders the chapters' ipywidgets in the built book with no kernel and
# no CDN: RequireJS and @jupyter-widgets/html-manager's embed-amd.js, from the npm registry, into
# book/_static/widgets/ (committed, so that a fresh clone builds the book offline). _config.yml's
# nb_ipywidgets_js points at these files.
#
# The html-manager must match the ipywidgets that executes the chapters: ipywidgets 8.x saves
# widget state that html-manager 1.0.x renders (ipywidgets' own `__html_manager_version__` says
# which range). After a major ipywidgets upgrade, run this again with the matching version:
#
#     book/vendor_widgets.sh [HTML_MANAGER_VERSION] [REQUIREJS_VERSION]
set -euo pipefail

html_manager="${1:-1.0.15}"
requirejs="${2:-2.3.8}"
dest="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/_static/widgets"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cd "$tmp"
npm pack --silent "@jupyter-widgets/html-manager@${html_manager}" "requirejs@${requirejs}" >/dev/null
mkdir html-manager requirejs
tar xzf "jupyter-widgets-html-manager-${html_manager}.tgz" -C html-manager
tar xzf "requirejs-${requirejs}.tgz" -C requirejs

mkdir -p "$dest"
# Only the vendored files: assets-path.js beside them is the book's own.
rm -f "$dest"/require.js "$dest"/embed-amd.js "$dest"/embed-amd.js.LICENSE.txt "$dest"/*.woff2
cp requirejs/package/require.js "$dest/"
cp html-manager/package/dist/embed-amd.js "$dest/"
cp html-manager/package/dist/embed.js.LICENSE.txt "$dest/embed-amd.js.LICENSE.txt"
# Font Awesome's web fonts, which embed-amd.js requests from its own folder; browsers pick WOFF2.
cp html-manager/package/dist/*.woff2 "$dest/"

{
  echo "Vendored by book/vendor_widgets.sh from the npm registry; do not edit by hand."
  echo
  echo "@jupyter-widgets/html-manager ${html_manager}  licence: BSD-3-Clause (Project Jupyter)"
  echo "  dist/embed-amd.js -> embed-amd.js (bundled third-party licences: embed-amd.js.LICENSE.txt)"
  echo "  dist/*.woff2 -> the Font Awesome 5 Free web fonts it requests (SIL OFL 1.1)"
  echo "requirejs ${requirejs}  licence: MIT (jQuery Foundation and other contributors)"
  echo "  require.js -> require.js"
  echo
  echo "sha256:"
  (cd "$dest" && sha256sum -- *.js *.woff2)
} > "$dest/VENDORED.txt"
echo "vendored into $dest:"
ls -l "$dest"
