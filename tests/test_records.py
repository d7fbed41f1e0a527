"""gainbook.records (scorecards recorded from executed chapters), the results page's directive
that shows them (book/_ext/recorded_scorecard.py), and the book's committed records."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest
from IPython.core.formatters import format_display_data

from gainbook.records import (ROW_KEYS, changed_since, chapter_entry, load_record, make_record,
                              module_digests, scorecard_rows)
from gainbook.scorecard import Claim, not_run, score, scorecard

ROOT = Path(__file__).resolve().parents[1]
RECORDS = sorted((ROOT / "book" / "records").glob("*.json"))
# The claims the results page must give a verdict for (the science issue's "done when").
CLAIM_SOURCES = ("Table 1", "Table 2", "Table 3", "Table 4", "Table 6", "Table 7", "Table 8",
                 "Sec. 5.2")


def _extension():
    spec = importlib.util.spec_from_file_location(
        "recorded_scorecard", ROOT / "book" / "_ext" / "recorded_scorecard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows():
    held = {"metric": "iou", "difference": 0.079, "low": 0.045, "high": 0.116, "pairs": 5,
            "groups": 2, "verdict": "holds"}
    return [score(Claim("Table 4", "more masks help (19 -> 138)", "62.2 -> 64.1", 3), [held]),
            not_run(Claim("Table 1", "GAIN_ext^b,p < & > GAIN", "63.2 vs 59.4", 3),
                    "chapter 3 with mixed_counts = [1464]")]


def _executed(tmp_path: Path, name: str = "03_extra.ipynb", parameters=None,
              source: str = "x = 1", rows=None) -> Path:
    """An executed chapter as papermill leaves it, with a scorecard glued as myst-nb does."""
    data, _ = format_display_data(scorecard(_rows() if rows is None else rows))
    glued = nbformat.v4.new_output(
        "display_data", data={f"application/papermill.record/{k}": v for k, v in data.items()},
        metadata={"scrapbook": {"name": "ch3-scorecard",
                                "mime_prefix": "application/papermill.record/"}})
    cell = nbformat.v4.new_code_cell("import gainbook.stats\n" + source, outputs=[glued])
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A"), cell])
    notebook.metadata["papermill"] = {"parameters": parameters or {"profile": "redesign"},
                                      "duration": 12.34}
    path = tmp_path / name
    nbformat.write(notebook, path)
    return path


def test_scorecard_rows_read_back_what_the_chapter_glued(tmp_path):
    rows = scorecard_rows(nbformat.read(_executed(tmp_path), as_version=4))
    expected = [{"claim": r["claim"], "paper": r["paper"], "ours": r[next(
        k for k in r if k.startswith("ours"))], "verdict": r["verdict"],
        "chapter": r["chapter"]} for r in _rows()]
    assert rows == expected
    assert rows[0]["ours"] == "iou: +7.9 [+4.5, +11.6] (5 runs)"
    assert rows[1]["claim"] == "Table 1: GAIN_ext^b,p < & > GAIN"   # HTML entities undone


def test_a_record_holds_what_ran(tmp_path):
    first = _executed(tmp_path)
    again = _executed(tmp_path, "03_extra.scratch.ipynb",
                      {"profile": "redesign", "protocol": ["scratch"]})
    record = make_record([first, again], profile="redesign", command="python book/build.py")
    assert [c["notebook"] for c in record["chapters"]] == ["03_extra.ipynb"] * 2
    assert record["chapters"][1]["parameters"] == {"profile": "redesign",
                                                   "protocol": ["scratch"]}
    assert record["chapters"][0]["seconds"] == 12.3
    assert list(record["chapters"][0]["rows"][0]) == list(ROW_KEYS)
    assert "gainbook.stats" in record["modules"] and "gainlib" not in record["modules"]
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record))
    assert load_record(path) == record


def test_a_record_refuses_chapters_of_another_profile_and_unexecuted_copies(tmp_path):
    with pytest.raises(ValueError, match=r"03_extra.ipynb.*'redesign'"):
        make_record([_executed(tmp_path, parameters={"profile": "default"})],
                    profile="redesign", command="")
    plain = tmp_path / "plain.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), plain)
    with pytest.raises(ValueError, match="plain.ipynb: not a copy executed by papermill"):
        chapter_entry(plain)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"profile": "x"}))
    with pytest.raises(ValueError, match=r"broken.json: not a scorecard record.*'commit'"):
        load_record(broken)


def test_changed_since_names_changed_modules_and_chapters(tmp_path):
    executed = _executed(tmp_path)
    record = make_record([executed], profile="redesign", command="")
    chapters = tmp_path / "notebooks"
    chapters.mkdir()
    nbformat.write(nbformat.read(executed, as_version=4), chapters / "03_extra.ipynb")
    assert changed_since(record, chapters) == []
    assert record["modules"] == module_digests(["gainbook.stats"])
    stale = {**record, "modules": {**record["modules"], "gainbook.stats": "0" * 64}}
    assert changed_since(stale, chapters) == ["gainbook.stats"]
    _executed(chapters, source="x = 2")
    assert changed_since(record, chapters) == ["notebooks/03_extra.ipynb"]


def test_the_directive_shows_every_row_with_its_run(tmp_path):
    extension = _extension()
    record = make_record([_executed(tmp_path), _executed(
        tmp_path, "03_extra.b.ipynb", {"profile": "redesign", "box_counts": [200, 1464]})],
        profile="redesign", command="python book/build.py --profile redesign")
    table = extension.record_table_rows(record)
    assert len(table) == 4 and all(len(row) == len(extension.COLUMNS) for row in table)
    assert table[0][5] == "–" and table[2][5] == "box_counts = [200, 1464]"
    assert table[1][3].startswith("not run on this profile")
    text = extension.provenance(record)
    assert "profile 'redesign'" in text and "03 12 s, 03 12 s" in text


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: p.stem)
def test_a_committed_record_gives_a_verdict_for_every_claim(path):
    record = load_record(path)
    rows = [row for chapter in record["chapters"] for row in chapter["rows"]]
    assert all(c["parameters"]["profile"] == record["profile"] for c in record["chapters"])
    sources = {row["claim"].split(":")[0].split(",")[0] for row in rows}
    assert set(CLAIM_SOURCES) <= sources, f"no row for {set(CLAIM_SOURCES) - sources}"
    not_decided = [row["claim"] for row in rows if row["verdict"].startswith("not run")]
    assert not not_decided, f"claims the record did not run: {not_decided}"



def test_the_build_scorecard_figure_is_inline_svg_with_a_caption_counting_what_it_leaves_out(
        tmp_path):
    extension = _extension()
    rows = scorecard_rows(nbformat.read(_executed(tmp_path), as_version=4))
    (figure,) = extension.figure_nodes(rows)
    raw, caption = figure.children
    assert "build-scorecard-figure" in figure["classes"] and raw["format"] == "html"
    svg = raw.astext()
    assert svg.startswith('<svg class="scorecard-figure" role="img" aria-label="')
    assert "<?xml" not in svg and "<!DOCTYPE" not in svg and "<metadata" not in svg
    assert "*{" not in svg.replace("svg.scorecard-figure *{", "")   # no page-wide style rule
    assert "paired difference (points)" in svg                     # text as text, not paths
    assert len(svg) < 100_000
    text = caption.astext()
    assert "the table's 1 paired difference, from 1 claim," in text
    assert "1 claim of the table has no difference to plot" in text
    assert extension.figure_nodes(rows[1:]) == []          # nothing to plot: no figure
    assert extension.figure_nodes(rows)[0].children[0].astext() == svg   # the same page again


def test_the_build_scorecard_shows_the_figure_under_the_table(tmp_path):
    from bs4 import BeautifulSoup
    from test_faults_records import _build

    source = tmp_path / "book"
    (source / "notebooks").mkdir(parents=True)
    _executed(source / "notebooks")
    (source / "index.rst").write_text("Results\n=======\n\n.. build-scorecard::\n")
    _build(source, tmp_path / "out", source / "notebooks")
    page = BeautifulSoup((tmp_path / "out" / "html" / "index.html").read_text(), "html.parser")
    table = page.select_one("table.build-scorecard")
    figure = table.find_next("figure")
    assert "build-scorecard-figure" in figure["class"] and figure.find("svg") is not None
    assert "The scorecard at a glance" in figure.find("figcaption").get_text()
