import json

import pytest
import torch
import torch.nn.functional as F

from capsnet import CapsNet, CheckpointError, baseline, count_parameters, save_checkpoint
from capsnet.baseline import BaselineCNN, load_baseline, main, multiply_adds, predict_proba, save_baseline


def conv_params(c_in, c_out, k):
    return c_in * c_out * k * k + c_out  # weights + biases


def linear_params(n_in, n_out):
    return n_in * n_out + n_out


def expected_parameters(side):  # `side`: fc1 sees 128 x side x side features
    return (
        conv_params(1, 256, 5)
        + conv_params(256, 256, 5)
        + conv_params(256, 128, 5)
        + linear_params(128 * side * side, 328)
        + linear_params(328, 192)
        + linear_params(192, 10)
    )


def expected_multiply_adds(sides):  # output side of conv1, conv2, conv3
    s1, s2, s3 = sides
    convs = s1 * s1 * 256 * 1 * 25 + s2 * s2 * 256 * 256 * 25 + s3 * s3 * 128 * 256 * 25
    return convs + 128 * s3 * s3 * 328 + 328 * 192 + 192 * 10


def test_parameter_counts_follow_from_the_layer_shapes():
    with torch.device("meta"):  # shapes without memory or initialisation
        pooled, full = BaselineCNN(pooled=True), BaselineCNN(pooled=False)
    # 28 -> pool -> 14 -> pool -> 7 with "same" convolutions; without pooling fc1 sees 28 x 28.
    assert count_parameters(pooled) == expected_parameters(7) == 4_587_282
    assert count_parameters(full) == expected_parameters(28) == 35_445_522  # the paper's 35.4 M
    assert linear_params(128 * 28 * 28, 328) == full.fc1.weight.numel() + full.fc1.bias.numel() == 32_915_784
    shapes = {n: tuple(p.shape) for n, p in pooled.named_parameters()}
    assert shapes == {
        "conv1.weight": (256, 1, 5, 5), "conv1.bias": (256,),
        "conv2.weight": (256, 256, 5, 5), "conv2.bias": (256,),
        "conv3.weight": (128, 256, 5, 5), "conv3.bias": (128,),
        "fc1.weight": (328, 6272), "fc1.bias": (328,),
        "fc2.weight": (192, 328), "fc2.bias": (192,),
        "out.weight": (10, 192), "out.bias": (10,),
    }  # fmt: skip


def test_multiply_adds_per_image_follow_from_the_shapes():
    with torch.device("meta"):
        one = torch.zeros(1, 1, 28, 28)
        pooled, full, caps = BaselineCNN(pooled=True), BaselineCNN(pooled=False), CapsNet()
        assert multiply_adds(pooled, one) == expected_multiply_adds((28, 14, 7)) == 368_406_912
        assert multiply_adds(full, one) == expected_multiply_adds((28, 28, 28)) == 1_964_756_352
        # CapsNet, 3 routing iterations: conv1 (20x20x256, 9x9x1), PrimaryCaps (6x6x256, 9x9x256),
        # u_hat (1152 x 10 x 16 x 8), three weighted sums s and two agreements (1152 x 10 x 16 each).
        expected = 20 * 20 * 256 * 81 + 6 * 6 * 256 * 81 * 256 + 1152 * 10 * 16 * 8 + 5 * 1152 * 10 * 16
        assert multiply_adds(caps, one, iterations=3) == expected == 201_793_536
    assert 1.8 < 368_406_912 / expected < 1.85
    # The same count on real tensors (the pooled net; the unpooled one costs 2 G multiply-adds).
    assert multiply_adds(BaselineCNN(pooled=True).eval(), torch.zeros(1, 1, 28, 28)) == 368_406_912


def test_forward_gives_logits_and_refuses_other_shapes():
    net = BaselineCNN().eval()
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        net(torch.rand(3, 28, 28))
    with pytest.raises(TypeError, match="floating-point"):
        net(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))


def test_predict_proba_is_a_deterministic_distribution_and_keeps_the_mode():
    torch.manual_seed(0)
    net = BaselineCNN(dropout=0.5).train()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    p1, p2 = predict_proba(net, x), predict_proba(net, x)
    assert p1.shape == (4, 10) and torch.all(p1 >= 0)
    torch.testing.assert_close(p1.sum(dim=1), torch.ones(4))
    assert torch.equal(p1, p2)  # dropout off while predicting
    assert net.training  # ... and the mode it had is back
    torch.testing.assert_close(p1, torch.softmax(net.eval()(x), dim=1))
    assert not p1.requires_grad


def test_dropout_sits_between_the_last_hidden_layer_and_the_output():
    # "The last fully connected layer is connected with dropout to a 10 class softmax layer":
    # with every unit dropped (p = 1, training) the logits are the output layer's biases alone.
    torch.manual_seed(0)
    net = BaselineCNN(dropout=1.0).train()
    torch.nn.init.uniform_(net.out.bias)
    logits = net(torch.rand(3, 1, 28, 28))
    assert torch.equal(logits, net.out.bias.expand(3, 10))
    assert not torch.equal(net.eval()(torch.rand(3, 1, 28, 28)), net.out.bias.expand(3, 10).detach())


def test_every_parameter_gets_a_gradient_from_cross_entropy():
    torch.manual_seed(0)
    net = BaselineCNN().train()
    x, y = torch.rand(2, 1, 28, 28), torch.tensor([3, 7])
    F.cross_entropy(net(x), y).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    net = BaselineCNN(pooled=True, dropout=0.3).eval()
    path = tmp_path / "cnn.pt"
    save_baseline(path, net, {"test_accuracy": 0.5})
    return net, path


def test_save_and_load_round_trip_with_metadata_beside(saved):
    net, path = saved
    loaded = load_baseline(path)
    assert isinstance(loaded, BaselineCNN) and not loaded.training
    assert loaded.pooled is True and loaded.dropout_p == 0.3
    state, back = net.state_dict(), loaded.state_dict()
    assert state.keys() == back.keys() and all(torch.equal(state[k], back[k]) for k in state)
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta == {"arch": "cnn", "pooled": True, "dropout": 0.3, "test_accuracy": 0.5}
    assert sorted(p.name for p in path.parent.iterdir()) == ["cnn.json", "cnn.pt"]  # no temp files left


def test_a_resume_file_carries_extra_state_and_no_json(tmp_path):
    torch.manual_seed(0)
    net = BaselineCNN()
    opt = torch.optim.Adam(net.parameters())
    F.cross_entropy(net(torch.rand(2, 1, 28, 28)), torch.tensor([1, 2])).backward()
    opt.step()
    path = tmp_path / "cnn.resume.pt"
    save_baseline(path, net, {"epochs": 1}, metadata_json=False, optimizer=opt.state_dict(), epoch=1)
    assert [p.name for p in tmp_path.iterdir()] == ["cnn.resume.pt"]
    payload = torch.load(path, weights_only=True)
    assert payload["epoch"] == 1 and json.loads(payload["meta"])["epochs"] == 1
    fresh = torch.optim.Adam(BaselineCNN().parameters())
    fresh.load_state_dict(payload["optimizer"])  # a real optimizer state, usable to resume
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert isinstance(load_baseline(path), BaselineCNN)


def test_loader_rebuilds_the_recorded_variant(saved, tmp_path):
    _, path = saved
    payload = torch.load(path, weights_only=True)
    payload["arch"]["pooled"] = (
        False  # pooled weights labelled as the unpooled network: fc1 is 6272 wide, not 100352
    )
    bad = tmp_path / "relabelled.pt"
    torch.save(payload, bad)
    with pytest.raises(
        CheckpointError, match=r"different architecture than BaselineCNN\(pooled=False\).*fc1.weight"
    ):
        load_baseline(bad)


def test_loader_refuses_missing_empty_and_corrupt_files(saved, tmp_path):
    _, path = saved
    with pytest.raises(CheckpointError, match="not found"):
        load_baseline(tmp_path / "nope.pt")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_baseline(empty)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_baseline(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01not a torch file" * 100)
    with pytest.raises(CheckpointError):
        load_baseline(garbage)


class Boom:
    def __reduce__(self):
        return (open, ("/nonexistent-dir/should-not-exist", "w"))


def test_loader_never_unpickles_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "baseline-cnn-v1", "arch": {"pooled": True}, "state_dict": {}, "x": Boom()}, path)
    with pytest.raises(CheckpointError, match="refused unopened"):
        load_baseline(path)


def test_loader_refuses_other_architectures_by_name(tmp_path):
    caps = tmp_path / "caps.pt"
    save_checkpoint(caps, CapsNet())
    with pytest.raises(CheckpointError, match="CapsNet checkpoint: load it with capsnet.load_model"):
        load_baseline(caps)
    torch.manual_seed(0)
    state = BaselineCNN().state_dict()
    no_arch = tmp_path / "no_arch.pt"
    torch.save({"format": "baseline-cnn-v1", "state_dict": state}, no_arch)
    with pytest.raises(CheckpointError, match="does not record its architecture"):
        load_baseline(no_arch)
    del state["fc2.bias"]
    state["fc2.weight"] = torch.zeros(100, 328)
    partial = tmp_path / "partial.pt"
    torch.save({"format": "baseline-cnn-v1", "arch": {"pooled": True}, "state_dict": state}, partial)
    with pytest.raises(
        CheckpointError, match=r"missing fc2.bias.*fc2.weight: file \(100, 328\) vs model \(192, 328\)"
    ):
        load_baseline(partial)


def test_loader_refuses_nan_weights(saved, tmp_path):
    _, path = saved
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["fc1.weight"][0, 0] = float("nan")
    bad = tmp_path / "nan.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match="NaN or Inf"):
        load_baseline(bad)


def test_measure_cli_reports_sizes_and_times(capsys, monkeypatch):
    # The timing loop runs each training step once and reports fixed times (real timing takes minutes).
    ran = []

    def fake_seconds(steps, rounds):
        ran.extend(step() for step in steps.values())
        return {name: 0.064 * rounds for name in steps}

    monkeypatch.setattr(baseline, "_step_seconds", fake_seconds)
    assert main(["--batches", "2", "--batch-size", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(ran) == 3
    rows = {r["model"]: r for r in report["rows"]}
    assert set(rows) == {"capsnet", "cnn pooled=True", "cnn pooled=False"}
    assert rows["cnn pooled=True"]["parameters"] == expected_parameters(7)
    assert rows["cnn pooled=False"]["parameters"] == expected_parameters(28)
    assert rows["cnn pooled=False"]["multiply_adds"] == expected_multiply_adds((28, 28, 28))
    assert rows["capsnet"]["parameters"] == 8_215_568
    assert rows["capsnet"]["multiply_adds"] - rows["capsnet"]["multiply_adds_without_decoder"] == (
        160 * 512 + 512 * 1024 + 1024 * 784
    )
    for r in rows.values():
        assert r["train_seconds_per_image"] == pytest.approx(0.064 * 2 / 2)  # per step / batch size
        assert r["train_minutes_per_60k_epoch"] == pytest.approx(0.064 * 60_000 / 60)
    assert rows["cnn pooled=True"]["multiply_adds_vs_capsnet"] == round(368_406_912 / 203_202_560, 2)


def test_step_timer_interleaves_the_models_and_takes_the_median(monkeypatch):
    clock, calls = [0.0], []
    durations = {"a": iter([50.0, 1.0, 2.0, 10.0]), "b": iter([50.0, 5.0, 7.0, 6.0])}  # warm-up first

    def step(name):
        calls.append(name)
        clock[0] += next(durations[name])

    monkeypatch.setattr(baseline.time, "perf_counter", lambda: clock[0])
    seconds = baseline._step_seconds({"a": lambda: step("a"), "b": lambda: step("b")}, rounds=3)
    assert calls == ["a", "b"] * 4
    assert seconds == {"a": 2.0, "b": 6.0}  # warm-up left out; the median, not the mean (4.33 for a)
