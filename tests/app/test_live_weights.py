"""The decoder file the page downloads for its live preview (app/decoder_weights.py): its format,
float16's accuracy on the shipped weights, its content-addressed name, and what the page is sent.
The JavaScript itself is checked against the model in Chromium (test_live_decoder.py)."""

import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from floats import FORWARD_ULPS, assert_close_f32
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest
from test_apptest import pose_data

import capsnet
from app import decoder_weights as W
from app import inputs
from app.pose_sliders import DIFF_LIMIT
from capsnet.preprocess import to_mnist

APP = str(Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py")
TOLERANCE = 1 / 255  # one grey level
SAMPLES, LABELS = inputs.load_samples()


@pytest.fixture(scope="module")
def shipped_model():
    return capsnet.load_model(capsnet.DEFAULT_CHECKPOINT)


@pytest.fixture
def static_dir(tmp_path, monkeypatch):
    """Where the app writes the file, instead of app/static/."""
    monkeypatch.setattr(W, "STATIC_DIR", tmp_path / "static")
    return tmp_path / "static"


def page_poses(model, index: int, iterations: int = 3) -> tuple[np.ndarray, int]:
    """(10, 16) poses and predicted digit of shipped sample `index`, as the page computes them."""
    x = torch.from_numpy(to_mnist(SAMPLES[index]).astype(np.float32)).reshape(1, 1, 28, 28)
    with torch.no_grad():
        out = model(x, iterations=iterations, trace=True)
    return out.poses[0].numpy(), int(out.prediction[0])


def file_decode(layers, pose: np.ndarray, d: int) -> np.ndarray:
    """The decoder as the page runs it on the file's weights: only capsule d's 16 columns of the
    first layer, float64 sums. pose (B, 16) -> (B, 784)."""
    (w1, b1), (w2, b2), (w3, b3) = [(w.astype(np.float64), b.astype(np.float64)) for w, b in layers]
    h = np.maximum(pose @ w1[:, 16 * d : 16 * d + 16].T + b1, 0)
    h = np.maximum(h @ w2.T + b2, 0)
    return 1 / (1 + np.exp(-(h @ w3.T + b3)))


def test_file_layout_and_round_trip(shipped_model):
    blob = W.pack(shipped_model)
    header, layers = W.unpack(blob)
    assert header == {
        "dtype": "float16",
        "digits": 10,
        "dim": 16,
        "layers": [[512, 160], [1024, 512], [784, 1024]],
    }
    n = int.from_bytes(blob[8:12], "little")
    assert blob[:8] == b"CAPSDEC1" and (12 + n) % 8 == 0
    params = sum(r * c + r for r, c in header["layers"])
    assert len(blob) == 12 + n + 2 * params  # 2 bytes a number, nothing else
    linears = [m for m in shipped_model.decoder if isinstance(m, torch.nn.Linear)]
    for (w, b), m in zip(layers, linears):
        np.testing.assert_array_equal(w, m.weight.detach().numpy().astype(np.float16).astype(np.float32))
        np.testing.assert_array_equal(b, m.bias.detach().numpy().astype(np.float16).astype(np.float32))
    with pytest.raises(ValueError, match="not a CapsNet decoder"):
        W.unpack(b"PK" + blob[2:])
    with pytest.raises(ValueError, match="bytes left"):
        W.unpack(blob + b"\0\0")


def test_float16_weights_decode_within_one_grey_level(shipped_model):
    """Every shipped sample, every capsule, offsets up to the wide range's +-0.5: the file's
    float16 weights give the float32 model's reconstruction within 1/255 per pixel."""
    _, layers = W.unpack(W.pack(shipped_model))
    x = torch.from_numpy(np.stack([to_mnist(s) for s in SAMPLES]).astype(np.float32)).reshape(-1, 1, 28, 28)
    with torch.no_grad():
        poses = shipped_model(x, iterations=3).poses.numpy()  # (40, 10, 16)
    rng = np.random.default_rng(0)
    grid = np.round(np.arange(-0.5, 0.501, 0.05), 2)
    offsets = np.concatenate([
        np.zeros((1, 16)), np.eye(16) * 0.5, -np.eye(16) * 0.5, rng.choice(grid, (8, 16)),
    ]).astype(np.float32)  # fmt: skip
    worst = np.zeros(10)  # per capsule
    for d in range(10):
        moved = np.repeat(poses[:, None], len(offsets), axis=1)  # (40, O, 10, 16)
        moved[:, :, d] += offsets
        moved = moved.reshape(-1, 10, 16)
        with torch.no_grad():
            want = shipped_model.reconstruct(torch.from_numpy(moved), torch.full((len(moved),), d))
        got = file_decode(layers, moved[:, d], d)
        worst[d] = np.abs(got - want.reshape(len(moved), 784).numpy()).max()
    assert np.all(worst < TOLERANCE), worst  # NaN fails too


def test_file_is_named_after_its_content_and_written_once(shipped_model, random_checkpoint, tmp_path):
    folder = tmp_path / "static"
    name = W.publish(shipped_model, folder)
    blob = W.pack(shipped_model)
    assert name == f"decoder-{hashlib.sha256(blob).hexdigest()[:16]}.bin.gz"
    path = folder / name
    assert gzip.decompress(path.read_bytes()) == blob
    assert path.stat().st_mtime == W.MTIME  # Last-Modified far back: browsers keep it (see MTIME)
    before = path.stat().st_mtime_ns, path.stat().st_ino
    same_weights = capsnet.load_model(capsnet.DEFAULT_CHECKPOINT)
    assert W.publish(same_weights, folder) == name
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before  # not written again
    other = W.publish(capsnet.load_model(random_checkpoint), folder)
    assert other != name  # another checkpoint never reuses the shipped file
    assert sorted(os.listdir(folder)) == sorted([name, other])  # no temporary files left


def test_page_sends_the_file_pose_and_digit(static_dir, monkeypatch, random_checkpoint, shipped_model):
    monkeypatch.setenv("CAPSNET_CHECKPOINT", str(capsnet.DEFAULT_CHECKPOINT))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"sample": "12", "capsule": "3", "iters": "2", "view": "pose"})
    at.run()
    assert not at.exception
    live = pose_data(at)[0]["live"]
    assert live["weights"] == "app/static/" + W.publish(shipped_model, static_dir)
    assert (static_dir / live["weights"].removeprefix("app/static/")).is_file()
    poses, _ = page_poses(shipped_model, 12, iterations=2)
    assert live["digit"] == 3 and live["why"] == ""
    # The page decodes the server's float32 pose: JSON carries it exactly, and it is the model's.
    assert np.float32(live["pose"]).tolist() == live["pose"]
    assert_close_f32(live["pose"], poses[3], FORWARD_ULPS, scale=poses)  # the app ran it in its own thread
    assert pose_data(at)[0]["diff_limit"] == DIFF_LIMIT == 0.5

    monkeypatch.setenv("CAPSNET_CHECKPOINT", str(random_checkpoint))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"sample": "12", "view": "pose"})
    at.run()
    assert not at.exception
    other = pose_data(at)[0]["live"]["weights"]
    assert other.startswith("app/static/decoder-") and other != live["weights"]
    assert len(list(static_dir.iterdir())) == 2


def test_without_static_serving_the_page_says_why(static_dir, monkeypatch):
    monkeypatch.setenv("CAPSNET_CHECKPOINT", str(capsnet.DEFAULT_CHECKPOINT))
    was = st_config.get_option("server.enableStaticServing")
    st_config.set_option("server.enableStaticServing", False)
    try:
        at = AppTest.from_file(APP, default_timeout=60)
        at.query_params.update({"sample": "12", "view": "pose"})
        at.run()
    finally:
        st_config.set_option("server.enableStaticServing", was)
    assert not at.exception
    live = pose_data(at)[0]["live"]
    assert live["weights"] is None and "server.enableStaticServing" in live["why"]
    assert not static_dir.exists()
    assert len(at.container(key="reconstruction").get("image")) == 1  # the server's pictures remain


def test_an_unwritable_folder_leaves_the_server_pictures(tmp_path, monkeypatch, shipped_model):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setattr(W, "STATIC_DIR", blocker / "static")
    weights, why = W.browser_copy(shipped_model)
    assert weights is None and "could not be written" in why


def test_the_static_folder_ships_with_the_checkout():
    """server.enableStaticServing needs app/static/ to exist when the server starts, or it warns
    "no static folder found" on a fresh checkout; the decoder files the app writes there stay out
    of git."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    tracked = subprocess.run(
        ["git", "ls-files", "app/static"], cwd=root, capture_output=True, text=True, check=True
    )
    assert tracked.stdout.split() == ["app/static/.gitignore"]
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "app/static/decoder-0123456789abcdef.bin.gz"], cwd=root
    )
    assert ignored.returncode == 0
