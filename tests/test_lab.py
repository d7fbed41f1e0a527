"""The chapters live in JupyterLab: a kernel behind the σ/ω explorer, MyST markdown rendered.

The published book (tests/test_book_html.py) has no kernel; this test checks what `make lab`
promises instead. It starts JupyterLab (no browser, a free port on 127.0.0.1, a random token;
its configuration, data, runtime and root folders temporary) on a copy of chapter 2 whose
parameters are set papermill's way (an injected-parameters cell after the tagged one, not
executed) to the ``ci`` profile and ``live_explorer = True``, opens it in Debian's chromium and:

* jupyterlab-myst renders every markdown cell: the title as a heading, ``{cite:t}`` as a
  citation, and none of the chapter's roles as raw ``{role}`` markup. The book's Sphinx-only
  roles (``{glue:text}``, ``{paper}``, ``{stats}``) show their bare content in JupyterLab:
  glued values need the book's build, so they are not checked;
* JupyterLab's "Run All Cells" runs every cell, and none raises (read from the notebook as
  JupyterLab saves it);
* the explorer is the live one, and moving its σ slider to 0 (a value the precomputed grid of
  the published book lacks) makes the kernel redraw the masked image ``I*`` for σ = 0.

The kernel reuses the runs that the ci book build (run first by `make test`) trained into the
repository's cache (``$GAIN_BOOK_CACHE``, else ``_build/cache``). Nothing is downloaded: the page
may request nothing but the local JupyterLab, whose news feed, update check and PyPI extension
manager are off. Without JupyterLab (or jupyterlab-myst) or chromium the test skips and says why;
under CI=true it fails instead, like the other browser tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from test_book_html import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, _unavailable

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "notebooks" / "02_attention_mining.ipynb"
PARAMETERS = {"profile": "ci", "live_explorer": True}
# Generous limits, never expected times: the ci chapter runs in well under a minute on cached
# runs, but a cache made stale by a code change trains its models again first.
SERVER_START_S = 120
NOTEBOOK_RUN_S = 600
KERNEL_REDRAW_S = 60
# A MyST role in markdown source: {name}`content`.
ROLE = re.compile(r"\{([a-z][\w:-]*)\}`")


def _require_tools() -> None:
    """Skip (fail under CI=true) without JupyterLab, jupyterlab-myst, playwright or chromium."""
    for module, package in (("jupyterlab", "jupyterlab"), ("jupyterlab_myst", "jupyterlab-myst")):
        if importlib.util.find_spec(module) is None:
            reason = f"{package} is not installed (pip install -e '.[lab]', as `make test` does)"
            if os.environ.get("CI"):
                pytest.fail(f"{reason}; required in CI")
            pytest.skip(reason)
    if not Path(CHROMIUM).exists():
        _unavailable("Debian's chromium is not installed (apt-get install -y chromium)")
    if importlib.util.find_spec("playwright") is None:
        _unavailable("playwright is not installed (pip install -e '.[test]')")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _parameterized_chapter(folder: Path) -> Path:
    """Chapter 2 with papermill's injected-parameters cell after its tagged one, unexecuted."""
    import nbformat
    from papermill.iorw import load_notebook_node  # papermill's reader: every cell gets tags
    from papermill.parameterize import parameterize_notebook

    notebook = parameterize_notebook(load_notebook_node(str(CHAPTER)), PARAMETERS)
    target = folder / CHAPTER.name
    nbformat.write(notebook, target)
    return target


def _lab_environment(home: Path) -> dict[str, str]:
    """The server's (and so the kernel's) environment: Jupyter's own folders in ``home``, so no
    user setting, workspace or kernel outside the test is used, and the repository's run cache."""
    env = dict(os.environ)
    for name in ("config", "data", "runtime"):
        (home / name).mkdir()
        env[f"JUPYTER_{name.upper()}_DIR"] = str(home / name)
    # The kernel is this interpreter, whatever other "python3" kernels the machine has.
    kernel = home / "data" / "kernels" / "python3"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python"}))
    # Every cell attached to the page (not only those in view): the test reads them all.
    settings = home / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    # The kernel runs in the temporary root: name the cache the ci build filled.
    env.setdefault("GAIN_BOOK_CACHE", str(ROOT / "_build" / "cache"))
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


def _wait_for_server(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited ({server.returncode}):\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """A JupyterLab server on a parameterized copy of chapter 2: (its URL with the token, the
    notebook file it serves, its log)."""
    _require_tools()
    home = tmp_path_factory.mktemp("lab")
    root = home / "root"
    root.mkdir()
    notebook = _parameterized_chapter(root)
    env = _lab_environment(home)
    port, token = _free_port(), secrets.token_hex(16)
    log = home / "jupyterlab.log"
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--port-retries=0", f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
        "--allow-root",  # CI runs as root in a container
        f"--LabApp.user_settings_dir={home / 'settings'}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}",
        # Nothing fetched from the network: no news feed, no check for a newer JupyterLab, and
        # an extension manager that lists the installed extensions without asking PyPI.
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    with open(log, "w") as log_file:
        # Its own process group: the kernels it starts are stopped with it.
        server = subprocess.Popen(command, cwd=root, env=env, stdout=log_file,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_server(f"{base}/api/status?token={token}", server, log)
        yield f"{base}/lab/tree/{notebook.name}?token={token}", notebook, log
    finally:
        server.terminate()  # SIGTERM: the server shuts its kernels down, then exits
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()


def _run_all_cells(page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def _wait_until_run(page) -> None:
    """Wait until "Run All" is over: a cell has run and none is queued or running ("[*]").
    Before the run no cell has a number, and after an error the rest are not run."""
    page.wait_for_function("""() => {
        const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
            .map(prompt => prompt.textContent);
        return prompts.some(text => /\\[\\d+\\]/.test(text))
            && !prompts.some(text => text.includes('*'));
    }""", timeout=NOTEBOOK_RUN_S * 1000, polling=500)


def _saved_problems(page, notebook: Path) -> list[str]:
    """Save the notebook from JupyterLab; return the errors its cells' outputs hold, and the
    cells that did not run."""
    import nbformat

    before = notebook.stat().st_mtime_ns
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    # jupyter_server writes atomically (a temporary file renamed): a new mtime is a whole file.
    while notebook.stat().st_mtime_ns == before:
        assert time.monotonic() < deadline, "JupyterLab did not save the notebook"
        time.sleep(0.2)
    saved = nbformat.read(notebook, as_version=4)
    cells = [cell for cell in saved.cells if cell.cell_type == "code"]
    problems = [f"code cell {i + 1}: {output.ename}: {output.evalue}"
                for i, cell in enumerate(cells)
                for output in cell.outputs if output.output_type == "error"]
    return problems + [f"code cell {i + 1} did not run" for i, cell in enumerate(cells)
                       if cell.execution_count is None]


def _masked_image(explorer):
    """The masked image I* the explorer shows."""
    images = explorer.locator('img[alt^="masked image I*"]').filter(visible=True)
    assert images.count() == 1, f"the explorer shows {images.count()} masked images, expected 1"
    return images.first


def _sigma_row(page, explorer):
    """The explorer's row labelled σ (the live explorer's sliders have no class of their own)."""
    return explorer.locator(".widget-hbox").filter(
        has=page.locator("b", has_text=re.compile(r"^σ$")))


def test_chapter_two_runs_live_in_jupyterlab(lab):
    # Playwright's sync API allows one instance per thread, and tests/test_book_html.py keeps
    # its browser open for the whole session: this test drives its own from a thread of its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(_drive_chapter_two, *lab).result()  # re-raises what failed there


def _drive_chapter_two(url: str, notebook: Path, log: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            _check_chapter_two(browser.new_page(viewport={"width": 1400, "height": 1000}),
                               url, notebook, log)
        finally:
            browser.close()


def _check_chapter_two(page, url: str, notebook: Path, log: Path) -> None:
    from playwright.sync_api import expect

    leaving: list[str] = []  # requests for anything but the local server (nothing may download)

    def note_request(request) -> None:
        address = urlsplit(request.url)
        if address.scheme in ("http", "https") and address.hostname != "127.0.0.1":
            leaving.append(request.url)

    page.on("request", note_request)
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(url)
        # The kernel named by the notebook starts by itself; run once it is idle.
        expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_be_visible(
            timeout=SERVER_START_S * 1000)
        _check_myst_markdown(page, notebook)
        _run_all_cells(page)

        _wait_until_run(page)
        problems = _saved_problems(page, notebook)
        assert not problems, "Run All in JupyterLab:\n" + "\n".join(problems)
        explorer = page.locator(".gain-explorer")
        expect(explorer, "the σ/ω explorer is not shown").to_be_visible()

        explorer.scroll_into_view_if_needed()
        explorer.screenshot(path=str(SCREENSHOTS / "lab-explorer-initial.png"))
        expect(explorer, "the explorer is the precomputed one of the published book, not the "
               "live one: the injected parameters did not set live_explorer = True"
               ).to_contain_text("σ/ω explorer (live)")
        masked = _masked_image(explorer)
        start_src, start_alt = masked.get_attribute("src"), masked.get_attribute("alt")
        assert "σ = 0.5," in start_alt, start_alt
        sigma = _sigma_row(page, explorer)
        readout = sigma.locator(".widget-readout")

        # σ = 0, off the static grid (0.2 to 0.8), half-erases every pixel: a change no model,
        # however little trained, can hide. Only the kernel can draw it.
        sigma.locator(".noUi-handle").focus()
        page.keyboard.press("Home")
        expect(readout, "the σ slider did not move to 0").to_have_text("0.00")
        expect(masked, "the kernel did not redraw the masked image for σ = 0").to_have_attribute(
            "alt", re.compile(r"σ = 0,"), timeout=KERNEL_REDRAW_S * 1000)
        assert _masked_image(explorer).get_attribute("src") != start_src, (
            "the masked image names σ = 0 but its pixels did not change")
        explorer.screenshot(path=str(SCREENSHOTS / "lab-explorer-sigma-moved.png"))
        assert not leaving, "the page requested files from outside:\n" + "\n".join(leaving)
    except BaseException:
        page.screenshot(path=str(SCREENSHOTS / "lab-failure.png"), full_page=True)
        print("JupyterLab's log (end):\n" + log.read_text()[-4000:])
        print("uncaught exceptions in the page:\n" + "\n".join(page_errors))
        raise
    finally:
        page.close()


def _check_myst_markdown(page, notebook: Path) -> None:
    """jupyterlab-myst renders every markdown cell: headings, a citation, and no MyST role of
    the chapter shown as raw ``{role}`` markup. (It renders the book's Sphinx-only roles, glue's
    included, as their bare content: glued values need the book's build, and are not checked.)"""
    import nbformat
    from playwright.sync_api import expect

    sources = [cell.source for cell in nbformat.read(notebook, as_version=4).cells
               if cell.cell_type == "markdown"]
    roles = sorted({role for source in sources for role in ROLE.findall(source)})
    assert "cite:t" in roles, f"chapter 2 no longer cites with {{cite:t}}; its roles: {roles}"
    # jupyterlab-myst renders into a `.myst` element; JupyterLab's own renderer has none.
    expect(page.locator(".jp-MarkdownCell .myst"),
           "markdown cells not rendered by jupyterlab-myst (is it installed and enabled?)"
           ).to_have_count(len(sources), timeout=60_000)
    expect(page.locator(".jp-MarkdownCell .myst h1").first).to_contain_text("Attention mining")
    citation = page.locator(".jp-MarkdownCell .myst .cite-group", has_text="li2018gain")
    expect(citation, "{cite:t}`li2018gain` is not rendered as a citation").to_have_count(1)
    texts = page.locator(".jp-MarkdownCell .myst").evaluate_all(
        "cells => cells.map(cell => cell.textContent)")
    raw = [f"{{{role}}} in {text[:80]!r}" for text in texts for role in roles
           if f"{{{role}}}" in text]
    assert not raw, "MyST roles shown as raw markup:\n" + "\n".join(raw)
