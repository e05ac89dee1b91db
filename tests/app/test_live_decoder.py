"""The pose explorer's live preview in Chromium: the decoder running in the page gives the model's
reconstruction, a drag redraws it before the mouse is released without a single message to the
server, and the server's pictures take over when the weights cannot be loaded.

Needs Debian's chromium (the `chromium` fixture in conftest.py says what happens without it).
Runs on the shipped checkpoint; the page's state is read from the component's `capsnetLive` hook
and its canvases' pixels, never from a screenshot.
"""

import time

import numpy as np
import pytest
import torch
from floats import FORWARD_ULPS, assert_close_f32

import capsnet
from app import inputs
from app.pixel_arrays import diverging_rgb, to_uint8
from app.pose_sliders import DIFF_LIMIT, clean_pose
from capsnet.preprocess import to_mnist
from tools.browser_driver import METRIC, serve, view_url, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOLERANCE = 1 / 255  # max abs per pixel, values in [0, 1]
SAMPLES, LABELS = inputs.load_samples()
HOST = ".st-key-reconstruction [data-live]"  # the element hosting the pose component
VIEWPORT = {"width": 1400, "height": 1000}

# The component's state and its three canvases, as plain lists.
READ = (
    """() => {
  const host = document.querySelector(%r), v = host.capsnetLive, root = host.shadowRoot;
  const px = c => Array.from(root.querySelector('canvas.' + c).getContext('2d').getImageData(0, 0, 28, 28).data);
  return {status: v.status, reason: v.reason, digit: v.data.live.digit, pose: v.data.live.pose,
          values: v.values, decodes: v.decodes, base: Array.from(v.base), moved: Array.from(v.moved),
          px: {base: px('base'), moved: px('moved'), diff: px('diff')}, load: v.load,
          captions: [...root.querySelectorAll('figcaption')].map(f => f.textContent),
          inputs: [...root.querySelectorAll('.grid input')].map(i => Number(i.value))};
}"""
    % HOST
)

# Set the sliders as a user would by keyboard or drag, one `input` event each, but no `change`
# (no release): the page redraws, the server hears nothing. Returns what the inputs now hold.
SET_VALUES = (
    """(values) => {
  const inputs = [...document.querySelector(%r).shadowRoot.querySelectorAll('.grid input')];
  values.forEach((v, k) => {
    if (Number(inputs[k].value) !== v) {
      inputs[k].value = String(v);
      inputs[k].dispatchEvent(new Event('input', {bubbles: true}));
    }
  });
  return inputs.map(i => Number(i.value));
}"""
    % HOST
)

# Records every script state the page shows (stApp's data-test-script-state) with its time.
WATCH_RUNS = """() => {
  window.__states = [];
  const app = document.querySelector('[data-testid="stApp"]');
  new MutationObserver(() => window.__states.push([performance.now(), app.dataset.testScriptState]))
    .observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""


@pytest.fixture(scope="module")
def server():
    with serve({"CAPSNET_CHECKPOINT": str(capsnet.DEFAULT_CHECKPOINT)}) as url:
        yield url


@pytest.fixture(scope="module")
def model():
    return capsnet.load_model(capsnet.DEFAULT_CHECKPOINT)


def open_page(context, url: str, query: str, live: str = "ready"):
    """A page of the pose view (?view=pose) for the share-link parameters in `query`."""
    page = context.new_page()
    page.goto(view_url(url, query, "pose"))
    page.wait_for_selector(METRIC, timeout=90_000)
    wait_idle(page, timeout=90_000)
    page.wait_for_selector(f".st-key-reconstruction [data-live='{live}']", state="attached", timeout=60_000)
    return page


def server_side(model, sample: int, iterations: int, capsule: int | None, values, wide: bool):
    """What the server computes for this page and these slider values: (digit, poses (10, 16),
    unperturbed and moved reconstructions (784,) each), the poses from a traced forward pass with
    the page's iteration count, the offsets through clean_pose as on release."""
    x = torch.from_numpy(to_mnist(SAMPLES[sample]).astype(np.float32)).reshape(1, 1, 28, 28)
    with torch.no_grad():
        out = model(x, iterations=iterations, trace=True)
        poses = out.poses[0].numpy()
        d = int(out.prediction[0]) if capsule is None else capsule
        offsets, _ = clean_pose({"values": list(values), "wide": wide}, 16)
        moved = poses.copy()
        moved[d] += offsets
        recon = model.reconstruct(torch.from_numpy(np.stack([poses, moved])), torch.tensor([d, d]))
    base, new = recon.reshape(2, 784).numpy()
    return d, poses, base, new


def assert_matches(got: dict, base: np.ndarray, new: np.ndarray) -> None:
    errors = {
        "base": np.abs(np.array(got["base"]) - base).max(),
        "moved": np.abs(np.array(got["moved"]) - new).max(),
    }
    assert all(e <= TOLERANCE for e in errors.values()), (
        f"max abs error per pixel {errors} for {got['values']}"
    )
    # What is painted: grey levels as app/images.py digit_image, colours as difference_image.
    rgba = {k: np.array(v, dtype=int).reshape(28, 28, 4) for k, v in got["px"].items()}
    levels = {
        "base": np.abs(rgba["base"][..., :3] - to_uint8(base.reshape(28, 28))[..., None]).max(),
        "moved": np.abs(rgba["moved"][..., :3] - to_uint8(new.reshape(28, 28))[..., None]).max(),
        "diff": np.abs(rgba["diff"][..., :3] - diverging_rgb((new - base).reshape(28, 28), DIFF_LIMIT)).max(),
    }
    assert levels["base"] <= 1 and levels["moved"] <= 1 and levels["diff"] <= 2, (
        f"painted levels off by {levels}"
    )
    assert got["captions"][1] == f"with the offsets ({np.count_nonzero(got['values'])} moved)"


rng = np.random.default_rng(11)
NARROW_GRID = np.round(np.arange(-0.25, 0.251, 0.05), 2)
WIDE_GRID = np.round(np.arange(-0.5, 0.501, 0.05), 2)
NARROW_OFFSETS = [[0.0] * 16, [0.0] * 6 + [0.25] + [0.0] * 9, rng.choice(NARROW_GRID, 16).tolist()]
WIDE_OFFSETS = [[0.5] + [0.0] * 14 + [-0.5], [-0.5] * 16, rng.choice(WIDE_GRID, 16).tolist()]


@pytest.mark.parametrize(
    "sample, iterations, capsule",
    [(3, 3, None), (3, 2, 6), (21, 3, None), (21, 5, 1)],
    ids=["sample3-auto", "sample3-capsule6", "sample21-auto", "sample21-capsule1"],
)
def test_browser_decodes_like_the_model(browser, server, model, sample, iterations, capsule):
    context = browser.new_context(viewport=VIEWPORT)
    query = f"/?sample={sample}&iters={iterations}" + (f"&capsule={capsule}" if capsule is not None else "")
    page = open_page(context, server, query)
    got = page.evaluate(READ)
    d, poses, base, _ = server_side(model, sample, iterations, capsule, [0.0] * 16, False)
    assert got["status"] == "ready" and got["digit"] == d
    # The page got capsule d's pose, from the server's forward pass (another process, maybe other kernels).
    assert_close_f32(got["pose"], poses[d], FORWARD_ULPS, scale=poses)
    for values in NARROW_OFFSETS:
        assert page.evaluate(SET_VALUES, values) == values
        _, _, base, new = server_side(model, sample, iterations, capsule, values, False)
        assert_matches(page.evaluate(READ), base, new)

    page.locator(HOST).locator("input.wide").check()  # the wide range: one run, values kept
    page.wait_for_selector(f"{HOST} >> .cell input[max='0.5']", state="attached", timeout=30_000)
    wait_idle(page)
    for values in WIDE_OFFSETS:
        assert page.evaluate(SET_VALUES, values) == values
        _, _, base, new = server_side(model, sample, iterations, capsule, values, True)
        got = page.evaluate(READ)
        assert_matches(got, base, new)
    assert np.abs(np.array(got["moved"]) - np.array(got["base"])).max() > 0.1  # the offsets did change it
    context.close()


def test_drag_redraws_before_release_without_a_rerun(browser, server, model):
    context = browser.new_context(viewport=VIEWPORT)
    sent = []  # every WebSocket message the page sends to the server: a rerun is one of them

    def watch_socket(ws):
        ws.on("framesent", lambda frame: sent.append((time.monotonic(), frame)))

    context.on("page", lambda p: p.on("websocket", watch_socket))
    page = open_page(context, server, "/?sample=3")
    page.evaluate(WATCH_RUNS)
    before = page.evaluate(READ)
    server_img = page.locator(".st-key-reconstruction img").nth(1).get_attribute("src")

    slider = page.locator(HOST).locator(".grid input").nth(6)
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    y, x0 = box["y"] + box["height"] / 2, box["x"] + box["width"] / 2  # the thumb: value 0 in -0.25..0.25
    page.mouse.move(x0, y)
    n_sent = len(sent)
    page.mouse.down()
    for k in range(1, 9):
        page.mouse.move(x0 + k * box["width"] * 0.05, y, steps=3)
        # The page has drawn the pose the slider now shows (it decodes on every value change).
        page.wait_for_function(
            "h => { const host = document.querySelector(h), inputs = host.shadowRoot.querySelectorAll('.grid input');"
            " return host.capsnetLive.values[6] === Number(inputs[6].value); }",
            arg=HOST, timeout=10_000,
        )  # fmt: skip
    during = page.evaluate(READ)
    states_during = page.evaluate("window.__states.map(s => s[1])")
    sent_during = len(sent) - n_sent
    img_during = page.locator(".st-key-reconstruction img").nth(1).get_attribute("src")
    page.mouse.up()

    # Before the release: the page drew the moved pose, and the server heard nothing.
    assert during["values"][6] > 0.1 and during["inputs"][6] == during["values"][6]
    assert during["decodes"] > before["decodes"] + 1  # redrawn on the way, not once at the end
    assert np.abs(np.array(during["moved"]) - np.array(before["moved"])).max() > 0.05
    assert sent_during == 0, "the page sent to the server while dragging"
    assert states_during == [], f"the app ran while dragging: {states_during}"
    assert img_during == server_img

    # The release: one message, and the server's pictures follow with the same values. Waited for
    # by what the server draws, not by the script state: when the browser is slower than the
    # fragment's run, "running" and "notRunning" reach the page in one render and it never shows
    # "running" (seen with Chromium's CPU throttled 4x).
    page.wait_for_function(
        "() => [...document.querySelectorAll('.st-key-reconstruction [data-testid=\"stImage\"]')]"
        ".some(e => e.textContent.includes('(1 moved)'))",
        timeout=30_000,
    )
    wait_idle(page)
    assert len(sent) - n_sent == 1, f"{len(sent) - n_sent} messages to the server on one release"
    value = during["values"][6]
    after = page.evaluate(READ)
    assert after["values"][6] == value and after["inputs"][6] == value  # the server's data kept it
    _, _, base, new = server_side(model, 3, 3, None, after["values"], False)
    assert_matches(after, base, new)
    context.close()


def test_weights_come_from_the_browser_cache_on_the_next_page(browser, server):
    context = browser.new_context(viewport=VIEWPORT)
    first = open_page(context, server, "/?sample=3").evaluate(READ)["load"]
    second = open_page(context, server, "/?sample=21").evaluate(READ)["load"]
    assert first["bytes"] > 2_000_000 and first["transferred"] >= first["bytes"]  # downloaded, gzipped
    assert second["bytes"] == first["bytes"] and second["transferred"] == 0  # not even revalidated
    context.close()


def test_server_pictures_take_over_when_the_weights_cannot_be_loaded(browser, server):
    context = browser.new_context(viewport=VIEWPORT)
    context.route("**/app/static/**", lambda route: route.abort())
    page = open_page(context, server, "/?sample=3", live="fallback")
    got = page.evaluate(
        """() => { const host = document.querySelector(%r), root = host.shadowRoot;
                   return {status: root.querySelector('.status').textContent,
                           live: root.querySelector('.live').hidden,
                           images: [...document.querySelectorAll('.st-key-reconstruction [data-testid="stImage"]')]
                                     .map(e => getComputedStyle(e).display)}; }"""
        % HOST
    )
    assert "No live preview" in got["status"] and "could not be loaded" in got["status"]
    assert got["live"] is True and got["images"] and "none" not in got["images"]
    slider = page.locator(HOST).locator(".grid input").first
    slider.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.st-key-reconstruction [data-testid=\"stImage\"]')]"
        ".some(e => e.textContent.includes('(1 moved)'))",
        timeout=30_000,
    )
    assert page.locator("[data-testid='stException']").count() == 0
    context.close()
