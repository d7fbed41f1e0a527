"""Cheap checks of the book's configuration (no build): `make book` is where the build is tested."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")  # PyYAML comes with the `book` extra (jupyter-book)

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = (".md", ".ipynb")


def _load(name: str) -> dict:
    data = yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{name} does not parse to a mapping"
    return data


def _toc_files(node) -> list[str]:
    """Every `root`/`file` entry of a jb-book table of contents, at any depth."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("root", "file"):
                found.append(value)
            else:
                found.extend(_toc_files(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_toc_files(item))
    return found


def _resolve(entry: str) -> Path | None:
    path = ROOT / entry
    if path.suffix in SUFFIXES:
        return path if path.is_file() else None
    return next((p for p in (path.with_suffix(s) for s in SUFFIXES) if p.is_file()), None)


def test_toc_entries_point_to_existing_pages():
    toc = _load("_toc.yml")
    assert toc.get("format") == "jb-book"
    entries = _toc_files(toc)
    assert entries and entries[0] == toc["root"]
    missing = [e for e in entries if _resolve(e) is None]
    assert not missing, f"_toc.yml lists pages that do not exist: {missing}"
    assert len(entries) == len(set(entries)), "a page is listed twice in _toc.yml"


def test_config_parses_and_never_executes_notebooks():
    config = _load("_config.yml")
    # Notebooks are executed by papermill before the build, never by the book itself. Jupyter Book
    # reads an unquoted `off` (YAML's boolean false) the same way, but the quoted string is intended.
    assert config["execute"]["execute_notebooks"] == "off"
    for bib in config.get("bibtex_bibfiles", []):
        assert (ROOT / bib).is_file(), f"bibtex file {bib} is missing"


def test_config_keeps_non_book_folders_out_of_the_build():
    excluded = set(_load("_config.yml").get("exclude_patterns", []))
    for folder in (".venv", "_build", "tests", "benchmarks", "data_scripts", "README.md"):
        assert folder in excluded, f"{folder} is not in exclude_patterns"


def test_results_page_pastes_only_keys_the_named_chapters_glue():
    """book/results.md pastes tables glued by the chapters (MyST-NB glue across pages): every
    ``{glue} key`` with ``:doc: notebook`` must name a chapter that calls ``glue("key", ...)``,
    or the build fails on a missing key (only after executing every chapter)."""
    import re

    import nbformat

    text = (ROOT / "book" / "results.md").read_text()
    pastes = re.findall(r"```\{glue\} (\S+)\n:doc: \.\./(notebooks/\S+\.ipynb)\n```", text)
    assert len(pastes) >= 7, "the results page should paste a headline table of every chapter"
    assert len(pastes) == text.count("```{glue}"), "every paste names its chapter with :doc:"
    for key, notebook in pastes:
        path = ROOT / notebook
        assert path.exists(), f"{notebook} (pasted {key!r}) does not exist"
        source = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        assert re.search(rf'glue\(\s*"{re.escape(key)}",', source), f"{notebook} never glues {key!r}"
