"""What the page computes once and reuses: the model, the traced forward pass, decodes, pictures.

Every function here is cached by Streamlit; none draws anything. The sections of the page
(app/sections/) take their results as arguments, so one forward pass feeds the whole page.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import streamlit as st
import torch

import capsnet
from app import images as I
from app import inputs, pixel_arrays, pose_measures, routing_measures
from capsnet import atlas
from capsnet.baseline import load_baseline, predict_proba
from capsnet.model import DIGIT_DIM
from capsnet.transforms import affine, sweep


def checkpoint_path() -> Path:
    """The weights the page runs: $CAPSNET_CHECKPOINT as given (weights loaded from it keep serving
    if the file later goes away), else capsnet.resolve_checkpoint(): the checkout's file, else the
    installed copy; CheckpointError, saying what was tried, when there is none."""
    env = os.environ.get(capsnet.checkpoint.CHECKPOINT_ENV)
    return Path(env) if env else capsnet.resolve_checkpoint()


def cnn_checkpoint_path() -> Path:
    """The baseline CNN the equivariance lab compares with: $CAPSNET_CNN_CHECKPOINT, else the shipped one."""
    return Path(
        os.environ.get("CAPSNET_CNN_CHECKPOINT") or capsnet.DEFAULT_CHECKPOINT.with_name("cnn_mnist.pt")
    )


def _stat(path: Path) -> tuple:
    """(modification time, size) of a file, (None, None) if there is none: a cheap sign it changed."""
    try:
        st_ = path.stat()
        return st_.st_mtime_ns, st_.st_size
    except OSError:
        return None, None


@st.cache_resource(max_entries=2, show_spinner="Loading the CapsNet weights…")
def _weights(path: str) -> tuple[capsnet.CapsNet, str]:
    """The model at `path` and the sha256 of the bytes it was loaded from: hashed once, and a file
    replaced meanwhile (another size or modification time after loading) is refused."""
    before = _stat(Path(path))
    sha = atlas.file_sha256(path) if Path(path).is_file() else None
    model = capsnet.load_model(path)
    if _stat(Path(path)) != before:
        raise capsnet.CheckpointError(f"{path} changed while it was being loaded; reload the page.")
    return model, sha


def load_model(path: str) -> capsnet.CapsNet:
    """Once per process and path. The loaded weights keep serving every session even if the
    file is later replaced or removed; a failed load is not cached, so a fixed file is picked up."""
    return _weights(path)[0]


def served_sha256(path: str) -> str:
    """The sha256 of the weights this process serves for `path` (not of the file now at `path`)."""
    return _weights(path)[1]


@st.cache_resource(max_entries=2, show_spinner="Loading the baseline CNN's weights…")
def load_cnn(path: str):
    """Like load_model, for capsnet.baseline's CNN (raises CheckpointError the same way)."""
    return load_baseline(path)


@st.cache_resource(max_entries=4, show_spinner=False)
def _pose_atlas(checkpoint: str, atlas_stat: tuple, weights_stat: tuple) -> dict | str:
    """The pose atlas beside `checkpoint` if it was measured on those very weights, else why not.
    Cached per file state (modification time and size of both files): hashing 33 MB of weights
    on every run would cost ~70 ms."""
    try:
        return atlas.load_atlas(checkpoint=checkpoint)
    except atlas.AtlasError as e:
        return str(e)


def pose_atlas(checkpoint: Path) -> tuple[dict | None, str | None]:
    """(atlas, None): capsnet.atlas.load_atlas for the page's weights (never mutate it); or (None,
    why there is none, saying how to make one). The atlas must describe the weights this process
    serves: a checkpoint replaced on disk since it was loaded does not pass."""
    served = served_sha256(str(checkpoint))
    found = _pose_atlas(
        str(checkpoint), _stat(checkpoint.with_name(atlas.DEFAULT_ATLAS.name)), _stat(checkpoint)
    )
    if isinstance(found, str):
        return None, found
    if found["checkpoint_sha256"] != served:
        return None, (
            f"{checkpoint} was replaced since this server loaded its weights: the pose atlas beside it "
            "describes the new file, not the weights served. Restart the app to serve the new weights."
        )
    return found, None


@st.cache_data(max_entries=64, show_spinner=False)
def capsule_measures(_model, version: str, pixels: bytes, iterations: int, digit: int) -> list[dict]:
    """The pose atlas's measures for this input's capsule `digit`, all 16 dimensions: one decoder
    call of 33 images (capsnet.atlas.measure_capsule)."""
    poses = torch.tensor(
        forward(_model, version, pixels, iterations)["poses"]
    )  # a copy: the result is read-only
    with torch.no_grad():
        return atlas.measure_capsule(_model, poses, digit)


@st.cache_resource
def load_samples() -> tuple[np.ndarray, np.ndarray]:
    """The shipped MNIST samples and labels, read once per process (never mutated)."""
    return inputs.load_samples()


def forward(model, version: str, pixels: bytes, iterations: int, routing_gain: float = 1.0) -> dict:
    """One traced forward pass for a 28x28 float32 image (given as bytes): numpy arrays only, read-only.
    routing_gain 1 is the paper's routing; other values are the page's "stronger routing" experiment.
    Every caller comes through here, so one input has one cache key however the gain is passed (the
    cache hashes the arguments as given: `f(x, 3)` and `f(x, 3, 1.0)` would be two entries, and a
    stroke would run the network twice)."""
    return _forward(model, version, pixels, int(iterations), float(routing_gain))


@st.cache_resource(max_entries=64, show_spinner=False)
def _forward(_model, version: str, pixels: bytes, iterations: int, routing_gain: float) -> dict:
    """`forward`, cached.

    A resource, not cache_data: every session showing this input shares the one result instead of
    pickling its 2.5 MB on the way in and unpickling it on every rerun (~5 ms each, ahead of the
    prediction on a stroke). The arrays are made read-only so no caller can change another's."""
    with torch.no_grad():
        out = _model(_image(pixels), iterations=iterations, trace=True, routing_gain=routing_gain)
    res = {
        "lengths": out.lengths[0].numpy(),  # (10,)
        "lengths_per_iter": out.lengths_per_iter[:, 0].numpy(),  # (T, 10)
        "coupling": out.coupling[:, 0].numpy(),  # (T, 1152, 10)
        "primary_len": torch.linalg.vector_norm(out.primary[0], dim=-1).numpy(),  # (1152,)
        "logits": out.logits[:, 0].numpy(),  # (T, 1152, 10) the b that gave coupling[t]
        "u_hat": out.u_hat[0].numpy(),  # (1152, 10, 16) votes u_hat_j|i
        "poses_per_iter": out.poses_per_iter[:, 0].numpy(),  # (T, 10, 16)
        "poses": out.poses[0].numpy(),  # (10, 16)
        "prediction": int(out.prediction[0]),
    }
    for value in res.values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return res


@st.cache_resource(max_entries=64, show_spinner=False)
def agreement(_model, version: str, pixels: bytes, iterations: int, routing_gain: float = 1.0) -> np.ndarray:
    """Each primary capsule's share of |s_j| in every iteration, c_ij (u_hat_j|i . v_j / |v_j|):
    (T, 1152, 10), read-only. Summed over i it gives |s_j| exactly, so it says where the evidence
    for j comes from. Only the routing view needs it, so the forward pass does not compute it."""
    res = forward(_model, version, pixels, iterations, routing_gain)
    shares = routing_measures.agreement_shares(res["coupling"], res["u_hat"], res["poses_per_iter"])
    shares.flags.writeable = False
    return shares


@st.cache_data(max_entries=64, show_spinner=False)
def conv1_maps(_model, version: str, pixels: bytes) -> np.ndarray:
    """Conv1's 256 ReLU feature maps of a 28x28 image: (256, 20, 20) float32. The model's own
    layer, as in its forward pass (which keeps no copy of them)."""
    with torch.no_grad():
        return torch.relu(_model.conv1(_image(pixels)))[0].numpy()


@st.cache_data(max_entries=64, show_spinner=False)
def reconstruction(_model, version: str, pixels: bytes, iterations: int, digit: int) -> np.ndarray:
    """The decoder's (28, 28) redrawing of the input from digit capsule `digit` alone."""
    poses = forward(_model, version, pixels, iterations)["poses"]
    return decode(_model, poses[None], [digit])[0]


def decode(model, poses: np.ndarray, digits) -> np.ndarray:
    """Decoder on (B, 10, 16) poses masked to `digits` (B,): (B, 28, 28) in [0, 1]."""
    with torch.no_grad():
        recon = model.reconstruct(torch.tensor(poses, dtype=torch.float32),
                                  torch.as_tensor(digits))  # fmt: skip
    return recon[:, 0].numpy()


@st.cache_data(max_entries=64, show_spinner=False)
def perturbation_grid(_model, version: str, pixels: bytes, iterations: int, digit: int) -> np.ndarray:
    """The paper's Fig. 4 for one capsule: 16 dims x 11 offsets, decoded in one batch of 176."""
    poses = forward(_model, version, pixels, iterations)["poses"]
    steps = pose_measures.perturbation_steps()
    batch = pose_measures.perturbed_poses(poses, digit, steps)  # (176, 10, 16)
    images = decode(_model, batch, np.full(len(batch), digit))  # (176, 28, 28)
    return pixel_arrays.stitch(images, DIGIT_DIM, len(steps))  # (16*28, 11*28)


@st.cache_data(max_entries=512, show_spinner=False)
def picture(builder: str, *args, shown_width: int | None = None, **kwargs) -> bytes:
    """PNG of images.<builder>(*args, **kwargs) (reduced to `shown_width`), drawn and encoded once
    per distinct input. A rerun that shows a picture again (another routing-iteration count, another
    session on the same sample) then costs the server a hash, not a drawing and an encoding. Show it
    with st.image(..., output_format="PNG") (the page gets the same URL back and its browser the
    image from its cache; without the format Streamlit re-encodes it as JPEG, see images.png), or in
    a capsule-map "rows" element with capsule_map.image_item (sent in the element's data)."""
    return I.png(getattr(I, builder)(*args, **kwargs), width=shown_width)


def _image(pixels: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(pixels), dtype=torch.float32).reshape(1, 1, 28, 28)


def _both_models(model, cnn, x: torch.Tensor, iterations: int) -> dict:
    """CapsNet and (if there is one) the CNN on a batch x (B, 1, 28, 28): numpy results."""
    with torch.no_grad():
        out = model(x, iterations=iterations)
    probs = None if cnn is None else predict_proba(cnn, x).numpy()  # (B, 10)
    return {
        "images": x[:, 0].numpy(),  # (B, 28, 28)
        "lengths": out.lengths.numpy(),  # (B, 10)
        "poses": out.poses.numpy(),  # (B, 10, 16)
        "prediction": out.prediction.numpy(),  # (B,)
        "cnn_probs": probs,
    }


@st.cache_data(max_entries=256, show_spinner=False)
def lab_transform(_model, _cnn, version: str, pixels: bytes, iterations: int, params: tuple) -> dict:
    """The equivariance lab for one set of slider values: the input transformed by
    capsnet.transforms.affine(**dict(params)), both models' answers, and the reconstruction from
    the winning capsule. One forward per model on one image."""
    res = _both_models(_model, _cnn, affine(_image(pixels), **dict(params)), iterations)
    winner = int(res["prediction"][0])
    res["recon"] = decode(_model, res["poses"], [winner])[0]
    return res


@st.cache_data(max_entries=32, show_spinner="Sweeping…")
def lab_sweep(
    _model, _cnn, version: str, pixels: bytes, iterations: int, family: str, steps: int = 31
) -> dict:
    """The untransformed input swept across a family's range in `steps` steps: one batched
    forward per model. The capsule followed is the one predicted at the identity (the middle
    step); the reconstructions decode it at every step."""
    images, values = sweep(_image(pixels), family, steps)
    res = _both_models(_model, _cnn, images, iterations)
    res["values"] = values.numpy()
    res["followed"] = int(res["prediction"][steps // 2])
    res["recon"] = decode(_model, res["poses"], np.full(steps, res["followed"]))
    return res
