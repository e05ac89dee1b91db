"""tools/gpu_plan.py (the GPU plan of issue 20) and tools/gpu_collect.py: their decisions one by one,
the files that come back, the watchdog, and the whole plan rehearsed on the CPU on tiny IDX files,
then collected."""

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

from tools import gpu_collect as collect  # noqa: E402 (tools/ is found from the repository root)
from tools import gpu_plan as plan  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Decisions


@pytest.mark.parametrize("epochs", [2, 10, 50])
def test_lr_decay_brings_the_last_epoch_to_the_final_factor(epochs):
    decay = plan.lr_decay_for(epochs, 0.01)
    assert decay**(epochs - 1) == pytest.approx(0.01)  # epoch e (from 0) trains at lr x decay**e  # fmt: skip
    assert plan.lr_decay_for(1, 0.01) == 1.0
    assert plan.lr_decay_for(50, 0.01) == pytest.approx(0.9103, abs=1e-4)  # CapsNet-Keras: 0.9


def test_epochs_that_fit_the_window_after_start_up_with_margin():
    assert plan.epochs_that_fit(100, 10, 3.0, max_epochs=50) == 27  # floor(90 / 3.3)
    assert plan.epochs_that_fit(100, 10, 3.0, max_epochs=20) == 20
    assert plan.epochs_that_fit(100, 10, 3.0, max_epochs=50, safety=1.0) == 30
    assert plan.epochs_that_fit(5, 10, 3.0, max_epochs=50) == 0
    assert plan.epoch_seconds(55_000, 25_000, 0.8) == pytest.approx(3.0)


def test_three_seeds_only_when_they_add_throughput_and_keep_enough_epochs():
    assert plan.choose_seeds("auto", 1.5, 50, 40, 1.1, 30)[0] == 3
    n, why = plan.choose_seeds("auto", 1.05, 50, 40, 1.1, 30)
    assert n == 1 and "1.05x" in why and "50 epochs" in why
    n, why = plan.choose_seeds("auto", 1.5, 50, 20, 1.1, 30)
    assert n == 1 and "only 20" in why
    assert plan.choose_seeds("auto", None, 50, 40, 1.1, 30)[0] == 1
    assert plan.choose_seeds("3", 0.5, 50, 1, 1.1, 30) == (3, "forced by PLAN_SEEDS=3")
    assert plan.choose_seeds("1", 9.0, 50, 50, 1.1, 30)[0] == 1


def test_the_shipped_seed_is_the_median_by_validation_never_by_test():
    runs = [
        {"seed": 0, "val_accuracy": 0.9960, "test_accuracy": 0.9950},
        {"seed": 1, "val_accuracy": 0.9970, "test_accuracy": 0.9990},  # best test, best val
        {"seed": 2, "val_accuracy": 0.9964, "test_accuracy": 0.9940},  # worst test, median val
    ]
    chosen, why = plan.median_by_validation(runs)
    assert chosen["seed"] == 2 and "median by validation" in why and "test accuracy not used" in why
    tie = [{"seed": s, "val_accuracy": 0.99, "test_accuracy": t} for s, t in ((2, 0.5), (0, 0.9), (1, 0.1))]
    assert plan.median_by_validation(tie)[0]["seed"] == 1  # equal validation: by seed
    assert plan.median_by_validation(runs[:2])[0]["seed"] == 0  # two: the lower one
    assert plan.median_by_validation(runs[1:2])[0]["seed"] == 1
    with pytest.raises(ValueError):
        plan.median_by_validation([])
    stats = plan.mean_std([0.997, 0.996, 0.998])
    assert stats["mean"] == pytest.approx(0.997) and stats["std"] == pytest.approx(0.001)
    assert plan.mean_std([0.99])["std"] is None


def test_the_plan_chooses_seeds_and_epochs_from_the_probe_and_the_time_left(
    tiny_mnist, tmp_path, monkeypatch
):
    """The glue: probe figures + the clock -> seeds, epochs, decay (64 tiny training digits, 16 held out)."""
    for k, v in {"OUT": str(tmp_path / "out"), "PLAN_DATA_ROOT": str(tiny_mnist), "PLAN_VAL": "16",
                 "PLAN_BATCH": "8", "PLAN_MAX_STEPS": "0", "PLAN_T0": str(time.time())}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("PLAN_TINY", raising=False)

    def planned(seconds, gain):
        monkeypatch.setenv("PLAN_SECONDS", str(seconds))
        p = plan.Plan(plan.Config.from_env())
        p.S["concurrency"] = {"images_per_second_one": 48.0, "gain": gain, "eval_seconds": 0.6,
                              "save_seconds": 0.4, "startup_seconds": 10.0}  # fmt: skip
        return p.plan_capsnet()

    # 48 images per epoch: 1 s alone + 1 s of evaluation and writes; 3 together at 1.5x: 2 s + 1.5 s.
    fast = planned(540, 1.5)
    assert fast["seeds"] == [0, 1, 2] and fast["epochs"] == 50  # the cap
    assert fast["lr_decay"] == pytest.approx(0.01 ** (1 / 49), abs=1e-6)
    assert fast["estimated_seconds_per_epoch"] == {"one": 2.0, "together": 3.5}
    assert planned(540, 1.0)["seeds"] == [0]  # no throughput gained: one seed
    short = planned(200, 1.5)  # window 200 - 25 - 45 = 130 s: 3 seeds would get 29 < 30 epochs
    assert short["seeds"] == [0] and short["epochs"] == 50 and short["epochs_that_fit"]["together"] == 29
    tight = planned(121, 1.5)  # window 51 s: (51 - 17) / 2.2 = 15.5 -> 15 epochs for one seed
    assert tight["seeds"] == [0] and tight["epochs"] == 15
    assert tight["lr_decay"] == pytest.approx(0.01 ** (1 / 14), abs=1e-6)


# ---------------------------------------------------------------------------------------------
# What comes back


def test_split_and_join_round_trip(tmp_path):
    src = tmp_path / "w.pt"
    data = os.urandom(2500)
    src.write_bytes(data)
    entry = plan.split_file(src, tmp_path / "out", piece_bytes=1000)
    assert [p["file"] for p in entry["pieces"]] == ["w.pt.000", "w.pt.001", "w.pt.002"]
    assert [p["bytes"] for p in entry["pieces"]] == [1000, 1000, 500]
    assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == 2500
    joined = plan.join_pieces(entry, tmp_path / "out", tmp_path / "back" / "w.pt")
    assert joined.read_bytes() == data
    exact = tmp_path / "exact.pt"
    exact.write_bytes(data[:2000])
    assert [p["bytes"] for p in plan.split_file(exact, tmp_path / "o2", 1000)["pieces"]] == [1000, 1000]
    one = tmp_path / "one.pt"
    one.write_bytes(data[:1000])
    assert [p["file"] for p in plan.split_file(one, tmp_path / "o3", 1000)["pieces"]] == ["one.pt.000"]
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    entry = plan.split_file(empty, tmp_path / "o4", 1000)
    assert [p["bytes"] for p in entry["pieces"]] == [0]
    assert plan.join_pieces(entry, tmp_path / "o4", tmp_path / "back" / "empty.pt").read_bytes() == b""


def test_join_refuses_a_damaged_or_missing_piece_and_writes_nothing(tmp_path):
    src = tmp_path / "w.pt"
    src.write_bytes(os.urandom(2500))
    entry = plan.split_file(src, tmp_path / "out", piece_bytes=1000)
    piece = tmp_path / "out" / "w.pt.001"
    good = piece.read_bytes()
    piece.write_bytes(good[:500] + bytes([good[500] ^ 1]) + good[501:])
    dest = tmp_path / "back" / "w.pt"
    with pytest.raises(
        plan.IntegrityError, match=r"w\.pt\.001: piece of w\.pt is damaged.*nothing was installed"
    ):
        plan.join_pieces(entry, tmp_path / "out", dest)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    piece.unlink()
    with pytest.raises(plan.IntegrityError, match=r"piece w\.pt\.001 of w\.pt is missing"):
        plan.join_pieces(entry, tmp_path / "out", dest)


def test_sums_catch_a_damaged_file(tmp_path):
    for name, text in (("a.txt", "a"), ("b.json", "{}")):
        (tmp_path / name).write_text(text)
    plan.write_sums(tmp_path, ["a.txt", "b.json"])
    assert (
        subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True).returncode == 0
    )
    assert plan.verify_sums(tmp_path) == ["a.txt", "b.json"]
    (tmp_path / "b.json").write_text("{ }")
    with pytest.raises(plan.IntegrityError, match=r"b\.json: sha256 .* does not match SHA256SUMS"):
        plan.verify_sums(tmp_path)
    (tmp_path / "a.txt").unlink()
    with pytest.raises(plan.IntegrityError, match=r"a\.txt is listed in SHA256SUMS but missing"):
        plan.verify_sums(tmp_path)


def test_out_problems_name_every_limit_of_the_device_tool(tmp_path):
    assert plan.out_problems(tmp_path) == []
    for k in range(8):
        (tmp_path / f"f{k}").write_bytes(b"x")
    assert plan.out_problems(tmp_path) == []
    (tmp_path / "f8").write_bytes(b"x")
    assert plan.out_problems(tmp_path) == ["9 files, over 8"]
    for k in range(9):
        (tmp_path / f"f{k}").unlink()
    with open(tmp_path / "big", "wb") as f:
        f.truncate(16 * 2**20 + 1)  # sparse: no 16 MiB written
    (tmp_path / "a b").write_bytes(b"x")
    (tmp_path / "d1" / "d2" / "d3").mkdir(parents=True)
    (tmp_path / "d1" / "d2" / "ok").write_bytes(b"x")
    (tmp_path / "d1" / "d2" / "d3" / "deep").write_bytes(b"x")
    problems = plan.out_problems(tmp_path)
    assert any(p.startswith("big: 16,777,217 bytes") for p in problems)
    assert any(p.startswith("a b: names may hold only") for p in problems)
    assert any(p.startswith("d1/d2/d3/deep: more than 2 folders down") for p in problems)
    assert not any(p.startswith("d1/d2/ok") for p in problems)


def test_archive_holds_json_and_logs_only_and_keeps_a_long_logs_end(tmp_path):
    run = tmp_path / "run"
    (run / "s0").mkdir(parents=True)
    (run / "s0" / "capsnet_mnist.json").write_text("{}")
    (run / "s0" / "capsnet_mnist.pt").write_bytes(b"weights")
    (run / "s0" / "train.log").write_text("a" * 100 + "THE END")
    (run / "s0" / ".x.json.tmp").write_text("{}")
    (run / "s0" / ".hidden.json").write_text("{}")
    (run / ".gpu_plan_run").write_text("")
    members = plan.make_archive(run, tmp_path / "a.tar.gz", cap=50)
    assert members == ["s0/capsnet_mnist.json", "s0/train.log"]
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        log = tar.extractfile("s0/train.log").read()
    assert len(log) == 50 and log.endswith(b"THE END")


def test_md5_check_reads_archives_or_unpacked_files(tmp_path):
    import lzma

    (tmp_path / "a-ubyte").write_bytes(b"abc")
    with gzip.open(tmp_path / "b-ubyte.gz", "wb") as f:
        f.write(b"xyz")
    with lzma.open(tmp_path / "x-ubyte.xz", "wb") as f:
        f.write(b"uvw")
    table = {"a-ubyte": hashlib.md5(b"abc").hexdigest(), "b-ubyte": hashlib.md5(b"xyz").hexdigest(),
             "x-ubyte": hashlib.md5(b"uvw").hexdigest()}  # fmt: skip
    assert plan.md5_problems(tmp_path, table) == []
    del table["x-ubyte"]
    table["b-ubyte"] = "0" * 32
    assert plan.md5_problems(tmp_path, table) == [
        f"b-ubyte: md5 {hashlib.md5(b'xyz').hexdigest()}, expected {'0' * 32}"
    ]
    assert plan.md5_problems(tmp_path, {"c-ubyte": "0" * 32})[0].startswith("c-ubyte: cannot be read")
    readme = tmp_path / "README.md"
    readme.write_text("| file | bytes | md5 |\n| train-images-idx3-ubyte | 47,040,016 | " + "f" * 32 + " |\n")
    assert plan.mnist_md5_table(readme)["train-images-idx3-ubyte"] == "f" * 32
    assert plan.mnist_md5_table(tmp_path / "none.md") == plan.MNIST_MD5


def test_unpack_raw_unpacks_xz_and_gz_and_names_what_is_missing(tmp_path):
    import lzma

    names = list(plan.MNIST_MD5)
    with lzma.open(tmp_path / f"{names[0]}.xz", "wb") as f:
        f.write(b"xz")
    with gzip.open(tmp_path / f"{names[1]}.gz", "wb") as f:
        f.write(b"gz")
    (tmp_path / names[2]).write_bytes(b"raw")
    assert plan.unpack_raw(tmp_path) == [names[3]]
    assert [(tmp_path / n).read_bytes() for n in names[:3]] == [b"xz", b"gz", b"raw"]
    assert not list(tmp_path.glob("*.part"))


# ---------------------------------------------------------------------------------------------
# The watchdog, and the metadata of a killed run

FAKE_TRAINER = r"""
import json, os, sys, time
out = sys.argv[1]
for epoch in range(1, int(sys.argv[2]) + 1):
    time.sleep(0.3)
    with open(out + ".tmp", "w") as f:
        f.write(json.dumps({"epochs": epoch}))
    os.replace(out + ".tmp", out)
"""


def test_stop_reason_stops_at_the_deadline_or_when_the_next_epoch_cannot_end_by_it():
    done = [(100.0, 1), (103.0, 2), (106.0, 3)]  # 3 s per epoch
    assert plan.stop_reason(done, 10, now=106.5, deadline=108.0).startswith("the next epoch (3.0 s)")
    assert "stopped after epoch 3" in plan.stop_reason(done, 10, now=106.5, deadline=108.0)
    assert plan.stop_reason(done, 10, now=106.5, deadline=109.5) is None  # 106 + 3 <= 109.5: it fits
    assert plan.stop_reason(done, 3, now=106.5, deadline=108.0) is None  # all planned epochs done
    assert plan.stop_reason(done[:1], 10, now=106.5, deadline=108.0) is None  # no epoch time yet
    assert plan.stop_reason(done[:1], 10, now=108.0, deadline=108.0) == "deadline of the training window"
    assert plan.stop_reason(done, 3, now=109.0, deadline=108.0) == "deadline of the training window"


def test_watchdog_stops_runs_in_time_and_lets_a_short_one_finish(tmp_path):
    def fake(name, epochs):
        out = tmp_path / name / "net.pt"
        out.parent.mkdir()
        cmd = [sys.executable, "-c", FAKE_TRAINER, str(out.with_suffix(".json")), str(epochs)]
        return plan.Watched(plan.Proc(name, cmd, tmp_path / f"{name}.log"), out, planned=epochs)

    endless, short = fake("endless", 1000), fake("short", 2)
    silent = plan.Watched(plan.Proc("silent", [sys.executable, "-c", "import time; time.sleep(60)"],
                                    tmp_path / "silent.log"), tmp_path / "silent.pt", planned=5)  # fmt: skip
    deadline = time.time() + 2.5
    plan.watch([endless, short, silent], deadline, poll=0.05)
    assert time.time() < deadline + 0.5
    assert endless.proc.killed and not endless.proc.alive() and endless.proc.rc != 0
    assert 3 <= endless.done[-1][1] <= 8  # epochs every ~0.3 s for under 2.5 s
    assert plan.epoch_interval(endless.done) == pytest.approx(0.3, abs=0.25)
    assert short.proc.killed is None and short.proc.rc == 0 and short.done[-1][1] == 2
    # Never finished an epoch (a hung compile, say): only the deadline stops it, and does.
    assert silent.proc.killed == "deadline of the training window" and silent.done == []
    assert deadline <= silent.proc.ended < deadline + 0.5


def test_fix_meta_rewrites_a_json_left_one_epoch_behind(tmp_path):
    out = tmp_path / "net.pt"
    inner = {"epochs": 3, "test_accuracy": 0.5, "seed": 0}
    torch.save({"format": "capsnet-v1", "state_dict": {}, "meta": json.dumps(inner)}, out)
    out.with_suffix(".json").write_text(json.dumps({"epochs": 2, "test_accuracy": 0.4, "seed": 0}))
    assert "said epoch 2" in plan.fix_meta(out)
    assert json.loads(out.with_suffix(".json").read_text()) == inner
    assert plan.fix_meta(out) is None  # now consistent
    assert plan.fix_meta(tmp_path / "absent.pt") is None


def test_collect_refuses_a_json_of_another_epoch_and_archive_members_outside_the_folder(tmp_path):
    weights = tmp_path / "capsnet_mnist.pt"
    torch.save(
        {"state_dict": {}, "meta": json.dumps({"epochs": 5, "test_accuracy": 0.99, "seed": 1})}, weights
    )
    collect.check_json(weights, {"epochs": 5, "test_accuracy": 0.99, "seed": 1, "iteration_accuracy": {}})
    with pytest.raises(
        plan.IntegrityError, match=r"its JSON says epochs=4, the weights' own metadata epochs=5"
    ):
        collect.check_json(weights, {"epochs": 4, "test_accuracy": 0.99, "seed": 1})
    with pytest.raises(plan.IntegrityError, match="seed"):
        collect.check_json(weights, {"epochs": 5, "test_accuracy": 0.99, "seed": 0})
    for bad in ("../escape.json", "/abs.json"):
        archive = tmp_path / "a.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            info = tarfile.TarInfo(bad)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
        with pytest.raises(plan.IntegrityError, match="refused"):
            collect.safe_extract(archive, tmp_path / "runs")
    assert not (tmp_path / "escape.json").exists()


# ---------------------------------------------------------------------------------------------
# The whole plan, rehearsed on the CPU (what the GPU machine will run, with tiny settings)


def _tiny_gz_data(root: Path) -> Path:
    from mnist_files import make_mnist_root

    make_mnist_root(root)
    for path in (root / "MNIST" / "raw").iterdir():  # carried as .gz, like .data: the plan unpacks them
        with open(path, "rb") as src, gzip.open(f"{path}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        path.unlink()
    return root


@pytest.mark.slow
def test_tiny_plan_end_to_end_then_collect(tmp_path):
    data, out, run = _tiny_gz_data(tmp_path / "data"), tmp_path / "out", tmp_path / "run"
    env = {**os.environ, "OUT": str(out), "PLAN_TINY": "1", "PLAN_DATA_ROOT": str(data), "PLAN_RUN_DIR": str(run),
           "PLAN_SEEDS": "3", "PYTHON": sys.executable}  # fmt: skip
    for k in ("PLAN_SECONDS", "PLAN_SKIP", "PLAN_T0"):
        env.pop(k, None)
    t = time.time()
    res = subprocess.run(
        ["bash", str(ROOT / "tools" / "gpu_plan.sh")], env=env, capture_output=True, text=True, timeout=400
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "GPU plan:" in res.stdout and "shipped  seed" in res.stdout

    # $OUT: what the device tool brings back
    names = sorted(p.name for p in out.iterdir())
    assert names == ["SHA256SUMS", "capsnet_mnist.pt.000", "capsnet_mnist.pt.001", "capsnet_mnist.pt.002",
                     "cnn_mnist.pt.000", "cnn_mnist.pt.001", "gpu_runs.tar.gz", "summary.json"]  # fmt: skip
    assert plan.out_problems(out) == []
    assert plan.verify_sums(out) == [n for n in names if n != "SHA256SUMS"]

    s = json.loads((out / "summary.json").read_text())
    assert s["errors"] == [] and s["skipped"] == [] and s["out_problems"] == []
    assert (
        s["plan"]["tiny"] and s["plan"]["final"] and 0 < s["plan"]["elapsed_seconds"] <= time.time() - t + 5
    )
    assert s["machine"]["torch"] == torch.__version__ and s["machine"]["device_name"] == "cpu"
    b = s["bench"]
    assert b["ratio"] == pytest.approx(b["ours_images_per_second"] / b["usual_images_per_second"], abs=0.01)
    assert b["ours_times_floor"] > 0 and b["target_ratio_at_least_5"] == (b["ratio"] >= 5)
    c = s["concurrency"]
    assert c["processes"] == 3 and c["gain"] == pytest.approx(
        c["images_per_second_together"] / c["images_per_second_one"], rel=1e-2
    )
    p = s["capsnet_plan"]
    assert p["seeds"] == [0, 1, 2] and p["epochs"] == 2 and p["lr_decay"] == pytest.approx(0.01)
    assert p["seeds_why"] == "forced by PLAN_SEEDS=3" and p["images_per_epoch"] == 16

    seeds = s["seeds"]
    assert [r["seed"] for r in seeds] == [0, 1, 2]
    for r in seeds:
        assert r["epochs"] == 2 and r["rc"] == 0 and r["stopped"] is None
        assert (
            set(r["iteration_accuracy"]) == {"1", "2", "3", "4", "5"}
            and r["routing_stats"]["iterations"] == 3
        )
        assert r["test_accuracy_evaluate"] == pytest.approx(r["test_accuracy"])
    chosen, _ = plan.median_by_validation(seeds)
    assert s["shipped"]["seed"] == chosen["seed"] and s["shipped"]["dir"] == f"s{chosen['seed']}"
    tests = [r["test_accuracy_evaluate"] for r in seeds]
    assert s["test_accuracy_over_seeds"]["values"] == tests
    assert s["test_accuracy_over_seeds"]["mean"] == pytest.approx(sum(tests) / 3, abs=1e-6)
    assert s["shipped"]["target_99_70_met"] is False  # tiny data: far from it

    w = s["weights"]["capsnet_mnist.pt"]
    assert w["source"] == f"s{chosen['seed']}/capsnet_mnist.pt" and w["bytes"] > 32_000_000
    assert w["sha256"] == plan.sha256_file(run / w["source"])
    assert all(piece["bytes"] <= plan.PIECE_BYTES for piece in w["pieces"])
    assert s["cnn"]["epochs"] == 2 and s["cnn"]["parameters"] == 4_587_282
    assert s["cnn_unpooled"]["epochs"] == 1 and s["cnn_unpooled"]["parameters"] == 35_445_522
    assert "cnn_unpooled_mnist.pt" not in s["weights"]  # 142 MB: numbers only
    r = s["robustness"]
    assert set(r) == {"robustness", "robustness_unpooled"}
    assert r["robustness"]["capsnet"]["clean_equals_checkpoint_json"] is True
    with tarfile.open(out / "gpu_runs.tar.gz") as tar:
        members = set(tar.getnames())
    assert {"bench.json", "plan.log", "probe/probe2.json", "s0/train.log", "s2/evaluate.json", "ship/capsnet_mnist.json",
            "ship/cnn_mnist.json", "ship/robustness.json", "cnn_unpooled/cnn_unpooled_mnist.json",
            "robustness_unpooled.json", "summary.json"} <= members  # fmt: skip
    assert not any(m.endswith(".pt") for m in members)

    # Collect: verify, join, unpack, install into a temporary checkpoints folder.
    runs, dest = tmp_path / "collected" / "runs", tmp_path / "collected" / "checkpoints"
    rc = collect.main([str(out), "--runs", str(runs), "--dest", str(dest)])
    assert rc == 0
    assert sorted(p.name for p in dest.iterdir()) == ["capsnet_mnist.json", "capsnet_mnist.pt", "cnn_mnist.json",
                                                       "cnn_mnist.pt", "robustness.json"]  # fmt: skip
    assert plan.sha256_file(dest / "capsnet_mnist.pt") == w["sha256"]
    from capsnet import load_model
    from capsnet.baseline import load_baseline

    load_model(dest / "capsnet_mnist.pt")
    assert load_baseline(dest / "cnn_mnist.pt").pooled
    meta = json.loads((dest / "capsnet_mnist.json").read_text())
    assert meta["seed"] == chosen["seed"] and meta["val_images"] == 16 and "iteration_accuracy" in meta
    assert "routing_stats_command" in meta
    rob = json.loads((dest / "robustness.json").read_text())
    assert rob["models"]["capsnet"]["checkpoint"] == str((dest / "capsnet_mnist.pt").resolve())
    assert str(dest / "cnn_mnist.pt") in rob["command"] and "machine" in rob and "date" in rob
    assert (runs / "s1" / "train.log").is_file()

    assert not any("no baseline CNN" in line for line in collect.collect(out, runs, dest, True)["warnings"])

    # Had the CNN not come back (step 3 out of time), collect says what that breaks.
    alone = tmp_path / "capsnet_only"
    shutil.copytree(out, alone)
    summary = json.loads((alone / "summary.json").read_text())
    del summary["weights"]["cnn_mnist.pt"]
    (alone / "summary.json").chmod(0o644)
    (alone / "summary.json").write_text(json.dumps(summary))
    (alone / "SHA256SUMS").chmod(0o644)
    plan.write_sums(alone, [line.split()[1] for line in (out / "SHA256SUMS").read_text().splitlines()])
    warnings = collect.collect(alone, tmp_path / "runs2", tmp_path / "dest2", True)["warnings"]
    assert any("no baseline CNN came back" in w and "test_checkpoint.py" in w for w in warnings), warnings

    # A damaged piece: refused with a clear message, nothing installed over the good files.
    before = plan.sha256_file(dest / "capsnet_mnist.pt")
    piece = out / "capsnet_mnist.pt.001"
    piece.chmod(0o644)
    data = bytearray(piece.read_bytes())
    data[12345] ^= 0xFF
    piece.write_bytes(bytes(data))
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_collect.py"), str(out), "--runs", str(runs),
                          "--dest", str(dest)], capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert res.returncode == 2
    assert "capsnet_mnist.pt.001: sha256" in res.stderr and "does not match SHA256SUMS" in res.stderr
    assert plan.sha256_file(dest / "capsnet_mnist.pt") == before
    assert not list(dest.glob(".gpu_collect.*"))


def test_the_follow_ups_collect_prints_bring_the_atlas_and_robustness_up_to_the_new_weights(
    tmp_path, tiny_mnist
):
    """What gpu_collect tells the next session to run, run as printed (tiny MNIST in place of the
    real one): the atlas then matches the new weights' sha256, robustness.json measures them."""
    import shlex

    from capsnet import CapsNet, save_checkpoint
    from capsnet.atlas import file_sha256, load_atlas
    from capsnet.baseline import BaselineCNN, save_baseline

    dest = tmp_path / "checkpoints"
    dest.mkdir()
    torch.manual_seed(0)
    save_checkpoint(dest / "capsnet_mnist.pt", CapsNet())
    save_baseline(dest / "cnn_mnist.pt", BaselineCNN(pooled=True))
    # The plan brought the CapsNet only: the atlas, robustness here, the samples, then the tests.
    samples = tmp_path / "app" / "samples.npz"
    commands = collect.follow_ups([str(dest / "capsnet_mnist.pt"), str(dest / "capsnet_mnist.json")], dest,
                                  data_root=str(tiny_mnist), samples=samples)  # fmt: skip
    assert [c.split()[:3] for c in commands] == [["python", "-m", "capsnet.atlas"],
                                                 ["python", "-m", "capsnet.robustness"],
                                                 ["python", os.path.relpath(ROOT / "tools" / "make_samples.py"),
                                                  "--data-root"],
                                                 ["CI=true", "python", "-m"]]  # fmt: skip
    # The samples need 4 digits of each class (more than tiny MNIST has; tests/test_make_samples.py
    # runs the tool on real MNIST): here, that the command names these weights and that file.
    argv = shlex.split(commands[2])
    assert Path(argv[argv.index("--checkpoint") + 1]).resolve() == (dest / "capsnet_mnist.pt").resolve()
    assert Path(argv[argv.index("--out") + 1]).resolve() == samples.resolve()
    for command in commands[:2]:
        argv = [sys.executable, *shlex.split(command)[1:]]
        # A command that leaned on the default checkpoint would find none (and write nothing beside
        # the shipped weights): every path must be in the command.
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CAPSNET_CHECKPOINT": str(tmp_path / "no-default.pt")}
        res = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=os.getcwd(), env=env)
        assert res.returncode == 0, (command, res.stderr[-2000:])
    atlas = load_atlas(dest / "pose_atlas.json", dest / "capsnet_mnist.pt")
    assert atlas["checkpoint_sha256"] == file_sha256(dest / "capsnet_mnist.pt")
    rob = json.loads((dest / "robustness.json").read_text())
    from capsnet.data import load_mnist

    test_digits = len(load_mnist(str(tiny_mnist), train=False, download=False)[1])
    assert set(rob["models"]) == {"capsnet", "cnn"} and rob["images"] == test_digits and "command" in rob
    # With robustness.json from the GPU, the atlas, the samples and the tests are left.
    installed = [str(dest / n) for n in ("capsnet_mnist.pt", "capsnet_mnist.json", "robustness.json")]
    assert [c.split()[2] for c in collect.follow_ups(installed, dest)] == [
        "capsnet.atlas",
        "--data-root",
        "-m",
    ]
    # Nothing installed (--check-only): only the tests.
    assert collect.follow_ups([], dest) == ["CI=true python -m pytest -q tests"]
