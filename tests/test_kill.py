"""A training run killed with SIGKILL, mid-epoch or mid-write, loses nothing it had saved."""

import json
import os
import signal
import subprocess
import sys
import time

import torch

from capsnet import load_model

ENV = {**os.environ, "PYTHONPATH": os.getcwd()}


def train_cmd(data_root, out, *extra):
    return [sys.executable, "-m", "capsnet.train", "--data-root", str(data_root), "--out", str(out),
            "--epochs", "3", "--batch-size", "8", "--device", "cpu", "--threads", "1", *extra]


def start(*args):
    return subprocess.Popen(train_cmd(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)


def wait_for(predicate, proc, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        assert proc.poll() is None, "training ended before the moment to kill it"
        time.sleep(0.002)
    raise AssertionError("timed out waiting for the moment to kill")


def test_sigkill_mid_epoch_and_mid_write_then_resume(tmp_path):
    from mnist_files import make_mnist_root

    data = make_mnist_root(tmp_path / "data", n_train=160, n_test=16)
    out = tmp_path / "run" / "net.pt"
    resume = out.with_name("net.resume.pt")
    meta_path = out.with_suffix(".json")

    # 1. Kill while a checkpoint is being written (a temp file exists beside the target).
    proc = start(data, out)
    wait_for(lambda: any(out.parent.glob(".*.tmp")), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # Whatever was complete is loadable; nothing half-written sits under a real name.
    for path in (out, resume):
        if path.exists():
            load_model(path)
    # 2. Resume (or start) and kill mid-epoch, after epoch 1 is fully saved.
    proc = start(data, out, "--resume" if resume.exists() else "--overwrite")
    wait_for(lambda: meta_path.exists() and json.loads(meta_path.read_text())["epochs"] >= 1
             and resume.exists() and not any(out.parent.glob(".*.tmp")), proc)
    time.sleep(1.0)  # well inside epoch 2 (an epoch of 20 steps takes several seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = json.loads(meta_path.read_text())
    before = load_model(out)
    assert saved["epochs"] >= 1
    # 3. --resume continues from the last saved epoch and finishes the run.
    r = subprocess.run(train_cmd(data, out, "--resume"), capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr
    assert f"resuming after epoch {saved['epochs']}" in r.stderr
    final = json.loads(meta_path.read_text())
    assert final["epochs"] == 3
    assert final["history"][: saved["epochs"]] == saved["history"]
    assert not torch.equal(before.conv1.weight, load_model(out).conv1.weight)
    assert not list(out.parent.glob(".*.tmp"))

