"""The chapter pipeline (book/build.py): chapters' conventions, staging, execution, widget wiring.

`make test` runs the real pipeline on every chapter (papermill, nbval, the browser tests); these
are the cheap checks that name the broken convention when one is broken.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REQUIRED_PARAMETERS = {"profile", "seeds", "device", "dataset", "epochs", "image_size"}


def _load_build():
    spec = importlib.util.spec_from_file_location("book_build", ROOT / "book" / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it is executed
    spec.loader.exec_module(module)
    return module


build = _load_build()


def test_there_are_chapters_and_only_well_named_notebooks():
    assert CHAPTERS, "no notebooks/NN_*.ipynb chapters"
    stray = [p.name for p in (ROOT / "notebooks").glob("*.ipynb") if p not in CHAPTERS]
    assert not stray, f"notebooks that book/build.py would not run (name them NN_*.ipynb): {stray}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_chapter_has_one_parameters_cell_defaulting_to_the_default_profile(chapter):
    notebook = nbformat.read(chapter, as_version=4)
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{chapter.name}: {len(cells)} cells tagged 'parameters', expected 1"
    assigned = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            assigned[node.targets[0].id] = ast.literal_eval(node.value)
    missing = REQUIRED_PARAMETERS - set(assigned)
    assert not missing, f"{chapter.name}: the parameters cell lacks {sorted(missing)}"
    assert assigned["profile"] == "default"
    # papermill must see every one of them (it warns "unknown parameter" and may mis-inject a
    # line it cannot parse, e.g. one with "=" in its comment).
    from papermill.inspection import inspect_notebook

    assert set(inspect_notebook(str(chapter))) == set(assigned)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_chapter_is_committed_without_outputs(chapter):
    notebook = nbformat.read(chapter, as_version=4)
    executed = [i for i, c in enumerate(notebook.cells)
                if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not executed, f"{chapter.name}: cells {executed} hold outputs; clear them before committing"
    assert "widgets" not in notebook.metadata and "papermill" not in notebook.metadata


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_chapter_marks_a_key_result_for_nbval_with_a_tag_not_a_comment(chapter):
    from nbval.plugin import find_comment_markers, find_metadata_tags

    notebook = nbformat.read(chapter, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    checked = [c for c in code if ("check", True) in find_metadata_tags(c.metadata)]
    assert checked, f"{chapter.name}: no cell is tagged 'nbval-check-output'"
    commented = [i for i, c in enumerate(notebook.cells)
                 if c.cell_type == "code" and list(find_comment_markers(c.source))]
    assert not commented, (f"{chapter.name}: cells {commented} carry nbval's markers as comments, "
                           "which the reader sees; tag the cells instead (nbval-check-output, ...)")


# The tags under which a published page shows no code (Jupyter Book's collapsed and removed cells).
HIDDEN_INPUT = {"hide-input", "remove-input", "remove-cell", "hide-cell"}
VISIBLE_CODE_LINES = 700        # over all chapters: the method's code, not the book's plumbing


def _visible_code_lines(chapter: Path) -> int:
    notebook = nbformat.read(chapter, as_version=4)
    return sum(len([line for line in cell.source.splitlines() if line.strip()])
               for cell in notebook.cells if cell.cell_type == "code"
               and not HIDDEN_INPUT & set(cell.metadata.get("tags", ())))


def test_the_chapters_show_a_reader_at_most_the_visible_code_budget():
    lines = {chapter.name: _visible_code_lines(chapter) for chapter in CHAPTERS}
    assert sum(lines.values()) <= VISIBLE_CODE_LINES, (
        f"the chapters show {sum(lines.values())} lines of code ({lines}); collapse the cells "
        f"that only compute, glue or assemble (tag 'hide-input'), at most {VISIBLE_CODE_LINES}")


def test_every_chapter_is_in_the_table_of_contents():
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r"file:\s*(notebooks/\S+)", toc))
    assert listed == {f"notebooks/{p.stem}" for p in CHAPTERS}


def test_only_selects_chapters_by_number_or_name(capsys):
    assert build.find_chapters(None) == CHAPTERS
    first = CHAPTERS[0]
    assert build.find_chapters([first.name[:2]]) == [first]
    assert build.find_chapters([first.stem]) == [first]
    with pytest.raises(SystemExit, match="no chapter matches"):
        build.find_chapters(["99"])


def test_parameters_from_the_command_line_are_python_literals_or_strings():
    assert build.parse_parameter("epochs=2") == ("epochs", 2)
    assert build.parse_parameter("seeds=[0, 1]") == ("seeds", [0, 1])
    assert build.parse_parameter("device=cuda") == ("device", "cuda")
    with pytest.raises(Exception, match="NAME=VALUE"):
        build.parse_parameter("epochs")


def test_stage_mirrors_the_repository_without_the_build_scripts(tmp_path):
    stale = tmp_path / "notebooks" / "98_removed.ipynb"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    build.stage_book_sources(tmp_path)
    for name in ("_config.yml", "_toc.yml", "book/intro.md", "book/_ext/html_fixes.py",
                 "book/_static/widgets/embed-amd.js"):
        assert (tmp_path / name).is_file(), f"{name} is not staged"
    assert not (tmp_path / "book" / "build.py").exists()
    assert not (tmp_path / "book" / "vendor_widgets.sh").exists()
    assert not stale.exists(), "a chapter removed from the repository stays in the stage"


def test_output_folders():
    assert build.html_dir("default") == ROOT / "_build" / "html"           # the README's address
    assert build.html_dir("ci") == ROOT / "_build" / "ci" / "_build" / "html"
    assert build.stage_dir("ci") == ROOT / "_build" / "ci"


def test_widget_javascript_is_local_vendored_and_matches_ipywidgets():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["sphinx"]["config"]
    static = ROOT / config["html_static_path"][0]
    scripts = list(config["nb_ipywidgets_js"])
    assert scripts[-1].endswith("embed-amd.js") and any(s.endswith("require.js") for s in scripts)
    for script in scripts:
        assert "://" not in script, f"{script} would load from a CDN"
        assert (static / script).is_file(), f"{script} is not in {static}"
    folder = static / "widgets"
    vendored = (folder / "VENDORED.txt").read_text(encoding="utf-8")
    for digest, name in re.findall(r"^([0-9a-f]{64})\s+(\S+)$", vendored, flags=re.MULTILINE):
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, f"{name} was modified"
    version = re.search(r"@jupyter-widgets/html-manager (\d+)\.(\d+)\.(\d+)", vendored).groups()
    ipywidgets = pytest.importorskip("ipywidgets")
    wanted = re.match(r"\^(\d+)\.", ipywidgets._version.__html_manager_version__).group(1)
    assert version[0] == wanted, (f"ipywidgets {ipywidgets.__version__} needs html-manager "
                                  f"{ipywidgets._version.__html_manager_version__}; run book/vendor_widgets.sh")


def _notebook(tmp_path: Path, code: str) -> Path:
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                  "display_name": "Python 3"}})
    params = nbformat.v4.new_code_cell('profile = "default"')
    params.metadata["tags"] = ["parameters"]
    notebook.cells = [params, nbformat.v4.new_code_cell(code)]
    path = tmp_path / "01_probe.ipynb"
    nbformat.write(notebook, path)
    return path


def test_a_failing_chapter_is_reported_not_raised(tmp_path):
    pytest.importorskip("papermill")
    chapter = _notebook(tmp_path, 'assert profile != "ci", "profile was " + profile')
    target = tmp_path / "out" / chapter.name
    target.parent.mkdir()
    run = build.execute(chapter, target, {"profile": "ci"}, timeout=120)
    assert run.error is not None and "AssertionError" in run.error and "profile was ci" in run.error
    assert build.executed_profile(target) == "ci"              # the copy keeps the error to read
    saved = json.loads(target.read_text())
    assert any(o.get("output_type") == "error" for c in saved["cells"] for o in c.get("outputs", []))


def test_chapters_run_side_by_side_and_are_reported_in_order(tmp_path, monkeypatch):
    import threading

    chapters = [tmp_path / f"0{i}_probe.ipynb" for i in (1, 2, 3)]
    both_running = threading.Barrier(2, timeout=30)   # breaks unless two chapters overlap
    ran = []

    def fake_execute(chapter, target, parameters, timeout):
        ran.append(chapter.name)
        if chapter.name != "03_probe.ipynb":
            both_running.wait()
        error = "boom" if chapter.name == "02_probe.ipynb" else None
        return build.Run(chapter.name, 0.0, error)

    monkeypatch.setattr(build, "find_chapters", lambda only: chapters)
    monkeypatch.setattr(build, "execute", fake_execute)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    runs = build.run_chapters(tmp_path, chapters, "default", {}, None, jobs=2)
    assert [r.name for r in runs] == [c.name for c in chapters]      # in order, whatever finished first
    assert [r.error for r in runs] == [None, "boom", None]           # a failure stops no other chapter
    assert sorted(ran) == [c.name for c in chapters]
    assert build.os.environ["OMP_NUM_THREADS"] == "1"                # one thread per kernel
    with pytest.raises(ValueError, match="jobs"):
        build.run_chapters(tmp_path, chapters, "default", {}, None, jobs=0)


def test_only_the_default_profile_runs_chapters_side_by_side(monkeypatch):
    monkeypatch.setattr(build.os, "cpu_count", lambda: 2)
    assert build.default_jobs("default") == 2
    assert build.default_jobs("ci") == build.default_jobs("paper") == 1
    monkeypatch.setattr(build.os, "cpu_count", lambda: 1)
    assert build.default_jobs("default") == 1


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_chapter_installs_itself_on_colab_only_and_says_how_to_regenerate_it(chapter):
    notebook = nbformat.read(chapter, as_version=4)
    first_code = next(c for c in notebook.cells if c.cell_type == "code")
    assert 'if "google.colab" in sys.modules:' in first_code.source
    assert "gainlib[book] @ git+" in first_code.source
    intro = notebook.cells[0].source
    assert f"papermill notebooks/{chapter.name} out.ipynb -p profile default" in intro


def test_the_api_page_documents_every_public_module_of_both_packages():
    import pkgutil

    import gainbook
    import gainlib

    pages = ("api.md", "api_gainbook.md")   # two pages: one would be too heavy to load
    documented = {name for page in pages
                  for name in re.findall(r"automodule:: ([\w.]+)", (ROOT / "book" / page).read_text())}
    public = {info.name for package in (gainlib, gainbook)
              for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
              if not any(part.startswith("_") for part in info.name.split("."))
              and not info.ispkg}
    missing = sorted(public - documented)
    assert not missing, f"the API pages (book/{pages}) document no automodule for {missing}"
