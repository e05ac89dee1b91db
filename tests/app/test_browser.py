"""The real page in Chromium: draw with the mouse and with a finger, read the prediction, the
overview on one screen, the views by share link and by click, no overlaps at three widths.

Needs Debian's chromium (the `chromium` fixture in conftest.py says what happens without it).
The README's screenshot is made on purpose by tools/screenshot.py, never by a test.
"""

import base64
import os
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

import capsnet
from app.sections.routing import PARTS
from app.views import VIEWS
from tools.browser_driver import (
    CANVAS,
    METRIC,
    SEVEN,
    clear_canvas,
    open_app,
    serve,
    stroke,
    touch_stroke,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

STAGES = [
    "1 · Input x",
    "2 · Conv1",
    "3 · PrimaryCaps u_i",
    "4 · Routing c_i",
    "5 · DigitCaps v_j",
    "6 · Decoder",
]
ONE = [(0.55, 0.08), (0.5, 0.5), (0.45, 0.93)]
# The overview's six stages: one capsule_map element of figures (in its shadow root, which
# Playwright's CSS selectors reach); the two maps are its figures with the ids "primary", "digits".
STAGE_FIGURES = ".st-key-overview_stages figure"
STAGE_IMAGES = f"{STAGE_FIGURES} img"
PRIMARY_MAP = f"{STAGE_FIGURES}[data-id='primary']"
DIGIT_BARS = f"{STAGE_FIGURES}[data-id='digits']"
# Every picture and chart the page draws, whatever view is open.
DRAWN = (
    "[data-testid='stImage'] img, [data-testid='stPlotlyChart'], "
    f"[data-testid='stBidiComponentIsolated'] canvas.upper-canvas, {STAGE_IMAGES}, "
    ".st-key-overview_stages .map > svg, .st-key-routing_change .map > svg, .st-key-routing_change figure img, "
    ".colour-bar"
)


@pytest.fixture(scope="module")
def server():
    # The shipped, trained weights: the drawn 7 must come out as a 7.
    ckpt = os.environ.get("CAPSNET_BROWSER_CHECKPOINT") or str(capsnet.DEFAULT_CHECKPOINT)
    with serve({"CAPSNET_CHECKPOINT": ckpt}) as url:
        yield url


def query(page) -> dict:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def overview_images(page) -> list[str]:
    return page.locator(STAGE_IMAGES).evaluate_all("es => es.map(e => e.src)")


def wait_loaded(page, selector: str, timeout: float = 30) -> None:
    """Until there are pictures at `selector` (shadow roots included) and every one has loaded."""
    deadline = time.monotonic() + timeout
    while not page.locator(selector).evaluate_all("es => es.length > 0 && es.every(e => e.complete)"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no loaded pictures at {selector!r} after {timeout} s")
        page.wait_for_timeout(50)


def draw_every_map(page, key: str) -> int:
    """Bring each map of the "rows" element in the keyed container near the window, where it is
    drawn (far from it, a map waits: main.js's lazy mount); the number of maps."""
    maps = page.locator(f".st-key-{key} figure .map")
    for k in range(maps.count()):
        maps.nth(k).scroll_into_view_if_needed()
        maps.nth(k).locator("svg").wait_for(state="attached", timeout=10_000)
    return maps.count()


def click_center(page, locator) -> None:
    """A real mouse click in the middle of where an element is drawn."""
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def primary_cell_center(page, i: int) -> tuple[float, float]:
    """Where the overview's PrimaryCaps map draws capsule i = 36 t + 6 r + c: on type t's 6x6 panel
    (eight panels to a row, 7 cells apart: 6 and a gap), at row r and column c of its grid; the map
    is 55 x 27 cells wide and high. The page's centre of that cell, in CSS pixels."""
    t, rest = divmod(i, 36)
    r, c = divmod(rest, 6)
    box = page.locator(f"{PRIMARY_MAP} canvas").bounding_box()
    u = box["width"] / 55
    return box["x"] + (t % 8 * 7 + c + 0.5) * u, box["y"] + (t // 8 * 7 + r + 0.5) * u


def open_sample(browser, server, q: str, width: int = 1400, height: int = 1000):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(server + q)
    page.wait_for_selector(METRIC, timeout=60_000)
    wait_idle(page)
    return page


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

    # A second stroke (after Clear) updates every stage of the overview.
    seven = overview_images(page)
    clear_canvas(page)
    stroke(page, ONE)
    page.wait_for_selector(METRIC, timeout=30_000)
    wait_idle(page)
    assert page.locator(METRIC).inner_text().strip() == "1"
    one = overview_images(page)
    assert len(one) == len(seven) == 4 and all(a != b for a, b in zip(one, seven))

    # The pose view, opened by its tab: a key press on a slider redraws the server's picture.
    page.get_by_role("tab", name=VIEWS["pose"].label).click()
    page.wait_for_selector(".st-key-pose input[type='range']", timeout=30_000)
    wait_idle(page)
    assert query(page)["view"] == "pose" and page.locator(".st-key-routing").count() == 0
    recon = ".st-key-reconstruction [data-testid='stImage'] img"
    wait_loaded(page, recon)
    before = page.locator(recon).nth(1).get_attribute("src")
    slider = page.locator(".st-key-pose input[type='range']").first
    slider.focus()
    # One key at a time, each run over before the next: three presses in a row can race the page's
    # runs (a run that started before the third press hydrates the slider with the second's value).
    for value in ("0.05", "0.1", "0.15"):
        page.keyboard.press("ArrowRight")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.st-key-reconstruction [data-testid=\"stImage\"]')]"
            ".some(e => e.textContent.includes('(1 moved)'))",
            timeout=15_000,
        )
        wait_idle(page)
        assert slider.input_value() == value
    wait_loaded(page, recon)
    assert page.locator(recon).nth(1).get_attribute("src") != before
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()


def test_overview_fits_one_screen_with_all_six_stages(browser, server):
    page = open_sample(browser, server, "?sample=11&iters=3")
    wait_loaded(page, STAGE_IMAGES)
    box = page.locator(".st-key-overview").bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= 1000, box  # no scrolling needed
    headings = page.locator(f"{STAGE_FIGURES} p.title").all_inner_texts()
    assert len(headings) == len(STAGES)
    for stage, heading in zip(STAGES, headings):
        assert heading.startswith(stage), (stage, headings)
    assert page.locator(f"{PRIMARY_MAP} canvas").get_attribute("data-cells") == "1152"  # every capsule
    assert page.locator(f"{DIGIT_BARS} svg .bars > rect").count() == 20  # 10 bars, 10 click areas
    page.close()


def test_the_routing_rows_draw_a_map_when_it_comes_near_the_window(browser, server):
    """How c changed's maps lie below the overview: a stroke does not draw them while they are far
    from the window (they keep their room), and each is drawn, all its 1152 cells, in that room once
    the page (Streamlit's main area scrolls, not the window) brings it within 400 px of the window."""
    page = open_sample(browser, server, "?sample=11&iters=5", width=1400, height=1000)
    maps = page.locator(".st-key-routing_change figure .map")
    assert maps.count() == 8  # iterations 2 to 5: delta c and b each
    last = maps.nth(7)
    assert last.bounding_box()["y"] > 1000 + 400  # far below the window
    assert last.locator("canvas").count() == 0 and last.bounding_box()["height"] > 100  # its room, kept
    room = last.bounding_box()["height"]
    # Scrolled until its top is 600 px below the window: still waiting; 200 px below: drawn.
    for below, drawn in ((600, 0), (200, 1)):
        page.evaluate(
            "y => document.querySelector('[data-testid=\"stMain\"]').scrollBy(0, y)",
            last.bounding_box()["y"] - (1000 + below),
        )
        page.wait_for_timeout(300)  # an intersection is reported in the next frames
        assert abs(last.bounding_box()["y"] - (1000 + below)) <= 50  # (the maps above may draw meanwhile)
        assert last.locator("canvas").count() == drawn, below
    assert last.locator("canvas").get_attribute("data-cells") == "1152"
    assert abs(last.bounding_box()["height"] - room) <= 3  # drawn in the room it kept
    page.close()


def test_on_a_phone_the_stages_stand_one_under_another(browser, server):
    """Below 640 px Streamlit stacks its columns; the stages element does too, so the DigitCaps bars
    keep room for their value labels."""
    page = open_sample(browser, server, "?sample=11&iters=3", width=390, height=844)
    wait_loaded(page, STAGE_IMAGES)
    boxes = page.locator(STAGE_FIGURES).evaluate_all(
        "es => es.map(e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.width]; })"
    )
    assert len(boxes) == 6
    assert all(abs(b[0] - boxes[0][0]) < 1 and abs(b[2] - boxes[0][2]) < 1 for b in boxes)  # one column
    assert all(a[1] < b[1] for a, b in zip(boxes, boxes[1:]))  # in the stages' order
    page.locator(DIGIT_BARS).scroll_into_view_if_needed()  # (below the window: drawn when near)
    page.locator(f"{DIGIT_BARS} svg").wait_for(state="attached", timeout=10_000)
    values = page.locator(f"{DIGIT_BARS} text.value").evaluate_all(
        "es => es.map(e => { const r = e.getBoundingClientRect(); return [r.left, r.right, r.top, r.bottom]; })"
    )
    assert len(values) == 10
    for k, a in enumerate(values):  # no two value labels overlap
        for b in values[k + 1 :]:
            assert min(a[1], b[1]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[2], b[2]), (a, b)
    page.close()


# The colour the canvas has at a point of the page (CSS pixels), as [r, g, b].
PIXEL = """(canvas, [x, y]) => {
  const r = canvas.getBoundingClientRect(), s = canvas.width / r.width;
  return [...canvas.getContext('2d').getImageData(Math.floor((x - r.left) * s), Math.floor((y - r.top) * s), 1, 1).data.slice(0, 3)];
}"""


def test_the_primary_capsule_map_draws_each_capsule_in_its_cell_and_colour(browser, server):
    """The overview's 1152 cells are painted on a canvas by the component's JavaScript from the
    map's panels spec: capsule i must come out on its type's panel at its grid position, in the
    colour of its |u_i| on the scale (from the model's own forward pass on this sample), and the
    hover note there must name it."""
    import numpy as np
    import torch

    from app import inputs, palette
    from capsnet.preprocess import to_mnist

    model = capsnet.load_model(capsnet.DEFAULT_CHECKPOINT)
    samples, _ = inputs.load_samples()
    x = torch.from_numpy(to_mnist(samples[11])).reshape(1, 1, 28, 28)
    with torch.no_grad():
        u = torch.linalg.vector_norm(model(x, iterations=3, trace=True).primary[0], dim=-1).numpy()
    lut = palette.lut(palette.PRIMARY_SCALE)  # 256 colours from the least |u_i| to the largest
    page = open_sample(browser, server, "?sample=11&iters=3")
    canvas = page.locator(f"{PRIMARY_MAP} canvas")
    for i in (int(np.argmin(u)), int(np.argmax(u)), 0, 35, 36, 737, 1151):
        want = np.round(lut[round(255 * (u[i] - u.min()) / (u.max() - u.min())), :3])
        got = canvas.evaluate(PIXEL, list(primary_cell_center(page, i)))
        assert np.abs(np.subtract(got, want)).max() <= 2, (i, got, want)
    page.mouse.move(*primary_cell_center(page, 737))
    tip = page.locator(".st-key-overview_stages .tip")
    tip.wait_for(state="visible", timeout=5_000)
    assert tip.inner_text().startswith(f"primary capsule i = 737: type 20, grid (2, 5)\n|u_i| = {u[737]:.3f}")
    page.close()


@pytest.mark.parametrize("name", [*VIEWS, "nonsense"])
def test_share_link_opens_the_view(browser, server, name):
    page = open_sample(browser, server, f"?sample=4&view={name}")
    want = name if name in VIEWS else "routing"  # an unknown name: the default view
    selected = page.locator("[role='tab'][aria-selected='true']").inner_text().strip()
    assert selected == VIEWS[want].label and query(page)["view"] == want
    keys = {"routing": "routing", "pose": "pose", "figure4": "grid", "lab": "lab", "class": "class_view"}
    key = keys[want]
    page.wait_for_selector(f".st-key-{key}", timeout=30_000)
    for other in set(keys.values()) - {key}:
        assert page.locator(f".st-key-{other}").count() == 0
    page.close()


def test_clicking_a_digit_capsule_inspects_it(browser, server):
    page = open_sample(browser, server, "?sample=11&iters=3")  # reads 2, runner-up 7
    click_center(page, page.locator(f"{DIGIT_BARS} rect[data-k='7']").first)
    page.wait_for_function(
        "() => new URLSearchParams(location.search).get('capsule') === '7'", timeout=30_000
    )
    wait_idle(page)
    assert page.locator(".st-key-overview").get_by_text("4 · Routing c_i7").count() == 1
    assert page.locator(".st-key-routing").get_by_text("Shown for digit capsule 7").count() == 1
    assert "redrawn from v7" in page.locator(f"{STAGE_FIGURES} figcaption").all_inner_texts()
    page.close()


def test_clicking_a_primary_capsule_opens_it_in_the_routing_view(browser, server):
    page = open_sample(browser, server, "?sample=11&iters=3&view=lab")
    i = 737  # type 20, grid (2, 5)
    page.mouse.click(*primary_cell_center(page, i))
    page.wait_for_selector(".st-key-inspector", timeout=30_000)
    wait_idle(page)
    q = query(page)
    assert (q["view"], q["part"], q["primary"]) == ("routing", "inspector", str(i))
    assert page.locator("[role='tab'][aria-selected='true']").inner_text().strip() == VIEWS["routing"].label
    chosen = page.locator(".st-key-primary_i input").first.input_value()
    assert f"i = {i} (type 20, grid (2, 5))" in chosen
    assert PARTS["inspector"] in page.locator(".st-key-routing_part [aria-checked='true'], "
                                              ".st-key-routing_part [kind='segmented_controlActive']").first.inner_text()  # fmt: skip
    page.close()


def test_touch_drawing_on_a_tablet(browser, server):
    context = browser.new_context(viewport={"width": 1024, "height": 1366}, has_touch=True, is_mobile=True)
    page = context.new_page()
    open_app(page, server)
    touch_stroke(page, context.new_cdp_session(page), SEVEN)
    page.wait_for_selector(METRIC, timeout=30_000)
    wait_idle(page)
    assert page.locator(METRIC).inner_text().strip() == "7"
    context.close()


@pytest.mark.parametrize("width", [1024, 1400, 1920])
def test_nothing_is_drawn_over_anything_else(browser, server, width):
    """At each width, on the overview and the routing view's default part: no two pictures or charts
    overlap, and none reaches past the window's right edge."""
    page = open_sample(browser, server, "?sample=11&iters=3", width=width)
    wait_loaded(page, STAGE_IMAGES)
    assert draw_every_map(page, "routing_change") == 4  # iterations 2 and 3: delta c and b each
    boxes = page.locator(DRAWN).evaluate_all(
        "es => es.map(e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })"
    )
    boxes = [b for b in boxes if b[2] - b[0] > 1 and b[3] - b[1] > 1]
    assert len(boxes) >= 12
    for k, a in enumerate(boxes):
        assert a[2] <= width + 0.5, f"drawn past the right edge at {width} px: {a}"
        for b in boxes[k + 1 :]:
            overlap_w = min(a[2], b[2]) - max(a[0], b[0])
            overlap_h = min(a[3], b[3]) - max(a[1], b[1])
            assert overlap_w <= 0.5 or overlap_h <= 0.5, f"overlap at {width} px: {a} and {b}"
    page.close()


def test_votes_animation_plays_in_the_browser(browser, server):
    """The votes view steps through the iterations in the page itself: pressing play shows
    iteration 1, 2, 3 in turn (read from Plotly's own slider label) without rerunning the app."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    sent = []  # every WebSocket message the page sends: a rerun is one (the script state can miss a
    # short run: "running" and "notRunning" may reach the page in one render)
    page.on("websocket", lambda ws: ws.on("framesent", lambda frame: sent.append(frame)))
    page.goto(server + "?sample=11&iters=3&part=votes")
    page.wait_for_selector(METRIC, timeout=60_000)
    wait_idle(page)
    votes = page.locator(".st-key-votes")
    votes.scroll_into_view_if_needed()
    label = votes.locator("g.slider-group > text.slider-label")
    label.wait_for(timeout=30_000)
    assert label.text_content().strip() == "iteration 3"  # opens on the last iteration
    page.evaluate(
        """() => { window.__seen = [];
                   setInterval(() => { const t = document.querySelector('.st-key-votes g.slider-group > text.slider-label');
                     if (t && window.__seen[window.__seen.length - 1] !== t.textContent) window.__seen.push(t.textContent); }, 20); }"""
    )
    n_sent = len(sent)
    votes.locator(".updatemenu-button").first.click()  # ▶ play
    page.wait_for_function("() => window.__seen.includes('iteration 1') && window.__seen.at(-1) === 'iteration 3'",
                           timeout=20_000)  # fmt: skip
    seen = page.evaluate("window.__seen")
    assert seen.index("iteration 1") < seen.index("iteration 2", seen.index("iteration 1")), seen
    assert len(sent) == n_sent, "the page sent to the server while the animation played"  # no rerun
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()


def test_clicking_an_atlas_cell_selects_that_digit_and_dimension(browser, server):
    page = open_sample(browser, server, "?sample=11&view=pose")
    page.wait_for_selector(".st-key-pose_atlas_map svg", timeout=30_000)
    digit, dim = 5, 8
    # The atlas's 16 x 10 cells, with 1.1 cells of room for the row labels on the left and 0.5 above.
    atlas = page.locator(".st-key-pose_atlas_map canvas")
    atlas.scroll_into_view_if_needed()
    box = atlas.bounding_box()
    u = box["width"] / (16 + 1.1)
    page.mouse.click(box["x"] + (1.1 + dim + 0.5) * u, box["y"] + (0.5 + digit + 0.5) * u)
    page.wait_for_function(
        "() => { const q = new URLSearchParams(location.search); return q.get('capsule') === '5' && q.get('dim') === '8'; }",
        timeout=30_000,
    )
    wait_idle(page)
    chosen = page.locator(".st-key-reconstruction [data-live]").evaluate(
        "h => [...h.shadowRoot.querySelectorAll('.cell')].map(c => c.classList.contains('chosen'))"
    )
    assert chosen == [d == dim for d in range(16)]  # that dimension's slider is outlined
    assert page.locator(".st-key-pose_dim input").first.input_value().startswith(f"dim {dim} · ")
    assert (
        page.locator(".st-key-pose").get_by_text(f"What the 16 numbers of capsule {digit} encode").count()
        == 1
    )
    page.close()


def test_a_page_load_asks_no_other_host_than_the_app(browser, server):
    """Everything the page needs ships with the app: loading it (the drawing canvas, then a sample
    in the pose view, whose decoder weights the page downloads) asks nothing of any other host,
    so it works offline. The page icon is the app's own SVG, inlined as a data: URL (a
    :material/...: icon is fetched from fonts.gstatic.com)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    asked = []  # every request of every page, and every WebSocket it opens
    context.on("request", lambda request: asked.append(request.url))
    context.on("page", lambda p: p.on("websocket", lambda ws: asked.append(ws.url)))
    page = context.new_page()
    open_app(page, server)
    page.goto(server + "/?sample=3&view=pose")
    page.wait_for_selector(".st-key-reconstruction [data-live='ready']", state="attached", timeout=90_000)
    wait_idle(page)
    page.wait_for_load_state("networkidle")
    icon = page.evaluate("() => [...document.querySelectorAll('link[rel~=icon]')].map(l => l.href)")
    context.close()

    app = urlparse(server).netloc  # 127.0.0.1:PORT
    paths = [urlparse(u).path for u in asked]
    assert "/_stcore/stream" in paths and any(p.startswith("/app/static/decoder-") for p in paths)
    # data: and blob: URLs are the page's own bytes, not requests to a host.
    elsewhere = [u for u in asked if urlparse(u).scheme not in ("data", "blob") and urlparse(u).netloc != app]
    assert elsewhere == [], f"the page asked other hosts than {app}"
    shipped = base64.b64encode((ROOT / "app" / "assets" / "icon.svg").read_bytes()).decode()
    assert icon and all(href == f"data:image/svg+xml;base64,{shipped}" for href in icon), icon
