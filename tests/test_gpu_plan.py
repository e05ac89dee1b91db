"""tools/gpu_plan.py (the 15-minute GPU plan) and tools/gpu_collect.py: the plan's decisions, the
files that come back, the safety net around the training run, and the whole plan rehearsed on the
CPU on tiny IDX files (fine-tuning the shipped weights), then collected."""

import argparse
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


def test_the_time_limit_is_the_window_less_start_up_and_refuses_under_a_minute():
    assert plan.time_limit_minutes(530) == pytest.approx(8.08)  # (530 - 45) / 60
    assert plan.time_limit_minutes(100, startup=10) == 1.5
    with pytest.raises(RuntimeError, match="under a minute"):
        plan.time_limit_minutes(89)


def test_the_plan_fine_tunes_the_cpu_weights_unless_told_to_start_from_scratch():
    def args(*argv):
        a = argparse.Namespace(init_from="checkpoints/capsnet_mnist.pt", from_scratch=False, tiny=False,
                               data_root=".data")  # fmt: skip
        for flag in argv:
            setattr(a, flag, True)
        cmd = plan.train_command(a, Path("r/capsnet_mnist.pt"), 8.08)
        return {k: v for k, v in zip(cmd, [*cmd[1:], None]) if k.startswith("--")}

    tune = args()
    assert tune["--init-from"] == "checkpoints/capsnet_mnist.pt"
    assert (tune["--lr"], tune["--warmup-steps"], tune["--lr-floor"]) == ("0.0005", "100", "1e-05")
    assert (tune["--time-limit"], tune["--val"], tune["--batch-size"]) == ("8.08", "5000", "128")
    assert "--device" not in tune  # auto: the GPU
    scratch = args("from_scratch")
    assert "--init-from" not in scratch and (scratch["--lr"], scratch["--warmup-steps"]) == ("0.001", "0")
    assert args("tiny")["--device"] == "cpu"


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
    joined = collect.join_pieces(entry, tmp_path / "out", tmp_path / "back" / "w.pt")
    assert joined.read_bytes() == data
    exact = tmp_path / "exact.pt"
    exact.write_bytes(data[:2000])
    assert [p["bytes"] for p in plan.split_file(exact, tmp_path / "o2", 1000)["pieces"]] == [1000, 1000]
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    entry = plan.split_file(empty, tmp_path / "o4", 1000)
    assert [p["bytes"] for p in entry["pieces"]] == [0]
    assert collect.join_pieces(entry, tmp_path / "o4", tmp_path / "back" / "empty.pt").read_bytes() == b""


def test_join_refuses_a_damaged_or_missing_piece_and_writes_nothing(tmp_path):
    src = tmp_path / "w.pt"
    src.write_bytes(os.urandom(2500))
    entry = plan.split_file(src, tmp_path / "out", piece_bytes=1000)
    piece = tmp_path / "out" / "w.pt.001"
    good = piece.read_bytes()
    piece.write_bytes(good[:500] + bytes([good[500] ^ 1]) + good[501:])
    dest = tmp_path / "back" / "w.pt"
    with pytest.raises(
        collect.IntegrityError, match=r"w\.pt\.001: piece of w\.pt is damaged.*nothing was installed"
    ):
        collect.join_pieces(entry, tmp_path / "out", dest)
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    piece.unlink()
    with pytest.raises(collect.IntegrityError, match=r"piece w\.pt\.001 of w\.pt is missing"):
        collect.join_pieces(entry, tmp_path / "out", dest)


def test_sums_catch_a_damaged_file(tmp_path):
    for name, text in (("a.txt", "a"), ("b.json", "{}")):
        (tmp_path / name).write_text(text)
    plan.write_sums(tmp_path, ["a.txt", "b.json"])
    assert (
        subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True).returncode == 0
    )
    assert collect.verify_sums(tmp_path) == ["a.txt", "b.json"]
    (tmp_path / "b.json").write_text("{ }")
    with pytest.raises(collect.IntegrityError, match=r"b\.json: sha256 .* does not match SHA256SUMS"):
        collect.verify_sums(tmp_path)
    (tmp_path / "a.txt").unlink()
    with pytest.raises(collect.IntegrityError, match=r"a\.txt is listed in SHA256SUMS but missing"):
        collect.verify_sums(tmp_path)


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
    problems = plan.out_problems(tmp_path)
    assert any(p.startswith("big: 16,777,217 bytes") for p in problems)
    assert any(p.startswith("a b: names may hold only") for p in problems)


def test_archive_holds_json_and_logs_only_and_keeps_a_long_logs_end(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "capsnet_mnist.json").write_text("{}")
    (run / "capsnet_mnist.pt").write_bytes(b"weights")
    (run / "capsnet_mnist.resume.pt").write_bytes(b"state")
    (run / "train.log").write_text("a" * 100 + "THE END")
    (run / ".capsnet_mnist.json.tmp").write_text("{}")
    (run / ".hidden.json").write_text("{}")
    members = plan.make_archive(run, tmp_path / "a.tar.gz", cap=50)
    assert members == ["capsnet_mnist.json", "train.log"]
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        log = tar.extractfile("train.log").read()
    assert len(log) == 50 and log.endswith(b"THE END")


def test_mnist_is_unpacked_and_checked_whether_unpacked_or_gz(tmp_path):
    names = list(plan.MNIST_MD5)
    with gzip.open(tmp_path / f"{names[0]}.gz", "wb") as f:
        f.write(b"gz")
    (tmp_path / names[1]).write_bytes(b"raw")
    assert plan.md5_problems(tmp_path, {names[0]: hashlib.md5(b"gz").hexdigest()}) == []  # read from the .gz
    assert plan.unpack_mnist(tmp_path) == names[2:]
    assert [(tmp_path / n).read_bytes() for n in names[:2]] == [b"gz", b"raw"]
    assert not list(tmp_path.glob("*.part"))
    table = {names[0]: hashlib.md5(b"gz").hexdigest(), names[1]: "0" * 32}
    assert plan.md5_problems(tmp_path, table) == [
        f"{names[1]}: md5 {hashlib.md5(b'raw').hexdigest()}, expected {'0' * 32}"
    ]
    assert plan.md5_problems(tmp_path, {"c-ubyte": "0" * 32})[0].startswith("c-ubyte: cannot be read")


# ---------------------------------------------------------------------------------------------
# The run: its safety net, and the metadata of a killed run

OVERSTAYER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_run_that_overstays_its_window_is_killed_with_its_children(tmp_path):
    t = time.time()
    rc, why = plan.run_until([sys.executable, "-c", OVERSTAYER], tmp_path / "x.log", t + 3, dict(os.environ))
    assert why == "the plan's window ended" and rc == -9 and 3 <= time.time() - t < 5
    child = Path(f"/proc/{int((tmp_path / 'x.log').read_text())}/status")  # the grandchild
    time.sleep(0.2)
    assert not child.exists() or "zombie" in child.read_text(), "the run's own child outlived it"
    assert plan.run_until(
        [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "y.log", t + 30, None
    ) == (
        3,
        None,
    )


def test_the_gpu_stamp_comes_from_nvidia_smi_and_its_absence_costs_nothing(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text(
        '#!/bin/sh\n[ "$1" ] && echo "name, driver_version" && echo "NVIDIA H100, 580.1" || echo TABLE\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert plan.nvidia_smi(tmp_path / "smi.txt") == "name, driver_version\nNVIDIA H100, 580.1"
    assert (tmp_path / "smi.txt").read_text().endswith("580.1\n\nTABLE\n")
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    assert plan.nvidia_smi(tmp_path / "hung.txt", timeout=0.5).startswith("nvidia-smi failed: TimeoutExpired")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert plan.nvidia_smi(tmp_path / "none.txt") is None


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
        collect.IntegrityError, match=r"its JSON says epochs=4, the weights' own metadata epochs=5"
    ):
        collect.check_json(weights, {"epochs": 4, "test_accuracy": 0.99, "seed": 1})
    with pytest.raises(collect.IntegrityError, match="seed"):
        collect.check_json(weights, {"epochs": 5, "test_accuracy": 0.99, "seed": 0})
    for bad in ("../escape.json", "/abs.json"):
        archive = tmp_path / "a.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            info = tarfile.TarInfo(bad)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"{}"))
        with pytest.raises(collect.IntegrityError, match="refused"):
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
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    env.pop("PLAN_T0", None)
    t = time.time()
    res = subprocess.run(
        ["bash", str(ROOT / "tools" / "gpu_plan.sh"), "--tiny", "--data-root", str(data), "--run-dir", str(run)],
        env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "GPU plan:" in res.stdout and "trained  2.0 epochs (12 steps)" in res.stdout  # 48 digits / 8

    # $OUT: what the device tool brings back
    names = sorted(p.name for p in out.iterdir())
    assert names == ["SHA256SUMS", "capsnet_mnist.pt.000", "capsnet_mnist.pt.001", "capsnet_mnist.pt.002",
                     "gpu_run.tar.gz", "summary.json"]  # fmt: skip
    assert plan.out_problems(out) == []
    assert collect.verify_sums(out) == [n for n in names if n != "SHA256SUMS"]

    s = json.loads((out / "summary.json").read_text())
    assert s["errors"] == [] and s["plan"]["tiny"] and not s["plan"]["from_scratch"]
    assert 0 < s["plan"]["elapsed_seconds"] <= time.time() - t + 5
    shipped = ROOT / "checkpoints" / "capsnet_mnist.pt"
    assert s["plan"]["init_from"] == {
        "path": "checkpoints/capsnet_mnist.pt",
        "sha256": plan.sha256_file(shipped),
    }
    tr = s["train"]
    assert tr["rc"] == 0 and tr["killed"] is None and tr["epochs"] == 2 and tr["chosen_epoch"] in (1, 2)
    assert "--init-from checkpoints/capsnet_mnist.pt" in tr["command"] and "--time-limit" in tr["command"]
    assert tr["torch_version"] == torch.__version__ and tr["device"].startswith("cpu")
    assert tr["test_errors"] == round((1 - tr["test_accuracy"]) * 32)  # tiny MNIST: 32 test digits
    w = s["weights"]
    assert w["sha256"] == plan.sha256_file(run / "capsnet_mnist.pt") and w["bytes"] > 32_000_000
    assert all(piece["bytes"] <= plan.PIECE_BYTES for piece in w["pieces"])
    with tarfile.open(out / "gpu_run.tar.gz") as tar:
        assert set(tar.getnames()) == {"capsnet_mnist.json", "plan.log", "summary.json", "train.log"}

    # Collect: verify, join, unpack, install into a temporary checkpoints folder.
    runs, dest = tmp_path / "collected" / "runs", tmp_path / "collected" / "checkpoints"
    assert collect.main([str(out), "--runs", str(runs), "--dest", str(dest)]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["capsnet_mnist.json", "capsnet_mnist.pt"]
    assert plan.sha256_file(dest / "capsnet_mnist.pt") == w["sha256"]
    from capsnet import load_model

    tuned, start = load_model(dest / "capsnet_mnist.pt"), load_model(shipped)
    changed = [k for k, v in tuned.state_dict().items() if not torch.equal(v, start.state_dict()[k])]
    assert changed, "the plan trained nothing"
    meta = json.loads((dest / "capsnet_mnist.json").read_text())
    assert meta == json.loads((run / "capsnet_mnist.json").read_text()) and meta["val_images"] == 16
    assert meta["lineage"][-1]["init_from"] == "checkpoints/capsnet_mnist.pt"
    shipped_meta = json.loads(shipped.with_suffix(".json").read_text())
    shipped_runs = shipped_meta.get("lineage") or [shipped_meta]  # the runs the shipped weights came from
    assert [r["command"] for r in meta["lineage"][:-1]] == [r["command"] for r in shipped_runs]
    assert (runs / "train.log").is_file()

    # A damaged piece: refused with a clear message, nothing installed over the good files.
    before = plan.sha256_file(dest / "capsnet_mnist.pt")
    piece = out / "capsnet_mnist.pt.001"
    data = bytearray(piece.read_bytes())
    data[12345] ^= 0xFF
    piece.write_bytes(bytes(data))
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_collect.py"), str(out), "--runs", str(runs),
                          "--dest", str(dest)], capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert res.returncode == 2
    assert "capsnet_mnist.pt.001: sha256" in res.stderr and "does not match SHA256SUMS" in res.stderr
    assert plan.sha256_file(dest / "capsnet_mnist.pt") == before
    assert not list(dest.glob(".gpu_collect.*"))


def test_the_follow_ups_collect_prints_bring_the_json_atlas_and_robustness_up_to_the_new_weights(
    tmp_path, tiny_mnist
):
    """What gpu_collect tells the next session to run, run as printed (tiny MNIST in place of the
    real one): the JSON gains the routing figures, the atlas matches the new weights' sha256,
    robustness.json measures them."""
    import shlex

    from capsnet import CapsNet, save_checkpoint
    from capsnet.atlas import file_sha256, load_atlas
    from capsnet.baseline import BaselineCNN, save_baseline

    dest = tmp_path / "checkpoints"
    dest.mkdir()
    torch.manual_seed(0)
    installed_meta = {"epochs": 1, "test_accuracy": 0.5, "seed": 0}
    save_checkpoint(dest / "capsnet_mnist.pt", CapsNet(), installed_meta)
    (dest / "capsnet_mnist.json").write_text(json.dumps(installed_meta))
    save_baseline(dest / "cnn_mnist.pt", BaselineCNN(pooled=True))
    samples = tmp_path / "app" / "samples.npz"
    commands = collect.follow_ups([str(dest / "capsnet_mnist.pt"), str(dest / "capsnet_mnist.json")], dest,
                                  data_root=str(tiny_mnist), samples=samples)  # fmt: skip
    assert [c.split()[:3] for c in commands] == [["python", "-m", "capsnet.evaluate"],
                                                 ["python", "-m", "capsnet.atlas"],
                                                 ["python", "-m", "capsnet.robustness"],
                                                 ["python", os.path.relpath(ROOT / "tools" / "make_samples.py"),
                                                  "--data-root"],
                                                 ["CI=true", "python", "-m"]]  # fmt: skip
    # The samples need 4 digits of each class (more than tiny MNIST has; tests/test_make_samples.py
    # runs the tool on real MNIST): here, that the command names these weights and that file.
    argv = shlex.split(commands[3])
    assert Path(argv[argv.index("--checkpoint") + 1]).resolve() == (dest / "capsnet_mnist.pt").resolve()
    assert Path(argv[argv.index("--out") + 1]).resolve() == samples.resolve()
    for command in commands[:3]:
        argv = [sys.executable, *shlex.split(command)[1:]]
        # A command that leaned on the default checkpoint would find none (and write nothing beside
        # the shipped weights): every path must be in the command.
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CAPSNET_CHECKPOINT": str(tmp_path / "no-default.pt")}
        res = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=os.getcwd(), env=env)
        assert res.returncode == 0, (command, res.stderr[-2000:])
    meta = json.loads((dest / "capsnet_mnist.json").read_text())
    assert installed_meta.items() <= meta.items()
    assert (
        set(meta["iteration_accuracy"]) == {"1", "2", "3", "4", "5"}
        and meta["routing_stats"]["iterations"] == 3
    )
    atlas = load_atlas(dest / "pose_atlas.json", dest / "capsnet_mnist.pt")
    assert atlas["checkpoint_sha256"] == file_sha256(dest / "capsnet_mnist.pt")
    rob = json.loads((dest / "robustness.json").read_text())
    from capsnet.data import load_mnist

    test_digits = len(load_mnist(str(tiny_mnist), train=False, download=False)[1])
    assert set(rob["models"]) == {"capsnet", "cnn"} and rob["images"] == test_digits and "command" in rob
    # Nothing installed (--check-only): only the tests.
    assert collect.follow_ups([], dest) == ["CI=true python -m pytest -q tests"]
