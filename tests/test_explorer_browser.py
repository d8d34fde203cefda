"""Chapter 8's in-browser VAE, on the built book opened from disk in Chromium.

Build the book first (`make book-fast`), then `pytest tests -m browser`. The page
is opened from file:// with every request outside file: blocked; each test also
fails on any JavaScript error or failed request (browser_tools.PageReport).
"""

from __future__ import annotations

import pytest
from browser_tools import (
    PageReport,
    built_html,
    chromium,
    fail_on,
    format_violations,
    serious_violations,
)

PAGE = "chapters/08_latent_space"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def explorer(browser):
    """The chapter's page, opened, with the explorer mounted."""
    path = built_html() / f"{PAGE}.html"
    report = PageReport(browser, path)
    page = report.open()
    page.wait_for_function("window.VAE_EXPLORER && document.querySelector('.vx-plane')")
    yield report, page
    report.close()


def canvas_pixels(page, selector: str) -> str:
    return page.evaluate(f"document.querySelector('{selector}').toDataURL()")


def shown_code(page) -> tuple[float, float]:
    text = page.inner_text(".vx output").replace("\u2212", "-")
    z1, z2 = text.strip("()").split(",")
    return float(z1), float(z2)


def point_in(page, selector: str, fx: float, fy: float) -> tuple[float, float]:
    """Viewport coordinates of a point of an element, scrolled into view first."""
    page.locator(selector).scroll_into_view_if_needed()
    box = page.locator(selector).bounding_box()
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]


def test_marker_follows_pointer_and_keyboard(explorer):
    report, page = explorer
    assert shown_code(page) == (0.0, 0.0)
    start = canvas_pixels(page, ".vx-digit")

    # A drag from the centre to three quarters right, a quarter down from the top:
    # z = (1.5, 1.5) on the [-3, 3] plane (z2 grows upwards).
    page.mouse.move(*point_in(page, ".vx-plane", 0.5, 0.5))
    page.mouse.down()
    page.mouse.move(*point_in(page, ".vx-plane", 0.75, 0.25), steps=8)
    page.mouse.up()
    z1, z2 = shown_code(page)
    assert abs(z1 - 1.5) < 0.05 and abs(z2 - 1.5) < 0.05, (z1, z2)
    dragged = canvas_pixels(page, ".vx-digit")
    assert dragged != start, "the decoded digit did not change with the marker"

    # Keyboard: the plane has focus after the drag; Shift+Left x3 = -1.5 in z1.
    page.focus(".vx-plane")
    for _ in range(3):
        page.keyboard.press("Shift+ArrowLeft")
    page.keyboard.press("ArrowDown")
    z1_keys, z2_keys = shown_code(page)
    assert abs(z1_keys - (z1 - 1.5)) < 1e-6 and abs(z2_keys - (z2 - 0.1)) < 1e-6
    assert canvas_pixels(page, ".vx-digit") != dragged
    label = page.get_attribute(".vx-digit", "aria-label")
    assert page.inner_text(".vx output") in label  # the text alternative follows

    page.keyboard.press("Home")
    assert shown_code(page) == (0.0, 0.0)
    assert canvas_pixels(page, ".vx-digit") == start
    report.settle()
    fail_on(report.problems, PAGE)


def draw(page, points, pointer_type=None):
    """A stroke through fractions of the pad: with the mouse, or dispatched
    pointer events of another type (pen, touch)."""
    coords = [point_in(page, ".vx-pad", fx, fy) for fx, fy in points]
    if pointer_type is None:
        page.mouse.move(*coords[0])
        page.mouse.down()
        for x, y in coords[1:]:
            page.mouse.move(x, y, steps=4)
        page.mouse.up()
        return
    pad = page.locator(".vx-pad")
    base = {"pointerType": pointer_type, "pointerId": 7, "isPrimary": True}
    kinds = ["pointerdown"] + ["pointermove"] * (len(coords) - 1)
    for kind, (x, y) in zip(kinds, coords, strict=True):
        pad.dispatch_event(
            kind, {**base, "clientX": x, "clientY": y, "bubbles": True, "buttons": 1}
        )
    x, y = coords[-1]
    pad.dispatch_event("pointerup", {**base, "clientX": x, "clientY": y})


def ink(page, selector: str) -> float:
    """Share of a 28 x 28 canvas's pixels that are not white."""
    return page.evaluate(
        f"""(() => {{
            const c = document.querySelector('{selector}');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let dark = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i] < 200) dark++;
            return dark / (d.length / 4);
        }})()"""
    )


SEVEN = [(0.25, 0.2), (0.75, 0.2), (0.6, 0.5), (0.45, 0.85)]
ONE = [(0.5, 0.15), (0.5, 0.85)]


@pytest.mark.parametrize("pointer_type", [None, "pen", "touch"])
def test_a_drawn_digit_gets_a_posterior_and_a_reconstruction(explorer, pointer_type):
    report, page = explorer
    plane_before = canvas_pixels(page, ".vx-plane")
    assert page.evaluate("window.VAE_EXPLORER.posterior()") is None
    assert ink(page, ".vx-recon") == 0

    draw(page, SEVEN, pointer_type)
    posterior = page.evaluate("window.VAE_EXPLORER.posterior()")
    assert posterior is not None, "releasing the stroke did not run the encoder"
    sigma = list(posterior["sigma"])
    assert len(posterior["samples"]) >= 3 and all(s > 0 for s in sigma)
    assert canvas_pixels(page, ".vx-plane") != plane_before  # ellipses drawn
    assert "your drawing" in page.get_attribute(".vx-seen", "aria-label")
    assert 0.03 < ink(page, ".vx-seen") < 0.6  # a stroke, not a blot
    assert 0.01 < ink(page, ".vx-recon") < 0.6
    label = page.get_attribute(".vx-recon", "aria-label")
    assert label.startswith("The decoder's reconstruction")
    assert "Encoded your drawing" in page.inner_text(".vx-status")

    # A second, different digit lands elsewhere.
    page.click("text=Clear the pad")
    assert page.evaluate("window.VAE_EXPLORER.posterior()") is None
    draw(page, ONE, pointer_type)
    other = page.evaluate("window.VAE_EXPLORER.posterior()")
    assert other["mean"] != posterior["mean"]
    report.settle()
    fail_on(report.problems, PAGE)


def test_test_digits_load_and_encode(explorer):
    report, page = explorer
    labels = []
    for _ in range(3):
        page.click("text=Load a test digit")
        status = page.inner_text(".vx-status")
        assert "Encoded test digit" in status, status
        labels.append(status)
    assert len(set(labels)) == 3
    report.settle()
    fail_on(report.problems, PAGE)


def test_no_serious_accessibility_violations(explorer):
    report, page = explorer
    named = "[role=slider][aria-labelledby], [role=slider][aria-label]"
    page.wait_for_selector(f".widget-slider :is({named})", state="attached")
    page.click("text=Load a test digit")  # the posterior's texts are checked too
    report.settle()
    # Checked before axe runs: from file://, axe's own requests for the page's
    # style sheets (its CSSOM preload) fail and log errors that are not the page's.
    fail_on(report.problems, PAGE)
    violations = serious_violations(page)
    assert not violations, format_violations(violations)
