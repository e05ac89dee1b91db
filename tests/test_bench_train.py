import json

import pytest
import torch

from capsnet.bench import main as bench_main
from capsnet.bench import training_flops_per_image

pytestmark = pytest.mark.usefixtures("one_thread")


def test_training_flops_follow_the_layer_shapes():
    conv1 = 20 * 20 * 256 * 81  # output pixels x channels x 9x9 taps (one input channel)
    primary = 6 * 6 * 256 * 256 * 81  # 6x6 outputs x 256 channels x 256 inputs x 9x9
    u_hat = 1152 * 10 * 16 * 8
    routing = 1152 * 10 * 16 * (3 + 2)  # s_j in 3 iterations, agreement in the first 2
    decoder = 160 * 512 + 512 * 1024 + 1024 * 784
    forward = 2 * (conv1 + primary + u_hat + routing + decoder)
    flops = training_flops_per_image(3)
    assert sum(flops["forward"].values()) == forward
    assert flops["total"] == 3 * forward - 2 * conv1  # no gradient for the image itself
    assert 1.19e9 < flops["total"] < 1.21e9  # "about 1.2 GFLOP"


def test_bench_train_times_both_pipelines_on_cpu(tiny_mnist, capsys):
    rc = bench_main(
        [
            "train",
            "--data-root",
            str(tiny_mnist),
            "--device",
            "cpu",
            "--n",
            "16",
            "--batch-size",
            "8",
            "--rounds",
            "2",
            "--peak-tflops",
            "2",
            "--json",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    for name in ("usual", "ours"):
        r = result[name]
        assert len(r["rounds_images_per_second"]) == 2 and r["images_per_second"] > 0
        assert r["seconds_per_epoch"] == pytest.approx(60_000 / r["images_per_second"], rel=1e-3)
        floor = training_flops_per_image()["total"] * 60_000 / 2e12  # seconds per epoch at 2 TFLOP/s
        assert r["times_floor"] == pytest.approx(r["seconds_per_epoch"] / floor, rel=0.01)
    assert result["ratio"] == pytest.approx(
        result["ours"]["images_per_second"] / result["usual"]["images_per_second"], abs=0.01
    )
    assert result["n"] == 16 and result["ours"]["speed"]["compile"] is False  # auto: off on a CPU
    assert "(a) usual" in out and "(b) ours" in out and "ours / usual" in out and "x the floor" in out


def test_bench_train_without_a_known_peak_asks_for_one(tiny_mnist, capsys):
    assert (
        bench_main(
            [
                "train",
                "--data-root",
                str(tiny_mnist),
                "--device",
                "cpu",
                "--n",
                "8",
                "--batch-size",
                "8",
                "--rounds",
                "1",
            ]
        )
        == 0
    )
    assert "pass --peak-tflops" in capsys.readouterr().out


def test_bench_train_without_data_is_a_clear_error(tmp_path, capsys):
    assert bench_main(["train", "--data-root", str(tmp_path), "--device", "cpu", "--n", "8"]) == 2
    assert "--data-root" in capsys.readouterr().err


def test_bench_inference_stays_the_default(capsys):
    assert bench_main(["--repeats", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"forward_plain", "forward_traced", "traced_over_plain"} <= set(result)


@pytest.mark.parametrize("formulation", ["s2d", "unfold"])
def test_each_primarycaps_formulation_computes_the_convolution_and_its_gradients(formulation):
    from capsnet.bench import FORMULATIONS
    from capsnet.model import PrimaryCaps

    torch.manual_seed(0)
    plain = PrimaryCaps().double()
    other = FORMULATIONS[formulation]().double()
    other.load_state_dict(plain.state_dict())
    x = torch.rand(3, 256, 20, 20, dtype=torch.float64)
    out_plain, out_other = plain(x), other(x)
    assert out_other.shape == (3, 1152, 8)
    torch.testing.assert_close(out_other, out_plain, rtol=1e-9, atol=1e-12)  # float64: the same sums
    out_plain.pow(2).sum().backward()
    out_other.pow(2).sum().backward()
    for a, b in zip(plain.parameters(), other.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-9, atol=1e-12)


def test_path_names_parse_into_their_features_and_nonsense_is_refused():
    from capsnet.bench import TrainPath

    p = TrainPath.parse("bf16+cl+compile+s2d")
    assert (p.amp, p.channels_last, p.compile, p.formulation) == (True, True, True, "s2d")
    p = TrainPath.parse("fp32")
    assert (p.amp, p.channels_last, p.compile, p.formulation) == (False, False, False, "conv")
    for bad in ("fp16", "bf16+fast", "bf16+s2d+unfold", "bf16+cl+cl", ""):
        with pytest.raises(ValueError):
            TrainPath.parse(bad)


def test_the_floor_puts_the_convolutions_at_the_bf16_rate_and_the_rest_at_fp32():
    from capsnet.bench import step_floor_seconds

    conv1 = 2 * 20 * 20 * 256 * 81
    primary = 2 * 6 * 6 * 256 * 256 * 81
    conv = 3 * (conv1 + primary) - conv1  # no gradient for the image
    rest = training_flops_per_image(3)["total"] - conv
    assert step_floor_seconds(100.0, 400.0) == pytest.approx(conv / 400e9 + rest / 100e9)
    assert rest < 0.05 * conv  # the convolutions are the step's arithmetic


def test_bench_paths_times_each_path_and_checks_the_numerics(tiny_mnist, capsys):
    paths = "fp32,bf16,bf16+unfold"
    argv = ["paths", "--data-root", str(tiny_mnist), "--batch-size", "4", "--rounds", "2", "--steps", "1"]
    argv += [
        "--warmup",
        "1",
        "--paths",
        paths,
        "--check-steps",
        "2",
        "--check-batch",
        "4",
        "--check-seeds",
        "2",
    ]
    assert bench_main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    assert list(result["paths"]) == paths.split(",")
    floor = 1 / result["floor_images_per_second"]
    for r in result["paths"].values():
        assert len(r["rounds_images_per_second"]) == 2 and r["images_per_second"] > 0
        assert r["times_floor"] == pytest.approx((1 / r["images_per_second"]) / floor, rel=0.02)
    assert result["fastest"] == max(result["paths"], key=lambda n: result["paths"][n]["images_per_second"])
    n = result["numerics"]
    assert n["candidate"] == result["fastest"] and len(n["fp32_seed_losses"]) == 2
    low, high = min(n["fp32_seed_losses"]), max(n["fp32_seed_losses"])
    assert n["fp32_spread"] == pytest.approx(high - low, abs=2e-6)
    inside = low <= n["candidate_loss"] <= high or abs(n["candidate_minus_fp32_seed0"]) <= high - low
    assert n["within_spread"] == inside
    assert "floor" in out and "numerics, 2 steps" in out


def test_bench_paths_refuses_an_unknown_path(tiny_mnist, capsys):
    with pytest.raises(SystemExit):
        bench_main(["paths", "--data-root", str(tiny_mnist), "--paths", "fp32,bf17"])
    assert "unknown path 'bf17'" in capsys.readouterr().err
