"""Measure the app's responsiveness in a real Chromium (not a test: prints a table).

    .venv/bin/python tools/bench_browser.py [--checkpoint PATH] [--strokes 10] [--slides 20]

1. first load: a fresh page on a warm server until the run is over and the canvas is there;
2. stroke -> prediction: from mouse-up to the prediction metric showing the new input's run;
3. slider -> reconstruction: from an ArrowRight on a pose slider to the new reconstruction.
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

from tools.browser_driver import CANVAS, METRIC, launch, open_app, serve, stroke, wait_idle  # noqa: E402

RECON_IMG = ".st-key-reconstruction img"

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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="browser timings of the app")
    parser.add_argument(
        "--checkpoint", default=None, help="weights (default: $CAPSNET_CHECKPOINT or shipped)"
    )
    parser.add_argument("--strokes", type=int, default=10)
    parser.add_argument("--slides", type=int, default=20)
    args = parser.parse_args(argv)
    env = {"CAPSNET_CHECKPOINT": args.checkpoint} if args.checkpoint else {}

    from playwright.sync_api import sync_playwright

    with serve(env) as url, sync_playwright() as p:
        browser = launch(p)
        warm = browser.new_page(viewport={"width": 1400, "height": 1000})
        open_app(warm, url)  # warms imports and the model cache
        warm.close()

        loads = []
        for _ in range(3):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            t0 = time.perf_counter()
            open_app(page, url)
            loads.append(time.perf_counter() - t0)
            page.close()

        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        open_app(page, url)
        predict, predict_driver = [], []
        for k, pts in enumerate(strokes(args.strokes)):
            page.locator("button", has_text="Clear the canvas").click()
            page.wait_for_selector(METRIC, state="detached", timeout=30_000)
            page.wait_for_selector(CANVAS, timeout=30_000)
            wait_idle(page)
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

    rows = [
        ("first load (warm server)", loads, 5.0),
        ("stroke -> prediction", predict, 1.0),
        ("  (as the driver sees it)", predict_driver, 1.0),
        ("slider -> reconstruction", slides, 0.3),
    ]
    print(f"{'measure':28s} {'n':>3s} {'median':>8s} {'p95':>8s} {'target':>8s}")
    for name, xs, target in rows:
        med = statistics.median(xs)
        flag = "ok" if med < target else "SLOW"
        print(
            f"{name:28s} {len(xs):3d} {med * 1000:6.0f}ms {p95(xs) * 1000:6.0f}ms {target * 1000:6.0f}ms {flag}"
        )


if __name__ == "__main__":
    main()
