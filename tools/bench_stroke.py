"""A stroke, side by side: this page against a page that only predicts (and, with --before, an
earlier checkout's page), in one run on one machine (not a test: prints a table).

    .venv/bin/python tools/bench_stroke.py [--strokes 10] [--before PATH] [--query '?view=pose'] [--json]

Each page runs on its own server (tools/bare_app.py for the bare page; app/streamlit_app.py of
this checkout, and of PATH with --before), each timing its own runs (tools/server_timing.py). For
stroke k, each page in turn: clear the canvas, draw the same stroke with the mouse, then read on
the page's own clock, from the mouse-up:
    prediction  the first frame painted after the prediction metric is in the page;
    idle        the page is done: the run is over (script state notRunning, and a frame painted
                after it) and so is the browser's work it caused (the end of the last long task,
                e.g. Plotly laying out a chart), with nothing else for half a second;
and on the server's clock the time of the run the stroke caused (request in -> run finished).
The strokes differ, so every one is a new input for every cache. The pages open at 1400x1000 in
their default view, or with --query's share-link parameters (the bare page ignores them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools import server_timing
from tools.bench_browser import p95, strokes
from tools.browser_driver import (
    METRIC,
    clear_canvas,
    launch,
    open_app,
    start_server,
    stop_server,
    stroke,
)

VIEWPORT = {"width": 1400, "height": 1000}
QUIET_MS = 500  # nothing for this long after the run and the last long task: the page is idle

WATCH = """(metric) => {
  for (const o of window.__observers || []) o.disconnect();  // the last stroke's
  const s = window.__bench = {up: null, painted: null, done: null, donePainted: null, longEnd: 0, ran: false};
  window.addEventListener('mouseup', e => { s.up = e.timeStamp; }, {capture: true, once: true});
  const app = document.querySelector('[data-testid="stApp"]');
  const stamp = key => requestAnimationFrame(() => setTimeout(() => { s[key] = performance.now(); }, 0));
  const check = () => {
    if (s.up === null) return;
    if (s.painted === null && document.querySelector(metric)) { s.painted = -1; stamp('painted'); }
    const state = app.dataset.testScriptState;
    if (state === 'running') s.ran = true;
    if (s.ran && state === 'notRunning' && s.done === null) { s.done = performance.now(); stamp('donePainted'); }
  };
  const mutations = new MutationObserver(check);
  mutations.observe(document.body, {subtree: true, childList: true, attributes: true});
  const tasks = new PerformanceObserver(list => {
    for (const e of list.getEntries()) if (s.up !== null && e.startTime >= s.up) s.longEnd = Math.max(s.longEnd, e.startTime + e.duration);
  });
  tasks.observe({type: 'longtask'});
  window.__observers = [mutations, tasks];
}"""
# Until the run is over, painted, and no long task for QUIET_MS; then (prediction, idle) in seconds.
SETTLED = """(quiet) => { const s = window.__bench;
  if (!s || s.painted === null || s.painted < 0 || s.donePainted === null) return false;
  return performance.now() - Math.max(s.donePainted, s.longEnd) > quiet; }"""
RESULT = """() => { const s = window.__bench;
  return [(s.painted - s.up) / 1000, (Math.max(s.donePainted, s.longEnd) - s.up) / 1000]; }"""


class Page:
    """One server and one browser page on it, timing its strokes."""

    def __init__(self, name: str, browser, script: str, cwd: Path, folder: str, query: str = ""):
        self.name = name
        env, self.spans_file = server_timing.hooked_server_env(folder, ROOT)
        self.proc, self.url = start_server(env, timeout=120, script=script, cwd=cwd)
        self.page = browser.new_page(viewport=VIEWPORT)
        open_app(self.page, self.url, query)
        self.drawn = False
        self.prediction: list[float] = []
        self.idle: list[float] = []
        self.server: list[float] = []

    def stroke(self, points) -> None:
        page = self.page
        if self.drawn:
            clear_canvas(page, 60_000)
        page.evaluate(WATCH, METRIC)
        since = time.monotonic()
        stroke(page, points)
        page.wait_for_function(SETTLED, arg=QUIET_MS, timeout=120_000, polling=100)
        prediction, idle = page.evaluate(RESULT)
        self.prediction.append(prediction)
        self.idle.append(idle)
        spans, errors = server_timing.read_spans(self.spans_file, since)
        if errors:
            raise RuntimeError(f"{self.name}: server timing unavailable: {errors[0]}")
        self.server.append(sum(s["finished"] - s["request"] for s in spans))
        self.drawn = True

    def close(self) -> None:
        self.page.close()
        stop_server(self.proc)


def summary(xs: list[float]) -> dict:
    return {"n": len(xs), "median_s": round(statistics.median(xs), 3), "p95_s": round(p95(xs), 3)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strokes", type=int, default=10)
    p.add_argument(
        "--before", type=Path, help="an earlier checkout (e.g. a git worktree) whose page to time too"
    )
    p.add_argument("--query", default="", help="share-link parameters for the app's pages, e.g. '?view=pose'")
    p.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    specs = [("bare (predict only)", "tools/bare_app.py", ROOT)]
    if args.before:
        specs.append(("before", "app/streamlit_app.py", args.before.resolve()))
    specs.append(("now", "app/streamlit_app.py", ROOT))
    with tempfile.TemporaryDirectory(prefix="bench-stroke-") as tmp, sync_playwright() as pw:
        browser = launch(pw)
        pages = []
        try:
            for k, (name, script, cwd) in enumerate(specs):
                folder = Path(tmp) / str(k)
                folder.mkdir()
                pages.append(Page(name, browser, script, cwd, str(folder), "" if k == 0 else args.query))
            for page in pages:  # a first stroke each, not timed: imports, first pictures
                page.stroke(strokes(1)[0])
                page.prediction.clear(), page.idle.clear(), page.server.clear()
            for points in strokes(args.strokes):
                for page in pages:  # interleaved: the machine's state drifts alike for all
                    page.stroke(points)
        finally:
            for page in pages:
                page.close()
            browser.close()

    result = {
        page.name: {
            "stroke -> prediction": summary(page.prediction),
            "stroke -> page idle": summary(page.idle),
            "server run": summary(page.server),
        }
        for page in pages
    }
    bare = result[pages[0].name]["stroke -> prediction"]["median_s"]
    print(f"{args.strokes} strokes, page clock from mouse-up; server: its own run time (median / p95)\n")
    print(
        f"{'page':22s} {'prediction':>17s} {'page idle':>17s} {'server run':>17s} {'idle / bare pred.':>18s}"
    )
    for name, r in result.items():
        cells = [f"{r[k]['median_s']:.2f} / {r[k]['p95_s']:.2f} s" for k in r]
        ratio = r["stroke -> page idle"]["median_s"] / bare
        print(f"{name:22s} {cells[0]:>17s} {cells[1]:>17s} {cells[2]:>17s} {ratio:>17.1f}x")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
