"""Shared pieces of the browser tests: Debian's Chromium, offline pages, axe-core.

Used by tests/test_book_browser.py and any other test that opens the built book
in headless Chromium. Nothing here is a test itself.

    from browser_tools import chromium, PageReport, serious_violations

    with chromium() as browser:
        page_report = PageReport(browser, html / "chapters/08_latent_space.html")
        page = page_report.open()
        assert not serious_violations(page), format_violations(serious_violations(page))
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HTML = ROOT / "_build" / "fast" / "_build" / "html"  # `make book-fast`
# The built book the tests open; VAE_BOOK_HTML points at another build's html
# folder (the full build's is _build/full/_build/html).
HTML = Path(os.environ.get("VAE_BOOK_HTML") or DEFAULT_HTML).resolve()

# Debian's chromium: Playwright's own browser download cannot be fetched here.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# axe-core, pinned in package-lock.json (a devDependency: a test tool, never
# copied into the book). scripts/build_book.sh's `npm ci` installs it.
AXE_JS = ROOT / "node_modules" / "axe-core" / "axe.min.js"
# The impacts the book must have none of.
SERIOUS = ("serious", "critical")
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
# Generous: pages load from disk, but CI machines (and this one) are shared, and
# under load a page's networkidle took over 30 s.
TIMEOUT_MS = 60_000


def built_html(html: Path = HTML) -> Path:
    """The built book's html folder, or a failed test that says how to build it."""
    if not (html / "index.html").is_file():
        pytest.fail(
            f"no built book at {html}: run `make book-fast` "
            "(or set VAE_BOOK_HTML to a built html folder)",
            pytrace=False,
        )
    return html


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Debian Chromium driven by Playwright (a failed test if missing)."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"{CHROMIUM} not found: run `bash scripts/install_browser.sh`",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


class PageReport:
    """Opens one page with every network and console event recorded.

    `problems` collects what breaks an offline book: any request that would leave
    the machine (blocked), failed local requests, HTTP errors, console errors
    (unless a pattern in `tolerated` matches), JavaScript errors, websockets.
    """

    def __init__(
        self, browser, path: Path, tolerated: tuple[re.Pattern[str], ...] = ()
    ):
        self.path = path
        self.tolerated = tolerated
        self.problems: list[str] = []
        self.context = browser.new_context()
        # Anything not on disk is blocked and reported, not fetched.
        self.context.route(lambda url: not url.startswith(LOCAL_SCHEMES), self._block)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on("request", self._on_request)
        self.page.on("requestfailed", self._on_request_failed)
        self.page.on("response", self._on_response)
        self.page.on("console", self._on_console)
        self.page.on("pageerror", self._on_page_error)
        self.page.on("websocket", self._on_websocket)

    def _block(self, route):
        self.problems.append(f"request to the network (blocked): {route.request.url}")
        route.abort()

    def _on_request(self, request):  # also catches any request the route missed
        if not request.url.startswith(LOCAL_SCHEMES):
            self.problems.append(f"request to the network (blocked): {request.url}")

    def _on_request_failed(self, request):
        if request.url.startswith(LOCAL_SCHEMES):
            self.problems.append(f"failed request: {request.url} ({request.failure})")

    def _on_response(self, response):
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")

    def _on_console(self, message):
        if message.type != "error":
            return
        if any(pattern.search(message.text) for pattern in self.tolerated):
            return
        where = message.location.get("url", "")
        self.problems.append(f"console error: {message.text} (at {where})")

    def _on_page_error(self, error):
        self.problems.append(f"JavaScript error: {error}")

    def _on_websocket(self, websocket):
        self.problems.append(f"websocket opened: {websocket.url}")

    def open(self):
        self.page.goto(self.path.as_uri(), wait_until="load")
        self.page.wait_for_load_state("networkidle")
        return self.page

    def settle(self):
        """Waits for late requests and errors (widgets render after `load`)."""
        self.page.wait_for_load_state("networkidle")
        self.page.wait_for_timeout(500)

    def close(self):
        self.context.close()


def fail_on(problems: list[str], name: str) -> None:
    """Fails the test with every problem listed once, in order."""
    if problems:
        listed = "\n  ".join(dict.fromkeys(problems))
        pytest.fail(f"{name}:\n  {listed}", pytrace=False)


def axe_violations(page, impacts: tuple[str, ...] | None = None) -> list[dict]:
    """axe-core's violations on the page as it is now (all, or of these impacts).

    Injects node_modules/axe-core/axe.min.js into the page if it is not there yet
    (a test tool: the book does not ship it). Each violation is axe's dict: `id`,
    `impact`, `help`, `helpUrl`, `nodes` (each with `target` and `html`).
    """
    if not AXE_JS.is_file():
        pytest.fail(
            f"{AXE_JS} not found: run `npm ci` (scripts/build_book.sh does)",
            pytrace=False,
        )
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE_JS))
    results = page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})"
    )
    violations = results["violations"]
    if impacts is not None:
        violations = [v for v in violations if v.get("impact") in impacts]
    return violations


def serious_violations(page) -> list[dict]:
    """axe-core's serious and critical violations: the book must have none."""
    return axe_violations(page, SERIOUS)


def format_violations(violations: list[dict], max_nodes: int = 5) -> str:
    """One readable block per violation: rule id, impact, help, then its nodes."""
    lines = []
    for violation in violations:
        nodes = violation["nodes"]
        lines.append(
            f"{violation['id']} ({violation.get('impact')}, {len(nodes)} node(s)): "
            f"{violation['help']} — {violation['helpUrl']}"
        )
        for node in nodes[:max_nodes]:
            target = " ".join(str(part) for part in node.get("target", []))
            lines.append(f"    {target}: {node.get('html', '')[:160]}")
        if len(nodes) > max_nodes:
            lines.append(f"    ... and {len(nodes) - max_nodes} more")
    return "\n".join(lines)
