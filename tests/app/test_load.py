"""The load script itself, small: 2 concurrent browser sessions, one round of actions each (a
drawing, an iteration change, Clear and another drawing; a pose key, a drag, an iteration change), no errors, and no message
to the server while a pose slider is dragged.

Needs Debian's chromium (the `chromium` fixture in conftest.py says what happens without it).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_two_sessions_no_errors_and_isolated(random_checkpoint, chromium):
    # With two cores or more the server gets one of its own (--server-cores 1), as in the README's run.
    cores = sorted(os.sched_getaffinity(0))
    split = ["--server-cores", "1"] if len(cores) >= 2 else []
    cmd = [sys.executable, "tools/load_test.py", "--sessions", "2", "--rounds", "1", "--json", *split,
           "--checkpoint", str(random_checkpoint), "--action-timeout", "30", "--open-timeout", "40", "--ramp", "0"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=170)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON line (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-2000:]}"
    out = json.loads(lines[-1])
    assert out["errors"] == 0, out["error_messages"]
    assert proc.returncode == 0
    assert out["opened"] == 2
    assert out["actions"] == {"draw": 2, "pose": 1, "drag": 1, "iterations": 2}, out["actions"]
    assert out["latency"]["stroke -> prediction"]["n"] == out["actions"]["draw"]
    assert out["server_vmhwm_mib"] and out["server_peak_rss_mib"]
    # The page in the pose view ran the decoder itself, from a 2.6 MB file, and while a slider was
    # being dragged sent nothing and ran nothing (watched on the page's WebSocket and script state).
    assert out["live"] == {"ready": 1}, out["live"]
    assert out["weights_bytes"] > 2e6
    assert out["drag_messages"] == 0 and out["drag_runs"] == 0
    # The server timed its own share of every run (tools/server_timing.py hooked into Streamlit).
    assert out["server_timing_errors"] == []
    server = out["latency"]["slider -> reconstruction (server)"]
    # One fragment run per key press and per drag release, each timed: none while dragging.
    assert server["n"] == out["fragment_runs"] == 2 and server["p50_ms"] > 0
    # Full runs: both drawings, both iteration changes, and the pages' first runs.
    assert out["latency"]["full run (server)"]["n"] >= 4
    if split:
        assert out["server_affinity"] == cores[:1] and out["client_affinity"] == cores[1:]
