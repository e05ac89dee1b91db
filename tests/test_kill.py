"""A training run killed with SIGKILL, mid-write or mid-epoch, loses nothing it had saved."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from capsnet import load_model
from capsnet.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
EPOCHS = 4


def train_cmd(data_root, out, *extra):
    return [
        sys.executable,
        "-m",
        "capsnet.train",
        "--data-root",
        str(data_root),
        "--out",
        str(out),
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--threads",
        "1",
        *extra,
    ]


def start(log: Path, *args):
    with log.open("w") as stderr:  # the child keeps its own copy of the file
        return subprocess.Popen(train_cmd(*args), stdout=subprocess.DEVNULL, stderr=stderr, env=ENV, cwd=ROOT)


def wait_for(predicate, proc, what, timeout=180):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        assert proc.poll() is None, f"training ended before {what}"
        time.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


def kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def stopped(proc) -> bool:
    return Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("T", "t")


def kill_mid_write(proc, out: Path) -> list[Path]:
    """SIGKILL while a checkpoint is being written: freeze the process as soon as a temp file
    appears and kill it only if the temp file is still there (the write not yet renamed into place);
    otherwise let it go on to the next write. Returns the temp files it left."""
    while True:
        wait_for(lambda: bool(temp_files(out)), proc, "a checkpoint write")
        proc.send_signal(signal.SIGSTOP)
        wait_for(lambda: stopped(proc), proc, "the process to stop", timeout=10)
        left = temp_files(out)
        if left:
            kill(proc)
            return left
        proc.send_signal(signal.SIGCONT)


def saved_state(out: Path) -> dict:
    """Read every file a run keeps under its real names; each must exist and be complete."""
    resume, meta_path = out.with_name(out.stem + ".resume.pt"), out.with_suffix(".json")
    for path in (out, meta_path, resume):
        assert path.exists(), f"{path.name} is gone"
    weights = load_model(out)  # raises CheckpointError for a half-written file
    return {
        "weights": weights.conv1.weight.detach().clone(),
        "out_epochs": json.loads(read_checkpoint(out)["meta"])["epochs"],
        "json_epochs": json.loads(meta_path.read_text())["epochs"],
        "resume_epoch": int(read_checkpoint(resume)["epoch"]),
        "resume_history": read_checkpoint(resume)["history"],
    }


def changed(path: Path, before: os.stat_result) -> bool:
    try:
        now = path.stat()
    except FileNotFoundError:
        return True
    return (now.st_ino, now.st_size, now.st_mtime_ns) != (before.st_ino, before.st_size, before.st_mtime_ns)


def temp_files(out: Path) -> list[Path]:
    """Temp files of the weights and the resume state (what a resumed run clears away)."""
    resume = out.with_name(out.stem + ".resume.pt")
    return sorted([*out.parent.glob(f".{out.name}.*.tmp"), *out.parent.glob(f".{resume.name}.*.tmp")])


def test_sigkill_mid_write_and_mid_epoch_then_resume(tmp_path):
    from mnist_files import make_mnist_root

    data = make_mnist_root(tmp_path / "data", n_train=160, n_test=16)  # 20 steps an epoch
    out = tmp_path / "run" / "net.pt"
    resume = out.with_name("net.resume.pt")
    log = tmp_path / "train.log"

    # 1. Epoch 1 saved in full (the resume state is written last), then a kill while epoch 2's
    #    files are being written: a half-written temp file sits beside the real ones.
    proc = start(log, data, out)
    wait_for(lambda: resume.exists() and not temp_files(out), proc, "epoch 1 to be saved")
    left = kill_mid_write(proc, out)
    assert left and all(p.exists() for p in left)
    after_write_kill = saved_state(out)  # all three files there and complete
    # Written in the order weights, metadata, resume state: each is at the same or an earlier epoch.
    assert (
        2
        >= after_write_kill["out_epochs"]
        >= after_write_kill["json_epochs"]
        >= after_write_kill["resume_epoch"]
        >= 1
    )

    # 2. Resume, and kill the moment the weights file changes: a write is published by renaming a
    #    complete file over the old one, so what is there at that moment is whole (a file copied or
    #    written in place would be caught half-done).
    before = out.stat()
    proc = start(log, data, out, "--resume")
    wait_for(lambda: changed(out, before), proc, "the weights file to be replaced")
    kill(proc)
    after_publish_kill = saved_state(out)
    assert after_publish_kill["out_epochs"] == after_write_kill["resume_epoch"] + 1  # the new epoch's weights
    assert (
        after_publish_kill["out_epochs"]
        >= after_publish_kill["json_epochs"]
        >= after_publish_kill["resume_epoch"]
    )
    assert after_publish_kill["resume_epoch"] >= after_write_kill["resume_epoch"]

    # 3. Resume and kill in the middle of the next epoch (its progress bar has counted some steps).
    saved = after_publish_kill["resume_epoch"]
    proc = start(log, data, out, "--resume")
    in_epoch = re.compile(rf"epoch {saved + 1}/{EPOCHS}:[^\r\n]*\|\s*([1-9]|1[0-5])/20\b")
    wait_for(
        lambda: in_epoch.search(log.read_text(errors="replace")) is not None,
        proc,
        f"steps of epoch {saved + 1}",
    )
    kill(proc)
    text = log.read_text(errors="replace")
    assert f"resuming after epoch {saved} of {EPOCHS}" in text
    assert f"epoch {saved + 1}: loss" not in text  # killed before the epoch ended
    after_epoch_kill = saved_state(out)
    assert after_epoch_kill["resume_epoch"] == saved
    assert after_epoch_kill["json_epochs"] == after_publish_kill["json_epochs"]
    assert torch.equal(after_epoch_kill["weights"], after_publish_kill["weights"])  # nothing was written
    assert not [p.name for p in left if p.exists()], "stale temp files not removed by the resumed runs"
    assert not temp_files(out)

    # 4. --resume continues from the last saved resume state and finishes the run.
    r = subprocess.run(
        train_cmd(data, out, "--resume"), capture_output=True, text=True, timeout=300, env=ENV, cwd=ROOT
    )
    assert r.returncode == 0, r.stderr
    assert f"resuming after epoch {saved} of {EPOCHS}" in r.stderr
    final = json.loads(out.with_suffix(".json").read_text())
    assert final["epochs"] == EPOCHS and len(final["history"]) == EPOCHS
    assert final["history"][:saved] == after_epoch_kill["resume_history"]
    assert read_checkpoint(resume)["epoch"] == EPOCHS
    assert not temp_files(out)

    # 5. Nothing was lost: the same run never interrupted ends with the very same weights and history
    #    (training is seeded per epoch, and the resume state holds the optimizer and lr schedule).
    reference = tmp_path / "reference" / "net.pt"
    r = subprocess.run(
        train_cmd(data, reference), capture_output=True, text=True, timeout=300, env=ENV, cwd=ROOT
    )
    assert r.returncode == 0, r.stderr
    resumed, uninterrupted = load_model(out).state_dict(), load_model(reference).state_dict()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)
    same = ("epoch", "train_loss", "train_accuracy", "test_accuracy", "lr")
    expected = json.loads(reference.with_suffix(".json").read_text())["history"]
    assert [{k: e[k] for k in same} for e in final["history"]] == [{k: e[k] for k in same} for e in expected]
