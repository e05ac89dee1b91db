import json
import math

import pytest
import torch

from capsnet import CapsNet, save_checkpoint
from capsnet.evaluate import RoutingStats, predict, predict_per_iteration, summarize
from capsnet.evaluate import main as evaluate_main


def test_summarize_counts_errors_and_per_class_accuracy_of_a_hand_made_case():
    labels = torch.tensor([0, 1, 1, 1, 2, 2, 7, 7])
    preds = torch.tensor([0, 1, 4, 1, 2, 0, 7, 1])  # wrong: one 1, one 2, one 7
    result = summarize(preds, labels)
    assert result["accuracy"] == 5 / 8 and result["errors"] == 3 and result["n"] == 8
    # Only digits present in the labels, each its own share of correct answers.
    assert result["per_class_accuracy"] == {"0": 1.0, "1": round(2 / 3, 6), "2": 0.5, "7": 0.5}


def test_iterations_outside_1_to_10_is_an_argparse_error(capsys):
    for bad in ("11", "0"):
        with pytest.raises(SystemExit) as e:
            evaluate_main(["--iterations", "1", bad])
        assert e.value.code == 2
        assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        evaluate_main(["--routing-stats", "11"])
    assert e.value.code == 2


def test_routing_stats_of_a_hand_made_coupling():
    # T=2 iterations, 2 images, 2 primary capsules each, 10 digits.
    c = torch.full((2, 2, 2, 10), 0.1)  # iteration 1: uniform
    c[1, 0, 0] = 0.0
    c[1, 0, 0, 3] = 1.0  # image 0, capsule 0: all to digit 3   -> entropy 0 bits
    c[1, 0, 1] = 0.0
    c[1, 0, 1, 3] = c[1, 0, 1, 7] = 0.5  # capsule 1: half to 3, half to 7 -> 1 bit
    # image 1 stays uniform in iteration 2 -> log2(10) bits, c to any digit 0.1
    stats = RoutingStats(2)
    stats.update(c, torch.tensor([3, 5]))
    r = stats.result()
    # c to the predicted digit: [1.0, 0.5, 0.1, 0.1]; sorted 0.1 0.1 0.5 1.0
    assert r["median_c_pred"] == pytest.approx((0.1 + 0.5) / 2)
    assert r["p90_c_pred"] == pytest.approx(0.5 + 0.7 * (1.0 - 0.5))  # linear, position 0.9 * 3 = 2.7
    assert r["frac_c_above_0_2"] == 0.5
    log2_10 = math.log2(10)
    assert r["mean_entropy_bits"] == pytest.approx([log2_10, (0 + 1 + 2 * log2_10) / 4], abs=1e-6)
    assert r["iterations"] == 2 and r["test_images"] == 2


def test_routing_stats_of_no_images_say_so():
    with pytest.raises(ValueError, match="no images yet"):
        RoutingStats(3).result()


def test_one_traced_pass_gives_the_predictions_of_each_iteration_count():
    torch.manual_seed(0)
    model = CapsNet().eval()
    with torch.no_grad():
        model.digit_caps.W.mul_(100)  # large u_hat: routing changes the answer from one count to the next
    images = (torch.rand(12, 28, 28) * 255).to(torch.uint8)
    want = {r: predict(model, images, batch_size=5, iterations=r) for r in (1, 2, 4)}
    assert not torch.equal(want[1], want[2]) and not torch.equal(want[2], want[4])
    got = predict_per_iteration(model, images, [1, 2, 4], batch_size=5)
    for r in (1, 2, 4):
        assert torch.equal(got[r], want[r])


def zero_votes_checkpoint(folder):
    """A CapsNet whose W is 0, saved in `folder`: every vote u_hat is 0 (see the test below)."""
    model = CapsNet()
    with torch.no_grad():
        model.digit_caps.W.zero_()
    save_checkpoint(folder / "zero.pt", model)
    return folder / "zero.pt"


def test_evaluate_cli_with_zero_predictions_gives_uniform_coupling(tiny_mnist, tmp_path, capsys):
    """W = 0 makes every u_hat zero: the logits b never move, c = 1/10 everywhere and in every
    iteration (entropy log2 10 bits), every |v| is 0 and argmax says digit 0 for every image."""
    from mnist_files import synthetic_digits

    ckpt = zero_votes_checkpoint(tmp_path)
    rc = evaluate_main(
        [
            "--checkpoint",
            str(ckpt),
            "--data-root",
            str(tiny_mnist),
            "--device",
            "cpu",
            "--iterations",
            "1",
            "2",
            "3",
            "--routing-stats",
            "--json",
            "--batch-size",
            "10",
        ]
    )
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    _, labels = synthetic_digits(32, 1)  # what tests/mnist_files.py wrote as the test set
    zeros = float((labels == 0).mean())
    assert result["iterations_evaluated"] == [1, 2, 3]
    assert result["iteration_accuracy"] == {"1": zeros, "2": zeros, "3": zeros}
    # The single-count keys describe the last count listed, as before.
    assert result["accuracy"] == zeros and result["iterations"] == 3 and result["n"] == 32
    rs = result["routing_stats"]
    assert rs["iterations"] == 3 and rs["test_images"] == 32
    assert rs["median_c_pred"] == pytest.approx(0.1) and rs["p90_c_pred"] == pytest.approx(0.1)
    assert rs["frac_c_above_0_2"] == 0
    assert rs["mean_entropy_bits"] == pytest.approx([math.log2(10)] * 3, abs=1e-5)


def test_write_meta_adds_the_app_keys_and_keeps_the_rest(tiny_mnist, tmp_path, capsys):
    ckpt = zero_votes_checkpoint(tmp_path)
    kept = {"test_accuracy": 0.5, "history": [{"epoch": 1}], "iteration_accuracy": {"9": 0.0}}
    ckpt.with_suffix(".json").write_text(json.dumps(kept))
    argv = [
        "--checkpoint",
        str(ckpt),
        "--data-root",
        str(tiny_mnist),
        "--device",
        "cpu",
        "--iterations",
        "1",
        "3",
        "--routing-stats",
        "--write-meta",
        "--json",
    ]
    assert evaluate_main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    meta = json.loads(ckpt.with_suffix(".json").read_text())
    assert meta["test_accuracy"] == 0.5 and meta["history"] == [{"epoch": 1}]
    assert meta["iteration_accuracy"] == result["iteration_accuracy"] and set(meta["iteration_accuracy"]) == {
        "1",
        "3",
    }
    assert meta["routing_stats"] == result["routing_stats"] and meta["routing_stats"]["test_images"] == 32
    assert meta["routing_stats_command"].startswith("python -m capsnet.evaluate --checkpoint")
    assert "--write-meta" in meta["routing_stats_command"]
    # Figures of part of the test set are never written.
    assert evaluate_main([*argv, "--limit", "10"]) == 2
    assert json.loads(ckpt.with_suffix(".json").read_text()) == meta


def test_every_accuracy_path_counts_in_full_fp32_whatever_training_switched_on():
    """capsnet.train turns on TF32 and cuDNN autotuning for the whole process on a GPU. The test
    accuracy it records per epoch, capsnet.evaluate's and capsnet.robustness's clean accuracy must
    all count with full fp32 (tests/test_checkpoint.py wants them equal digit for digit), and the
    training switches must be back on afterwards. The switches are process-wide flags, so a CPU
    run sees exactly what a GPU run would set."""
    from capsnet.evaluate import backend_switches, set_backend_switches
    from capsnet.robustness import accuracy_under
    from capsnet.train import accuracy

    training = ("high", True, True)  # what capsnet.train sets with --tf32 on an Ampere GPU
    seen = []
    net = CapsNet().eval()
    net.conv1.register_forward_hook(lambda *_: seen.append(backend_switches()))
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    labels = torch.tensor([1, 2, 3])
    before = backend_switches()
    try:
        set_backend_switches(training)
        for name, count in (
            ("train.accuracy", lambda: accuracy(net, images, labels, 3)),
            ("evaluate.predict", lambda: predict(net, images)),
            ("evaluate.predict_per_iteration", lambda: predict_per_iteration(net, images, [1, 3])),
            ("robustness.accuracy_under", lambda: accuracy_under({"capsnet": net}, images, labels)),
        ):
            seen.clear()
            count()
            assert seen and set(seen) == {("highest", False, False)}, (name, seen)
            assert backend_switches() == training, f"{name} did not give training its switches back"
    finally:
        set_backend_switches(before)
