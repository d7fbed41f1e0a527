"""The two layers: gainlib (the library) imports nothing of the book's machinery, and the
chapters read as prose (no cut-off code lines, no set-up cells shown)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
BOOK_ONLY = ("gainbook", "matplotlib", "ipywidgets", "pandas", "IPython", "papermill", "myst_nb")


def test_importing_gainlib_imports_none_of_the_book_layer():
    check = ("import sys, gainlib, gainlib.data, gainlib.segmentation; "
             f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {BOOK_ONLY!r}); "
             "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, f"import gainlib pulled in {result.stdout}{result.stderr}"


def test_gainlib_never_imports_gainbook_anywhere():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "gainlib").rglob("*.py")
                 if "gainbook" in p.read_text()]
    assert not offenders


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_code_fits_the_page_and_setup_cells_are_hidden(chapter):
    cells = json.loads(chapter.read_text())["cells"]
    long = [(i, line) for i, cell in enumerate(cells) if cell["cell_type"] == "code"
            for line in "".join(cell["source"]).splitlines() if len(line) > 88]
    assert not long, f"code lines over 88 characters: {long[:3]}"
    assert cells[0]["cell_type"] == "markdown", "a chapter opens with prose"
    ids = [cell.get("id") for cell in cells]     # nbformat 4.5: papermill and nbval need them
    assert None not in ids and len(set(ids)) == len(ids), "every cell has its own id"
    for cell in cells:
        source = "".join(cell["source"])
        tags = cell["metadata"].get("tags", [])
        if "parameters" in tags or "google.colab" in source:
            assert "remove-cell" in tags, f"a set-up cell is shown: {source[:60]!r}"
