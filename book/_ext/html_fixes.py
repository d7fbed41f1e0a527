"""A Sphinx extension with the book's fixes to the HTML of its third-party extensions.

* sphinx-thebe 0.3.1 adds its inline configuration script (``const THEBE_JS_URL = ...``) once
  through the registry and once directly to the builder, with file names ``""`` and ``None``
  that Sphinx 7.4 does not recognise as equal: every page declared the constants twice and the
  browser reported a SyntaxError. Identical inline scripts are kept once.
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx


def _drop_duplicate_inline_scripts(app: Sphinx, pagename: str, templatename: str,
                                   context: dict[str, Any], doctree: Any) -> None:
    seen, unique = set(), []
    for script in context.get("script_files", []):
        key = (script.filename or "", script.priority, tuple(sorted(script.attributes.items())))
        if script.filename or key not in seen:
            unique.append(script)
        seen.add(key)
    context["script_files"] = unique


def setup(app: Sphinx) -> dict[str, Any]:
    # After every other extension has added its page scripts.
    app.connect("html-page-context", _drop_duplicate_inline_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
