"""No hand-typed result in the chapters' prose.

A number the text states about the book's own results is pasted from the executed outputs with
MyST-NB's ``{glue:text}`` role, so the text cannot drift from the tables when a profile, a seed
or the code changes; a number quoted from the paper is marked ``{paper}`` (book/_ext). This test
strips those, maths, code, roles and references (``Sec. 3.1``, ``Table 7``) from every markdown
cell of the chapters and fails on any decimal, percentage, "points" figure or seed tally left.
Integers without a unit (``1,000 images``, ``12 epochs``) are settings and stay as they are.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("0*.ipynb"))

_STRIPPED = [
    r"\{glue(?::\w+)?\}`[^`]*`",            # {glue:text}`key`
    r"\{paper\}`[^`]*`",                     # {paper}`62 %`
    r"\{[\w:-]+\}`[^`]*`",                   # other roles: {cite:t}, {doc}, {mod}, ...
    r"\$\$.*?\$\$", r"\$[^$]*\$",            # maths
    r"```.*?```", r"`[^`]*`",                # code
    r"\]\([^)]*\)",                          # link targets
    r"\b95 %(?= (?:bootstrap )?(?:interval|CI|confidence))",   # the intervals' coverage
    r"\b(?:Secs?|Sections?|Tables?|Eqs?|Equations?|Figs?|Figures?|chapters?|Chapters?|"
    r"Algorithm|ch)\.?\s*\d+(?:\.\d+)*(?:\s*(?:[–,-]|and|to)\s*\d+(?:\.\d+)*)*",
]
_NUMBER = r"[-+−]?\d[\d,]*(?:\.\d+)?"
_RESULT = re.compile(
    rf"(?<![\w.]){_NUMBER}(?:\s*[–-]\s*{_NUMBER})?\s*(?:%|percent\b|points?\b|pts\b)"  # 52 %
    r"|(?<![\w.])[-+−]?\d[\d,]*\.\d+"                                    # a decimal
    r"|\b\d+\s+of\s+\d+\s+(?:seeds|runs)\b")                            # a tally


def hand_typed_numbers(markdown: str) -> list[str]:
    """The result-like numbers of ``markdown`` that are neither glued nor the paper's.

    >>> hand_typed_numbers("GAIN covers {glue:text}`ch2-body` of the body ({paper}`56 %`).")
    []
    >>> hand_typed_numbers("IoU rises from 10.8 % to 17 %, on 3 of 3 seeds (Sec. 3.1, Table 4).")
    ['10.8 %', '17 %', '3 of 3 seeds']
    """
    text = markdown
    for pattern in _STRIPPED:
        text = re.sub(pattern, " ", text, flags=re.S)
    return [m.group(0).strip() for m in _RESULT.finditer(text)]


def _markdown_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def test_the_rule_catches_typed_results_and_spares_glue_roles_and_references():
    assert hand_typed_numbers("from 0.354 to 0.336; +1.0 point; 52 % against 24 %") == [
        "0.354", "0.336", "+1.0 point", "52 %", "24 %"]
    assert hand_typed_numbers("Eq. 7-10, Tables 3–4, Sec. 5.2–5.3, $\\sigma = 0.5$, "
                              "`context_bias = 0.5`, {cite:t}`li2018gain`, 1,000 images") == []


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_prose_quotes_results_only_through_glue(chapter: Path):
    found = [(i, n) for i, cell in enumerate(_markdown_cells(chapter))
             for n in hand_typed_numbers(cell)]
    assert not found, (f"{chapter.name}: numbers typed into the prose (glue them with "
                       f"{{glue:text}}, or mark the paper's with {{paper}}): {found}")
