import json
import pickle
from pathlib import Path

import pytest
import torch

from capsnet import DEFAULT_CHECKPOINT, CapsNet, CheckpointError, load_model, save_checkpoint
from capsnet.checkpoint import atomic_write


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
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(net(x).poses, loaded(x).poses)
    assert list(path.parent.glob("*.tmp")) == []


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
    p.write_bytes(torch.randint(0, 256, (5000,), dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(CheckpointError) as e:
        load_model(p)
    assert_helpful(e.value, "noise.pt")


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
    for key in ("test_accuracy", "epochs", "seconds_per_epoch", "train_seconds", "device", "torch_version", "seed", "command"):
        assert key in meta, key
    assert meta["test_accuracy"] >= 0.99
