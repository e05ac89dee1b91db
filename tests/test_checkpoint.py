import json
import math
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from expected import METADATA_KEYS

import capsnet.checkpoint as ck
from capsnet import (
    DEFAULT_CHECKPOINT,
    CapsNet,
    CheckpointError,
    checkpoint_meta,
    load_model,
    resolve_checkpoint,
    save_checkpoint,
)
from capsnet.checkpoint import atomic_write, read_checkpoint
from capsnet.data import load_mnist, to_float

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    net = CapsNet().eval()
    path = tmp_path / "net.pt"
    save_checkpoint(path, net, {"note": "test"})
    return net, path


def test_save_load_round_trip(saved):
    net, path = saved
    loaded = load_model(path)
    assert not loaded.training
    # Every tensor comes back bit for bit (a fresh CapsNet() has other random weights).
    state, back = net.state_dict(), loaded.state_dict()
    assert state.keys() == back.keys()
    assert all(torch.equal(state[k], back[k]) for k in state)
    assert not torch.equal(CapsNet().conv1.weight, back["conv1.weight"])
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(net(x).poses, loaded(x).poses)
    assert json.loads(read_checkpoint(path)["meta"]) == {"note": "test"}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left beside it


def assert_helpful(err: CheckpointError, *words):
    msg = str(err)
    for w in words:
        assert w in msg, msg
    assert "python -m capsnet.train" in msg  # says how to get a good file


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "nope.pt")
    assert_helpful(e.value, "not found")


def test_empty_checkpoint(tmp_path):
    p = tmp_path / "empty.pt"
    p.write_bytes(b"")
    with pytest.raises(CheckpointError) as e:
        load_model(p)
    assert_helpful(e.value, "empty")


def test_truncated_checkpoint(saved, tmp_path):
    _, path = saved
    p = tmp_path / "cut.pt"
    p.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError) as e:
        load_model(p)
    assert_helpful(e.value, "truncated or corrupt")


def test_random_bytes_checkpoint(tmp_path):
    p = tmp_path / "noise.pt"
    noise = torch.randint(0, 256, (5000,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    p.write_bytes(noise.numpy().tobytes())
    with pytest.raises(CheckpointError) as e:
        load_model(p)
    assert_helpful(e.value, "noise.pt", "not a PyTorch checkpoint", "ac 2f 75 c0")  # its first bytes
    assert "text file" not in str(e.value) and "pickle" not in str(e.value)


def test_a_text_file_is_not_a_pytorch_checkpoint_and_never_called_a_pickle(tmp_path):
    p = tmp_path / "page.pt"
    p.write_text("<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n")  # a failed download
    with pytest.raises(CheckpointError) as e:
        load_model(p)
    assert_helpful(e.value, "is not a PyTorch checkpoint", "text file", "<!DOCTYPE html>")
    assert "pickle" not in str(e.value)


def test_other_architecture_checkpoint(tmp_path):
    other = torch.nn.Sequential(torch.nn.Linear(784, 10))
    p = tmp_path / "mlp.pt"
    torch.save({"state_dict": other.state_dict()}, p)
    with pytest.raises(CheckpointError) as e:
        load_model(p)
    assert_helpful(e.value, "different architecture", "missing")


def test_wrong_shape_checkpoint(saved, tmp_path):
    net, _ = saved
    state = net.state_dict()
    state["digit_caps.W"] = torch.zeros(1152, 10, 8, 8)
    p = tmp_path / "shape.pt"
    torch.save({"state_dict": state}, p)
    with pytest.raises(CheckpointError) as e:
        load_model(p)
    assert_helpful(e.value, "digit_caps.W", "(1152, 10, 8, 8)")


def test_plain_torch_file_that_is_no_checkpoint(tmp_path):
    p = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), p)
    with pytest.raises(CheckpointError) as e:
        load_model(p)
    assert_helpful(e.value, "not a CapsNet checkpoint")


def test_nan_weights_checkpoint(saved, tmp_path):
    net, _ = saved
    state = net.state_dict()
    state["conv1.weight"] = torch.full_like(state["conv1.weight"], float("nan"))
    p = tmp_path / "nan.pt"
    torch.save({"state_dict": state}, p)
    with pytest.raises(CheckpointError) as e:
        load_model(p)
    assert_helpful(e.value, "NaN", "conv1.weight")


class _Exploit:
    """Unpickling this calls Path.touch(marker): code execution if loading unpickled freely."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_crafted_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "payload": _Exploit(str(marker))}, p)
    # The payload is live: an unrestricted unpickle of it does run the code.
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Exploit(str(proof))))
    assert proof.exists()
    assert not marker.exists()
    with pytest.raises(CheckpointError) as e:
        load_model(p)
    assert not marker.exists()
    assert_helpful(e.value, "refused")
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(CheckpointError):
        load_model(raw)
    assert not marker.exists()


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_load_model_without_a_path_tries_the_variable_then_the_checkout_then_the_installed_copy(
    saved, tmp_path, monkeypatch
):
    net, path = saved
    checkout = tmp_path / "checkout" / "checkpoints" / "capsnet_mnist.pt"
    installed = tmp_path / "site-packages" / "capsnet" / "weights" / "capsnet_mnist.pt"
    monkeypatch.setattr(ck, "DEFAULT_CHECKPOINT", checkout)
    monkeypatch.setattr(ck, "INSTALLED_CHECKPOINT", installed)
    monkeypatch.delenv("CAPSNET_CHECKPOINT", raising=False)
    with pytest.raises(CheckpointError) as e:  # nothing anywhere: the message lists every place tried
        load_model()
    for tried in ("$CAPSNET_CHECKPOINT (not set)", str(checkout), str(installed), "load_model(path)"):
        assert tried in str(e.value), str(e.value)

    installed.parent.mkdir(parents=True)
    shutil.copy(path, installed)
    installed.with_suffix(".json").write_text('{"epochs": 4}')
    assert resolve_checkpoint() == installed
    assert same_weights(load_model(), net) and checkpoint_meta() == {"epochs": 4}

    checkout.parent.mkdir(parents=True)
    checkout.write_bytes(b"")  # the checkout's file comes first, and a broken one is reported, not skipped
    assert resolve_checkpoint() == checkout
    with pytest.raises(CheckpointError, match="empty"):
        load_model()

    monkeypatch.setenv("CAPSNET_CHECKPOINT", str(path))
    assert resolve_checkpoint() == path and same_weights(load_model(), net)
    assert resolve_checkpoint(tmp_path / "given.pt") == tmp_path / "given.pt"  # an argument beats all
    monkeypatch.setenv("CAPSNET_CHECKPOINT", str(tmp_path / "typo.pt"))
    with pytest.raises(CheckpointError, match=r"\$CAPSNET_CHECKPOINT is .*typo.pt, which does not exist"):
        load_model()


def suggested(message: str, program: str) -> list[str]:
    """The one `program ...` command quoted in backticks in an error message, as argv."""
    commands = re.findall(rf"`({program} [^`]*)`", message)
    assert len(commands) == 1, message
    return shlex.split(commands[0])


@pytest.mark.parametrize("arch", ["capsnet", "cnn"])
def test_the_training_command_an_error_suggests_succeeds_with_the_bad_file_still_there(arch, tmp_path):
    from mnist_files import make_mnist_root

    from capsnet.baseline import load_baseline

    load = load_model if arch == "capsnet" else load_baseline
    bad = tmp_path / "my weights" / "net.pt"
    bad.parent.mkdir()
    bad.write_text("<!DOCTYPE html>\n<html>404</html>\n")
    with pytest.raises(CheckpointError) as e:
        load(bad)
    argv = suggested(str(e.value), "python -m capsnet.train")
    # The only changes: this Python, tiny data for DATA (one full batch at the default batch size)
    # and one epoch instead of the default 30.
    data = make_mnist_root(tmp_path / "data", n_train=128)
    argv = [sys.executable, *(str(data) if a == "DATA" else a for a in argv[1:]), "--epochs", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not load(bad).training  # loads now


def test_the_restore_command_an_error_suggests_for_the_shipped_file_brings_it_back(
    saved, tmp_path, monkeypatch
):
    net, path = saved
    shipped = tmp_path / "clone" / "checkpoints" / "capsnet_mnist.pt"
    shipped.parent.mkdir(parents=True)
    shutil.copy(path, shipped)
    git = ["git", "-C", str(shipped.parents[1]), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for args in (["init", "-q"], ["add", "checkpoints"], ["commit", "-q", "-m", "weights"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    monkeypatch.setattr(ck, "DEFAULT_CHECKPOINT", shipped)
    monkeypatch.delenv("CAPSNET_CHECKPOINT", raising=False)
    shipped.write_bytes(path.read_bytes()[:5000])  # truncated
    with pytest.raises(CheckpointError) as e:
        load_model()
    r = subprocess.run(suggested(str(e.value), "git"), capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert same_weights(load_model(), net)


def test_kill_during_write_leaves_previous_file_intact(saved):
    net, path = saved
    before = path.read_bytes()

    def dies_half_way(f):
        f.write(b"partial")
        raise KeyboardInterrupt  # what a kill looks like from inside the writer

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, dies_half_way)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    load_model(path)


def test_shipped_checkpoint_loads_with_metadata():
    assert DEFAULT_CHECKPOINT.exists(), "checkpoints/capsnet_mnist.pt must ship with the project"
    net = load_model()
    assert isinstance(net, CapsNet) and not net.training
    meta = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
    assert METADATA_KEYS <= meta.keys(), METADATA_KEYS - meta.keys()
    # The JSON agrees with itself: errors and accuracy over the test set, the last epoch's history.
    assert meta["test_errors"] == round((1 - meta["test_accuracy"]) * meta["test_images"])
    # Chosen on the validation digits: the weights are the epoch with the best validation accuracy,
    # and the test set was scored once, at the end, on those (no epoch's record holds it).
    history = meta["history"]
    best = max(r["val_accuracy"] for r in history)
    assert meta["val_images"] == 5000 and meta["val_accuracy"] == best
    (chosen,) = [r for r in history if r["epoch"] == meta["chosen_epoch"] and r.get("chosen")][-1:]
    assert chosen["val_accuracy"] == best and all("test_accuracy" not in r for r in history)
    # The lineage: every run the weights came from, this one last, and their hours add up.
    assert meta["lineage"][-1]["command"] == meta["command"] and len(meta["lineage"]) >= 2
    assert meta["total_hours"] == pytest.approx(sum(r["hours"] for r in meta["lineage"]), abs=2e-3)
    assert meta["device"].startswith("cpu") and meta["speed"]["amp"] == "bf16"
    # The weights file carries the training run's metadata; the JSON beside it shows the same
    # facts (it may add later analysis, e.g. routing statistics).
    embedded = json.loads(read_checkpoint(DEFAULT_CHECKPOINT)["meta"])
    assert embedded["test_accuracy"] == meta["test_accuracy"] and embedded["history"] == meta["history"]
    assert {k: meta.get(k) for k in embedded} == embedded


def test_shipped_weights_reach_their_recorded_accuracy_on_real_mnist(real_mnist):
    """Evaluate the weights on real test digits instead of trusting the JSON's number."""
    meta = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
    claimed = meta["test_accuracy"]
    images, labels = load_mnist(str(real_mnist), train=False, download=False)
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,)
    # Every 10th test digit: 1000 images spread over both halves of the test set (the first 5000
    # are the cleaner ones), so the subset is a fair sample of what the claim was measured on.
    images, labels = images[::10], labels[::10]
    net = load_model()
    with torch.no_grad():
        predicted = torch.cat(
            [net(to_float(images[i : i + 250])).lengths.argmax(dim=1) for i in range(0, len(images), 250)]
        )
    n = len(labels)
    accuracy = float((predicted == labels).float().mean())
    # If the weights really score `claimed` on all 10,000, the errors in n of them are ~binomial
    # (n, 1 - claimed): sd = sqrt(n p (1 - p)) = 0.29 points of accuracy for n = 1000, p = 0.0083.
    # Four sd (0.0115) is a false alarm for fewer than 1 in 10,000 subsets; weights that score a
    # full point lower than recorded (p >= 0.018: accuracy 0.98 or below) fall outside it.
    sd = math.sqrt(claimed * (1 - claimed) / n)
    assert abs(accuracy - claimed) <= 4 * sd, f"{accuracy:.4f} on {n} test digits vs {claimed} recorded"
    assert accuracy >= 0.98, f"{accuracy:.4f} on {n} real MNIST test digits"


SHIPPED_CNN = DEFAULT_CHECKPOINT.with_name("cnn_mnist.pt")


def test_shipped_baseline_cnn_has_its_metadata_and_the_capsnets_training_budget():
    from capsnet.baseline import BaselineCNN, load_baseline

    assert SHIPPED_CNN.exists(), (
        "checkpoints/cnn_mnist.pt must ship with the project (the lab compares with it)"
    )
    cnn = load_baseline(SHIPPED_CNN)
    assert isinstance(cnn, BaselineCNN) and cnn.pooled and not cnn.training
    meta = json.loads(SHIPPED_CNN.with_suffix(".json").read_text())
    caps = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
    assert meta["arch"] == "cnn" and meta["parameters"] == 4_587_282
    assert meta["test_errors"] == round((1 - meta["test_accuracy"]) * meta["test_images"])
    assert meta["history"][-1]["epoch"] == meta["epochs"] == len(meta["history"])
    # The same data, augmentation and schedule as the shipped CapsNet's first run (a later run that
    # fine-tuned those weights adds to the CapsNet's budget: the lab states both budgets).
    first = caps["lineage"][0] if caps.get("lineage") else caps
    for key in ("epochs", "batch_size", "lr", "lr_decay"):
        assert meta[key] == first[key], key
    # the first run's augmentation and seed, as its recorded command gives them to the training parser
    from capsnet.train import parse_args

    argv = first["command"].split()
    first_args = parse_args(argv[argv.index("capsnet.train") + 1 :])
    assert meta["max_shift"] == first_args.max_shift and meta["seed"] == first_args.seed
    with pytest.raises(CheckpointError, match="load_baseline"):
        load_model(SHIPPED_CNN)


def test_shipped_baseline_cnn_reaches_its_recorded_accuracy_on_real_mnist(real_mnist):
    from capsnet.baseline import load_baseline

    claimed = json.loads(SHIPPED_CNN.with_suffix(".json").read_text())["test_accuracy"]
    images, labels = load_mnist(str(real_mnist), train=False, download=False)
    images, labels = images[5::10], labels[5::10]  # 1000 digits across the whole test set
    cnn = load_baseline(SHIPPED_CNN)
    with torch.no_grad():
        predicted = torch.cat([cnn(to_float(images[i : i + 250])).argmax(dim=1) for i in range(0, 1000, 250)])
    accuracy = float((predicted == labels).float().mean())
    sd = math.sqrt(claimed * (1 - claimed) / len(labels))  # binomial spread of a 1000-digit subset
    assert abs(accuracy - claimed) <= 4 * sd, f"{accuracy:.4f} on 1000 test digits vs {claimed} recorded"
    assert accuracy >= 0.98


def test_shipped_robustness_figures_were_measured_on_the_shipped_checkpoints():
    """checkpoints/robustness.json (shown by the lab and the README): its clean accuracy on all
    10,000 test digits is each checkpoint's own recorded test accuracy, and its counts add up."""
    result = json.loads(DEFAULT_CHECKPOINT.with_name("robustness.json").read_text())
    assert result["images"] == 10_000 and result["seed"] == 0
    for name, ckpt in (("capsnet", DEFAULT_CHECKPOINT), ("cnn", SHIPPED_CNN)):
        m = result["models"][name]
        assert Path(m["checkpoint"]).name == ckpt.name
        recorded = json.loads(ckpt.with_suffix(".json").read_text())["test_accuracy"]
        assert m["clean"]["accuracy"] == pytest.approx(recorded, abs=1e-9)
        for e in [m["clean"], m["random_affine"]] + [p for c in m["curves"].values() for p in c]:
            assert e["accuracy"] == e["correct"] / e["total"]
        assert [p["value"] for p in m["curves"]["rotation"]][result["points"] // 2] == 0.0
