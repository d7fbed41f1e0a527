"""Execute the book's chapters with papermill, then build the book from the executed copies.

    python book/build.py                       # what `make book` runs: profile "default" -> _build/html
    python book/build.py --profile ci          # what `make test` runs: -> _build/ci/_build/html
    python book/build.py --only 02 --no-html   # execute chapter 02 only
    python book/build.py --only 01 -p epochs=2 # override a chapter parameter
    python book/build.py --jobs 1              # one chapter at a time (default profile: two)

Chapters are the notebooks ``notebooks/NN_*.ipynb`` (NN: two digits), found by name: adding one
needs the notebook and its line in ``_toc.yml``, nothing here or in the Makefile. Each chapter has
a cell tagged ``parameters`` whose ``profile`` (``ci``, ``default`` or ``paper``) this script sets.

Why a staging folder. Chapters are executed into copies (executed outputs are never committed),
and the book is built from those copies with ``execute_notebooks: "off"``. Jupyter Book always
excludes folders named ``_build`` under its source folder, and launch buttons link to each page's
path relative to the book's root, so the source of the build is a folder ``_build/<profile>/``
that mirrors the repository: ``_config.yml``, ``_toc.yml`` and ``book/`` copied, ``notebooks/``
executed. Pages keep the paths they have in the repository. The HTML goes to ``_build/html`` for
the default profile (the README's address) and to ``_build/<profile>/_build/html`` otherwise.

The kernel runs in the staged ``notebooks/`` folder, under papermill as under nbval (which always
runs a notebook in its own folder): a chapter must not reach repository files by relative paths;
it takes them as parameters or from the repository root, ``Path(gainlib.__file__).parents[1]``.

The default profile executes two chapters at a time on a machine with two cores or more
(``--jobs``): while one chapter's kernel evaluates its models, the other's workers train.
Every selected chapter is executed even after one fails, and a summary lists them all with
their times. The HTML is built only when every chapter ran; Sphinx warnings are errors.
With ``--only``, the other chapters keep their executed copies from an earlier run of the same
profile when those are newer than the notebook, and are staged unexecuted (with a warning)
otherwise.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PROFILES = ("ci", "default", "paper", "pretrained")
CHAPTER_GLOB = "[0-9][0-9]_*.ipynb"
# `make test` runs every chapter twice on the ci profile (papermill, then nbval): keep each fast.
CI_BUDGET_SECONDS = 60
# What the book's source needs besides the executed notebooks (book/ minus the build scripts).
BOOK_FILES = ("_config.yml", "_toc.yml")
BOOK_DIR_IGNORE = shutil.ignore_patterns("build.py", "vendor_widgets.sh", "__pycache__",
                                         ".ipynb_checkpoints")


@dataclass
class Run:
    """The outcome of one chapter."""

    name: str
    seconds: float
    error: str | None = None


def stage_dir(profile: str) -> Path:
    return ROOT / "_build" / profile


def html_dir(profile: str) -> Path:
    return (ROOT if profile == "default" else stage_dir(profile)) / "_build" / "html"


def find_chapters(only: list[str] | None) -> list[Path]:
    """The chapter notebooks, in order; ``only`` selects them by number (``"02"``) or name."""
    chapters = sorted(NOTEBOOKS.glob(CHAPTER_GLOB))
    if not only:
        return chapters
    selected = [c for c in chapters if any(c.name.startswith(key) or c.stem == key for key in only)]
    unknown = [key for key in only if not any(c.name.startswith(key) or c.stem == key for c in chapters)]
    if unknown:
        sys.exit(f"no chapter matches {unknown}; chapters: {[c.name for c in chapters]}")
    return selected


def stage_book_sources(stage: Path) -> None:
    """Copy the configuration, the text pages and any files the notebooks use into the stage."""
    stage.mkdir(parents=True, exist_ok=True)
    for name in BOOK_FILES:
        shutil.copy2(ROOT / name, stage / name)
    shutil.rmtree(stage / "book", ignore_errors=True)
    shutil.copytree(ROOT / "book", stage / "book", ignore=BOOK_DIR_IGNORE)
    shutil.copytree(NOTEBOOKS, stage / "notebooks", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints", "__pycache__"))
    chapters = {p.name for p in NOTEBOOKS.glob(CHAPTER_GLOB)}
    for stale in (stage / "notebooks").glob(CHAPTER_GLOB):
        if stale.name not in chapters:
            stale.unlink()


def executed_profile(notebook: Path) -> str | None:
    """The profile an executed copy ran with (papermill records its parameters), if any."""
    try:
        metadata = nbformat.read(notebook, as_version=4).metadata
    except (OSError, ValueError):
        return None
    return metadata.get("papermill", {}).get("parameters", {}).get("profile")


def stage_unexecuted(chapter: Path, target: Path, profile: str) -> None:
    """Keep a fresh executed copy of a chapter that is not run now, or stage its source."""
    if (target.exists() and target.stat().st_mtime >= chapter.stat().st_mtime
            and executed_profile(target) == profile):
        print(f"  {chapter.name}: keeping the copy executed earlier with profile {profile!r}")
        return
    shutil.copy2(chapter, target)
    print(f"  {chapter.name}: WARNING not executed (no earlier run of profile {profile!r}); "
          "its page will have no outputs")


def execute(chapter: Path, target: Path, parameters: dict, timeout: int | None) -> Run:
    """Run one chapter with papermill into ``target``; a failure is returned, not raised."""
    import papermill

    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(chapter), str(target), parameters=parameters, kernel_name="python3",
            # The kernel runs in the staged notebooks/ folder, as nbval's does later.
            cwd=str(target.parent), progress_bar=False, execution_timeout=timeout,
        )
        error = None
    except papermill.PapermillExecutionError as err:
        error = f"cell In [{err.exec_count}]: {err.ename}: {err.evalue}"
    except Exception as err:  # a dead kernel, a timeout, a bad notebook: report it and go on
        error = f"{type(err).__name__}: {err}"
    if target.exists():
        hide_injected_parameters(target)
    return Run(chapter.name, time.perf_counter() - start, error)


def hide_injected_parameters(notebook: Path) -> None:
    """Tag papermill's injected parameters cell ``remove-cell``: the HTML reader sees prose
    first (the chapters tag their own Colab and parameters cells so already)."""
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    nbformat.write(nb, notebook)


def build_html(profile: str) -> int:
    """Build the book from the stage with Jupyter Book 1.x (no execution, warnings are errors)."""
    stage = stage_dir(profile)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book if jupyter_book.exists() else "jupyter-book"), "build", str(stage),
               "--path-output", str(html_dir(profile).parents[1]),
               "--all", "--warningiserror", "--keep-going"]
    print("$", " ".join(command), flush=True)
    return subprocess.call(command, cwd=ROOT)


def parse_parameter(text: str) -> tuple[str, object]:
    """``name=value`` with a Python literal value (``epochs=2``, ``seeds=[0,1]``) or a string."""
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def default_jobs(profile: str) -> int:
    """Chapters executed at a time: two for the default profile on a machine with two cores or
    more, else one. A chapter's kernel alternates between training runs (in its two worker
    processes) and evaluating them (one process); a second chapter fills the cores the first
    leaves idle. The ci profile stays sequential (its per-chapter budget is a time per chapter),
    and so do the GPU profiles (one device)."""
    return 2 if profile == "default" and (os.cpu_count() or 1) >= 2 else 1


def run_chapters(stage: Path, selected: list[Path], profile: str, parameters: dict,
                 timeout: int | None, jobs: int = 1) -> list[Run]:
    """Execute the selected chapters into the stage (all of them, whatever fails), ``jobs`` at a
    time; stage the rest. Runs shared by chapters executing together are trained once: the run
    cache locks each run while it trains, and the other chapter loads it when it is done."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    todo = []
    for chapter in find_chapters(None):
        target = stage / "notebooks" / chapter.name
        if chapter in selected:
            todo.append((chapter, target))
        else:
            stage_unexecuted(chapter, target, profile)
    if jobs > 1:
        # One torch thread per kernel: two kernels with two threads each on two cores would
        # spin-wait on each other (OpenMP), and every run then trains on one thread wherever it
        # runs, in a worker or in the kernel, so its result does not depend on the schedule.
        os.environ["OMP_NUM_THREADS"] = "1"

    def one(item: tuple[Path, Path]) -> Run:
        run = execute(*item, parameters, timeout)
        print(f"  {run.name}: {'ok' if run.error is None else 'FAILED'} in {run.seconds:.1f} s",
              flush=True)
        if profile == "ci" and run.seconds > CI_BUDGET_SECONDS:
            print(f"  WARNING: over the ci profile's budget of {CI_BUDGET_SECONDS} s per chapter; "
                  "make its ci settings smaller")
        return run

    # Imported here, before the threads: two threads importing a module at once can see it half
    # initialised (papermill formats the injected parameters with black, if installed).
    import papermill  # noqa: F401
    try:
        import black  # noqa: F401
    except ImportError:
        pass
    with ThreadPoolExecutor(max_workers=jobs) as pool:   # results in chapter order
        return list(pool.map(one, todo))


def report(runs: list[Run], stage: Path) -> bool:
    """Print the summary; True when every chapter ran."""
    failed = [r for r in runs if r.error is not None]
    print(f"\nExecuted {len(runs)} chapter(s) in {sum(r.seconds for r in runs):.1f} s"
          f"{f', {len(failed)} failed:' if failed else '.'}")
    for run in failed:
        copy = (stage / "notebooks" / run.name).relative_to(ROOT)
        print(f"  {run.name}: {run.error.strip()[:500]}\n"
              f"    (the executed copy, with the traceback: {copy})")
    return not failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=PROFILES, default="default",
                        help="the chapters' parameter profile (default: %(default)s)")
    parser.add_argument("--only", nargs="+", metavar="NN", help="execute only these chapters")
    parser.add_argument("-p", "--parameter", type=parse_parameter, action="append", default=[],
                        metavar="NAME=VALUE", help="set a chapter parameter (repeatable)")
    parser.add_argument("--no-html", action="store_true", help="execute the chapters only")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="chapters executed at a time (default: 2 for the default profile "
                             "on two cores or more, else 1)")
    parser.add_argument("--cell-timeout", type=int, default=None, metavar="SECONDS",
                        help="fail a cell that runs longer (default: no limit)")
    args = parser.parse_args(argv)

    # The debugger's warning about frozen modules would otherwise end up in every log.
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    stage = stage_dir(args.profile)
    stage_book_sources(stage)
    selected = find_chapters(args.only)
    parameters = {"profile": args.profile, **dict(args.parameter)}
    jobs = args.jobs if args.jobs is not None else default_jobs(args.profile)
    if jobs < 1:
        parser.error(f"--jobs must be at least 1, got {jobs}")
    print(f"Executing {len(selected)} chapter(s) with {parameters}, {jobs} at a time, into "
          f"{stage.relative_to(ROOT)}/")
    start = time.perf_counter()
    runs = run_chapters(stage, selected, args.profile, parameters, args.cell_timeout, jobs)
    if jobs > 1:
        print(f"Wall time of the chapters, {jobs} at a time: {time.perf_counter() - start:.1f} s")
    if not report(runs, stage):
        return 1
    if args.no_html:
        return 0
    start = time.perf_counter()
    status = build_html(args.profile)
    print(f"Built the HTML in {time.perf_counter() - start:.1f} s: "
          f"{'failed' if status else html_dir(args.profile).relative_to(ROOT) / 'index.html'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
