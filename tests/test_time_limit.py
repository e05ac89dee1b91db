"""capsnet.train --time-limit and --init-from, on tiny IDX files read through torchvision.

Time is faked: every training step takes exactly one second of a clock the loop reads instead of
the wall clock, and everything else (evaluations, saves) none. So the planned steps, the lr
schedule and the stop are the same on any machine, however busy.
"""

import json
import math

import pytest
import torch

import capsnet.train as train
from capsnet.checkpoint import read_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
RESERVE_S = 10.0  # what the run keeps back for its end when evaluating costs no (fake) time


@pytest.fixture
def one_second_steps(monkeypatch):
    """Each training step advances the loop's clock by 1 s; nothing else does."""
    now = [1000.0]
    real_call = train.TrainStep.__call__

    def step(self, x, y):
        now[0] += 1.0
        return real_call(self, x, y)

    monkeypatch.setattr(train.TrainStep, "__call__", step)
    monkeypatch.setattr(train.time, "perf_counter", lambda: now[0])
    return now


def run(root, out, *extra) -> dict:
    argv = [
        "--data-root",
        str(root),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--batch-size",
        "8",
        *map(str, extra),
    ]
    assert train.main(argv) == 0
    return json.loads(out.with_suffix(".json").read_text())


def weights(path) -> dict:
    return read_checkpoint(path)["state_dict"]


def test_the_cosine_warms_up_reaches_its_floor_and_stays_continuous_when_replanned():
    plan = train.LrPlan(lr=1e-3, floor=1e-5, warmup=4)
    assert plan.current() == pytest.approx(1e-3 / 4)  # step 1 of 4 of the warm-up
    plan.replan(100)
    lrs = []
    for _ in range(40):
        plan.advance()
        lrs.append(plan.current())
    assert lrs[2] == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * 3 / 100)))
    before = plan.current()
    plan.replan(20)  # the machine slowed down: what is left of the cosine now fits 20 steps
    assert plan.current() == before  # no jump
    for _ in range(20):
        plan.advance()
    assert plan.progress == pytest.approx(1.0) and plan.current() == pytest.approx(1e-5)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))  # only down after the warm-up


def test_a_timed_run_fills_its_time_ends_at_the_floor_and_selects_on_validation(
    tiny_mnist, tmp_path, one_second_steps
):
    out = tmp_path / "net.pt"
    meta = run(tiny_mnist, out, "--time-limit", 1, "--val", 16, "--lr-floor", 1e-5, "--save-every", 0.25)
    # 60 s of one-second steps, less the reserve for the end: 50 steps, 6 epochs of 6 and 2 steps.
    assert meta["steps"] == 60 - RESERVE_S
    steps_per_epoch = (64 - 16) // 8
    assert meta["epochs"] == pytest.approx(50 / steps_per_epoch, abs=1e-3)
    history = meta["history"]
    assert len(history) == 9 and history[-1]["steps"] == 50 - 8 * steps_per_epoch  # stopped mid-epoch
    state = read_checkpoint(train.resume_path(out))
    assert state["plan"]["progress"] == pytest.approx(1.0)  # the cosine ended with the time
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-5)
    assert (state["epoch"], state["step"]) == (8, 2)
    # Selection: OUT holds the epoch with the best validation accuracy, the first of equals.
    best = max(r["val_accuracy"] for r in history)
    chosen = [r for r in history if r.get("chosen")]
    assert chosen[-1]["val_accuracy"] == best == meta["val_accuracy"]
    assert (
        meta["chosen_epoch"]
        == chosen[-1]["epoch"]
        == min(r["epoch"] for r in history if r["val_accuracy"] == best)
    )
    # The test set is scored once, at the end, on the chosen weights; no epoch saw it.
    assert all("test_accuracy" not in r for r in history) and 0 <= meta["test_accuracy"] <= 1
    assert meta["lineage"][-1]["steps"] == 50 and "init_from" not in meta["lineage"][-1]
    assert len(meta["lineage"]) == 1 and meta["total_hours"] == meta["lineage"][0]["hours"]


def test_a_timed_run_resumes_mid_epoch_where_it_stopped(tiny_mnist, tmp_path, one_second_steps):
    out = tmp_path / "net.pt"
    run(tiny_mnist, out, "--time-limit", 0.5)  # 20 steps: epoch 3 stops after 4 of its 8
    first = read_checkpoint(train.resume_path(out))
    assert (first["epoch"], first["step"], first["plan"]["steps"]) == (2, 4, 20)
    meta = run(tiny_mnist, out, "--time-limit", 0.5, "--resume")
    state = read_checkpoint(train.resume_path(out))
    assert state["plan"]["steps"] == 40 and (state["epoch"], state["step"]) == (5, 0)  # 20 more: 4 + 8 + 8
    assert [r["epoch"] for r in meta["history"]] == [1, 2, 3, 3, 4, 5]  # epoch 3 in two parts
    assert meta["history"][3]["train_loss"] == pytest.approx(meta["history"][3]["train_loss"])
    assert len(meta["lineage"]) == 1  # a resume continues the same run


def test_a_resumed_timed_run_feeds_the_images_and_shifts_an_uninterrupted_one_would(
    tiny_mnist, tmp_path, one_second_steps, monkeypatch
):
    fed = []
    real = train.random_shift
    monkeypatch.setattr(train, "random_shift", lambda x, m, g: fed.append(r := real(x, m, g)) or r)
    run(tiny_mnist, tmp_path / "a.pt", "--time-limit", 0.5)  # stops after 20 steps, mid-epoch 3
    run(tiny_mnist, tmp_path / "a.pt", "--time-limit", 0.5, "--resume")
    resumed = list(fed)
    fed.clear()
    run(tiny_mnist, tmp_path / "b.pt", "--time-limit", 1)  # 50 steps, never interrupted
    assert len(resumed) == 40 and len(fed) == 50
    assert all(torch.equal(a, b) for a, b in zip(resumed, fed[:40]))


def test_init_from_starts_from_the_given_weights_with_a_fresh_optimizer_and_keeps_the_lineage(
    tiny_mnist, tmp_path, one_second_steps
):
    first = run(tiny_mnist, tmp_path / "a.pt", "--epochs", 1)
    # lr 0: Adam moves nothing, so the weights written are the weights the run started from.
    meta = run(
        tiny_mnist,
        tmp_path / "b.pt",
        "--init-from",
        tmp_path / "a.pt",
        "--time-limit",
        0.5,
        "--lr",
        0,
        "--lr-floor",
        0,
    )
    a, b = weights(tmp_path / "a.pt"), weights(tmp_path / "b.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    state = read_checkpoint(train.resume_path(tmp_path / "b.pt"))
    assert state["plan"]["steps"] == 20  # its own schedule, from step 0, not a.pt's
    parent, here = meta["lineage"]
    assert parent == first["lineage"][0] and parent["command"] == first["command"] and parent["epochs"] == 1
    assert parent["hours"] == round(first["train_seconds"] / 3600, 3)
    assert here["init_from"].endswith("a.pt") and here["command"] == meta["command"] and here["steps"] == 20
    assert meta["total_hours"] == pytest.approx(parent["hours"] + here["hours"], abs=1e-3)
    # A third run from b keeps the whole lineage, oldest first.
    third = run(tiny_mnist, tmp_path / "c.pt", "--init-from", tmp_path / "b.pt", "--time-limit", 0.25)
    assert [r["command"] for r in third["lineage"]] == [first["command"], meta["command"], third["command"]]


def test_weights_from_before_lineages_count_as_one_run_described_by_their_metadata(
    tiny_mnist, tmp_path, one_second_steps
):
    old = {
        "command": "python -m capsnet.train --epochs 6",
        "epochs": 4,
        "train_seconds": 7200.0,
        "device": "cpu",
    }
    save_checkpoint(tmp_path / "old.pt", train.CapsNet(), old)
    meta = run(tiny_mnist, tmp_path / "new.pt", "--init-from", tmp_path / "old.pt", "--time-limit", 0.25)
    parent = meta["lineage"][0]
    assert parent == {
        "command": old["command"],
        "device": "cpu",
        "epochs": 4,
        "hours": 2.0,
        "source": str(tmp_path / "old.pt"),
    }


def test_init_from_a_bad_file_or_onto_itself_changes_nothing(tiny_mnist, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_text("<!DOCTYPE html>")
    out = tmp_path / "net.pt"
    argv = ["--data-root", str(tiny_mnist), "--device", "cpu", "--out", str(out)]
    assert train.main([*argv, "--init-from", str(bad)]) == 2
    assert "--init-from" in capsys.readouterr().err and not out.exists()
    save_checkpoint(out, train.CapsNet(), {"epochs": 1})
    before = out.read_bytes()
    assert train.main([*argv, "--init-from", str(out), "--overwrite"]) == 2
    assert "overwrite its own start" in capsys.readouterr().err and out.read_bytes() == before
    with pytest.raises(SystemExit):
        train.main([*argv, "--arch", "cnn", "--init-from", str(out)])


def test_a_time_limit_run_resumes_only_as_one(tiny_mnist, tmp_path, capsys, one_second_steps):
    out = tmp_path / "net.pt"
    run(tiny_mnist, out, "--epochs", 1)
    assert (
        train.main(["--data-root", str(tiny_mnist), "--out", str(out), "--resume", "--time-limit", "1"]) == 2
    )
    assert "--time-limit" in capsys.readouterr().err
