"""The built book, opened in a real browser (headless Debian chromium through selenium).

Run after `make book` (the Makefile's `test` target does): the site must exist in
book/_build/html. For every page in book/_toc.yml the test checks that the page loads without
severe console errors, that MathJax has typeset every equation (and none failed to parse), that
every image has loaded and every chapter shows at least one computed figure, and that every
ipywidgets explorer shows its static fallback: the note added by book/_static/widget_fallback.js,
and a figure in the output of the same cell or of the next one (a figure with its own caption).

The tables of every "Paper vs. this book" section (and of any "Summary" section) are read from the
built HTML without a browser: every cell of the book's column that speaks of a measurement or points
elsewhere must hold a number, or say that the result is not reproduced.

On every page, at the 1280-px window, no code block and no cell output (text or table) may be wider than its
box (scrollWidth against clientWidth, with every collapsed input and solution opened first): a failure names the
page and the first line that runs off. Every image needs alt text that says something, not a file name. A
self-test injects an overflowing line and a file-name alt text into a built page and checks that both are found.

Without chromium the test skips, unless MVIT_REQUIRE_BROWSER=1 (CI sets it): then it fails.

Two checks read the built HTML files without a browser: no page links to a placeholder (YOUR-ORG,
example.com, ...), and the launch and repository buttons are there exactly when the repository
setting (mvit.booktools: MVIT_BOOK_REPO, else repository.url in _config.yml) names a repository.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import os
import re
import shutil
import threading
import urllib.parse
from pathlib import Path

import pytest
import yaml
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[2]
# The book whose built site is tested: book/ by default; MVIT_BOOK_DIR=student tests the student site
# (`make student`), and any folder with a _toc.yml and _build/html works (a small copy of the book, say).
BOOK = ROOT / os.environ.get("MVIT_BOOK_DIR", "book")
SITE = BOOK / "_build" / "html"
CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMEDRIVER = "chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1024",
)
WIDGET_VIEW = 'script[type="application/vnd.jupyter.widget-view+json"]'


def toc_pages(toc_file: Path = BOOK / "_toc.yml") -> list[str]:
    """Document names listed in a Jupyter Book 1 `_toc.yml`, root first, in reading order."""
    toc = yaml.safe_load(toc_file.read_text())
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                pages.append(Path(entry["file"]).with_suffix("").as_posix())
            walk(entry.get("sections", []))
            walk(entry.get("chapters", []))

    walk(toc.get("parts", []))
    walk(toc.get("chapters", []))
    return pages


def _browser_missing(reason: str):
    if os.environ.get("MVIT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (MVIT_REQUIRE_BROWSER=1, so the browser test may not skip)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def site_url():
    if not (SITE / "index.html").is_file():
        pytest.fail(f"the book is not built: {SITE}/index.html is missing; run `make book` first")

    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep the test output readable
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)
    driver_path = shutil.which(CHROMEDRIVER)
    if chromium is None or driver_path is None:
        _browser_missing(
            "chromium and chromedriver are needed for the browser test; install them with "
            "`apt-get install chromium chromium-driver`"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _browser_missing("selenium is needed for the browser test; `pip install -e .[dev]`")

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(browser, url: str) -> list[dict]:
    """Load `url`, wait until MathJax (if present) is done, return the console's severe entries."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get_log("browser")  # drop anything left over from the previous page
    browser.get(url)
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
    WebDriverWait(browser, 60).until(
        lambda d: d.execute_script(
            "if (!window.MathJax || !MathJax.startup || !MathJax.startup.promise) return true;"
            "if (window.__mathjaxDone === undefined) {"
            "  window.__mathjaxDone = false;"
            "  MathJax.startup.promise.then(() => { window.__mathjaxDone = true; });"
            "}"
            "return window.__mathjaxDone;"
        )
    )
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


# Boxes whose content must fit: code blocks, cells' text outputs, and tables that cells display.
BOXES = "article div.highlight pre, article div.cell_output pre, article div.cell_output table"
OPEN_EVERYTHING = (
    "document.querySelectorAll('details').forEach(d => { d.open = true; });"
    "document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));"
)
# For each box wider than its container (1 px of rounding allowed), the box's kind and its first line that does
# not fit (measured in the box's own font), else its longest line.
FIND_OVERFLOWS = f"""
const probe = document.createElement('span');
probe.style.cssText = 'position:absolute; visibility:hidden; white-space:pre; left:0; top:0';
document.body.appendChild(probe);
const found = [];
for (const box of document.querySelectorAll({BOXES!r})) {{
  const frame = box.tagName === 'TABLE' ? box.parentElement : box;
  if (frame.clientWidth === 0) continue;  // not displayed
  const wide = box.tagName === 'TABLE'
    ? Math.max(frame.scrollWidth, box.getBoundingClientRect().width) > frame.clientWidth + 1
    : box.scrollWidth > box.clientWidth + 1;
  if (!wide) continue;
  const style = getComputedStyle(box);
  const room = box.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  probe.style.font = style.font;
  const lines = box.tagName === 'TABLE'
    ? [...box.rows].map(row => [...row.cells].map(c => c.textContent.trim()).join(' | '))
    : box.textContent.split('\\n');
  let line = lines.find(text => {{ probe.textContent = text; return probe.getBoundingClientRect().width > room + 1; }});
  if (line === undefined) line = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
  found.push({{kind: box.tagName === 'TABLE' ? 'table' : (box.closest('.cell_output') ? 'output' : 'code'),
              overflow: Math.round(box.tagName === 'TABLE' ? frame.scrollWidth - frame.clientWidth
                                                           : box.scrollWidth - box.clientWidth),
              line: line}});
}}
probe.remove();
return found;
"""
# Images whose alt text is missing, empty, a file name or a path ("png", "../_images/x.png", "fig_3.svg").
FIND_BAD_ALT = r"""
const fileName = /(^|[\\/])[^\\/\s]*\.(png|jpe?g|gif|svg|webp)$|^(png|jpe?g|gif|svg|webp|image|img)$|^\S*[\\/]\S*$/i;
return [...document.images]
  .map(img => ({src: img.getAttribute('src') || '', alt: (img.getAttribute('alt') || '').trim()}))
  .filter(({src, alt}) => !alt || fileName.test(alt) || alt === src.split('/').pop());
"""


def overflows(browser) -> list[dict]:
    """The boxes of the open page (every collapsed part opened) whose content is wider than the box."""
    browser.execute_script(OPEN_EVERYTHING)
    return browser.execute_script(FIND_OVERFLOWS)


def bad_alt_texts(browser) -> list[dict]:
    return browser.execute_script(FIND_BAD_ALT)


def _overflow_report(page: str, found: list[dict]) -> str:
    first = found[0]
    return (
        f"{page}: {len(found)} code/output box(es) wider than the page's box at a 1280-px window; the first, "
        f"a {first['kind']} box {first['overflow']} px too wide, runs off at:\n    {first['line']!r}\n"
        "(the notebooks are formatted at 76 columns: `ruff format`; split long prints and strings)"
    )


@pytest.mark.parametrize("page", toc_pages())
def test_page(browser, site_url, page):
    url = f"{site_url}/{page}.html"
    errors = _open(browser, url)
    assert not errors, f"{page}: console errors:\n" + "\n".join(e["message"] for e in errors)

    title = browser.execute_script("return document.querySelector('article h1')?.textContent")
    assert title, f"{page}: no page heading; did the page build?"

    math = browser.execute_script(
        "const all = [...document.querySelectorAll('article .math')];"
        "return {total: all.length,"
        "        typeset: all.filter(m => m.querySelector('mjx-container')).length,"
        "        errors: [...document.querySelectorAll('mjx-merror')].map(e => e.textContent)};"
    )
    assert math["typeset"] == math["total"], f"{page}: MathJax typeset {math['typeset']} of {math['total']} equations"
    assert not math["errors"], f"{page}: MathJax could not parse: {math['errors']}"

    if (BOOK / f"{page}.ipynb").is_file():  # every chapter shows at least one figure it computed
        figures = browser.execute_script("return document.querySelectorAll('.cell_output img').length")
        assert figures > 0, (
            f"{page}: no figure in any cell output; did the kernels run with a non-inline matplotlib "
            "backend (e.g. MPLBACKEND=Agg)?"
        )

    broken = browser.execute_script(
        "return [...document.images]"
        "  .filter(img => !(img.complete && img.naturalWidth > 0))"
        "  .map(img => img.getAttribute('src'));"
    )
    assert not broken, f"{page}: images that did not load: {broken}"

    bad_alt = bad_alt_texts(browser)
    assert not bad_alt, (
        f"{page}: images without meaningful alt text (give each figure one, e.g. myst-nb's "
        f"cell metadata mystnb.image.alt): {bad_alt}"
    )

    found = overflows(browser)
    assert not found, _overflow_report(page, found)

    widgets = browser.execute_script(
        f"return [...document.querySelectorAll('{WIDGET_VIEW}')].map(view => {{"
        "  const note = view.previousElementSibling;"
        "  const cell = view.closest('.cell');"
        "  const next = cell && cell.nextElementSibling;"  # the figure may have a captioned cell of its own
        "  const figures = [cell, next].filter(c => c && c.classList.contains('cell'))"
        "                   .flatMap(c => [...c.querySelectorAll('.cell_output img')]);"
        "  return {note: !!note && note.classList.contains('widget-fallback')"
        "                && note.offsetHeight > 0,"
        "          figure: figures.some(img => img.naturalWidth > 0)};"
        "});"
    )
    for i, widget in enumerate(widgets):
        assert widget["note"], f"{page}: widget {i} has no visible static-site note"
        assert widget["figure"], f"{page}: widget {i} has no static figure in its cell's output or the next cell's"


INJECTED = (
    '<div class="highlight"><pre id="t1"></pre></div>'
    '<div class="cell_output"><div class="output"><pre id="t2"></pre></div></div>'
    '<div class="highlight"><pre id="t3">fits = 1</pre></div>'
    '<div class="cell_output"><div class="pst-scrollable-table-container">'
    '<table><tr><td>Table</td><td id="t4"></td></tr></table></div></div>'
    '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="fig_3.png">'
    '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="_images/fig_4">'
    '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="Accuracy per K/V stride, one dot a seed">'
)


def test_the_overflow_and_alt_checks_find_what_they_should(browser, site_url):
    """On a built page, a code line, an output line and a displayed table too wide for their boxes, and an image
    whose alt text is a file name or a path, are found; a line that fits and a sentence with a slash are not."""
    page = toc_pages()[0]
    _open(browser, f"{site_url}/{page}.html")
    before = len(overflows(browser))
    long_line = "x = " + "'too wide' + " * 20 + "''"
    wide_cell = "wide_cell_" + "x" * 150
    browser.execute_script(
        "document.querySelector('article').insertAdjacentHTML('beforeend', arguments[0]);"
        "document.getElementById('t1').textContent = 'short = 1\\n' + arguments[1];"
        "document.getElementById('t2').textContent = arguments[1].replace('x = ', 'printed: ');"
        "document.getElementById('t4').textContent = arguments[2];",
        INJECTED,
        long_line,
        wide_cell,
    )
    found = overflows(browser)[before:]
    assert [(f["kind"], f["line"]) for f in found] == [
        ("code", long_line),
        ("output", long_line.replace("x = ", "printed: ")),
        ("table", f"Table | {wide_cell}"),
    ], found
    assert "runs off at" in _overflow_report(page, found) and long_line in _overflow_report(page, found)
    flagged = [img["alt"] for img in bad_alt_texts(browser)]
    assert "fig_3.png" in flagged and "_images/fig_4" in flagged  # file names and paths
    assert "Accuracy per K/V stride, one dot a seed" not in flagged  # a sentence may hold a slash


# --- Links: no placeholder, and launch/repository buttons exactly when the repository setting names one. These read
# the built HTML files (every page, not only those of the table of contents), so they need no browser.

# Hosts reserved for examples (RFC 2606) and stand-ins for "your own" in an owner or repository name.
PLACEHOLDER_HOST = re.compile(r"(^|\.)(example\.(com|org|net)|example|invalid|test|localhost)$", re.IGNORECASE)
PLACEHOLDER_PATH = re.compile(r"/(your[-_]?(org|name|user(name)?)|owner|xxx|todo|changeme)(/|$)|[<{]", re.IGNORECASE)
LAUNCH_HOSTS = ("colab.research.google.com", "mybinder.org")
REPOSITORY_BUTTON = "btn-source-repository-button"


class _Links(html.parser.HTMLParser):
    """Every URL in href/src attributes of a page, with the classes of the element that holds it."""

    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("href", "src"):
            if attrs.get(key):
                self.links.append((attrs[key], attrs.get("class") or ""))


def built_pages() -> dict[str, list[tuple[str, str]]]:
    """{page path relative to the site: [(url, classes), ...]} for every HTML page of the built site."""
    if not (SITE / "index.html").is_file():
        pytest.fail(f"the book is not built: {SITE}/index.html is missing; run `make book` first")
    pages = {}
    for path in sorted(SITE.rglob("*.html")):
        parser = _Links()
        parser.feed(path.read_text(errors="replace"))
        pages[path.relative_to(SITE).as_posix()] = parser.links
    return pages


def test_no_link_to_a_placeholder():
    bad = []
    for page, links in built_pages().items():
        for url, _ in links:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme in ("http", "https") and (
                PLACEHOLDER_HOST.search(parts.hostname or "") or PLACEHOLDER_PATH.search(parts.path)
            ):
                bad.append(f"{page}: {url}")
    assert not bad, "links to a placeholder (set the repository in _config.yml or MVIT_BOOK_REPO):\n" + "\n".join(bad)


def test_launch_and_repository_buttons_follow_the_repository_setting():
    from mvit.booktools import REPO_VARIABLE, configured_repository

    repository = configured_repository()
    pages = built_pages()
    launch = {
        page: sorted({url for url, _ in links if urllib.parse.urlsplit(url).hostname in LAUNCH_HOSTS})
        for page, links in pages.items()
    }
    buttons = {
        page: sorted({url for url, classes in links if REPOSITORY_BUTTON in classes}) for page, links in pages.items()
    }
    hint = (
        f"; the test expects the setting it sees ({REPO_VARIABLE}={os.environ.get(REPO_VARIABLE, '')!r}, "
        "else repository.url in _config.yml): build the book with the same one"
    )
    if repository is None:
        with_launch = [page for page, urls in launch.items() if urls]
        with_button = [page for page, urls in buttons.items() if urls]
        assert not with_launch, f"launch buttons without a repository setting on {with_launch}{hint}"
        assert not with_button, f"repository buttons without a repository setting on {with_button}{hint}"
        return
    for page in toc_pages():
        assert buttons[f"{page}.html"] == [repository.url], f"{page}: repository button {buttons[page + '.html']}{hint}"
        if (BOOK / f"{page}.ipynb").is_file():
            path = f"{repository.path_to_book}/{page}.ipynb"
            assert launch[f"{page}.html"] == [
                f"https://colab.research.google.com/github/{repository.owner}/{repository.name}/blob/"
                f"{repository.branch}/{path}",
                f"https://mybinder.org/v2/gh/{repository.owner}/{repository.name}/{repository.branch}"
                f"?urlpath=lab/tree/{path}",
            ], f"{page}: launch buttons {launch[page + '.html']}{hint}"


# --- Summary tables hold numbers -------------------------------------------------------------------------------

SUMMARY_HEADING = re.compile(r"paper vs|summary", re.IGNORECASE)
BOOK_COLUMN = re.compile(r"\bthis book\b", re.IGNORECASE)
# Words that make a cell refer to a measured or computed result, or to a number shown elsewhere.
MEASUREMENT = re.compile(
    r"\b(measur\w*|timed?|times|seconds?|train(ed|ing)?|accura\w*|top-1|throughput|clips/s|memory|speed|faster|"
    r"slower|g?macs|g?flops|param(eter)?s|loss|slopes?|printed|shown|above|below)\b",
    re.IGNORECASE,
)
NOT_REPRODUCED = re.compile(r"\bnot (reproduced|retrained|measured|reported)\b", re.IGNORECASE)


def summary_tables(html: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(section heading, header cells, body rows) of every table in a section whose heading says "Paper vs" or
    "Summary", with subsections, whether the table was written in Markdown or displayed by a cell."""
    soup = BeautifulSoup(html, "html.parser")
    found = []
    for section in soup.find_all("section"):
        heading = section.find(["h1", "h2", "h3", "h4"])
        title = heading.get_text(" ", strip=True).rstrip("#¶ ") if heading else ""
        if not SUMMARY_HEADING.search(title):
            continue
        for table in section.find_all("table"):
            header = [cell.get_text(" ", strip=True) for cell in table.select("thead th")]
            body = [
                [cell.get_text(" ", strip=True) for cell in row.find_all(["td", "th"])]
                for row in table.select("tbody tr")
            ]
            found.append((title, header, body))
    return found


def cells_without_numbers(header: list[str], rows: list[list[str]]) -> list[str]:
    """Cells of the book's column ("this book ...") that refer to a measurement but hold no number and do not
    say it was not reproduced."""
    columns = [i for i, name in enumerate(header) if BOOK_COLUMN.search(name)]
    bad = []
    for row in rows:
        for i in columns:
            cell = row[i] if i < len(row) else ""
            if (
                (not cell or MEASUREMENT.search(cell))
                and not re.search(r"\d", cell)
                and not NOT_REPRODUCED.search(cell)
            ):
                bad.append(f"{row[0]!r}: {cell!r}")
    return bad


def test_the_summary_table_rule_on_constructed_pages():
    page = """<section id="paper-vs-this-book"><h2>Paper vs. this book<a class="headerlink">#</a></h2>
      <table><thead><tr><th></th><th>paper</th><th>this book</th></tr></thead><tbody>
      <tr><td>top-1</td><td>78.4</td><td>printed above with profile and seed</td></tr>
      <tr><td>speed</td><td>6.3 clips/s</td><td>measured: 2.1 clips/s</td></tr>
      <tr><td>Kinetics</td><td>78.4</td><td>not reproduced: needs a cluster</td></tr>
      <tr><td>class token</td><td>not pooled</td><td>the same, equal to the package</td></tr>
      <tr><td>memory</td><td>6.8 GB</td><td>lower, as measured</td></tr>
      <tr><td>empty</td><td>x</td><td></td></tr>
      </tbody></table></section>
      <section id="other"><h2>Exercises</h2><table><thead><tr><th>this book</th></tr></thead>
      <tbody><tr><td>printed above</td></tr></tbody></table></section>"""
    tables = summary_tables(page)
    assert [(title, header) for title, header, _ in tables] == [("Paper vs. this book", ["", "paper", "this book"])]
    assert cells_without_numbers(*tables[0][1:]) == [
        "'top-1': 'printed above with profile and seed'",
        "'memory': 'lower, as measured'",
        "'empty': ''",
    ]


RAW_MATH = re.compile(r"\$[^$\n]{1,80}\$")


def raw_math_in_outputs(html: str) -> list[str]:
    """Text of cell outputs that still holds ``$...$``: Markdown that a cell displays is rendered as GitHub
    Markdown, which has no math, so LaTeX there reaches the reader raw (code and figures excepted)."""
    soup = BeautifulSoup(html, "html.parser")
    found = []
    for output in soup.select("div.cell_output"):
        for skip in output.select("pre, code, img, script"):
            skip.decompose()
        found += RAW_MATH.findall(output.get_text(" "))
    return found


def test_raw_math_check_finds_dollars_in_an_output():
    html = '<div class="cell_output"><p>with $T = 1$ frames</p><pre>cost $5 $6</pre></div>'
    assert raw_math_in_outputs(html) == ["$T = 1$"]


@pytest.mark.parametrize("page", toc_pages())
def test_no_raw_math_in_cell_outputs(page):
    html_file = SITE / f"{page}.html"
    if not html_file.is_file():
        pytest.fail(f"the book is not built: {html_file} is missing; run `make book` first")
    raw = raw_math_in_outputs(html_file.read_text(encoding="utf-8"))
    assert not raw, f"{page}: LaTeX shown raw in a cell's displayed Markdown (write it in Unicode): {raw[:5]}"


@pytest.mark.parametrize("page", toc_pages())
def test_summary_tables_hold_numbers(page):
    """No page says 'printed above'; the tables of its Paper-vs / Summary sections hold their numbers."""
    html_file = SITE / f"{page}.html"
    if not html_file.is_file():
        pytest.fail(f"the book is not built: {html_file} is missing; run `make book` first")
    html = html_file.read_text(encoding="utf-8")
    text = BeautifulSoup(html, "html.parser").get_text(" ")
    assert not re.search(r"printed\s+above", text, re.IGNORECASE), f"{page}: the page says 'printed above'"
    tables = summary_tables(html)
    if (BOOK / f"{page}.ipynb").is_file():  # every chapter compares itself with the paper
        assert any(any(BOOK_COLUMN.search(name) for name in header) for _, header, _ in tables), (
            f"{page}: no 'Paper vs. this book' table with a 'this book' column"
        )
    bad = [f"{title}: {cell}" for title, header, rows in tables for cell in cells_without_numbers(header, rows)]
    assert not bad, f"{page}: summary-table cells that refer to a result but hold no number:\n" + "\n".join(bad)
