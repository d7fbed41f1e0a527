"""The ``{paper}`` role: a number quoted from the paper, set apart from the book's own.

The chapters quote their own results only through MyST-NB's ``{glue:text}`` (so the text cannot
drift from the outputs, ``tests/test_prose_numbers.py``); a number of the paper is written
``{paper}`62 %``` instead. It renders as ``<span class="paper-number">`` (styled in
``_static/code-cells.css``), so a reader can tell the paper's numbers from ours at a glance.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.application import Sphinx


def paper_role(name: str, rawtext: str, text: str, lineno: int, inliner: Any,
               options: dict | None = None, content: list | None = None):
    node = nodes.inline(rawtext, text, classes=["paper-number"])
    return [node], []


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_role("paper", paper_role)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
