import json

import pytest

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
