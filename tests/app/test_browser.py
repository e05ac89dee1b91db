"""The real page in Chromium: draw with the mouse, read the prediction, move a pose slider.

Needs Debian's chromium (the `chromium` fixture in conftest.py says what happens without it).
The README's screenshot is made on purpose by tools/screenshot.py, never by a test.
"""

import os

import pytest

import capsnet
from tools.browser_driver import CANVAS, METRIC, SEVEN, launch, open_app, serve, stroke, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server():
    # The shipped, trained weights: the drawn 7 must come out as a 7.
    ckpt = os.environ.get("CAPSNET_BROWSER_CHECKPOINT") or str(capsnet.DEFAULT_CHECKPOINT)
    with serve({"CAPSNET_CHECKPOINT": ckpt}) as url:
        yield url


def test_draw_predict_route_and_pose(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    open_app(page, server)
    assert page.locator(METRIC).count() == 0

    # A 7 whose first point is 4% from the top and 5% from the right: the spot the
    # component's toolbar used to cover. If the stroke lands, the canvas has ink there.
    stroke(page, SEVEN)
    page.wait_for_selector(METRIC, timeout=30_000)
    wait_idle(page)
    assert page.locator(METRIC).inner_text().strip() == "7"
    corner_ink = page.locator(CANVAS).first.evaluate(
        """c => { const ctx = c.parentElement.querySelector('canvas.lower-canvas').getContext('2d');
                  const w = c.width, h = c.height;
                  return ctx.getImageData(Math.round(0.95 * w) - 2, Math.round(0.04 * h) - 2, 4, 4)
                            .data.filter((v, k) => k % 4 === 0 && v > 200).length; }"""
    )
    assert corner_ink > 0, "the stroke starting in the top-right corner did not reach the canvas"

    routing = page.locator(".st-key-routing")
    assert routing.get_by_text("Iteration 3", exact=True).count() == 1
    assert routing.get_by_text("Iteration 4", exact=True).count() == 0

    recon = page.locator(".st-key-reconstruction")
    recon.scroll_into_view_if_needed()
    before = recon.screenshot()
    slider = page.locator(".st-key-pose input[type='range']").first
    slider.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.wait_for_timeout(400)  # each key sends the slider's value; the last run wins
    wait_idle(page)
    assert slider.input_value() == "0.15"
    page.wait_for_function(
        "() => [...document.querySelectorAll('.st-key-reconstruction [data-testid=\"stImage\"]')]"
        ".some(e => e.textContent.includes('(1 moved)'))",
        timeout=15_000,
    )
    page.wait_for_timeout(300)  # let the new image paint
    assert recon.screenshot() != before
    assert page.locator("[data-testid='stException']").count() == 0

    page.close()


def test_votes_animation_plays_in_the_browser(browser, server):
    """The votes view steps through the iterations in the page itself: pressing play shows
    iteration 1, 2, 3 in turn (read from Plotly's own slider label) without rerunning the app."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server + "?sample=11&iters=3")
    page.wait_for_selector(METRIC, timeout=60_000)
    wait_idle(page)
    votes = page.locator(".st-key-votes")
    votes.scroll_into_view_if_needed()
    label = votes.locator("g.slider-group > text.slider-label")
    label.wait_for(timeout=30_000)
    assert label.text_content().strip() == "iteration 3"  # opens on the last iteration
    page.evaluate(
        """() => { window.__seen = []; window.__runs = 0;
                   const app = document.querySelector('[data-testid="stApp"]');
                   new MutationObserver(() => { if (app.dataset.testScriptState === 'running') window.__runs++; })
                     .observe(app, {attributes: true});
                   setInterval(() => { const t = document.querySelector('.st-key-votes g.slider-group > text.slider-label');
                     if (t && window.__seen[window.__seen.length - 1] !== t.textContent) window.__seen.push(t.textContent); }, 20); }"""
    )
    votes.locator(".updatemenu-button").first.click()  # ▶ play
    page.wait_for_function("() => window.__seen.includes('iteration 1') && window.__seen.at(-1) === 'iteration 3'",
                           timeout=20_000)  # fmt: skip
    seen = page.evaluate("window.__seen")
    assert seen.index("iteration 1") < seen.index("iteration 2", seen.index("iteration 1")), seen
    assert page.evaluate("window.__runs") == 0  # the animation ran in the browser, no rerun
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()
