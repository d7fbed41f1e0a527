"""The published book in a real browser: Debian's chromium driven by playwright, no kernel, offline.

The book is the one `make test` just built on the "ci" profile (the Makefile passes its folder in
GAIN_BOOK_HTML); run alone, the tests build it themselves with book/build.py (about a minute), so
they never depend on a manual build. Served on 127.0.0.1, every page must load with no console
error, no uncaught exception and no failed request; images need real alt text; chapter 1 has a
captioned figure; and moving the static σ/ω explorer's sliders must switch its panels. Without a
browser, a crawler (stdlib html.parser) reads every HTML file of the book, Sphinx's own pages
included: no internal link, anchor or asset may be broken, and no image may lack alt text.

Chromium comes from Debian (`apt-get install chromium`, which .ci/run does on CI machines), never
from `playwright install`. Without it the tests skip locally and fail under CI=true.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# The flags the toolchain notes measured: run as root in a container, no GPU, and no background
# connections (the machine has no network, and refused connections would show up as errors).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
# A page heavier than this has an explorer grid (or figures) too large for readers.
PAGE_BUDGET_BYTES = 1_500_000
SCREENSHOTS = ROOT / "_build" / "browser-test"
FILE_NAME_ALT = re.compile(r"\.(png|jpe?g|svg|gif|webp)$", re.IGNORECASE)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required in CI: .ci/run installs Debian's chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def book_html() -> Path:
    """The built ci-profile book: the one named by GAIN_BOOK_HTML, or built now."""
    given = os.environ.get("GAIN_BOOK_HTML")
    if given:
        html = Path(given)
        html = html if html.is_absolute() else ROOT / html
        assert (html / "index.html").is_file(), f"GAIN_BOOK_HTML={given} holds no built book"
        return html
    result = subprocess.run([sys.executable, str(ROOT / "book" / "build.py"), "--profile", "ci"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, (f"book/build.py --profile ci failed:\n"
                                    f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}")
    return ROOT / "_build" / "ci" / "_build" / "html"


@pytest.fixture(scope="session")
def server(book_html: Path):
    """Serve the book on 127.0.0.1 (an ephemeral port) for the session."""
    handler = functools.partial(_QuietHandler, directory=str(book_html))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def browser():
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        _unavailable("Debian's chromium is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class PageProblems:
    """Console errors, uncaught exceptions and failed requests of one page."""

    def __init__(self, page) -> None:
        self.problems: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console error: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"uncaught exception: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    problems = PageProblems(page)
    page.goto(url, wait_until="networkidle")
    return page, problems


def _pages(book_html: Path) -> list[str]:
    """Every page of the book: the text pages and the chapters (Sphinx's own pages aside)."""
    pages = [p.relative_to(book_html).as_posix() for folder in ("book", "notebooks")
             for p in sorted((book_html / folder).glob("*.html"))]
    return ["index.html", *pages]


def test_every_page_loads_cleanly_with_meaningful_alt_text(browser, server, book_html):
    pages = _pages(book_html)
    assert any(p.startswith("notebooks/") for p in pages), "the book has no chapter pages"
    failures = {}
    for name in pages:
        page, problems = _open(browser, server + name)
        page.wait_for_timeout(500)  # late requests (fonts, widget rendering)
        found = list(problems.problems)
        for img in page.locator("img").all():
            alt = (img.get_attribute("alt") or "").strip()
            if not alt or FILE_NAME_ALT.search(alt):
                found.append(f"image without real alt text: src={img.get_attribute('src')[:80]!r} alt={alt!r}")
        if (size := (book_html / name).stat().st_size) > PAGE_BUDGET_BYTES:
            found.append(f"page is {size / 1e6:.2f} MB, over the {PAGE_BUDGET_BYTES / 1e6:.1f} MB budget")
        if found:
            failures[name] = found
        page.close()
    assert not failures, "\n".join(f"{name}:\n  " + "\n  ".join(f) for name, f in failures.items())


def test_chapters_open_with_prose_and_code_fits_the_page(browser, server, book_html):
    """At 1280 px no code cell scrolls sideways, and no set-up cell (Colab, parameters,
    papermill's injected parameters) comes before the chapter's first words."""
    failures = {}
    for name in [p for p in _pages(book_html) if p.startswith("notebooks/")]:
        page, _ = _open(browser, server + name)
        wide = page.evaluate("""() => [...document.querySelectorAll(
            'article .cell_input pre, article div.highlight pre')]
            .filter(pre => pre.scrollWidth > pre.clientWidth + 1)
            .map(pre => pre.innerText.split('\\n').sort((a, b) => b.length - a.length)[0])""")
        shown = page.locator("article .cell_input").all_inner_texts()
        setup = [text[:60] for text in shown if "google.colab" in text
                 or "Papermill parameters" in text or "Parameters\n" in text[:12]]
        first = page.locator("article section > *").first.evaluate("e => e.tagName")
        found = [f"code scrolls sideways: {line[:70]!r}" for line in wide]
        found += [f"set-up cell shown: {text!r}" for text in setup]
        if first not in ("H1", "P"):
            found.append(f"the page opens with a {first}, not prose")
        if found:
            failures[name] = found
        page.close()
    assert not failures, "\n".join(f"{name}:\n  " + "\n  ".join(f) for name, f in failures.items())


@pytest.mark.parametrize("width", [1280, 390])
def test_nothing_is_wider_than_the_page(browser, server, book_html, width):
    """At a desktop's and a phone's width no page scrolls sideways: wide tables scroll in their
    own box and long names break (book/_static/code-cells.css). Each failure names the
    outermost elements that stick out."""
    failures = {}
    for name in _pages(book_html):
        if name == "index.html":                 # a redirect to the introduction
            continue
        page = browser.new_page(viewport={"width": width, "height": 1000})
        page.goto(server + name, wait_until="load")
        found = page.evaluate("""() => {
            const root = document.documentElement, limit = root.clientWidth + 1;
            if (root.scrollWidth <= limit) return [];
            const out = [];
            for (const el of document.querySelectorAll('main *')) {
                const parent = el.parentElement;
                if (el.getBoundingClientRect().right > limit
                        && !(parent && parent.getBoundingClientRect().right > limit))
                    out.push(`${el.tagName.toLowerCase()}.${el.className}: ` +
                             (el.innerText || '').slice(0, 50));
            }
            return [`page is ${root.scrollWidth} px wide`, ...out.slice(0, 5)];
        }""")
        if found:
            failures[name] = found
        page.close()
    assert not failures, "\n".join(f"{name}:\n  " + "\n  ".join(f) for name, f in failures.items())


class _Tables(html.parser.HTMLParser):
    """The tables of a page: each a list of rows, each row a list of (tag, text) cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[tuple[str, str]]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables and self.tables[-1]:
            self._cell = []
            self.tables[-1][-1].append((tag, self._cell))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _table_problems(rows: list[list[tuple[str, list[str]]]]) -> list[str]:
    cells = [(tag, "".join(text).strip()) for row in rows for tag, text in row]
    problems = [f"{text!r} (not measured is '–')" for _, text in cells
                if text in ("NaN", "nan", "None", "<NA>")]
    problems += [f"{text[:30]!r} (5 decimals or more)" for _, text in cells
                 if re.search(r"\d\.\d{5,}", text)]
    problems += ["a draw column" for tag, text in cells if tag == "th" and text == "draw"]
    index = ["".join(row[0][1]).strip() for row in rows if row and row[0][0] == "th"]
    numbered = [text for text in index if text.isdigit()]
    if len(numbered) >= 2 and numbered == [str(i) for i in range(len(numbered))]:
        problems.append("a 0..n index")
    return problems[:3]


def test_tables_write_numbers_one_way(book_html):
    """Issue 32's rule for every table (the API pages aside): "–" for what was not measured,
    no number with 5 decimals or more, no draw column, no index that only counts rows."""
    failures = []
    for page in [p for folder in ("book", "notebooks") for p in sorted((book_html / folder).glob("*.html"))
                 if not p.name.startswith("api")]:
        parser = _Tables()
        parser.feed(page.read_text())
        for number, rows in enumerate(parser.tables):
            if problems := _table_problems(rows):
                failures.append(f"{page.relative_to(book_html)}, table {number}: {'; '.join(problems)}")
    assert not failures, "\n".join(failures)


def test_chapter_one_has_a_captioned_figure(browser, server):
    page, problems = _open(browser, server + "notebooks/01_gradcam.html")
    figures = page.locator("figure:has(img):has(figcaption)")
    assert figures.count() >= 1, "chapter 1 shows no figure with a caption"
    for i in range(figures.count()):
        image = figures.nth(i).locator("img")
        assert image.evaluate("img => img.complete && img.naturalWidth > 0"), f"figure {i + 1}'s image did not load"
    captions = figures.locator("figcaption").all_inner_texts()
    assert any("Grad-CAM" in caption for caption in captions), captions
    page.close()


def _visible_panel(page) -> tuple[str, str]:
    """The (soft-mask image source, text) of the explorer panel now shown."""
    panel = page.locator(".gain-explorer-panel").filter(visible=True)
    assert panel.count() == 1, f"{panel.count()} explorer panels are visible, expected exactly 1"
    return panel.locator("img").first.get_attribute("src"), panel.inner_text()


def test_static_explorer_switches_panels_without_a_kernel(browser, server):
    page, problems = _open(browser, server + "notebooks/02_attention_mining.html")
    page.locator(".gain-explorer").first.wait_for(state="visible", timeout=20_000)
    page.wait_for_timeout(500)
    count = page.locator(".gain-explorer").count()
    assert count == 1, f"the explorer is rendered {count} times (two widget loaders on the page?)"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    explorer = page.locator(".gain-explorer")
    explorer.scroll_into_view_if_needed()
    explorer.screenshot(path=str(SCREENSHOTS / "explorer-initial.png"))

    start_src, start_text = _visible_panel(page)
    assert "σ = 0.5, ω = 10" in start_text, start_text

    sigma_handle = page.locator(".gain-explorer-sigma .noUi-handle")
    sigma_handle.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_timeout(300)
    sigma_src, sigma_text = _visible_panel(page)
    assert "σ = 0.65, ω = 10" in sigma_text, sigma_text
    assert sigma_src != start_src, "moving the σ slider did not change the soft mask shown"
    explorer.screenshot(path=str(SCREENSHOTS / "explorer-sigma-moved.png"))

    omega_handle = page.locator(".gain-explorer-omega .noUi-handle")
    omega_handle.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_timeout(300)
    omega_src, omega_text = _visible_panel(page)
    assert "σ = 0.65, ω = 100" in omega_text, omega_text
    assert omega_src != sigma_src, "moving the ω slider did not change the soft mask shown"

    # The chapter's classes are the synthetic benchmark's: boat, car, bird, cow.
    page.locator(".gain-explorer-class button", has_text="bird").click()
    page.wait_for_timeout(300)
    _, class_text = _visible_panel(page)
    assert "σ = 0.65, ω = 100" in class_text, "the class picker reset the sliders' panel"
    alts = page.locator(".gain-explorer-panel").filter(visible=True).locator("img").evaluate_all(
        "imgs => imgs.map(i => i.alt)")
    assert all("class bird" in alt for alt in alts), alts
    explorer.screenshot(path=str(SCREENSHOTS / "explorer-class-bird.png"))
    assert not problems.problems, "\n".join(problems.problems)
    page.close()


def test_static_attention_picker_switches_models_without_a_kernel(browser, server):
    page, problems = _open(browser, server + "notebooks/03_extra_supervision.html")
    page.locator(".gain-picker").first.wait_for(state="visible", timeout=20_000)
    page.wait_for_timeout(500)

    def shown() -> list[str]:
        panel = page.locator(".gain-picker-panel").filter(visible=True)
        assert panel.count() == 1, f"{panel.count()} picker panels are visible, expected exactly 1"
        return panel.locator("img").evaluate_all("imgs => imgs.map(i => i.alt)")

    first = shown()
    assert first and all("of 0 (GAIN)" in alt for alt in first), first
    handle = page.locator(".gain-picker-model .noUi-handle")
    handle.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_timeout(300)
    second = shown()
    assert all("masks for class" in alt and "GAIN" not in alt for alt in second), second
    # The same images, in the same order, under another model's attention.
    assert [a.split(" on ")[-1] for a in first] == [a.split(" on ")[-1] for a in second]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(".gain-picker").screenshot(path=str(SCREENSHOTS / "picker-moved.png"))
    assert not problems.problems, "\n".join(problems.problems)
    page.close()


def test_chapter_launch_buttons_open_the_notebook_at_its_repository_path(book_html):
    # The book is built from a staging folder that mirrors the repository, so that these links
    # (derived from each page's path) point at the committed notebooks.
    for chapter in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        page = (book_html / "notebooks" / f"{chapter.stem}.html").read_text(encoding="utf-8")
        path = f"notebooks/{chapter.name}"
        assert re.search(rf'href="https://mybinder\.org/[^"]*{re.escape(path)}"', page), chapter.name
        assert re.search(rf'href="https://colab\.research\.google\.com/[^"]*/{re.escape(path)}"', page), chapter.name


# The attributes that make a page load or link to another file, by tag.
LINK_ATTRIBUTES = {"a": "href", "link": "href", "area": "href", "script": "src", "img": "src",
                   "source": "src", "iframe": "src", "video": "src", "audio": "src", "embed": "src"}


class _PageParser(html.parser.HTMLParser):
    """The links, anchors (``id``, ``<a name>``) and images of one HTML file."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.anchors: set[str] = set()
        self.images: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.anchors.add(attributes["id"])
        if tag == "a" and attributes.get("name"):
            self.anchors.add(attributes["name"])
        if (link := attributes.get(LINK_ATTRIBUTES.get(tag, ""))) is not None:
            self.links.append(link)
        if tag == "img":
            self.images.append((attributes.get("src") or "", attributes.get("alt")))


@functools.lru_cache(maxsize=None)
def _parse_page(path: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


def _broken_link(page: Path, link: str, root: Path) -> str | None:
    """Why an internal link of ``page`` is broken, or None (also for external links)."""
    parts = urlsplit(link)
    if parts.scheme or parts.netloc or link.startswith("//"):
        return None  # another site, mailto:, data:, javascript:
    path = unquote(parts.path)
    target = (page.parent / path).resolve() if path else page
    if path.endswith("/") or target.is_dir():
        target = target / "index.html"
    if not target.is_relative_to(root.resolve()):
        return f"{link}: leaves the book's folder"
    if not target.is_file():
        return f"{link}: no such file"
    fragment = unquote(parts.fragment)
    if fragment and target.suffix == ".html" and fragment not in _parse_page(target).anchors:
        return f"{link}: {target.relative_to(root.resolve()).as_posix()} has no anchor #{fragment}"
    return None


def test_no_broken_internal_link_and_every_image_has_alt_text(book_html):
    """Every HTML file of the book (text pages, chapters, API source pages, index and search;
    not the theme's templates in _static/): each link, stylesheet, script and image that stays in
    the book must reach a file, and a fragment an element with that id, as on the web server; and
    every ``<img>`` needs alt text that says something (not empty, not a file name)."""
    pages = sorted(p for p in book_html.rglob("*.html") if "_static" not in p.relative_to(book_html).parts)
    assert len(pages) > 5 and book_html / "index.html" in pages, f"too few pages: {pages}"
    root = book_html.resolve()
    failures = {}
    for page in pages:
        parsed = _parse_page(page.resolve())
        found = [problem for link in dict.fromkeys(parsed.links)
                 if (problem := _broken_link(page.resolve(), link, root))]
        found += [f"image without real alt text: src={src[:80]!r} alt={alt!r}" for src, alt in parsed.images
                  if not (alt or "").strip() or FILE_NAME_ALT.search(alt.strip())]
        if found:
            failures[page.relative_to(book_html).as_posix()] = found
    assert not failures, "\n".join(f"{name}:\n  " + "\n  ".join(f) for name, f in failures.items())


def test_the_results_page_shows_one_scorecard_of_this_builds_chapters(book_html):
    """One table gathers every row the executed chapters glued, with its figure (inline SVG)
    under it, every claim of Tables 1-4, 6-8 and Sec. 5.2 is on it and run by the build (none
    reads "not run on this profile"), and the page names no other benchmark than the one the
    build ran."""
    import nbformat
    from bs4 import BeautifulSoup

    from gainbook.records import load_record, scorecard_rows
    from gainbook.scorecard import verdict_label

    page = BeautifulSoup((book_html / "book" / "results.html").read_text(encoding="utf-8"),
                         "html.parser")
    tables = page.select("table.build-scorecard")
    assert len(tables) == 1
    chapters = sorted((book_html.parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    glued = [row for c in chapters for row in scorecard_rows(nbformat.read(c, as_version=4))]
    shown = tables[0].select("tbody tr")
    assert len(shown) == len(glued) > 0
    # Under the table, the scorecard at a glance: every comparison against zero, inline SVG.
    figure = tables[0].find_next("figure")
    assert figure is not None and "build-scorecard-figure" in figure.get("class", []), (
        "no figure under the scorecard")
    assert figure.find("svg") is not None and figure.find("figcaption") is not None
    claims = [row.find_all("td")[0].get_text(" ", strip=True) for row in shown]
    sources = {claim.split(":")[0].split(",")[0] for claim in claims}
    missing = {"Table 1", "Table 2", "Table 3", "Table 4", "Table 6", "Table 7", "Table 8",
               "Sec. 5.2"} - sources
    assert not missing, f"no row for {missing}"
    verdicts = [row.find_all("td")[3].get_text(" ", strip=True) for row in shown]
    # Each verdict after its category's symbol, in the words the chapter computed.
    assert verdicts == [verdict_label(row["verdict"]) for row in glued]
    assert not [v for v in verdicts if "not run" in v], verdicts
    text = page.get_text(" ")
    assert "redesign" not in text.lower()
    # A recorded scorecard appears only for a committed record (of a larger profile).
    records = sorted((ROOT / "book" / "records").glob("*.json"))
    recorded = page.select("table.recorded-scorecard")
    assert len(recorded) == len(records)
    rows = sum(len(c["rows"]) for path in records for c in load_record(path)["chapters"])
    assert sum(len(table.select("tbody tr")) for table in recorded) == rows
