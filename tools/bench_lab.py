"""Measure the equivariance lab (app/sections/lab.py, a fragment) in a real Chromium: prints a table.

    .venv/bin/python tools/bench_lab.py [--cnn PATH] [--query ?sample=11] [--moves 20] [--sweeps 4] [--json]

One server (tools/browser_driver.serve), one page on --query, the lab scrolled into view.
1. slider key -> updated lab: focus the rotation slider (`.st-key-lab_rotate`), press ArrowRight
   (+1 degree, a value not seen before, so nothing is cached) and time from the keydown's timestamp
   to the first frame painted once the lab's first picture ("what both networks see") has a new,
   loaded `src` and the app is idle again, on the page's own clock (as bench_browser's
   WATCH_PREDICTION). The driver's wall time is printed as an upper bound, and the page's clock
   also gives keydown -> its rerun message leaving the page (WebSocket.send, wrapped).
2. sweep family: click the next option of `.st-key-lab_family` and time the same way (pointerdown
   -> the sweep strip `.st-key-lab_strip img` loaded with a new src, app idle). A family's first
   sweep in this server runs a 31-image batched forward per model (cache.lab_sweep is not warm);
   the family the page opened with was swept when it loaded, so coming back to it is cached.
3. server time of each of those reruns: tools/server_timing.py hooked into this server through a
   generated sitecustomize.py, as tools/load_test.py does: from the rerun request taken off the
   WebSocket to the run's "script finished" message. Every span is matched to the action whose
   window it starts in; a `full` kind would mean the fragment did not rerun alone.
Target: slider move -> updated lab under 0.5 s median on the page, one session.
The lab's CNN: --cnn (CAPSNET_CNN_CHECKPOINT); without that file the lab shows CapsNet and a warning.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools import server_timing
from tools.bench_browser import VIEWPORT, p95
from tools.browser_driver import IDLE, launch, serve, view_url, wait_idle

LAB = ".st-key-lab"
FIRST_IMG = f"{LAB} img"  # "what both networks see"
STRIP_IMG = ".st-key-lab_strip img"
THUMB = ".st-key-lab_rotate input[type='range'], .st-key-lab_rotate [role=slider]"
OPTIONS = ".st-key-lab_family [data-testid='stRadioOption']"
TARGET = 0.5

# Every WebSocket message the page sends, on its own clock.
RECORD_SENDS = """(() => {
  window.__sends = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) { window.__sends.push(performance.now()); return send.call(this, data); };
})();"""

# The start event's timestamp, and the first frame painted once the watched picture has a new,
# loaded src and the app is idle (requestAnimationFrame, then a task after that frame).
WATCH = (
    """([sel, old, ev]) => {
  const w = window.__lab = {start: null, painted: null, sent: null};
  window.addEventListener(ev, e => {
    w.start = e.timeStamp; w.nsent = window.__sends.length;
  }, {capture: true, once: true});
  let stamped = false;
  const check = () => {
    const e = document.querySelector(sel);
    if (stamped || w.start === null || !e || e.src === old || !e.complete || !document.querySelector("%s")) return;
    stamped = true; obs.disconnect(); document.removeEventListener('load', check, true);
    w.sent = window.__sends[w.nsent] ?? null;
    requestAnimationFrame(() => setTimeout(() => { w.painted = performance.now(); }, 0));
  };
  const obs = new MutationObserver(check);
  obs.observe(document.documentElement, {subtree: true, childList: true, attributes: true});
  document.addEventListener('load', check, true);
}"""
    % IDLE
)


def timed(page, sel: str, event: str, act) -> dict:
    """Run act() and wait for the watched change; the page's and the driver's times in seconds."""
    wait_idle(page)
    page.evaluate(WATCH, [sel, page.locator(sel).first.get_attribute("src"), event])
    t_mono, t0 = time.monotonic(), time.perf_counter()
    act()
    page.wait_for_function("window.__lab.painted !== null", timeout=60_000, polling="raf")
    driver = time.perf_counter() - t0
    w = page.evaluate("window.__lab")
    sent = None if w["sent"] is None else (w["sent"] - w["start"]) / 1000
    return {"page": (w["painted"] - w["start"]) / 1000, "driver": driver, "sent": sent, "t": t_mono}


def stats(xs: list[float]) -> dict:
    xs = [x for x in xs if x is not None]
    return {"n": len(xs), "median": statistics.median(xs) if xs else None, "p95": p95(xs) if xs else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="browser timings of the equivariance lab")
    parser.add_argument("--cnn", default=str(ROOT / "checkpoints" / "cnn_mnist.pt"), help="the lab's CNN")
    parser.add_argument("--checkpoint", default=None, help="CapsNet weights (default: $CAPSNET_CHECKPOINT or shipped)")  # fmt: skip
    parser.add_argument("--query", default="?sample=11")
    parser.add_argument(
        "--moves", type=int, default=20, help="ArrowRight presses (1 degree each, at most 60)"
    )
    parser.add_argument("--sweeps", type=int, default=4, help="sweep-family changes")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between actions")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 1 <= args.moves <= 60:
        parser.error("--moves must be 1..60 (the slider goes from 0 to 60 degrees)")
    cnn = Path(args.cnn).resolve()

    timing_dir = tempfile.TemporaryDirectory(prefix="capsnet-timing-")
    env, timing_log = server_timing.hooked_server_env(timing_dir.name, ROOT)
    env["CAPSNET_CNN_CHECKPOINT"] = str(cnn)
    if args.checkpoint:
        env["CAPSNET_CHECKPOINT"] = args.checkpoint

    from playwright.sync_api import sync_playwright

    moves, sweeps = [], []
    with serve(env) as url, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport=VIEWPORT)
        page.add_init_script(RECORD_SENDS)
        t0 = time.perf_counter()
        page.goto(view_url(url, args.query, "lab"))
        page.wait_for_selector(STRIP_IMG, timeout=180_000)
        wait_idle(page, 180_000)
        first_load = time.perf_counter() - t0
        page.locator(LAB).scroll_into_view_if_needed()
        warning = page.locator(f"{LAB} [data-testid='stAlert']").all_inner_texts()

        thumb = page.locator(THUMB).first
        for _ in range(args.moves):
            thumb.focus()
            moves.append(timed(page, FIRST_IMG, "keydown", lambda: page.keyboard.press("ArrowRight")))
            page.wait_for_timeout(args.pause * 1000)
        rotation = thumb.get_attribute("aria-valuetext") or thumb.get_attribute("aria-valuenow")

        options = page.locator(OPTIONS)
        names = [t.split(" (")[0] for t in options.all_inner_texts()]
        seen = {
            names[i] for i in range(len(names)) if options.nth(i).get_attribute("data-selected") == "true"
        }
        cur = next(i for i in range(len(names)) if names[i] in seen)
        for _ in range(args.sweeps):
            cur = (cur + 1) % len(names)
            s = timed(page, STRIP_IMG, "pointerdown", options.nth(cur).click)
            s.update(family=names[cur], first=names[cur] not in seen)
            seen.add(names[cur])
            sweeps.append(s)
            page.wait_for_timeout(args.pause * 1000)
        wait_idle(page)
        exceptions = page.locator(f"{LAB} [data-testid='stException']").all_inner_texts()
        browser.close()

    spans, span_errors = server_timing.read_spans(timing_log, since=moves[0]["t"])
    timing_dir.cleanup()
    actions = sorted(moves + sweeps, key=lambda a: a["t"])
    for a in actions:
        a["server"], a["kinds"] = None, []
    for s in spans:  # to the last action started before the request
        owner = [a for a in actions if a["t"] <= s["request"]][-1]
        owner["kinds"].append(s["kind"])
        owner["server"] = (owner["server"] or 0.0) + s["finished"] - s["request"]

    groups = {
        "slider key -> lab": moves,
        "sweep family, first (31 computed)": [s for s in sweeps if s["first"]],
        "sweep family, cached": [s for s in sweeps if not s["first"]],
    }
    out = {
        "query": args.query,
        "cnn": str(cnn),
        "cnn_found": cnn.exists(),
        "lab_warnings": warning,
        "lab_exceptions": exceptions,
        "rotation_after": rotation,
        "first_load_s": first_load,
        "loadavg": os.getloadavg(),
        "cpus": os.cpu_count(),
        "target_median_s": TARGET,
        "server_timing_errors": span_errors,
        "span_kinds": sorted({k for a in actions for k in a["kinds"]}),
        "actions_without_one_span": sum(len(a["kinds"]) != 1 for a in actions),
        "sweep_families": [(s["family"], "first" if s["first"] else "cached") for s in sweeps],
        "results": {
            name: {m: stats([a[m] for a in xs]) for m in ("page", "driver", "sent", "server")}
            for name, xs in groups.items()
        },
        "raw": {"moves": moves, "sweeps": sweeps},
    }
    if args.json:
        print(json.dumps(out))
        return 0

    print(f"lab on {args.query}; CNN {cnn} ({'found' if out['cnn_found'] else 'MISSING: CapsNet alone'}); "
          f"load average {out['loadavg'][0]:.2f} on {out['cpus']} cores; first load {first_load:.1f} s")  # fmt: skip
    print(f"rotation after {len(moves)} ArrowRight: {rotation}; sweeps: "
          + ", ".join(f"{f} ({c})" for f, c in out["sweep_families"]))  # fmt: skip
    print(f"server spans: kinds {out['span_kinds']}, actions without exactly one span: "
          f"{out['actions_without_one_span']}, hook errors: {span_errors or 'none'}")  # fmt: skip
    for text in warning + exceptions:
        print("lab says:", text.splitlines()[0][:160])
    print(f"{'measure':44s} {'n':>4s} {'median':>9s} {'p95':>9s} {'target':>9s}")
    labels = {"page": "", "driver": "  (as the driver sees it)", "sent": "  input -> rerun message sent",
              "server": "  server: request -> script finished"}  # fmt: skip
    for name, res in out["results"].items():
        for m, label in labels.items():
            r = res[m]
            if not r["n"]:
                continue
            tgt = f"{TARGET * 1000:7.1f}ms" if (m == "page" and name.startswith("slider")) else ""
            flag = ("ok" if r["median"] < TARGET else "SLOW") if tgt else ""
            print(f"{label or name:44s} {r['n']:4d} {r['median'] * 1000:7.1f}ms {r['p95'] * 1000:7.1f}ms {tgt:>9s} {flag}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
