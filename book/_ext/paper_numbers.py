"""The ``{paper}`` and ``{stats}`` roles: numbers the text quotes from code, at build time.

The chapters quote their own results only through MyST-NB's ``{glue:text}`` (so the text cannot
drift from the outputs, ``tests/test_prose_numbers.py``). Two other kinds of number are not
outputs of a chapter, and come from the code the same way:

* ``{paper}`table7.gain.voc-val``` -- a number of the paper, looked up by key in
  :data:`gainbook.paper.QUOTES` (the book's one copy of the paper's numbers). It renders as
  ``<span class="paper-number">90 %</span>`` (styled in ``_static/code-cells.css``), so a
  reader can tell the paper's numbers from ours at a glance.
* ``{stats}`coverage``` -- the coverage of the book's intervals, "95 %", from
  :data:`gainbook.stats.CONFIDENCE`, which sets it.

An unknown key is an error that names it (with ``--warningiserror``, as ``book/build.py``
builds, a failed build); :func:`lookup` is the same lookup, for the tests.
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx

#: A key: dot-separated parts of hyphenated words, each word starting with a letter
#: (``table7.gain-ext-p-most.boat-masks``), so a typed number (``62 %``) is never a key.
KEY = re.compile(r"[a-z][a-z0-9]*(?:-[a-z][a-z0-9]*)*(?:\.[a-z][a-z0-9]*(?:-[a-z][a-z0-9]*)*)*")

#: The CSS class of each role's text (``None``: plain text, the book's own settings).
CLASSES = {"paper": "paper-number", "stats": None}


def _stats_quotes() -> dict[str, str]:
    from gainbook.stats import coverage_text

    return {"coverage": coverage_text()}


def lookup(role: str, key: str) -> str:
    """The text ``{role}`key``` renders.

    Raises:
        KeyError: ``role`` is not one of :data:`CLASSES`, ``key`` is not a key (:data:`KEY`),
            or the code has no number of that key; the message names it.
    """
    if role not in CLASSES:
        raise KeyError(f"no role {role!r}; the roles are {sorted(CLASSES)}")
    if not KEY.fullmatch(key):
        raise KeyError(f"{{{role}}}`{key}`: not a key (lower-case words joined by '-' and '.', "
                       "each starting with a letter); type no number, name it, e.g. "
                       f"{{{role}}}`{'table7.gain.voc-val' if role == 'paper' else 'coverage'}`")
    if role == "paper":
        from gainbook.paper import quote

        return quote(key)
    quotes = _stats_quotes()
    if key not in quotes:
        raise KeyError(f"{{stats}}`{key}`: gainbook.stats has no number {key!r}; "
                       f"the keys are {sorted(quotes)}")
    return quotes[key]


def number_role(name: str, rawtext: str, text: str, lineno: int, inliner: Any,
                options: dict | None = None, content: list | None = None):
    """``{paper}`key``` / ``{stats}`key```: the number of that key; an error naming it if none."""
    try:
        value = lookup(name, text.strip())
    except KeyError as error:
        message = inliner.reporter.error(str(error.args[0]), line=lineno)
        problem = inliner.problematic(rawtext, rawtext, message)
        return [problem], [message]
    css = CLASSES[name]
    return [nodes.inline(rawtext, value, classes=[css]) if css else nodes.Text(value)], []


def setup(app: Sphinx) -> dict[str, Any]:
    for name in CLASSES:
        app.add_role(name, number_role)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
