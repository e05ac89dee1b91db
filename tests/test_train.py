import json
import os
import subprocess
import sys

import pytest
import torch
from expected import METADATA_KEYS

from capsnet import load_model
from capsnet.data import to_float
from capsnet.train import main as train_main

ENV = {**os.environ, "PYTHONPATH": os.getcwd()}


def run_cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


def tiny_run(data, out, steps: int) -> list[str]:
    """Arguments of a CPU run on the tiny IDX files: batches of 8, `steps` steps per epoch."""
    return ["--data-root", str(data), "--batch-size", "8", "--max-steps", str(steps), "--out", str(out),
            "--device", "cpu"]  # fmt: skip


def test_train_two_steps_end_to_end_and_resume(tiny_mnist, tmp_path):
    out = tmp_path / "run" / "net.pt"
    args = [*tiny_run(tiny_mnist, out, steps=2), "--log-every", "1"]
    assert train_main([*args, "--epochs", "1"]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert METADATA_KEYS <= meta.keys(), METADATA_KEYS - meta.keys()
    assert meta["epochs"] == 1 and meta["world_size"] == 1 and meta["images_per_epoch"] == 16
    assert meta["torch_version"] == torch.__version__
    assert "--max-steps 2" in meta["command"]
    first = load_model(out)
    # The accuracy written is that of the weights written, on the 32 test digits.
    from torchvision.datasets import MNIST

    test = MNIST(str(tiny_mnist), train=False)
    with torch.no_grad():
        wrong = int((first(to_float(test.data)).prediction != test.targets).sum())
    assert meta["test_errors"] == wrong and meta["test_accuracy"] == round(1 - wrong / 32, 6)
    assert meta["history"][0]["test_accuracy"] == meta["test_accuracy"]
    resume_file = out.with_name("net.resume.pt")
    assert resume_file.exists()

    # Continue for a second epoch: epoch 1's record is kept and the weights move on.
    assert train_main([*args, "--epochs", "2", "--resume"]) == 0
    meta2 = json.loads(out.with_suffix(".json").read_text())
    assert meta2["epochs"] == 2 and meta2["history"][0] == meta["history"][0]
    second = load_model(out)
    assert not torch.equal(first.conv1.weight, second.conv1.weight)
    assert list(out.parent.glob("*.tmp")) == []


def test_arch_cnn_trains_the_baseline_saves_it_in_its_own_format_and_resumes(tiny_mnist, tmp_path, capsys):
    from capsnet.baseline import BaselineCNN, load_baseline
    from capsnet.checkpoint import CheckpointError

    out = tmp_path / "cnn.pt"
    args = [*tiny_run(tiny_mnist, out, steps=2), "--arch", "cnn", "--dropout", "0.25"]
    torch.manual_seed(0)
    untrained = BaselineCNN(pooled=True)  # what --seed 0 starts from: the same draws
    assert train_main([*args, "--epochs", "1"]) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["arch"] == "cnn" and meta["dropout"] == 0.25 and meta["parameters"] == 4_587_282
    assert "routing_iterations" not in meta and meta["images_per_epoch"] == 16
    cnn = load_baseline(out)
    assert cnn.pooled and cnn.dropout_p == 0.25
    assert not torch.equal(cnn.conv1.weight, untrained.conv1.weight)  # it trained
    with pytest.raises(CheckpointError, match="load_baseline"):
        load_model(out)
    # The accuracy written is that of the weights written, read by argmax of the logits.
    from torchvision.datasets import MNIST

    test = MNIST(str(tiny_mnist), train=False)
    with torch.no_grad():
        wrong = int((cnn(to_float(test.data)).argmax(1) != test.targets).sum())
    assert meta["test_errors"] == wrong

    assert train_main([*args, "--epochs", "2", "--resume"]) == 0
    meta2 = json.loads(out.with_suffix(".json").read_text())
    assert meta2["epochs"] == 2 and meta2["history"][0] == meta["history"][0]
    assert not torch.equal(load_baseline(out).conv1.weight, cnn.conv1.weight)
    capsys.readouterr()
    # The resume file of one network never continues another.
    for other in ("capsnet", "cnn-unpooled"):
        swapped = [a if a != "cnn" else other for a in args]
        assert train_main([*swapped, "--epochs", "3", "--resume"]) == 2
        assert "different network" in capsys.readouterr().err
    assert json.loads(out.with_suffix(".json").read_text())["epochs"] == 2


@pytest.mark.parametrize("arch", ["capsnet", "cnn"])  # cnn-unpooled: the same class and dropout as cnn
def test_a_resumed_run_ends_bit_for_bit_where_an_uninterrupted_one_does(
    arch, tiny_mnist, tmp_path, one_thread
):
    """1 epoch + --resume for a second against 2 epochs in one go: the same weights, every tensor, and
    the same history (the CNN's dropout masks included)."""
    from capsnet.checkpoint import read_checkpoint

    whole, parts = tmp_path / "whole.pt", tmp_path / "parts.pt"
    assert train_main([*tiny_run(tiny_mnist, whole, steps=2), "--arch", arch, "--epochs", "2"]) == 0
    assert train_main([*tiny_run(tiny_mnist, parts, steps=2), "--arch", arch, "--epochs", "1"]) == 0
    assert (
        train_main([*tiny_run(tiny_mnist, parts, steps=2), "--arch", arch, "--epochs", "2", "--resume"]) == 0
    )
    a, b = read_checkpoint(whole)["state_dict"], read_checkpoint(parts)["state_dict"]
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    same = ("epoch", "train_loss", "train_accuracy", "test_accuracy", "lr")
    histories = [json.loads(p.with_suffix(".json").read_text())["history"] for p in (whole, parts)]
    kept = [[{k: e[k] for k in same} for e in h] for h in histories]
    assert len(kept[0]) == 2 and kept[0] == kept[1]


def test_cnn_loss_is_cross_entropy_and_counts_correct_predictions():
    from capsnet.baseline import BaselineCNN
    from capsnet.train import CrossEntropyLoss

    torch.manual_seed(0)
    cnn = BaselineCNN(pooled=True, dropout=0.0).eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        logits = cnn(x)
        y = logits.argmax(1)
        y[0] = (y[0] + 1) % 10  # one wrong
        loss, correct = CrossEntropyLoss(cnn, amp=False)(x, y)
    assert int(correct) == 3
    # -log softmax of the true class, averaged: written out, not taken from torch's own loss
    expected = -(logits.log_softmax(1)[torch.arange(4), y]).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_arch_picks_the_default_out_and_dropout_is_checked():
    from capsnet.train import parse_args

    assert parse_args([]).out == "checkpoints/capsnet_mnist.pt"
    assert parse_args(["--arch", "cnn"]).out == "checkpoints/cnn_mnist.pt"
    assert parse_args(["--arch", "cnn-unpooled"]).out == "checkpoints/cnn_unpooled_mnist.pt"
    for bad in ("1.0", "-0.1"):
        with pytest.raises(SystemExit):
            parse_args(["--arch", "cnn", "--dropout", bad])


def test_an_existing_checkpoint_is_never_overwritten_by_accident(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "net.pt"
    args = tiny_run(tiny_mnist, out, steps=1)
    assert train_main([*args, "--epochs", "1"]) == 0
    before = out.read_bytes()
    assert train_main([*args, "--epochs", "1"]) == 2
    assert "--resume" in capsys.readouterr().err and out.read_bytes() == before
    assert train_main([*args, "--epochs", "1", "--overwrite"]) == 0
    assert out.read_bytes() != before


def test_resume_without_state_says_so(tiny_mnist, tmp_path, capsys):
    rc = train_main(["--data-root", str(tiny_mnist), "--out", str(tmp_path / "x.pt"), "--resume"])
    assert rc == 2
    assert "does not exist" in capsys.readouterr().err


def test_training_data_missing_is_a_clear_error(tmp_path):
    from capsnet import CapsNet, save_checkpoint

    save_checkpoint(tmp_path / "net.pt", CapsNet())
    for module in ("capsnet.train", "capsnet.evaluate"):
        r = run_cli(
            module,
            "--data-root",
            str(tmp_path / "empty"),
            "--no-download",
            *(
                ["--checkpoint", str(tmp_path / "net.pt")]
                if module == "capsnet.evaluate"
                else ["--out", str(tmp_path / "new.pt")]
            ),
        )
        assert r.returncode == 2
        assert "MNIST not found" in r.stderr and "Traceback" not in r.stderr


def test_cli_help():
    for module, flags in (
        (
            "capsnet.train",
            [
                "--epochs",
                "--batch-size",
                "--lr",
                "--lr-decay",
                "--iterations",
                "--seed",
                "--device",
                "--out",
                "--resume",
                "--data-root",
                "--val",
                "--no-compile",
                "--no-amp",
                "--no-tf32",
                "--no-channels-last",
                "--no-fused",
                "--no-cudnn-benchmark",
            ],
        ),
        ("capsnet.evaluate", ["--checkpoint", "--data-root", "--json", "--iterations", "--routing-stats"]),
        ("capsnet.bench", ["infer", "train", "--n", "--peak-tflops", "--data-root", "--json"]),
    ):
        r = run_cli(module, "--help")
        assert r.returncode == 0, r.stderr
        for flag in flags:
            assert flag in r.stdout


def test_evaluate_json(tiny_mnist, tmp_path):
    from torchvision.datasets import MNIST

    from capsnet import CapsNet, save_checkpoint

    torch.manual_seed(0)
    model = CapsNet().eval()
    with torch.no_grad():
        model.digit_caps.W.mul_(100)  # random weights that still spread their answers over several digits
    ckpt = tmp_path / "net.pt"
    save_checkpoint(ckpt, model)
    r = run_cli(
        "capsnet.evaluate",
        "--checkpoint",
        str(ckpt),
        "--data-root",
        str(tiny_mnist),
        "--json",
        "--device",
        "cpu",
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    test = MNIST(str(tiny_mnist), train=False)
    with torch.no_grad():
        right = model(to_float(test.data)).prediction == test.targets
    assert 0 < int(right.sum()) < 32  # a case with both right and wrong answers
    assert result["n"] == 32 and result["iterations"] == 3 and result["iterations_evaluated"] == [3]
    assert result["accuracy"] == round(float(right.float().mean()), 6) == result["iteration_accuracy"]["3"]
    assert result["errors"] == int((~right).sum())
    assert result["per_class_accuracy"] == {
        str(d): round(float(right[test.targets == d].float().mean()), 6)
        for d in range(10)
        if bool((test.targets == d).any())
    }
    assert "routing_stats" not in result


def test_evaluate_bad_checkpoint_is_a_clear_error(tiny_mnist, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = run_cli("capsnet.evaluate", "--checkpoint", str(bad), "--data-root", str(tiny_mnist))
    assert r.returncode == 2
    assert "bad.pt" in r.stderr and "Traceback" not in r.stderr
