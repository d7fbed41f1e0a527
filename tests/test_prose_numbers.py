"""No hand-typed number in the chapters' prose.

Every number the chapters' text states comes from code. A number about the book's own results
is pasted from the executed outputs with MyST-NB's ``{glue:text}`` role, so the text cannot drift
from the tables when a profile, a seed or the code changes. A number of the paper is named by
its key, ``{paper}`table7.gain.voc-val```, and the coverage of the intervals is
``{stats}`coverage```: the Sphinx extension book/_ext/paper_numbers.py looks both up in
gainbook.paper and gainbook.stats at build time. This test strips roles, maths, code, links and
references (``Sec. 3.1``, ``Table 7``, ``Eq. 7``) from every markdown cell of the chapters and
fails on any number left that is not a plain integer setting (``1,000 images``, ``12 epochs``):
a decimal, a signed number, a percentage, a "points" figure, a count like ``1.4K`` or a seed
tally. It also fails on a ``{paper}`` or ``{stats}`` role whose content is not a key the code
has (a typed ``{paper}`62 %``` included).
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("0*.ipynb"))


def _extension():
    """book/_ext/paper_numbers.py, the lookup the book's build uses (not a package)."""
    spec = importlib.util.spec_from_file_location("paper_numbers",
                                                  ROOT / "book" / "_ext" / "paper_numbers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_EXT = _extension()
_CODE_ROLES = re.compile(r"\{(" + "|".join(_EXT.CLASSES) + r")\}`([^`]*)`")

_STRIPPED = [
    r"\{[\w:-]+\}`[^`]*`",                   # roles: {glue:text}, {paper}, {stats}, {cite:t}, ...
    r"\$\$.*?\$\$", r"\$[^$]*\$",            # maths
    r"```.*?```", r"`[^`]*`",                # code
    r"\]\([^)]*\)",                          # link targets
    r"\b(?:Secs?|Sections?|Tables?|Eqs?|Equations?|Figs?|Figures?|chapters?|Chapters?|"
    r"Algorithm|ch)\.?\s*\d+(?:\.\d+)*(?:\s*(?:[–,-]|and|to)\s*\d+(?:\.\d+)*)*",
]
# A number with what makes it a result rather than a setting: a sign, decimals, a unit.
_NUMBER = re.compile(r"(?<![\w.])(?P<sign>[-+−±])?\d+(?:,\d{3})*(?P<decimals>\.\d+)?"
                     r"(?P<unit>\s*(?:%|percent\b|points?\b|pts\b|[kKM]\b))?")
_TALLY = re.compile(r"\b\d+\s+of\s+\d+\s+(?:seeds|runs|draws)\b")


def hand_typed_numbers(markdown: str) -> list[str]:
    """The numbers of ``markdown`` that come from no code: every number outside roles, maths,
    code and references that is not a plain integer (a setting such as ``1,000 images``).

    >>> hand_typed_numbers("GAIN covers {glue:text}`ch2-body` of the body ({paper}`table2.gain`).")
    []
    >>> hand_typed_numbers("IoU rises from 10.8 % to 17 %, on 3 of 3 seeds (Sec. 3.1, Table 4).")
    ['3 of 3 seeds', '10.8 %', '17 %']
    """
    text = markdown
    for pattern in _STRIPPED:
        text = re.sub(pattern, " ", text, flags=re.S)
    found = [m.group(0) for m in _TALLY.finditer(text)]
    text = _TALLY.sub(" ", text)
    return found + [m.group(0).strip() for m in _NUMBER.finditer(text)
                    if m.group("sign") or m.group("decimals") or m.group("unit")]


def unknown_code_numbers(markdown: str) -> list[str]:
    """The ``{paper}``/``{stats}`` roles of ``markdown`` whose content is not a key the code
    has (book/_ext/paper_numbers.py's own lookup), as ``"{role}`content`: why"``."""
    problems = []
    for match in _CODE_ROLES.finditer(markdown):
        try:
            _EXT.lookup(match.group(1), match.group(2))
        except KeyError as error:
            problems.append(f"{match.group(0)}: {error.args[0]}")
    return problems


def _markdown_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def test_the_rule_catches_typed_results_and_spares_roles_references_and_settings():
    assert hand_typed_numbers("from 0.354 to 0.336; +1.0 point; 52 % against 24 %") == [
        "0.354", "0.336", "+1.0 point", "52 %", "24 %"]
    assert hand_typed_numbers("Eq. 7-10, Tables 3–4, Sec. 5.2–5.3, $\\sigma = 0.5$, "
                              "`context_bias = 0.5`, {cite:t}`li2018gain`, 1,000 images") == []
    # The intervals' coverage is no exception any more: it comes from gainbook.stats.
    assert hand_typed_numbers("with its 95 % bootstrap interval") == ["95 %"]
    assert hand_typed_numbers("with its {stats}`coverage` bootstrap interval") == []
    # Counts in the paper's notation, signed and rounded numbers are typed results too.
    assert hand_typed_numbers("1.4K masks, +4.6 mIoU, -2 and ±3, 12 percent, 2 of 5 runs") == [
        "2 of 5 runs", "1.4K", "+4.6", "-2", "±3", "12 percent"]
    # Plain integers are settings: epochs, images, pixels, angles, a date, a network's name.
    assert hand_typed_numbers("12 epochs on 1,464 images at 32 × 32 px, 0°/90°, seed 0, "
                              "2026-11-26, VGG16, DenseNet-121") == []


def test_code_number_roles_must_name_a_key_the_code_has():
    assert unknown_code_numbers("{paper}`table7.gain.voc-val` and {stats}`coverage`") == []
    typed, unknown, stats = unknown_code_numbers(
        "{paper}`62 %`, {paper}`table7.gain.accuracy` and {stats}`confidence`")
    assert typed.startswith("{paper}`62 %`: {paper}`62 %`: not a key")
    assert "has no number 'table7.gain.accuracy'" in unknown
    assert "gainbook.stats has no number 'confidence'" in stats
    # The extension renders what gainbook's code says.
    from gainbook.paper import QUOTES
    from gainbook.stats import CONFIDENCE

    assert _EXT.lookup("paper", "table7.gain.voc-val") == QUOTES["table7.gain.voc-val"] == "90 %"
    assert _EXT.lookup("stats", "coverage") == f"{100 * CONFIDENCE:.0f} %"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_prose_types_no_number(chapter: Path):
    found = [(i, n) for i, cell in enumerate(_markdown_cells(chapter))
             for n in hand_typed_numbers(cell)]
    assert not found, (f"{chapter.name}: numbers typed into the prose (glue ours with "
                       f"{{glue:text}}, name the paper's with {{paper}}`key` from "
                       f"gainbook.paper.QUOTES): {found}")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_quotes_the_paper_only_by_known_keys(chapter: Path):
    problems = [(i, p) for i, cell in enumerate(_markdown_cells(chapter))
                for p in unknown_code_numbers(cell)]
    assert not problems, f"{chapter.name}: {problems}"
