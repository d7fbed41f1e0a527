"""Recorded scorecards: the verdicts of a profile too costly for `make book`, kept with their
provenance.

The default build computes its scorecard from chapters it executes. Some profiles cost more
than the 20-minute build (the redesigned scenes, chapter 3 with Tables 3 and 4's counts), so
their verdicts are recorded once from executed chapters and shown on the results page beside
the default's: what ran (the command, the chapters' parameters, the commit, the machine, the
time each chapter took), and a digest of the code it ran (every gainlib/gainbook module the
chapters import, and each chapter's code cells), so that the page can say when the code has
changed since. The check derives the modules from the chapters as they are now (a record
cannot leave one out), confines chapters to ``notebooks/``, and validates the record's schema;
it says whether the code is unchanged, and nothing about verdicts, which anyone could edit.

Nothing here is typed in: :func:`scorecard_rows` reads the rows back from the tables the
chapters glued (``ch<N>-scorecard``, :func:`gainbook.scorecard.scorecard`).

Command line (after executing the chapters, e.g. ``python book/build.py --profile redesign
--no-html``)::

    python -m gainbook.records --profile redesign --out book/records/redesign.json \\
        _build/redesign/notebooks/0*.ipynb [more executed copies, e.g. one chapter again with
        other parameters]
"""

from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import nbformat

from gainbook.cache import OWN_PACKAGES, module_closure, module_file, write_text_atomic

__all__ = ["scorecard_rows", "chapter_entry", "make_record", "load_record", "changed_since",
           "code_files", "module_digest", "module_digests", "current_commit", "RECORD_KEYS",
           "ROW_KEYS"]

_REPOSITORY = Path(__file__).resolve().parents[1]
_GLUE_MIME = "application/papermill.record/text/html"

#: The keys of a record and of each of its scorecard rows.
RECORD_KEYS = ("profile", "recorded", "commit", "command", "machine", "modules", "chapters")
ROW_KEYS = ("claim", "paper", "ours", "verdict", "chapter")


# -- reading the glued tables back ----------------------------------------------------------

def _cell_text(cell: Any) -> str:
    return " ".join(cell.get_text(" ").split())


def _table_rows(html: str) -> list[dict[str, Any]]:
    """The rows of one glued :func:`gainbook.scorecard.scorecard` table (pandas' HTML)."""
    from bs4 import BeautifulSoup

    table = BeautifulSoup(html, "html.parser").find("table")
    if table is None:
        raise ValueError("no table in a glued scorecard")
    columns = [_cell_text(th) for th in table.find("thead").find("tr").find_all("th")][1:]
    keys = ["ours" if c.startswith("ours") else c for c in columns]
    if sorted(keys) != sorted(ROW_KEYS[1:]):
        raise ValueError(f"a glued scorecard has the columns {columns}, not {list(ROW_KEYS[1:])}")
    rows = []
    for tr in table.find("tbody").find_all("tr"):
        row = {"claim": _cell_text(tr.find("th"))}
        row.update(zip(keys, (_cell_text(td) for td in tr.find_all("td"))))
        row["chapter"] = int(row["chapter"])
        rows.append({k: row[k] for k in ROW_KEYS})
    return rows


def scorecard_rows(notebook: nbformat.NotebookNode) -> list[dict[str, Any]]:
    """Every row of the scorecard tables an executed chapter glued (names ending in
    ``-scorecard``), in the order it glued them: ``claim``, ``paper``, ``ours`` (the
    difference with its interval), ``verdict``, ``chapter``."""
    rows: list[dict[str, Any]] = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name", "")
            if name.endswith("-scorecard") and _GLUE_MIME in output.get("data", {}):
                rows.extend(_table_rows(output["data"][_GLUE_MIME]))
    return rows


# -- what ran -------------------------------------------------------------------------------

def _code_digest(notebook: nbformat.NotebookNode) -> str:
    """Hash of a chapter's code cells but papermill's injected parameters (those are recorded
    as parameters)."""
    digest = hashlib.sha256()
    for cell in notebook.cells:
        if cell.cell_type == "code" and "injected-parameters" not in cell.metadata.get("tags", []):
            digest.update(cell.source.encode())
    return digest.hexdigest()


def _imported(notebook: nbformat.NotebookNode) -> set[str]:
    """The gainlib/gainbook modules a chapter's code imports (by name, as written)."""
    found = set()
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:               # IPython magics: no import of ours there
            continue
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found.update(n for n in names if n.split(".")[0] in OWN_PACKAGES)
    return found


def module_digest(name: str) -> str | None:
    """Hash of module ``name``'s syntax tree (a comment does not change it); None if it is gone."""
    path = module_file(name)
    if path is None or path.suffix != ".py":
        return None
    return hashlib.sha256(ast.dump(ast.parse(path.read_text())).encode()).hexdigest()


def module_digests(modules: Sequence[str]) -> dict[str, str]:
    """Each of ``modules`` and every gainlib/gainbook module they import, transitively
    (:mod:`gainbook.cache`'s closure), with :func:`module_digest` of it."""
    closure = sorted({m for name in modules for m in module_closure(name)})
    digests = {name: module_digest(name) for name in closure}
    return {name: digest for name, digest in digests.items() if digest is not None}


def chapter_entry(path: str | os.PathLike,
                  notebook: nbformat.NotebookNode | None = None) -> dict[str, Any]:
    """One executed chapter as a record holds it: its name, papermill parameters, seconds,
    code digest and scorecard rows (``notebook``: the chapter at ``path``, already read)."""
    notebook = notebook if notebook is not None else nbformat.read(path, as_version=4)
    papermill = notebook.metadata.get("papermill", {})
    if "parameters" not in papermill:
        raise ValueError(f"{path}: not a copy executed by papermill (book/build.py)")
    return {"notebook": Path(path).name.split(".")[0] + ".ipynb",
            "parameters": dict(papermill["parameters"]),
            "seconds": round(float(papermill.get("duration") or 0.0), 1),
            "code": _code_digest(notebook), "rows": scorecard_rows(notebook)}


def current_commit() -> str:
    """The checkout's commit, marked when tracked files have uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPOSITORY, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=_REPOSITORY, check=True, capture_output=True,
                               text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}{' (with uncommitted changes)' if dirty else ''}"


def make_record(paths: Sequence[str | os.PathLike], *, profile: str,
                command: str) -> dict[str, Any]:
    """A record of the executed chapters ``paths`` (one chapter may appear more than once, run
    with other parameters); every chapter must have run on ``profile``."""
    import torch

    if not paths:
        raise ValueError("no executed chapters to record")
    notebooks = [nbformat.read(p, as_version=4) for p in paths]
    chapters = [chapter_entry(p, n) for p, n in zip(paths, notebooks)]
    wrong = [c["notebook"] for c in chapters if c["parameters"].get("profile") != profile]
    if wrong:
        raise ValueError(f"{wrong} did not run on profile {profile!r}")
    imported = sorted({m for n in notebooks for m in _imported(n)})
    return {"profile": profile,
            "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": current_commit(), "command": command,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version(), "torch": torch.__version__},
            "modules": module_digests(imported), "chapters": chapters}


CHAPTER_KEYS = ("notebook", "parameters", "seconds", "code", "rows")
MACHINE_KEYS = ("cpus", "platform", "python", "torch")
#: A chapter's file name: a notebook in the chapters' folder, never a path.
_NOTEBOOK_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.ipynb")
_DIGEST = re.compile(r"[0-9a-f]{64}")


class _Invalid(ValueError):
    pass


def _expect(ok: bool, field: str, problem: str, value: Any) -> None:
    if not ok:
        raise _Invalid(f"{field} {problem}, got {value!r} ({type(value).__name__})")


def _text(value: Any, field: str) -> None:
    _expect(isinstance(value, str) and value.strip() != "", field, "must be a non-empty string", value)


def _whole(value: Any, field: str, minimum: int) -> None:
    _expect(isinstance(value, int) and not isinstance(value, bool) and value >= minimum, field,
            f"must be an integer >= {minimum}", value)


def _object(value: Any, field: str, keys: Sequence[str]) -> None:
    _expect(isinstance(value, dict), field, "must be an object", value)
    missing = [k for k in keys if k not in value]
    _expect(not missing, field, f"lacks {missing}", sorted(value))


def _check_record(record: Any) -> None:
    """Raise :class:`_Invalid` naming the first field of ``record`` that breaks the schema."""
    _object(record, "the record", RECORD_KEYS)
    for key in ("profile", "commit", "command"):
        _text(record[key], key)
    _text(record["recorded"], "recorded")
    try:
        datetime.datetime.fromisoformat(record["recorded"])
    except ValueError:
        _expect(False, "recorded", "must be an ISO date and time", record["recorded"])
    _object(record["machine"], "machine", MACHINE_KEYS)
    _whole(record["machine"]["cpus"], "machine.cpus", 1)
    for key in MACHINE_KEYS[1:]:
        _text(record["machine"][key], f"machine.{key}")
    _expect(isinstance(record["modules"], dict), "modules", "must be an object", record["modules"])
    for name, digest in record["modules"].items():
        _expect(isinstance(digest, str) and bool(_DIGEST.fullmatch(digest)), f"modules[{name!r}]",
                "must be a SHA-256 hex digest", digest)
    chapters = record["chapters"]
    _expect(isinstance(chapters, list) and len(chapters) > 0, "chapters",
            "must be a non-empty list", chapters)
    for i, chapter in enumerate(chapters):
        where = f"chapters[{i}]"
        _object(chapter, where, CHAPTER_KEYS)
        name = chapter["notebook"]
        _expect(isinstance(name, str) and bool(_NOTEBOOK_NAME.fullmatch(name)), f"{where}.notebook",
                "must be the file name of a chapter in notebooks/ (no folder)", name)
        _object(chapter["parameters"], f"{where}.parameters", ("profile",))
        _expect(chapter["parameters"]["profile"] == record["profile"], f"{where}.parameters.profile",
                f"must be the record's profile {record['profile']!r}", chapter["parameters"]["profile"])
        seconds = chapter["seconds"]
        _expect(isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
                and math.isfinite(seconds) and seconds >= 0, f"{where}.seconds",
                "must be a finite number >= 0", seconds)
        _expect(isinstance(chapter["code"], str) and bool(_DIGEST.fullmatch(chapter["code"])),
                f"{where}.code", "must be a SHA-256 hex digest", chapter["code"])
        _expect(isinstance(chapter["rows"], list), f"{where}.rows", "must be a list", chapter["rows"])
        for j, row in enumerate(chapter["rows"]):
            _object(row, f"{where}.rows[{j}]", ROW_KEYS)
            for key in ROW_KEYS[:-1]:
                _text(row[key], f"{where}.rows[{j}].{key}")
            _whole(row["chapter"], f"{where}.rows[{j}].chapter", 1)


def load_record(path: str | os.PathLike) -> dict[str, Any]:
    """A record written by this module, its schema checked: every malformed record (a missing
    or mistyped field, NaN or negative seconds, a chapter outside ``notebooks/``) is a
    ``ValueError`` naming the file and the field."""
    try:
        record = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a scorecard record (not JSON: {error})") from None
    if isinstance(record, dict):      # every missing key at once, as the record has them
        missing = [k for k in RECORD_KEYS if k not in record]
        chapters = record.get("chapters", [])
        missing += [f"chapters[{i}].{k}" for i, c in enumerate(chapters if isinstance(chapters, list) else [])
                    if isinstance(c, dict) for k in CHAPTER_KEYS if k not in c]
        if missing:
            raise ValueError(f"{path}: not a scorecard record (missing {missing})")
    try:
        _check_record(record)
    except _Invalid as error:
        raise ValueError(f"{path}: not a scorecard record: {error}") from None
    return record


def _chapters_folder(notebooks: str | os.PathLike | None) -> Path:
    return (Path(notebooks) if notebooks is not None else _REPOSITORY / "notebooks").resolve()


def _chapter_path(folder: Path, name: str) -> Path:
    """``folder / name``, refused unless it is a file name that stays inside ``folder``."""
    path = folder / name
    if not _NOTEBOOK_NAME.fullmatch(name) or path.resolve().parent != folder:
        raise ValueError(f"chapter {name!r} is not a notebook of {folder}")
    return path


def code_files(record: dict[str, Any], notebooks: str | os.PathLike | None = None) -> list[Path]:
    """The files the staleness check of ``record`` reads: its chapters as they are now in
    ``notebooks`` and every gainlib/gainbook module they import, transitively (the results
    page depends on them, so an edit to any of them rebuilds it)."""
    folder = _chapters_folder(notebooks)
    chapters = sorted({_chapter_path(folder, c["notebook"]) for c in record["chapters"]})
    imported = {m for path in chapters if path.is_file()
                for m in _imported(nbformat.read(path, as_version=4))}
    modules = sorted({m for name in imported for m in module_closure(name)})
    files = {module_file(m) for m in modules}
    return chapters + sorted(f for f in files if f is not None and f.suffix == ".py")


def changed_since(record: dict[str, Any], notebooks: str | os.PathLike | None = None) -> list[str]:
    """What differs now from what ``record`` ran: the chapters in ``notebooks`` (default: the
    repository's) whose code cells changed (or that are gone), and the gainlib/gainbook modules
    those chapters import now, transitively, whose code is not the code the record lists (or
    that it does not list). The modules are derived from the chapters as they are, never taken
    from the record. Empty when the code is unchanged since the record."""
    folder = _chapters_folder(notebooks)
    changed, imported = [], set()
    for chapter in record["chapters"]:
        path = _chapter_path(folder, chapter["notebook"])
        if not path.is_file():
            changed.append(f"notebooks/{chapter['notebook']}")
            continue
        notebook = nbformat.read(path, as_version=4)
        imported |= _imported(notebook)
        if _code_digest(notebook) != chapter["code"]:
            changed.append(f"notebooks/{chapter['notebook']}")
    changed += [m for m, digest in module_digests(sorted(imported)).items()
                if record["modules"].get(m) != digest]
    return sorted(set(changed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", help="executed chapters (book/build.py's copies)")
    parser.add_argument("--profile", required=True, help="the profile they ran on")
    parser.add_argument("--out", required=True, help="the record to write (JSON)")
    parser.add_argument("--command", default=None,
                        help="the commands that executed them, as the page should show them")
    args = parser.parse_args(argv)
    command = args.command or f"python book/build.py --profile {args.profile} --no-html"
    record = make_record(args.notebooks, profile=args.profile, command=command)
    write_text_atomic(Path(args.out), json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    rows = sum(len(c["rows"]) for c in record["chapters"])
    print(f"Recorded {rows} scorecard rows of {len(record['chapters'])} chapter runs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
