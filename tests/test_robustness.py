import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mnist_files import make_mnist_root, synthetic_digits, write_idx
from torch import nn

from capsnet import CapsNet, load_model, save_checkpoint
from capsnet import robustness as rb
from capsnet.baseline import BaselineCNN, save_baseline
from capsnet.data import load_mnist, to_float
from capsnet.transforms import affine

ENV = {**os.environ, "PYTHONPATH": os.getcwd()}


def tiny_affnist_images() -> np.ndarray:
    """Three 40x40 images (row, column) with marks inside and just outside the middle 28x28."""
    imgs = np.zeros((3, 40, 40), np.uint8)
    for n in range(3):
        imgs[n, 8:31, 10 + n] = 255  # vertical bar in column 10 + n
        imgs[n, 12, 10:29] = 128  # horizontal bar in row 12
        imgs[n, 6, 33] = 7 + n  # first row, last column of the middle 28x28
        imgs[n, 5, 20] = imgs[n, 34, 20] = imgs[n, 20, 5] = 99  # just outside it
    return imgs


@pytest.fixture
def savemat():
    """scipy.io.savemat, the writer of the files affNIST reads back. scipy is optional for capsnet;
    requirements-dev.txt installs it, and under CI=true its absence fails instead of skipping."""
    if os.environ.get("CI") != "true":
        pytest.importorskip("scipy.io", reason="scipy is not installed: pip install -r requirements-dev.txt")
    import scipy.io

    return scipy.io.savemat


def write_affnist(path: Path, savemat, compress: bool = True, name: str = "affNISTdata") -> Path:
    """affNIST's layout: a struct with 'image' (1600 x N, each column a 40x40 image in MATLAB's
    column-major order), 'label_int' (1 x N) and the fields the reader ignores."""
    labels = np.array([7, 0, 3], np.uint8)
    data = {
        "affine_transform": np.arange(18.0).reshape(6, 3),
        "image": np.stack([im.flatten(order="F") for im in tiny_affnist_images()], axis=1),
        "label_int": labels,
        "label_one_of_n": np.eye(10, dtype=np.uint8)[:, labels],
    }
    savemat(str(path), {name: data}, do_compression=compress)
    return path


@pytest.mark.parametrize("compress", [True, False])
def test_affnist_file_written_by_scipy_loads_column_major_and_centre_cropped(tmp_path, savemat, compress):
    images, labels = rb.load_affnist(write_affnist(tmp_path / "test.mat", savemat, compress))
    assert images.dtype == torch.uint8 and images.shape == (3, 28, 28)
    assert labels.dtype == torch.int64 and labels.tolist() == [7, 0, 3]
    expected = tiny_affnist_images()[:, 6:34, 6:34]
    assert np.array_equal(images.numpy(), expected)
    assert images[1, 0, 27] == 8  # the crop's corner pixel (row 6, column 33 of 40x40) is kept
    assert int((images[2, :, 12 - 6] == 255).sum()) == 23 - 1  # image 2's bar: 23 rows, one crossed at row 12
    assert int(images.sum()) == int(expected.astype(np.int64).sum())  # the 99s outside the crop are gone


def test_affnist_loader_says_what_is_wrong(tmp_path, savemat, monkeypatch):
    with pytest.raises(FileNotFoundError, match="affNIST file not found"):
        rb.load_affnist(tmp_path / "missing.mat")
    other = write_affnist(tmp_path / "other.mat", savemat, name="someThingElse")
    with pytest.raises(ValueError, match="not an affNIST file"):
        rb.load_affnist(other)
    text = tmp_path / "text.mat"
    text.write_text("hello" * 100)
    with pytest.raises(ValueError, match="text.mat is not a MATLAB file scipy can read"):
        rb.load_affnist(text)
    truncated = tmp_path / "truncated.mat"
    truncated.write_bytes(write_affnist(tmp_path / "whole.mat", savemat, compress=False).read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated.mat is not a MATLAB file scipy can read"):
        rb.load_affnist(truncated)
    monkeypatch.setitem(sys.modules, "scipy", None)  # as if scipy were not installed
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(ImportError, match=r"needs scipy: pip install scipy"):
        rb.load_affnist(other)


def test_random_affine_parameters_are_seeded_and_inside_their_ranges():
    a, b, c = (
        rb.random_affine_params(500, seed=0),
        rb.random_affine_params(500, seed=0),
        rb.random_affine_params(500, 1),
    )
    assert set(a) == {"rotate", "shear", "scale_x", "scale_y", "tx", "ty"}
    limits = {"rotate": 20, "shear": 45, "tx": 3, "ty": 3}
    for name, t in a.items():
        assert t.shape == (500,) and torch.equal(t, b[name]) and not torch.equal(t, c[name])
        lo, hi = (0.8, 1.2) if name.startswith("scale") else (-limits[name], limits[name])
        assert t.min() >= lo and t.max() <= hi
        assert t.min() < lo + 0.05 * (hi - lo) and t.max() > hi - 0.05 * (hi - lo)  # spread over the range


class Memorizer(nn.Module):
    """Perfect on the untransformed test digits and nothing else: an exact copy of a stored digit
    gets its label; any other input gets class 0, which no test label is (see no_zero_root)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))  # so the model has a device
        self.images, self.labels = to_float(images).flatten(1), labels

    def forward(self, x):
        diff = (x.flatten(1)[:, None, :] - self.images[None]).abs().amax(dim=2)  # (B, N)
        best, index = diff.min(dim=1)
        return nn.functional.one_hot(torch.where(best < 1e-6, self.labels[index], 0), 10).float()


@pytest.fixture
def no_zero_root(tmp_path):
    """Tiny MNIST whose 32 test labels are 1..9, so a prediction of 0 is always wrong."""
    root = make_mnist_root(tmp_path / "data")
    _, labels = synthetic_digits(32, 1)
    write_idx(root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.where(labels == 0, 5, labels))
    return root


def test_a_model_perfect_on_untransformed_digits_scores_one_exactly_at_the_identity(
    no_zero_root, monkeypatch, capsys
):
    images, labels = load_mnist(str(no_zero_root), train=False, download=False)
    assert 0 not in labels.tolist()
    monkeypatch.setattr(rb, "load_baseline", lambda path, device: Memorizer(images, labels))
    assert rb.main(["--data-root", str(no_zero_root), "--cnn", "fake.pt", "--points", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out["models"]) == ["cnn"] and out["models"]["cnn"]["checkpoint"] == "fake.pt"
    cnn = out["models"]["cnn"]
    assert cnn["clean"] == {"correct": 32, "total": 32, "accuracy": 1.0}
    assert cnn["random_affine"] == {"correct": 0, "total": 32, "accuracy": 0.0}
    expected_values = {
        "rotation": [-60, -30, 0, 30, 60],
        "scale": [0.5, 0.75, 1.0, 1.25, 1.5],
        "shear": [-45, -22.5, 0, 22.5, 45],
        "translation": [-6, -3, 0, 3, 6],
    }
    for family, values in expected_values.items():
        assert out["families"][family]["values"] == values
        curve = cnn["curves"][family]
        assert [p["value"] for p in curve] == values
        assert [p["accuracy"] for p in curve] == [0.0, 0.0, 1.0, 0.0, 0.0], (
            family
        )  # 1.0 only at angle 0, scale 1, ...
        assert all(p["total"] == 32 for p in curve)


def test_per_image_transforms_stay_with_their_images_across_batches(no_zero_root):
    # A model that memorised each digit under its own random transform scores 1.0 only if the
    # evaluation pairs image i with parameters i in every batch (7 does not divide 32).
    images, labels = load_mnist(str(no_zero_root), train=False, download=False)
    params = rb.random_affine_params(len(images), seed=3)
    transformed = torch.stack(
        [affine(to_float(images[i : i + 1]), **{k: v[i] for k, v in params.items()})[0] for i in range(32)]
    )
    model = Memorizer(images, labels)
    model.images = transformed.flatten(1)
    got = rb.accuracy_under({"m": model}, images, labels, batch_size=7, **params)
    assert got == {"m": {"correct": 32, "total": 32, "accuracy": 1.0}}
    got = rb.accuracy_under({"m": model}, images, labels, batch_size=7, **rb.random_affine_params(32, seed=4))
    assert got["m"]["correct"] == 0


def test_cli_runs_both_models_and_affnist_and_reports_fractions(tiny_mnist, tmp_path, savemat):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "caps.pt", CapsNet())
    save_baseline(tmp_path / "cnn.pt", BaselineCNN(pooled=True))
    write_affnist(tmp_path / "test.mat", savemat)
    args = [
        "--data-root",
        str(tiny_mnist),
        "--capsnet",
        str(tmp_path / "caps.pt"),
        "--cnn",
        str(tmp_path / "cnn.pt"),
    ]
    args += [
        "--limit",
        "12",
        "--points",
        "3",
        "--curve-limit",
        "5",
        "--affnist",
        str(tmp_path / "test.mat"),
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    written = tmp_path / "results" / "robustness.json"
    written.parent.mkdir()
    day = datetime.date.today().isoformat()
    proc = subprocess.run(
        [sys.executable, "-m", "capsnet.robustness", *args, "--json", "--out", str(written)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)  # stdout is one JSON object
    # --out writes the same figures, stamped with what measured them (the lab quotes the command).
    stamped = json.loads(written.read_text())
    assert {k: stamped[k] for k in out} == out
    assert stamped["command"] == "python -m capsnet.robustness " + " ".join(
        [*args, "--json", "--out", str(written)]
    )
    assert stamped["date"] in {day, datetime.date.today().isoformat()}  # a run across midnight
    assert stamped["machine"].startswith("cpu (") and stamped["machine"].endswith(
        f"torch {torch.__version__}"
    )
    assert [p.name for p in written.parent.iterdir()] == ["robustness.json"]  # no temp file left
    assert out["images"] == 12 and out["seed"] == 0 and out["points"] == 3 and out["device"] == "cpu"
    assert out["curve_images"] == 5  # the curves on the first 5 digits, the rest on all 12
    assert out["affnist"]["images"] == 3 and out["affnist"]["path"].endswith("test.mat")
    assert out["random_affine_ranges"]["rotate"] == [-20.0, 20.0]
    assert list(out["models"]) == ["capsnet", "cnn"]
    for name, m in out["models"].items():
        assert m["checkpoint"] == str(tmp_path / f"{'caps' if name == 'capsnet' else 'cnn'}.pt")
        entries = [m["clean"], m["random_affine"], m["affnist"]] + [
            p for c in m["curves"].values() for p in c
        ]
        assert len(entries) == 3 + 4 * 3
        for e in entries:
            total = 3 if e is m["affnist"] else 12 if e in (m["clean"], m["random_affine"]) else 5
            assert (
                e["total"] == total and 0 <= e["correct"] <= total and e["accuracy"] == e["correct"] / total
            )
        assert [p["value"] for p in m["curves"]["rotation"]] == [-60.0, 0.0, 60.0]


def test_table_has_a_column_per_model_and_a_row_per_measurement(
    tmp_path, no_zero_root, monkeypatch, capsys, savemat
):
    images, labels = load_mnist(str(no_zero_root), train=False, download=False)
    monkeypatch.setattr(rb, "load_model", lambda path, device: Memorizer(images, labels))
    monkeypatch.setattr(rb, "load_baseline", lambda path, device: Memorizer(images[:16], labels[:16]))
    write_affnist(tmp_path / "test.mat", savemat)
    args = ["--data-root", str(no_zero_root), "--capsnet", "a.pt", "--cnn", "b.pt", "--points", "3"]
    assert rb.main([*args, "--affnist", str(tmp_path / "test.mat")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        "accuracy on 32 MNIST test digits (random affine: seed 0, rotate -20..20, shear -45..45"
    )
    assert lines[1].split() == ["capsnet", "cnn"]
    rows = [line.split() for line in lines[2:]]
    assert [r[0] for r in rows] == ["clean", "random", "affNIST"] + ["rotation"] * 3 + ["scale"] * 3 + [
        "shear"
    ] * 3 + ["translation"] * 3
    assert rows[0] == ["clean", "100.00%", "50.00%"]  # the second memorised only the first 16 digits
    assert rows[5] == ["rotation", "60", "degrees", "0.00%", "0.00%"]
    assert rows[6] == ["scale", "0.5", "factor", "0.00%", "0.00%"]
    assert rows[7] == ["scale", "1", "factor", "100.00%", "50.00%"]  # scale 1 is the identity


def test_shipped_capsnet_reads_real_digits_and_loses_accuracy_under_rotation(real_mnist):
    """The real prediction path (CapsNet, argmax of lengths, 3 iterations) on 100 real test digits."""
    images, labels = load_mnist(str(real_mnist), train=False, download=False)
    images, labels = images[:100], labels[:100]
    models = {"capsnet": load_model()}
    assert rb.accuracy_under(models, images, labels)["capsnet"]["correct"] >= 97  # 99.17% on all 10,000
    turned = rb.accuracy_under(models, images, labels, rotate=60.0)["capsnet"]["correct"]
    assert turned < 60  # a 60 degree turn costs a model trained on upright digits (measured: 29 of 100)


def test_cli_reports_a_bad_checkpoint_and_exits_2(tiny_mnist, tmp_path, capsys):
    bad = tmp_path / "cnn.pt"
    bad.write_bytes(b"\x00" * 64)
    assert rb.main(["--data-root", str(tiny_mnist), "--cnn", str(bad)]) == 2
    assert "error:" in capsys.readouterr().err
    (tmp_path / "caps.pt").write_bytes(b"")
    assert rb.main(["--data-root", str(tiny_mnist), "--capsnet", str(tmp_path / "caps.pt")]) == 2
    assert "empty" in capsys.readouterr().err
