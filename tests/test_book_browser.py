"""The built HTML book, opened from disk in a real browser (headless Chromium).

Build it first: `make book-fast` (or `VAE_FAST=1 bash scripts/build_book.sh`),
then `pytest tests -m browser`. VAE_BOOK_HTML points at another build's html
folder (the full build's is _build/full/_build/html).

For every page in book/_toc.yml: no request leaves the machine (any http(s)
request is blocked and fails the test: the book must work offline), no request
fails, no JavaScript error, every image loads, math is typeset by MathJax, the
sidebar links the TOC's pages, the latent-space chapter shows live widget
controls, and axe-core finds no serious or critical accessibility fault. Every
page links the runnable book (vae-book.zip), which holds the chapters and what
they import, and imports from wherever it is unzipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from browser_tools import (
    ROOT,
    PageReport,
    built_html,
    chromium,
    fail_on,
    format_violations,
    serious_violations,
)

TOC = ROOT / "book" / "_toc.yml"
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import runnable_book  # noqa: E402  (the book's Sphinx extension: what the zip holds)

# Pages that must show typeset math (other pages are checked if they have any).
MATH_PAGES = {"book/intro", "chapters/05_loss"}
WIDGET_PAGE = "chapters/08_latent_space"
# Console errors to tolerate, each named by a pattern. None are known: a stock
# page's errors (Thebe's duplicate snippet, the theme's mode) are fixed in
# book/_config.yml instead. Add one here only with the reason it can't be fixed.
KNOWN_CONSOLE_ERRORS: tuple[re.Pattern[str], ...] = ()
# The runnable book (book/_ext/runnable_book.py): its name in the HTML folder and
# what it must hold, under its one top folder.
RUNNABLE_ZIP = "vae-book.zip"
RUNNABLE_FOLDER = "vae-book"
RUNNABLE_FILES = {
    "vae_helpers.py",
    "vae_config.py",
    "pyproject.toml",
    "requirements.txt",
    "HOW-TO-RUN.md",
    "results/precision/summary.json",  # chapter 6's records
}

pytestmark = pytest.mark.browser


def toc_pages(toc: Path = TOC) -> list[str]:
    """Document names in the table of contents, in reading order."""

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                yield entry["file"]
            for key in ("parts", "chapters", "sections"):
                yield from walk(entry.get(key))

    data = yaml.safe_load(toc.read_text())
    return [data["root"], *walk(data.get("parts") or data.get("chapters"))]


PAGES = toc_pages()


@pytest.fixture(scope="module")
def html_dir() -> Path:
    return built_html()


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def report(browser, html_dir):
    reports = []

    def open_page(docname: str) -> PageReport:
        path = html_dir / f"{docname}.html"
        if not path.is_file():
            pytest.fail(
                f"{docname} is in book/_toc.yml but {path} was not built: "
                "run `make book-fast`",
                pytrace=False,
            )
        page_report = PageReport(browser, path, tolerated=KNOWN_CONSOLE_ERRORS)
        reports.append(page_report)
        return page_report

    yield open_page
    for page_report in reports:
        page_report.close()


def check_images(page) -> list[str]:
    page.wait_for_function("Array.from(document.images).every(image => image.complete)")
    broken = page.evaluate(
        """Array.from(document.images)
            .filter(image => image.naturalWidth === 0)
            .map(image => image.currentSrc || image.src || image.outerHTML)"""
    )
    return [f"image did not load: {src[:200]}" for src in broken]


def check_math(page, docname: str) -> list[str]:
    """Every Sphinx math node typeset by MathJax 3, without TeX errors."""
    math_nodes = page.locator(".math")
    if math_nodes.count() == 0:
        if docname in MATH_PAGES:
            return ["no math on a page that should have some (no .math element)"]
        return []
    try:
        page.wait_for_function(
            """Array.from(document.querySelectorAll('.math'))
                .every(node => node.querySelector('mjx-container'))"""
        )
    except Exception:
        raw = page.evaluate(
            """Array.from(document.querySelectorAll('.math'))
                .filter(node => !node.querySelector('mjx-container'))
                .map(node => node.textContent.trim())"""
        )
        return [
            f"math not rendered by MathJax ({len(raw)} of {math_nodes.count()} "
            f"math elements have no mjx-container), e.g. {raw[0][:120]!r}"
        ]
    errors = page.evaluate(
        "Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent)"
    )
    return [f"MathJax could not typeset: {error!r}" for error in errors]


def check_widgets(page) -> list[str]:
    """The embed manager replaced every widget view with live controls."""
    views = 'script[type="application/vnd.jupyter.widget-view+json"]'
    if page.locator(views).count() == 0:
        return [
            "no widget views in the page: the notebook's widget state was not "
            "saved, or a text fallback ranked above the widget-view MIME type"
        ]
    try:
        page.wait_for_selector(".widget-subarea .jupyter-widgets", state="attached")
    except Exception:
        return [
            "widgets not rendered: the embed manager (RequireJS + embed-amd.js) "
            "created no .jupyter-widgets element"
        ]
    problems = []
    unrendered = page.evaluate(
        f"""Array.from(document.querySelectorAll('{views}')).filter(script => {{
              const before = script.previousElementSibling;
              return !(before && before.classList.contains('widget-subarea')
                       && before.querySelector('.jupyter-widgets'));
            }}).length"""
    )
    if unrendered:
        problems.append(f"{unrendered} widget view(s) left unrendered")
    controls = page.locator(".widget-subarea .widget-slider")
    if controls.count() == 0:
        problems.append("no slider among the rendered widgets (.widget-slider)")
    elif not controls.first.is_visible():
        problems.append("the widget slider is not visible")
    return problems


def file_of(url: str) -> Path:
    """The file a file:// URL points at, without query or fragment."""
    parts = urlsplit(url)
    assert parts.scheme == "file", f"not a file URL: {url}"
    return Path(unquote(parts.path)).resolve()


def check_navigation(page, html_dir: Path) -> list[str]:
    """The sidebar links every page of book/_toc.yml, in its order, to its file."""
    hrefs = page.eval_on_selector_all(
        "nav.bd-docs-nav a.reference.internal", "links => links.map(a => a.href)"
    )
    linked = [file_of(href) for href in hrefs]
    expected = [(html_dir / f"{docname}.html").resolve() for docname in PAGES]
    if linked != expected:
        shown = [str(path.relative_to(html_dir)) for path in linked]
        return [f"the sidebar links {shown}, not the pages of book/_toc.yml {PAGES}"]
    return []


def check_download_link(page, html_dir: Path) -> list[str]:
    """A named link to the runnable book, which resolves to the built zip."""
    links = page.get_by_role("link", name=re.compile(r"runnable book", re.I))
    if links.count() == 0:
        return [f"no link named 'runnable book' (to {RUNNABLE_ZIP})"]
    target = file_of(links.first.evaluate("a => a.href"))
    if target != (html_dir / RUNNABLE_ZIP).resolve():
        return [f"the runnable-book link points at {target}, not {RUNNABLE_ZIP}"]
    if not target.is_file():
        return [f"the runnable-book link points at a missing file: {target}"]
    return []


@pytest.mark.parametrize("docname", PAGES)
def test_page_works_offline(report, html_dir, docname):
    page_report = report(docname)
    page = page_report.open()
    problems = check_images(page) + check_math(page, docname)
    problems += check_navigation(page, html_dir) + check_download_link(page, html_dir)
    if docname == WIDGET_PAGE:
        problems += check_widgets(page)
    page_report.settle()
    fail_on(page_report.problems + problems, f"{docname}.html")


@pytest.mark.parametrize("docname", PAGES)
def test_page_has_no_serious_accessibility_violations(report, docname):
    """axe-core (WCAG 2 A/AA and best practices): no serious or critical faults."""
    page_report = report(docname)
    page = page_report.open()
    if docname == WIDGET_PAGE:
        check_widgets(page)  # audit the rendered widgets, not their placeholders
    check_math(page, docname)  # and the typeset math
    page_report.settle()
    violations = serious_violations(page)
    if violations:
        pytest.fail(
            f"{docname}.html: {len(violations)} serious or critical axe-core "
            f"violation(s):\n{format_violations(violations)}",
            pytrace=False,
        )


def test_index_opens_the_introduction(report, html_dir):
    page_report = report("index")
    page = page_report.open()
    page.wait_for_url(re.compile(r"/book/intro\.html$"))
    page_report.settle()
    fail_on(page_report.problems, "index.html")


class LinkParser(HTMLParser):
    """Collects every <a href> of a page."""

    def __init__(self):
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def page_links(path: Path) -> list[str]:
    parser = LinkParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.hrefs


@pytest.fixture(scope="module")
def runnable_zip(html_dir) -> Path:
    path = html_dir / RUNNABLE_ZIP
    assert path.is_file(), f"the book build wrote no {path}"
    return path


def test_every_page_links_the_runnable_book_relatively(html_dir, runnable_zip):
    """In the HTML itself (no script needed): a relative link that finds the zip."""
    pages = [html_dir / f"{docname}.html" for docname in PAGES]
    pages += [html_dir / "genindex.html", html_dir / "search.html"]
    missing = []
    for page in pages:
        targets = {
            (page.parent / href).resolve()
            for href in page_links(page)
            if href.endswith(RUNNABLE_ZIP) and "://" not in href
        }
        if targets != {runnable_zip.resolve()}:
            missing.append(f"{page.relative_to(html_dir)}: {sorted(map(str, targets))}")
    assert not missing, "pages without a relative link to the zip:\n" + "\n".join(
        missing
    )


def test_runnable_book_holds_what_a_chapter_needs(runnable_zip):
    with zipfile.ZipFile(runnable_zip) as archive:
        names = set(archive.namelist())
        assert archive.testzip() is None
    chapters = {f"{RUNNABLE_FOLDER}/{doc}.ipynb" for doc in PAGES if "chapters/" in doc}
    assert chapters, "book/_toc.yml lists no chapter"
    needed = chapters | {f"{RUNNABLE_FOLDER}/{name}" for name in RUNNABLE_FILES}
    assert needed <= names, f"missing from the zip: {sorted(needed - names)}"
    # Nothing else than what the extension lists (each a file of the repository).
    assert names == set(runnable_book.runnable_book_files(ROOT))
    # Chapter 6 reads the epochs of every run a precision comparison names.
    summaries = [
        n for n in names if "results/precision/" in n and n.endswith("summary.json")
    ]
    assert summaries, "no precision comparison in the zip"
    with zipfile.ZipFile(runnable_zip) as archive:
        for name in summaries:
            summary = json.loads(archive.read(name))
            for run in summary["float32"] + summary["bfloat16"]:
                record = f"{RUNNABLE_FOLDER}/{run['folder']}/metrics.json"
                assert record in names, f"{name} names {run['folder']}, not in the zip"


def test_runnable_book_imports_outside_the_repository(runnable_zip, tmp_path):
    """Unzipped elsewhere, its chapters' imports resolve to the zip's own files."""
    with zipfile.ZipFile(runnable_zip) as archive:
        archive.extractall(tmp_path)
    book = tmp_path / RUNNABLE_FOLDER
    # As a chapter runs after `pip install -e .` in the unzipped folder: the
    # folder on sys.path, the repository (the venv's editable install) off it.
    probe = (
        "import os, sys\n"
        "sys.path = [p for p in sys.path\n"
        f"            if os.path.realpath(p or '.') != {str(ROOT)!r}]\n"
        f"sys.path.insert(0, {str(book)!r})\n"
        "import vae_config, vae_helpers\n"
        "print(vae_helpers.__file__)\n"
        "print(vae_helpers.results_dir())\n"
        "print(len(vae_config.RunConfig().problems()))\n"
        "print(len(vae_helpers.default_seed_runs()))\n"
    )
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("VAE_RESULTS_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=book / "chapters",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    module, results, problems, seed_runs = done.stdout.split("\n")[-5:-1]
    assert Path(module).resolve() == (book / "vae_helpers.py").resolve()
    assert Path(results).resolve().parent == (book / "results").resolve()
    assert problems == "0"  # the default settings are valid
    assert int(seed_runs) >= 2  # chapter 6 reads the default's spread over seeds


def test_the_build_trained_into_its_own_folder(html_dir):
    """Chapter 6 of this build trained into the build's results, not results/."""
    output = html_dir.parents[1]  # _build/<mode>/_build/html -> _build/<mode>
    runs = sorted((output / "results").glob("*/run.json"))
    assert runs, f"no finished training run in {output / 'results'}"
