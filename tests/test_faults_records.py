"""Reliability, round two: the results page's recorded scorecard says "unchanged" only when it
is. Each test holds one case of the issue and failed before its fix.

A record that lists no modules, a chapter path pointing outside notebooks/, an incremental
build after a code edit, verdicts edited by hand, and malformed records (a KeyError that named
no file, or NaN seconds and -3 CPU cores that built silently). Every record here is built in
tmp_path; none depends on the book's own records.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
from pathlib import Path

import nbformat
import pytest
from test_records import _executed

from gainbook.records import changed_since, code_files, load_record, make_record

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def chapters(tmp_path):
    """A notebooks/ folder holding an executed chapter that imports gainbook.stats, and its record."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (tmp_path / "run").mkdir()
    executed = _executed(tmp_path / "run")
    nbformat.write(nbformat.read(executed, as_version=4), folder / "03_extra.ipynb")
    record = make_record([executed], profile="redesign", command="python book/build.py")
    assert changed_since(record, folder) == []
    return folder, record


def _write(tmp_path: Path, record) -> Path:
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record))
    return path


# -- the modules checked are the chapters' imports as they are now ------------------------------

def test_a_record_that_lists_no_modules_is_not_current(chapters):
    folder, record = chapters
    assert "gainbook.stats" in record["modules"]
    # Before, changed_since checked only the modules the record listed: none, so "current"
    # whatever had happened to gainbook/stats.py.
    assert changed_since({**record, "modules": {}}, folder) == ["gainbook.stats"]
    stale = {**record, "modules": {"gainlib.losses": record["modules"]["gainbook.stats"]}}
    assert changed_since(stale, folder) == ["gainbook.stats"]


# -- chapters are confined to notebooks/ --------------------------------------------------------

def test_a_chapter_path_outside_notebooks_is_refused(chapters, tmp_path):
    folder, record = chapters
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "03_extra.ipynb").write_bytes((folder / "03_extra.ipynb").read_bytes())
    (folder / "03_extra.ipynb").unlink()
    outside = {**record, "chapters": [{**record["chapters"][0],
                                       "notebook": "../planted/03_extra.ipynb"}]}
    with pytest.raises(ValueError, match=r"record.json: not a scorecard record: "
                                         r"chapters\[0\]\.notebook must be the file name of a "
                                         r"chapter in notebooks/ \(no folder\), got '\.\./planted"):
        load_record(_write(tmp_path, outside))
    with pytest.raises(ValueError, match=r"chapter '\.\./planted/03_extra.ipynb' is not a notebook of"):
        changed_since(outside, folder)          # a matching digest there said "current" before
    (folder / "03_extra.ipynb").symlink_to(planted / "03_extra.ipynb")
    with pytest.raises(ValueError, match="is not a notebook of"):
        changed_since(record, folder)


# -- the page is rebuilt when the code changes, and says only what it checks --------------------

def _build(source: Path, out: Path, notebooks: Path):
    """Build ``source`` (an index.rst with the directive) with Sphinx, incrementally into ``out``:
    the text of its HTML page, and the Sphinx application."""
    from bs4 import BeautifulSoup
    from sphinx.application import Sphinx

    (source / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / 'book' / '_ext')!r})\n"
        f"extensions = ['recorded_scorecard']\nrecorded_scorecard_notebooks = {str(notebooks)!r}\n")
    app = Sphinx(str(source), str(source), str(out / "html"), str(out / "doctrees"), "html",
                 status=io.StringIO(), warning=io.StringIO(), freshenv=False)
    app.build()
    html = (out / "html" / "index.html").read_text()
    return " ".join(BeautifulSoup(html, "html.parser").get_text(" ").split()), app


def test_an_incremental_build_after_a_code_edit_renders_the_page_again(chapters, tmp_path):
    folder, record = chapters
    source = tmp_path / "book"
    source.mkdir()
    (source / "record.json").write_text(json.dumps(record))
    (source / "index.rst").write_text("Results\n=======\n\n.. recorded-scorecard:: record.json\n")
    text, app = _build(source, tmp_path / "out", folder)
    assert "The code is unchanged since this record" in text
    depends = {os.path.normpath(d) for d in app.env.dependencies["index"]}
    assert str(folder / "03_extra.ipynb") in depends
    assert str(ROOT / "gainbook" / "stats.py") in depends            # the code, not only the JSON
    _executed(folder, source="x = 2")                                 # a chapter's code edited
    stamp = (source / "record.json").stat().st_mtime + 10
    os.utime(folder / "03_extra.ipynb", (stamp, stamp))
    again, _ = _build(source, tmp_path / "out", folder)
    assert "The code has changed since this record, in: notebooks/03_extra.ipynb" in again


def test_the_page_vouches_for_the_code_not_for_verdicts_edited_by_hand(chapters, tmp_path):
    folder, record = chapters
    edited = json.loads(json.dumps(record))
    edited["chapters"][0]["rows"][1]["verdict"] = "reproduces"      # typed in, not run
    assert changed_since(edited, folder) == []                      # the code did not change
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        import recorded_scorecard
    finally:
        sys.path.remove(str(ROOT / "book" / "_ext"))
    status = recorded_scorecard.status_text([])
    assert status.startswith("The code is unchanged since this record")
    assert "the verdicts, times and provenance are as the record states them, not recomputed" in status
    assert "is the code the record ran" not in status


# -- the record's schema is validated: every malformed record names the file and the field ------

def _broken(record, change):
    record = json.loads(json.dumps(record))
    change(record)
    return record


BROKEN = {
    "a row without verdict": (lambda r: r["chapters"][0]["rows"][0].pop("verdict"),
                              r"chapters\[0\]\.rows\[0\] lacks \['verdict'\]"),
    "machine without cpus": (lambda r: r["machine"].pop("cpus"), r"machine lacks \['cpus'\]"),
    "cpus as a string": (lambda r: r["machine"].update(cpus="2"),
                         r"machine\.cpus must be an integer >= 1, got '2'"),
    "-3 CPU cores": (lambda r: r["machine"].update(cpus=-3), r"machine\.cpus must be an integer >= 1, got -3"),
    "NaN seconds": (lambda r: r["chapters"][0].update(seconds=math.nan),
                    r"chapters\[0\]\.seconds must be a finite number >= 0, got nan"),
    "negative seconds": (lambda r: r["chapters"][0].update(seconds=-1.5),
                         r"chapters\[0\]\.seconds must be a finite number >= 0, got -1.5"),
    "rows not a list": (lambda r: r["chapters"][0].update(rows="none"),
                        r"chapters\[0\]\.rows must be a list"),
    "a row's chapter as text": (lambda r: r["chapters"][0]["rows"][1].update(chapter="3"),
                                r"chapters\[0\]\.rows\[1\]\.chapter must be an integer >= 1"),
    "a verdict that is not text": (lambda r: r["chapters"][0]["rows"][0].update(verdict=None),
                                   r"chapters\[0\]\.rows\[0\]\.verdict must be a non-empty string"),
    "modules not an object": (lambda r: r.update(modules=["gainbook.stats"]),
                              r"modules must be an object"),
    "a module digest that is not one": (lambda r: r["modules"].update({"gainbook.stats": "x"}),
                                        r"modules\['gainbook.stats'\] must be a SHA-256"),
    "no chapters": (lambda r: r.update(chapters=[]), r"chapters must be a non-empty list"),
    "a date that is not one": (lambda r: r.update(recorded="yesterday"),
                               r"recorded must be an ISO date and time"),
    "another profile's chapter": (lambda r: r["chapters"][0]["parameters"].update(profile="ci"),
                                  r"chapters\[0\]\.parameters\.profile must be the record's "
                                  r"profile 'redesign'"),
    "an empty object": (lambda r: r.clear(), r"missing \['profile'"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_malformed_record_is_an_error_naming_the_file_and_the_field(chapters, tmp_path, case):
    _, record = chapters
    change, message = BROKEN[case]
    path = _write(tmp_path, _broken(record, change))
    with pytest.raises(ValueError, match=rf"{path}: not a scorecard record.*{message}"):
        load_record(path)


def test_a_sound_record_loads_and_names_its_code_files(chapters, tmp_path):
    folder, record = chapters
    assert load_record(_write(tmp_path, record)) == record
    files = code_files(record, folder)
    assert files[0] == folder / "03_extra.ipynb" and ROOT / "gainbook" / "stats.py" in files
