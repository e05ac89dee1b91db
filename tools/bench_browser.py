"""Measure the app's responsiveness in a real Chromium (not a test: prints a table).

    .venv/bin/python tools/bench_browser.py [--checkpoint PATH] [--strokes 10] [--slides 20] [--drags 5]

1. first load: a fresh page on a warm server until the run is over and the canvas is there;
2. the decoder's weights for the live pose preview: bytes and time on a browser's first page, and
   on its next page (from the browser's cache);
3. dragging a pose slider with the mouse (down, moves back and forth for --drag-seconds, up): the
   page's frames per second meanwhile (requestAnimationFrame), reconstructions painted per second,
   messages the page sent to the server (should be 0), and, with a new slider value set on every
   frame instead, the frames per second when every frame decodes and paints;
4. the JavaScript decode: milliseconds per reconstruction (median, p95) over all of 3.;
5. released slider -> server reconstruction: from the mouse-up ending a drag to the server's
   picture of the new pose loaded in the page;
6. stroke -> prediction: from mouse-up to the prediction metric showing the new input's run;
7. slider key -> server reconstruction: from an ArrowRight on a pose slider to the server's picture.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.browser_driver import METRIC, clear_canvas, launch, open_app, serve, stroke, view_url, wait_idle  # noqa: E402

RECON_IMG = ".st-key-reconstruction img"
LIVE = ".st-key-reconstruction [data-live]"  # the pose component's host element
VIEWPORT = {"width": 1400, "height": 1000}

# In-page clock for stroke -> prediction: the mouse-up's timestamp, and the first frame painted
# after the prediction metric enters the page (requestAnimationFrame, then a task after the frame).
# The driver's own wait adds its round trips and runs on the page's busy main thread, so it is
# printed too, as an upper bound.
WATCH_PREDICTION = (
    """() => {
  window.__up = null; window.__painted = null;
  window.addEventListener('mouseup', e => { window.__up = e.timeStamp; }, {capture: true, once: true});
  const sel = "%s";
  const obs = new MutationObserver(() => {
    if (window.__up !== null && document.querySelector(sel)) {
      obs.disconnect();
      requestAnimationFrame(() => setTimeout(() => { window.__painted = performance.now(); }, 0));
    }
  });
  obs.observe(document.body, {subtree: true, childList: true});
}"""
    % METRIC
)

# During a drag: every animation frame's time, the mouse-down/up times, the script states the
# page shows, and (after the mouse-up) when the server's new picture has loaded and painted.
WATCH_DRAG = """([recon, old]) => {
  const b = window.__drag = {frames: [], down: null, up: null, states: [], painted: null};
  const loop = t => { if (b.up === null) { b.frames.push(t); requestAnimationFrame(loop); } };
  requestAnimationFrame(loop);
  window.addEventListener('mousedown', e => { b.down = e.timeStamp; }, {capture: true, once: true});
  window.addEventListener('mouseup', e => { b.up = e.timeStamp; }, {capture: true, once: true});
  const app = document.querySelector('[data-testid="stApp"]');
  new MutationObserver(() => b.states.push([performance.now(), app.dataset.testScriptState]))
    .observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
  const stamp = () => requestAnimationFrame(() => setTimeout(() => { b.painted = performance.now(); }, 0));
  const obs = new MutationObserver(() => {
    const e = document.querySelectorAll(recon)[1];
    if (b.up === null || !e || e.src === old) return;
    obs.disconnect();
    if (e.complete) stamp(); else e.addEventListener('load', stamp, {once: true});
  });
  obs.observe(document.documentElement, {subtree: true, childList: true, attributes: true});
}"""

# A new value on every animation frame (one `input` event each, as a drag): frame times.
EVERY_FRAME = (
    """([dim, n]) => new Promise(resolve => {
  const inputs = [...document.querySelector(%r).shadowRoot.querySelectorAll('.grid input')];
  const input = inputs[dim], lim = Number(input.max), step = Number(input.step);
  const grid = [];
  for (let v = -lim; v <= lim + 1e-9; v += step) grid.push(Math.round(v / step) * step);
  const zigzag = grid.concat(grid.slice(1, -1).reverse());
  const frames = [];
  let i = 0;
  const next = t => {
    frames.push(t);
    input.value = String(zigzag[i++ %% zigzag.length]);
    input.dispatchEvent(new Event('input', {bubbles: true}));
    if (i < n) requestAnimationFrame(next); else resolve(frames);
  };
  requestAnimationFrame(next);
})"""
    % LIVE
)

LIVE_STATE = (
    """() => {
  const v = document.querySelector(%r).capsnetLive;
  return {status: v.status, reason: v.reason, load: v.load, decodes: v.decodes, decodeMs: v.decodeMs};
}"""
    % LIVE
)


def strokes(n: int) -> list[list[tuple[float, float]]]:
    """n different strokes (one per sample): a slanted bar at different positions."""
    out = []
    for k in range(n):
        dx = 0.05 * (k % 5) - 0.1
        out.append([(0.5 + dx + 0.1, 0.12), (0.5 + dx, 0.5), (0.5 + dx - 0.1 + 0.02 * k, 0.9)])
    return out


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def open_live(context, url: str, query: str):
    """A new page of `context` on `url + query`, once its run is over and the live preview is ready."""
    page = context.new_page()
    page.goto(view_url(url, query, "pose"))
    page.wait_for_selector(METRIC, timeout=90_000)
    wait_idle(page)
    page.wait_for_selector(f"{LIVE}[data-live='ready']", state="attached", timeout=60_000)
    return page


def weights_loads(browser, url: str) -> dict:
    """The decoder's weights on a new browser's first page, then on its next one."""
    context = browser.new_context(viewport=VIEWPORT)
    first = open_live(context, url, "/?sample=3").evaluate(LIVE_STATE)["load"]
    second = open_live(context, url, "/?sample=21").evaluate(LIVE_STATE)["load"]
    context.close()
    return {"first": first, "next": second}


def drags(page, n: int, seconds: float, sent: list) -> dict:
    """n mouse drags of pose sliders, each back and forth over the slider for `seconds`."""
    out = {"fps": [], "paints_per_s": [], "sent": 0, "runs": 0, "release": []}
    sliders = page.locator(LIVE).locator(".grid input")
    for k in range(n):
        slider = sliders.nth(k % 16)
        slider.scroll_into_view_if_needed()
        box = slider.bounding_box()
        y, left, width = box["y"] + box["height"] / 2, box["x"], box["width"]
        value = float(slider.input_value())
        lim = float(slider.get_attribute("max"))
        x = left + width * (
            0.5 + 0.5 * value / lim
        )  # the thumb (close enough: a click there moves it little)
        old = page.locator(RECON_IMG).nth(1).get_attribute("src")
        page.evaluate(WATCH_DRAG, [RECON_IMG, old])
        decodes0 = page.evaluate(LIVE_STATE)["decodes"]
        page.mouse.move(x, y)
        n_sent = len(sent)
        page.mouse.down()
        t_end, right = time.monotonic() + seconds, True
        while time.monotonic() < t_end:  # sweep to one end and back, 30 moves a sweep
            target = left + width * (0.97 if right else 0.03)
            for j in range(1, 31):
                page.mouse.move(x + (target - x) * j / 30, y)
            x, right = target, not right
        out["sent"] += len(sent) - n_sent
        x_end = left + width * (0.5 + 0.5 * 0.1 / lim)  # let go at +0.10: a value the page is not showing
        page.mouse.move(x_end, y, steps=5)
        page.mouse.up()
        page.wait_for_function("window.__drag.painted !== null", timeout=60_000)
        b = page.evaluate("window.__drag")
        state = page.evaluate(LIVE_STATE)
        frames = [t for t in b["frames"] if b["down"] <= t <= b["up"]]
        span = (b["up"] - b["down"]) / 1000
        out["fps"].append((len(frames) - 1) / ((frames[-1] - frames[0]) / 1000) if len(frames) > 1 else 0.0)
        out["paints_per_s"].append((state["decodes"] - decodes0) / span)
        out["runs"] += sum(1 for t, s in b["states"] if s == "running" and t < b["up"])
        out["release"].append((b["painted"] - b["up"]) / 1000)
        wait_idle(page)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="browser timings of the app")
    parser.add_argument(
        "--checkpoint", default=None, help="weights (default: $CAPSNET_CHECKPOINT or shipped)"
    )
    parser.add_argument("--strokes", type=int, default=10)
    parser.add_argument("--slides", type=int, default=20)
    parser.add_argument("--drags", type=int, default=5)
    parser.add_argument("--drag-seconds", type=float, default=2.0)
    parser.add_argument("--frames", type=int, default=300, help="frames with a new value each")
    args = parser.parse_args(argv)
    env = {"CAPSNET_CHECKPOINT": args.checkpoint} if args.checkpoint else {}

    from playwright.sync_api import sync_playwright

    with serve(env) as url, sync_playwright() as p:
        browser = launch(p)
        warm = browser.new_page(viewport=VIEWPORT)
        open_app(warm, url)  # warms imports and the model cache
        warm.close()

        loads = []
        for _ in range(3):
            page = browser.new_page(viewport=VIEWPORT)
            t0 = time.perf_counter()
            open_app(page, url)
            loads.append(time.perf_counter() - t0)
            page.close()

        weights = weights_loads(browser, url)

        context = browser.new_context(viewport=VIEWPORT)
        sent: list[float] = []  # times of the WebSocket messages the page sends (a rerun is one)
        context.on(
            "page", lambda pg: pg.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append(1)))
        )
        page = open_live(context, url, "/?sample=3")
        drag = drags(page, args.drags, args.drag_seconds, sent)
        n_sent = len(sent)
        frames = page.evaluate(EVERY_FRAME, [5, args.frames])
        every_frame_fps = (len(frames) - 1) / ((frames[-1] - frames[0]) / 1000)
        every_frame_sent = len(sent) - n_sent
        decode_ms = page.evaluate(LIVE_STATE)["decodeMs"]
        context.close()

        page = browser.new_page(viewport=VIEWPORT)
        open_app(page, url, "?view=pose")  # strokes, then the pose sliders of the same page
        predict, predict_driver = [], []
        for k, pts in enumerate(strokes(args.strokes)):
            clear_canvas(page)
            page.evaluate(WATCH_PREDICTION)
            stroke(page, pts)
            t0 = time.perf_counter()
            page.wait_for_selector(METRIC, timeout=30_000)
            predict_driver.append(time.perf_counter() - t0)
            page.wait_for_function("window.__painted !== null", timeout=30_000)
            predict.append(page.evaluate("(window.__painted - window.__up) / 1000"))
            wait_idle(page)

        slides = []
        slider = page.locator(".st-key-pose input[type='range']").first
        for k in range(args.slides):
            slider.focus()
            key = "ArrowRight" if (k // 5) % 2 == 0 else "ArrowLeft"  # 0.05..0.25 and back
            before = page.locator(RECON_IMG).nth(1).get_attribute("src")
            t0 = time.perf_counter()
            page.keyboard.press(key)
            page.wait_for_function(
                "([sel, old]) => { const e = document.querySelectorAll(sel)[1];"
                " return e && e.src !== old && e.complete; }",
                arg=[RECON_IMG, before], timeout=15_000, polling="raf",
            )  # fmt: skip
            slides.append(time.perf_counter() - t0)
            wait_idle(page)
        browser.close()

    first, again = weights["first"], weights["next"]
    print(f"decoder weights, a browser's first page: {first['transferred']} bytes over the wire "
          f"({first['inflated']} inflated), {first['ms']:.0f} ms to usable (download {first['fetchMs']:.0f} ms)")  # fmt: skip
    print(f"decoder weights, its next page:          {again['transferred']} bytes over the wire, "
          f"{again['ms']:.0f} ms to usable (from the browser's cache)")  # fmt: skip
    print(f"drags: {args.drags} x {args.drag_seconds:.1f} s; messages to the server while dragging: "
          f"{drag['sent']}, app runs while dragging: {drag['runs']}")  # fmt: skip
    print(f"a new value every frame ({args.frames} frames): {every_frame_fps:.1f} frames/s "
          f"(messages to the server: {every_frame_sent})")  # fmt: skip
    print(f"{'measure':34s} {'n':>4s} {'median':>9s} {'p95':>9s} {'target':>9s}")

    def row(name: str, xs: list[float], unit: str, target: float | None, higher_is_better: bool = False):
        med = statistics.median(xs)
        low = p95(xs) if not higher_is_better else sorted(xs)[int(0.05 * (len(xs) - 1))]
        scale, fmt = (1000, "{:7.1f}ms") if unit == "s" else (1, "{:6.1f}" + unit)
        flag = (
            ""
            if target is None
            else ("ok" if (med >= target if higher_is_better else med < target) else "SLOW")
        )
        tgt = "" if target is None else fmt.format(target * scale)
        print(f"{name:34s} {len(xs):4d} {fmt.format(med * scale)} {fmt.format(low * scale)} {tgt:>9s} {flag}")

    row("first load (warm server)", loads, "s", 5.0)
    row("drag: page frames per second", drag["fps"], "/s", 60 * 0.95, higher_is_better=True)
    row("drag: reconstructions painted/s", drag["paints_per_s"], "/s", None, higher_is_better=True)
    row("decode in JavaScript", [ms / 1000 for ms in decode_ms], "s", 1 / 60)
    row("released slider -> server picture", drag["release"], "s", 0.3)
    row("stroke -> prediction", predict, "s", 1.0)
    row("  (as the driver sees it)", predict_driver, "s", 1.0)
    row("slider key -> server picture", slides, "s", 0.3)
    print("(for frames per second the second column is the 5th percentile, not the 95th)")


if __name__ == "__main__":
    main()
