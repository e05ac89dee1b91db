"""Drive the app in a real Chromium: start a server, draw, wait for runs. Used by
tests/app/test_browser.py and tools/bench_browser.py. What it relies on is in the constants below:
Debian's Chromium (never `playwright install`), a run is over when stApp's script state is
notRunning, and strokes are drawn with the mouse on the canvas' upper-canvas layer.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning'][data-test-connection-state='CONNECTED']"
CANVAS = "[data-testid='stBidiComponentIsolated'] canvas.upper-canvas"
METRIC = ".st-key-prediction [data-testid='stMetricValue']"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict | None = None, timeout: float = 60.0, cpus: set[int] | None = None,
                 script: str = "app/streamlit_app.py", cwd: Path = ROOT) -> tuple[subprocess.Popen, str]:  # fmt: skip
    """Start `streamlit run <script>` (relative to `cwd`, by default the app of this checkout) on a
    free port of 127.0.0.1 and wait until it answers its health check; returns the process and its
    URL. `cpus`: the only cores it may use."""
    port = free_port()
    cmd = [
        sys.executable, "-m", "streamlit", "run", script,
        "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]  # fmt: skip
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None  # every thread it starts inherits it
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, preexec_fn=pin,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:  # bounded by the deadline
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                if r.read().strip() == b"ok":
                    return proc, url
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_server(proc)
            raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def serve(env: dict | None = None, timeout: float = 60.0):
    """Run the app server for the duration of a `with` block; yields its URL."""
    proc, url = start_server(env, timeout)
    try:
        yield url
    finally:
        stop_server(proc)


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def view_url(url: str, query: str, view: str) -> str:
    """The page at `url` for the share-link `query` ('?sample=3', '/?sample=3' or '') opened on
    `view` (?view=NAME)."""
    query = query.lstrip("/")
    return f"{url}/{query}{'&' if '?' in query else '?'}view={view}"


def wait_idle(page, timeout: float = 60_000) -> None:
    page.wait_for_timeout(150)
    page.wait_for_selector(IDLE, timeout=timeout)


def open_app(page, url: str, query: str = "") -> None:
    page.goto(url + query)
    page.wait_for_selector(CANVAS, timeout=60_000)
    wait_idle(page)


def clear_canvas(page, timeout: float = 30_000) -> None:
    """Press the page's Clear button; return when the prediction is gone, the canvas is back and
    the run is over."""
    page.get_by_role("button", name="Clear the canvas", exact=True).click()
    page.wait_for_selector(METRIC, state="detached", timeout=timeout)
    page.wait_for_selector(CANVAS, timeout=timeout)
    wait_idle(page)


def stroke(page, points: list[tuple[float, float]]) -> None:
    """One mouse stroke through points given as fractions (0..1) of the canvas' width/height."""
    box = page.locator(CANVAS).first.bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=4)
    page.mouse.up()


def touch_stroke(page, cdp, points: list[tuple[float, float]], steps: int = 5) -> None:
    """One finger stroke, as a tablet sends it, through points given as fractions of the canvas:
    touchStart, touchMoves and touchEnd through the Chrome DevTools Protocol (`cdp`, from
    context.new_cdp_session(page); the context needs has_touch=True)."""
    box = page.locator(CANVAS).first.bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]

    def touch(kind: str, points: list) -> None:
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    touch("touchStart", [{"x": xy[0][0], "y": xy[0][1]}])
    for (x0, y0), (x1, y1) in zip(xy, xy[1:]):
        for k in range(1, steps + 1):
            touch("touchMove", [{"x": x0 + (x1 - x0) * k / steps, "y": y0 + (y1 - y0) * k / steps}])
    touch("touchEnd", [])


# A 7 whose top bar starts in the canvas' top-right corner (inside the 35 px the toolbar covered).
SEVEN = [(0.95, 0.04), (0.55, 0.05), (0.2, 0.06), (0.95, 0.05), (0.7, 0.5), (0.5, 0.95)]


def save_full_page(page, path: Path) -> None:
    """Streamlit scrolls inside its own container: grow the viewport to the content, then shoot."""
    height = page.evaluate(
        '() => Math.max(...[...document.querySelectorAll(\'[data-testid="stMain"], '
        '[data-testid="stAppViewContainer"], section.main\')].map(e => e.scrollHeight), 1000)'
    )
    page.set_viewport_size({"width": page.viewport_size["width"], "height": int(height) + 40})
    page.wait_for_timeout(800)  # plotly re-lays out on resize
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
