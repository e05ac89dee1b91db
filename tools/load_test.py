"""Load the app with many concurrent browser sessions (not a test: prints a table and a JSON line).

    .venv/bin/python tools/load_test.py [--sessions 20] [--seconds 60] [--server-cores N] [--json] ...
    .venv/bin/python tools/load_test.py --classroom [--students 10] [--kill-replica] ...  (class mode:
        students and a teacher through nginx, see tools/classroom_load.py)

One local server (127.0.0.1, started here so its pid is known), one Chromium, one browser context
per session. Sessions arrive one by one over --ramp seconds; once every session has opened the page,
the timed phase (--seconds) starts and each, after the same ramp offset, loops with small seeded
random pauses:
- drawing sessions (even numbers) stay on the page's default view (the overview and the routing
  view): clear the canvas, draw a digit with the mouse, wait for the prediction (must be a digit);
  sometimes step the routing-iteration slider and wait for the run to finish;
- sample sessions (odd numbers) open `?sample=K&view=pose` with their own K: press an arrow key on
  a pose slider and wait for the new reconstruction; drag a pose slider with the mouse (down,
  moves, up: the page redraws the reconstruction itself and must send the server nothing until the
  release, whose run is then waited for); sometimes step the iteration slider. Their prediction is
  computed here beforehand (for every iteration count); after every action the page must still
  show that value, their own sample and their own iteration count: one session's input never
  shows up in another session.
With --rounds N each session instead does its actions in a fixed order N times (drawing: draw,
iterations, clear and draw again; sample: pose, drag, iterations) and stops: the counts no longer
depend on timing.
Latencies are taken on the page's own clock (the input event's timestamp to the first frame painted
after the result is in the page, as tools/bench_browser.py does); the driver's wall time is printed as
an upper bound. The server also times its own share of every run, from the page's request to the
run's end (tools/server_timing.py): "slider -> reconstruction (server)" for the pose explorer's runs,
"full run (server)" for the others. Each release of a drag is one such pose run, and a drag itself
none: the page's WebSocket messages and script states are watched while the mouse button is down.
Errors: Streamlit exceptions and st.error boxes seen after any action, isolation mismatches, actions
that time out, and any message sent or run started while dragging. Exit status 1 when there is any
error. --no-live serves the app without static files, so that pages fall back to the server's
pictures: the same load without the decoder file, to compare the server's memory.

On one machine the 20 Chromium renderers need more CPU than the server (about 7x here) and, sharing
its cores, delay every step it takes. --server-cores 1 gives the server a core of its own and the
browsers the rest, as when each student's browser runs on their own machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools import server_timing  # noqa: E402
from tools.browser_driver import (  # noqa: E402
    CANVAS,
    CHROMIUM,
    CHROMIUM_ARGS,
    IDLE,
    METRIC,
    start_server,
    stop_server,
)  # fmt: skip

POLL_MS = 50  # the driver's polling interval; latencies come from the page's own clock
RECON_IMG = ".st-key-reconstruction img"
POSE_SLIDERS = ".st-key-pose input[type='range']"
ITER_SLIDER = ".st-key-iterations input[type='range']"
ERRORS = "[data-testid='stException'], [data-testid='stAlertContentError']"
POSE_LIMIT = 0.25
POSE_STEP = 0.05
LIVE = ".st-key-reconstruction [data-live]"  # the pose component's host (app/pose_sliders.py)
MAX_ITERATIONS = 5
VIEWPORT = {"width": 1400, "height": 1000}

# Installed before each action: the timestamp of the next input event of `kind` (mouseup/keydown),
# then a MutationObserver over the whole document that, once the condition holds (it may return an
# <img> that must finish loading first), stamps the first frame painted after it
# (requestAnimationFrame, then a task after the frame). Both stamps are on the page's clock.
WATCH = """([kind, cond, arg]) => {
  if (window.__obs) window.__obs.disconnect();
  window.__t0 = null; window.__t1 = null;
  window.addEventListener(kind, e => { window.__t0 = e.timeStamp; }, {capture: true, once: true});
  const test = new Function('arg', cond);
  let fired = false;
  const stamp = () => requestAnimationFrame(() => setTimeout(() => { window.__t1 = performance.now(); }, 0));
  const check = () => {
    if (fired || window.__t0 === null) return;
    const r = test(arg);
    if (!r) return;
    fired = true; window.__obs.disconnect();
    if (r instanceof HTMLImageElement && !r.complete) r.addEventListener('load', stamp, {once: true});
    else stamp();
  };
  window.__obs = new MutationObserver(check);
  window.__obs.observe(document.documentElement,
                       {subtree: true, childList: true, attributes: true, characterData: true});
}"""
# Script states the page shows from now on (stApp's data-test-script-state): a run shows "running".
WATCH_STATES = """() => {
  if (window.__stateObs) window.__stateObs.disconnect();
  window.__states = [];
  const app = document.querySelector('[data-testid="stApp"]');
  window.__stateObs = new MutationObserver(() => window.__states.push(app.dataset.testScriptState));
  window.__stateObs.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""
# The live preview's state once it has settled: status and the decoder file's download.
LIVE_STATE = """() => {
  const h = document.querySelector(%s);
  return h && h.capsnetLive && h.dataset.live !== 'loading'
    ? {status: h.capsnetLive.status, load: h.capsnetLive.load, decodes: h.capsnetLive.decodes} : null;
}""" % json.dumps(LIVE)
# Conditions (function bodies taking `arg`).
COND_PREDICTION = "return document.querySelector(%s);" % json.dumps(METRIC)
COND_RECON = "const e = document.querySelectorAll(%s)[1]; return e && e.src !== arg ? e : null;" % json.dumps(
    RECON_IMG
)
COND_ITERATIONS = (
    "if (!document.querySelector(%s)) return false;"
    " return [...document.querySelectorAll('.st-key-overview_stages *')].flatMap(e => e.shadowRoot"
    " ? [...e.shadowRoot.querySelectorAll('figure p.title')] : [])"
    ".some(p => new RegExp('^4 · Routing c_i[0-9]+ · ' + arg + ' iterations?$').test(p.textContent.trim()));"
    % json.dumps(IDLE)
)

# Digit-like strokes as fractions of the canvas (jittered per use).
TEMPLATES = {
    "7": [(0.95, 0.04), (0.55, 0.05), (0.2, 0.06), (0.95, 0.05), (0.7, 0.5), (0.5, 0.95)],
    "1": [(0.55, 0.1), (0.5, 0.5), (0.45, 0.92)],
    "0": [(0.5, 0.1), (0.25, 0.3), (0.25, 0.7), (0.5, 0.92), (0.75, 0.7), (0.75, 0.3), (0.5, 0.1)],
    "L": [(0.3, 0.1), (0.3, 0.9), (0.8, 0.9)],
    "2": [(0.25, 0.25), (0.5, 0.1), (0.75, 0.25), (0.3, 0.85), (0.8, 0.85)],
}


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


# ---------------------------------------------------------------- cores
def split_cores(server_cores: int) -> tuple[set[int], set[int]]:
    """(the server's cores, everyone else's): the first `server_cores` of the cores this process may
    use, and the rest."""
    cores = sorted(os.sched_getaffinity(0))
    if not 0 < server_cores < len(cores):
        raise ValueError(f"--server-cores must be between 1 and {len(cores) - 1} on this machine "
                         f"({len(cores)} cores), not {server_cores}")  # fmt: skip
    return set(cores[:server_cores]), set(cores[server_cores:])


# ---------------------------------------------------------------- the server and its memory
def proc_status_kb(pid: int, field_name: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_seconds(pids) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            pass
    return total / tick


def cpu_by_pid(pids) -> dict[int, float]:
    return {q: cpu_seconds([q]) for q in pids}


def descendants(root: int, exclude: int) -> list[int]:
    """Pids below `root` (this script: the Playwright driver, Chromium and its renderers), leaving
    out `exclude` (the server) and what is below it."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            if c != exclude:
                out.append(c)
                todo.append(c)
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    vals = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals) - idle, sum(vals)


# ---------------------------------------------------------------- expected predictions
def resolve_checkpoint(arg: str | None) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    import capsnet

    path = Path(arg or os.environ.get("CAPSNET_CHECKPOINT") or capsnet.DEFAULT_CHECKPOINT)
    if path.exists():
        return path.resolve(), None
    import torch

    tmp = tempfile.TemporaryDirectory(prefix="capsnet-load-")
    path = Path(tmp.name) / "random.pt"
    torch.manual_seed(0)
    capsnet.save_checkpoint(path, capsnet.CapsNet())
    print(f"(no checkpoint found: random weights in {path})", file=sys.stderr)
    return path, tmp


def expected_predictions(ckpt: Path) -> tuple[list[dict[int, int]], list[int]]:
    """For every shipped sample: {iterations: predicted digit}, and the labels."""
    import numpy as np
    import torch

    import capsnet
    from app import inputs
    from capsnet.preprocess import to_mnist

    model = capsnet.load_model(ckpt)
    samples, labels = inputs.load_samples()
    x = torch.from_numpy(np.stack([to_mnist(s) for s in samples]).astype(np.float32)).reshape(-1, 1, 28, 28)
    out: list[dict[int, int]] = [{} for _ in samples]
    with torch.no_grad():
        for t in range(1, MAX_ITERATIONS + 1):
            pred = model(x, iterations=t).prediction
            for i, p in enumerate(pred.tolist()):
                out[i][t] = int(p)
    return out, [int(v) for v in labels]


def pick_samples(n: int, expected: list[dict[int, int]], rng: random.Random) -> list[int]:
    """n distinct sample indices, spreading their predictions over as many digits as possible."""
    order = list(range(len(expected)))
    rng.shuffle(order)
    picked, seen = [], set()
    for i in order:  # first one per predicted digit, then the rest
        if expected[i][3] not in seen:
            picked.append(i)
            seen.add(expected[i][3])
    picked += [i for i in order if i not in picked]
    return [picked[k % len(picked)] for k in range(n)]


# ---------------------------------------------------------------- one session
@dataclass
class Stats:
    actions: dict[str, int] = field(
        default_factory=lambda: {"draw": 0, "pose": 0, "drag": 0, "iterations": 0}
    )
    lat: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    page_errors: int = 0  # stException / stAlertContentError elements seen after actions
    mismatches: int = 0
    timeouts: int = 0
    drag_messages: int = 0  # WebSocket messages pages sent while a slider was being dragged
    drag_runs: int = 0  # runs pages showed while a slider was being dragged
    live: dict[str, int] = field(default_factory=dict)  # sessions per live-preview status
    weights_bytes: list[int] = field(default_factory=list)  # the decoder file, per session's first page

    def add(self, name: str, seconds: float) -> None:
        self.lat.setdefault(name, []).append(seconds)


class Session:
    def __init__(self, n: int, browser, url: str, args, stats: Stats, rng: random.Random,
                 sample: int | None, expected: dict[int, int] | None, label: int | None):  # fmt: skip
        self.n, self.browser, self.url, self.args, self.stats, self.rng = n, browser, url, args, stats, rng
        self.sample, self.expected, self.label = sample, expected, label
        self.iterations = 3
        self.drawn = False
        self.dragged = False
        self.live_seen = False
        self.sent = 0  # WebSocket messages this page has sent
        self.tmo = args.action_timeout * 1000
        self.page = None
        self.context = None
        self.delay = n * args.ramp / max(1, args.sessions)  # ramp-up: sessions arrive one by one
        self.step = ""

    def error(self, what: str) -> None:
        self.stats.errors.append(f"session {self.n}: {what}"[:300])

    async def idle(self) -> None:
        await asyncio.sleep(0.15)
        await self.page.wait_for_selector(IDLE, timeout=self.tmo)

    async def open(self) -> None:
        await asyncio.sleep(self.delay)
        self.context = await self.browser.new_context(viewport=VIEWPORT)
        self.page = await self.context.new_page()
        self.page.on("websocket", lambda ws: ws.on("framesent", self.count_sent))
        query = "" if self.sample is None else f"/?sample={self.sample}&view=pose"
        t0 = time.perf_counter()
        await self.page.goto(self.url + query, timeout=self.tmo)
        if self.sample is None:
            await self.page.wait_for_selector(CANVAS, timeout=self.tmo)
        else:
            await self.page.wait_for_selector(METRIC, timeout=self.tmo)
        await self.idle()
        self.stats.add("first load (driver)", time.perf_counter() - t0)
        await self.check("open")

    def count_sent(self, _frame) -> None:
        self.sent += 1

    async def new_reconstruction(self, before: str) -> None:
        """Until the server's perturbed reconstruction (the second picture) is a new, loaded image."""
        await self.page.wait_for_function(
            "([sel, old]) => { const e = document.querySelectorAll(sel)[1]; return e && e.src !== old && e.complete; }",
            arg=[RECON_IMG, before], timeout=self.tmo, polling=POLL_MS,
        )  # fmt: skip

    async def live_state(self) -> dict:
        """The live preview's state once it has settled; the first time, count its status and
        the decoder file's download (a drawing session has no pose explorer before its first digit)."""
        self.step = "waiting for the live preview"
        await self.page.wait_for_function(LIVE_STATE, timeout=self.tmo, polling=POLL_MS)
        live = await self.page.evaluate(LIVE_STATE)
        if not self.live_seen:
            self.live_seen = True
            self.stats.live[live["status"]] = self.stats.live.get(live["status"], 0) + 1
            if live["load"]:
                self.stats.add("decoder weights ready (page)", live["load"]["ms"] / 1000)
                self.stats.weights_bytes.append(live["load"]["transferred"])
        return live

    async def watch(self, kind: str, cond: str, arg=None) -> None:
        await self.page.evaluate(WATCH, [kind, cond, arg])

    async def page_latency(self) -> float:
        self.step = "waiting for the painted frame"
        # Poll every 50 ms, not every frame: "raf" polling makes each waiting page render 60 frames
        # a second, which on one 2-core machine costs the app's other sessions more than any app work.
        await self.page.wait_for_function("window.__t1 !== null", timeout=self.tmo, polling=POLL_MS)
        return await self.page.evaluate("(window.__t1 - window.__t0) / 1000")

    # ------------------------------------------------ actions
    async def draw(self) -> None:
        page = self.page
        self.step = "clearing"
        if self.drawn:
            await page.get_by_role("button", name="Clear the canvas", exact=True).click(timeout=self.tmo)
            await page.wait_for_selector(METRIC, state="detached", timeout=self.tmo)
            await page.wait_for_selector(CANVAS, timeout=self.tmo)
            await self.idle()
        name = self.rng.choice(sorted(TEMPLATES))
        dx, dy, s = self.rng.uniform(-0.05, 0.05), self.rng.uniform(-0.03, 0.03), self.rng.uniform(0.85, 1.0)
        pts = [(min(0.97, max(0.03, 0.5 + (x - 0.5) * s + dx)), min(0.97, max(0.03, 0.5 + (y - 0.5) * s + dy)))
               for x, y in TEMPLATES[name]]  # fmt: skip
        self.step = "drawing"
        await self.watch("mouseup", COND_PREDICTION)
        box = await page.locator(CANVAS).first.bounding_box(timeout=self.tmo)
        xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in pts]
        await page.mouse.move(*xy[0])
        await page.mouse.down()
        for x, y in xy[1:]:
            await page.mouse.move(x, y, steps=4)
        await page.mouse.up()
        t0 = time.perf_counter()
        self.step = "waiting for the prediction"
        await page.wait_for_selector(METRIC, timeout=self.tmo)
        self.stats.add("stroke -> prediction (driver)", time.perf_counter() - t0)
        self.stats.add("stroke -> prediction", await self.page_latency())
        await self.idle()
        self.drawn = True
        value = (await page.locator(METRIC).inner_text(timeout=self.tmo)).strip()
        if not value.isdigit():
            self.stats.mismatches += 1
            self.error(f"prediction after drawing is {value!r}, not a digit")

    async def random_pose_slider(self):
        """One of the page's pose sliders, drawn at random (RuntimeError if there is none)."""
        sliders = self.page.locator(POSE_SLIDERS)
        count = await sliders.count()
        if count == 0:
            raise RuntimeError("no pose sliders on the page")
        return sliders.nth(self.rng.randrange(count))

    async def pose(self) -> None:
        page = self.page
        slider = await self.random_pose_slider()
        value = float(await slider.input_value(timeout=self.tmo))
        if value >= POSE_LIMIT - 1e-6:
            key = "ArrowLeft"
        elif value <= -POSE_LIMIT + 1e-6:
            key = "ArrowRight"
        else:
            key = self.rng.choice(["ArrowLeft", "ArrowRight"])
        await slider.focus(timeout=self.tmo)
        before = await page.locator(RECON_IMG).nth(1).get_attribute("src", timeout=self.tmo)
        await self.watch("keydown", COND_RECON, before)
        t0 = time.perf_counter()
        await page.keyboard.press(key)
        self.step = "waiting for the reconstruction"
        await self.new_reconstruction(before)
        self.stats.add("pose key -> reconstruction (driver)", time.perf_counter() - t0)
        self.stats.add("pose key -> reconstruction", await self.page_latency())
        await self.idle()

    async def drag(self) -> None:
        """Drag a pose slider with the mouse from its value to one at least 3 steps away, through
        one end of the range: the page redraws the reconstruction itself, and must neither send a
        message nor run until the button is released. The release is one run: its picture is
        waited for as after a key press."""
        page = self.page
        slider = await self.random_pose_slider()
        await slider.scroll_into_view_if_needed(timeout=self.tmo)
        box = await slider.bounding_box(timeout=self.tmo)
        value = float(await slider.input_value(timeout=self.tmo))
        lim = float(await slider.get_attribute("max", timeout=self.tmo))
        steps = round(lim / POSE_STEP)
        target = self.rng.choice(
            [k * POSE_STEP for k in range(-steps, steps + 1) if abs(k * POSE_STEP - value) > 0.12]
        )
        y = box["y"] + box["height"] / 2

        def x_of(v: float) -> float:  # where the thumb is at value v (near enough: 3 steps apart)
            return box["x"] + box["width"] * (0.5 + 0.5 * v / lim)

        end = lim if target > value else -lim  # overshoot to this end, then come back to the target
        before = await page.locator(RECON_IMG).nth(1).get_attribute("src", timeout=self.tmo)
        live0 = await self.live_state()
        await page.evaluate(WATCH_STATES)
        await self.watch("mouseup", COND_RECON, before)
        self.step = "dragging"
        await page.mouse.move(x_of(value), y)
        sent0 = self.sent
        await page.mouse.down()
        for j in range(1, 9):
            await page.mouse.move(x_of(value + (end - value) * j / 8), y)
        for j in range(1, 5):
            await page.mouse.move(x_of(end + (target - end) * j / 4), y)
        sent = self.sent - sent0
        runs = await page.evaluate("window.__states.filter(s => s === 'running').length")
        live1 = await page.evaluate(LIVE_STATE)
        await page.mouse.up()
        t0 = time.perf_counter()
        if sent or runs:
            self.stats.drag_messages += sent
            self.stats.drag_runs += runs
            self.error(f"drag: {sent} message(s) sent and {runs} run(s) while the mouse button was down")
        if live0["status"] == "ready" and (live1 or {}).get("decodes", 0) <= live0["decodes"]:
            self.stats.mismatches += 1
            self.error("drag: the live preview did not redraw while dragging")
        self.step = "waiting for the reconstruction after the release"
        await self.new_reconstruction(before)
        self.stats.add("drag release -> reconstruction (driver)", time.perf_counter() - t0)
        self.stats.add("drag release -> reconstruction", await self.page_latency())
        await self.idle()
        self.dragged = True

    async def step_iterations(self) -> None:
        page = self.page
        slider = page.locator(ITER_SLIDER)
        if await slider.count() == 0:
            slider = page.get_by_label(re.compile("Routing iterations"))
        if self.iterations >= MAX_ITERATIONS:
            key, new = "ArrowLeft", self.iterations - 1
        elif self.iterations <= 1:
            key, new = "ArrowRight", self.iterations + 1
        else:
            key = self.rng.choice(["ArrowLeft", "ArrowRight"])
            new = self.iterations + (1 if key == "ArrowRight" else -1)
        await slider.first.focus(timeout=self.tmo)
        await self.watch("keydown", COND_ITERATIONS, new)
        t0 = time.perf_counter()
        await page.keyboard.press(key)
        self.iterations = new
        self.step = "waiting for the run"
        await page.wait_for_function(f"() => {{ {COND_ITERATIONS.replace('arg', str(new))} }}",
                                     timeout=self.tmo, polling=100)  # fmt: skip
        self.stats.add("iterations key -> run over (driver)", time.perf_counter() - t0)
        self.stats.add("iterations key -> run over", await self.page_latency())
        await self.idle()

    async def check(self, after: str) -> None:
        """Errors on the page, and (sample sessions) that the page still shows this session's input."""
        page = self.page
        n_err = await page.locator(ERRORS).count()
        if n_err:
            self.stats.page_errors += n_err
            text = await page.locator(ERRORS).first.inner_text(timeout=self.tmo)
            self.error(f"after {after}: {n_err} error element(s): {text.strip()[:200]!r}")
        value = await page.locator(ITER_SLIDER).first.input_value(timeout=self.tmo)
        if value.strip() != str(self.iterations):
            self.stats.mismatches += 1
            self.error(f"after {after}: iteration slider shows {value!r}, this session set {self.iterations}")
        if self.sample is None:
            if await page.locator(".st-key-sample").count():
                self.stats.mismatches += 1
                self.error(f"after {after}: a drawing session shows the sample picker")
            return
        shown = (await page.locator(METRIC).inner_text(timeout=self.tmo)).strip()
        want = str(self.expected[self.iterations])
        if shown != want:
            self.stats.mismatches += 1
            self.error(f"after {after}: sample {self.sample} with {self.iterations} iterations shows "
                       f"prediction {shown!r}, expected {want}")  # fmt: skip
        picker = await page.locator(".st-key-sample input").first.input_value(timeout=self.tmo)
        if f"#{self.sample}: a {self.label}" not in picker:
            self.stats.mismatches += 1
            self.error(f"after {after}: sample picker shows {picker.strip()[:60]!r}, not #{self.sample}")

    def plan(self) -> list[str] | None:
        """The fixed order of actions of --rounds, or None for the timed, random loop."""
        one = ["draw", "iterations", "draw"] if self.sample is None else ["pose", "drag", "iterations"]
        return one * self.args.rounds if self.args.rounds else None

    def next_action(self) -> str:
        if self.sample is None:
            return "draw" if not self.drawn else self.rng.choice(["draw", "draw", "iterations"])
        return "drag" if not self.dragged else self.rng.choice(["pose", "drag", "pose", "iterations"])

    async def loop(self, deadline: float) -> None:
        await asyncio.sleep(self.delay)
        fixed = self.plan()
        while (fixed is None and time.monotonic() < deadline) or fixed:
            kind = fixed.pop(0) if fixed else self.next_action()
            try:
                actions = {
                    "draw": self.draw,
                    "pose": self.pose,
                    "drag": self.drag,
                    "iterations": self.step_iterations,
                }
                await actions[kind]()
                self.stats.actions[kind] += 1
                await self.check(kind)
            except Exception as e:  # a timeout or a missing element: count it, try to recover
                self.stats.timeouts += 1
                self.error(
                    f"{kind} ({self.step}): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                )
                try:
                    await self.idle()
                except Exception:
                    self.error("did not recover: session ends")
                    return
            await asyncio.sleep(self.rng.uniform(self.args.min_pause, self.args.max_pause))

    async def close(self) -> None:
        if self.context is not None:
            try:
                await asyncio.wait_for(self.context.close(), 20)
            except Exception:
                pass


# ---------------------------------------------------------------- the run
async def sample_memory(pid: int, peak: dict, stop: asyncio.Event) -> None:
    while not stop.is_set():
        rss = proc_status_kb(pid, "VmRSS")
        if rss is not None:
            peak["rss_kb"] = max(peak.get("rss_kb", 0), rss)
            peak["samples"] = peak.get("samples", 0) + 1
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass


async def run(
    args, url: str, server_pid: int, plan: list[tuple[int | None, dict | None, int | None]]
) -> dict:
    from playwright.async_api import async_playwright

    stats = Stats()
    peak: dict = {}
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_memory(server_pid, peak, stop))
    result: dict = {}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        # Warm the server (imports, model cache) with one page, as bench_browser.py does.
        warm = await browser.new_page(viewport=VIEWPORT)
        await warm.goto(url, timeout=60_000)
        await warm.wait_for_selector(CANVAS, timeout=60_000)
        await warm.close()

        sessions = [Session(i, browser, url, args, stats, random.Random(args.seed * 1000 + i), *plan[i])
                    for i in range(args.sessions)]  # fmt: skip
        t_open = time.monotonic()
        opened = await asyncio.gather(
            *(asyncio.wait_for(s.open(), args.open_timeout) for s in sessions), return_exceptions=True
        )
        live = []
        for s, r in zip(sessions, opened):
            if isinstance(r, BaseException):
                stats.timeouts += 1
                s.error(f"open: {type(r).__name__}: {str(r).splitlines()[0] if str(r) else ''}")
            else:
                live.append(s)
        result["open_s"] = time.monotonic() - t_open

        client0 = cpu_by_pid(descendants(os.getpid(), server_pid))
        cpu0 = (cpu_seconds([server_pid]), machine_busy(), time.monotonic())
        result["timed_from"] = cpu0[2]
        deadline = time.monotonic() + args.seconds
        hard = (args.seconds if not args.rounds else 0) + (2 + 3 * args.rounds) * args.action_timeout + 30
        tasks = [asyncio.create_task(s.loop(deadline)) for s in live]
        done, pending = await asyncio.wait(tasks, timeout=hard)
        for t, s in zip(tasks, live):
            if t in pending:
                t.cancel()
                stats.timeouts += 1
                s.error("hung past the hard deadline: cancelled")
            elif t.exception() is not None:
                stats.timeouts += 1
                s.error(f"crashed: {t.exception()!r}")
        if pending:
            await asyncio.wait(pending, timeout=10)
        client1 = cpu_by_pid(descendants(os.getpid(), server_pid))
        busy1 = machine_busy()
        both = set(client0) & set(client1)  # renderers live as long as their context
        result["cpu"] = {
            "wall_s": round(time.monotonic() - cpu0[2], 1),
            "server_cpu_s": round(cpu_seconds([server_pid]) - cpu0[0], 1),
            "client_cpu_s": round(sum(client1[q] - client0[q] for q in both), 1),
            "machine_busy_pct": round(100 * (busy1[0] - cpu0[1][0]) / max(1, busy1[1] - cpu0[1][1]), 1),
            "cores": os.cpu_count(),
        }
        await asyncio.gather(*(s.close() for s in sessions))
        try:
            await asyncio.wait_for(browser.close(), 30)
        except Exception:
            pass
    stop.set()
    await sampler
    result.update(stats=stats, peak=peak, live=len(live))
    return result


def report(args, result: dict, vm_hwm_kb: int | None) -> dict:
    stats: Stats = result["stats"]
    errors = stats.page_errors + stats.mismatches + stats.timeouts + stats.drag_messages + stats.drag_runs
    rows = ["first load (driver)", "decoder weights ready (page)"] + [
        name + suffix
        for name in ("stroke -> prediction", "pose key -> reconstruction", "drag release -> reconstruction",
                     "iterations key -> run over")
        for suffix in ("", " (driver)")
    ]  # fmt: skip
    print(
        f"\nload test: {args.sessions} sessions ({result['live']} opened), {args.seconds:.0f} s, "
        f"ramp-up {args.ramp:.0f} s, pauses {args.min_pause}-{args.max_pause} s, seed {args.seed}, "
        f"{f'server on {args.server_cores} core(s) of its own' if args.server_cores else 'all sharing every core'}"
    )
    print(f"{'errors':38s} {errors:5d}   (page errors {stats.page_errors}, isolation mismatches "
          f"{stats.mismatches}, timeouts/hangs {stats.timeouts}, sends/runs while dragging "
          f"{stats.drag_messages}/{stats.drag_runs})")  # fmt: skip
    live = ", ".join(f"{n} {status}" for status, n in sorted(stats.live.items())) or "none"
    weights = statistics.median(stats.weights_bytes) if stats.weights_bytes else 0
    print(f"{'live preview (sessions)':38s} {live}; decoder file {weights / 1e6:.2f} MB per new browser")
    for kind, count in stats.actions.items():
        print(f"{'actions: ' + kind:38s} {count:5d}")
    wall = result.get("cpu", {}).get("wall_s") or args.seconds
    rate = sum(stats.actions.values()) / wall
    print(f"{'actions per second, all sessions':38s} {rate:5.1f}")
    print(f"{'latency':38s} {'n':>5s} {'median':>8s} {'p95':>8s}")
    lat = {}

    def row(name: str, xs: list[float]) -> None:
        if xs:
            lat[name] = {
                "n": len(xs),
                "p50_ms": round(statistics.median(xs) * 1000),
                "p95_ms": round(p95(xs) * 1000),
            }
            print(f"{name:38s} {len(xs):5d} {lat[name]['p50_ms']:6d}ms {lat[name]['p95_ms']:6d}ms")

    for name in rows:
        row(name, stats.lat.get(name, []))
    spans, span_errors = result.get("server_spans", ([], []))
    for kind, name in (("fragment", "slider -> reconstruction (server)"), ("full", "full run (server)")):
        row(name, [r["finished"] - r["request"] for r in spans if r["kind"] == kind])
    fragment_runs = sum(1 for r in spans if r["kind"] == "fragment")
    print(f"{'pose runs on the server':38s} {fragment_runs:5d}   (key presses {stats.actions['pose']} + "
          f"drag releases {stats.actions['drag']}: none while dragging)")  # fmt: skip
    if span_errors or not spans:
        print(f"  (server timings unavailable: {span_errors[0] if span_errors else 'no runs recorded'})")
    peak_rss = result["peak"].get("rss_kb")
    print(f"{'server peak memory VmHWM':38s} {vm_hwm_kb / 1024 if vm_hwm_kb else float('nan'):8.0f} MiB")
    print(f"{'server peak RSS (1 s samples)':38s} {peak_rss / 1024 if peak_rss else float('nan'):8.0f} MiB"
          f"   ({result['peak'].get('samples', 0)} samples)")  # fmt: skip
    cpu = result.get("cpu", {})
    if cpu:
        print(
            f"{'CPU during the timed phase':38s} server {cpu['server_cpu_s']} s, browser {cpu['client_cpu_s']} s "
            f"in {cpu['wall_s']} s wall on {cpu['cores']} cores (machine {cpu['machine_busy_pct']}% busy)"
        )
    for line in stats.errors[:20]:
        print("  !", line)
    if len(stats.errors) > 20:
        print(f"  ! ... and {len(stats.errors) - 20} more")
    return {
        "sessions": args.sessions, "opened": result["live"], "seconds": args.seconds, "ramp": args.ramp,
        "seed": args.seed, "server_cores": args.server_cores, "actions_per_s": round(rate, 2),
        "errors": errors, "page_errors": stats.page_errors, "isolation_mismatches": stats.mismatches,
        "timeouts": stats.timeouts, "actions": stats.actions, "latency": lat,
        "drag_messages": stats.drag_messages, "drag_runs": stats.drag_runs, "fragment_runs": fragment_runs,
        "live": stats.live, "weights_bytes": weights, "no_live": args.no_live,
        "server_vmhwm_mib": round(vm_hwm_kb / 1024, 1) if vm_hwm_kb else None,
        "server_peak_rss_mib": round(peak_rss / 1024, 1) if peak_rss else None,
        "server_timing_errors": span_errors,
        "open_phase_s": round(result.get("open_s", 0.0), 1), "cpu": cpu, "error_messages": stats.errors[:50],
    }  # fmt: skip


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--classroom" in argv:  # N students and a teacher through nginx: tools/classroom_load.py
        from tools import classroom_load

        return classroom_load.main([a for a in argv if a != "--classroom"])
    parser = argparse.ArgumentParser(description="many concurrent browser sessions against one app server")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the timed phase")
    parser.add_argument("--rounds", type=int, default=0,
                        help="instead of --seconds: each session does its actions in a fixed order this many times")  # fmt: skip
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="weights (default: $CAPSNET_CHECKPOINT or the shipped one; random if neither exists)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    parser.add_argument("--action-timeout", type=float, default=60.0, help="seconds one wait may take")
    parser.add_argument(
        "--open-timeout", type=float, default=180.0, help="seconds a session may take to open"
    )
    parser.add_argument(
        "--ramp",
        type=float,
        default=10.0,
        help="session i opens, and starts acting, i * RAMP / sessions seconds late",
    )
    parser.add_argument("--min-pause", type=float, default=0.2)
    parser.add_argument("--max-pause", type=float, default=1.0)
    parser.add_argument(
        "--server-cores",
        type=int,
        default=0,
        metavar="N",
        help="give the server the first N cores and the browsers, Playwright and this "
        "script the others, as if every student's browser ran on their own "
        "machine (default 0: everything shares every core)",
    )
    parser.add_argument(
        "--no-live",
        action="store_true",
        help="serve no static files: pages fall back to the server's pictures (no decoder file), "
        "a baseline for the server's memory",
    )
    args = parser.parse_args(argv)
    if args.sessions < 1:
        parser.error("--sessions must be at least 1")
    server_cpus = client_cpus = None
    if args.server_cores:
        try:
            server_cpus, client_cpus = split_cores(args.server_cores)
        except ValueError as e:
            parser.error(str(e))

    ckpt, tmp = resolve_checkpoint(args.checkpoint)
    expected, labels = expected_predictions(ckpt)
    ks = pick_samples((args.sessions + 1) // 2, expected, random.Random(args.seed))
    plan, j = [], 0
    for i in range(args.sessions):  # even: drawing, odd: its own sample
        if i % 2 == 0:
            plan.append((None, None, None))
        else:
            plan.append((ks[j], expected[ks[j]], labels[ks[j]]))
            j += 1

    # The server times its own share of every run (tools/server_timing.py), hooked in through a
    # sitecustomize.py of its own; the project root is on its path for `from app import ...`.
    timing_dir = tempfile.TemporaryDirectory(prefix="capsnet-timing-")
    env, timing_log = server_timing.hooked_server_env(timing_dir.name, ROOT)
    env["CAPSNET_CHECKPOINT"] = str(ckpt)
    if args.no_live:
        env["STREAMLIT_SERVER_ENABLE_STATIC_SERVING"] = "false"
    proc, url = start_server(env, cpus=server_cpus)
    server_affinity = sorted(os.sched_getaffinity(proc.pid))
    if server_cpus:  # Playwright's driver and Chromium, started later from here, inherit this
        os.sched_setaffinity(0, client_cpus)
    vm_hwm = None
    try:
        hard = args.open_timeout + args.seconds + 2 * args.action_timeout + 180
        result = asyncio.run(asyncio.wait_for(run(args, url, proc.pid, plan), hard))
        vm_hwm = proc_status_kb(proc.pid, "VmHWM")
    finally:
        if vm_hwm is None:
            vm_hwm = proc_status_kb(proc.pid, "VmHWM")
        stop_server(proc)
        if tmp is not None:
            tmp.cleanup()
    result["server_spans"] = server_timing.read_spans(timing_log, since=result.get("timed_from", 0.0))
    timing_dir.cleanup()
    out = report(args, result, vm_hwm)
    out["server_affinity"], out["client_affinity"] = server_affinity, sorted(os.sched_getaffinity(0))
    if args.json:
        print(json.dumps(out))
    return 1 if out["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
