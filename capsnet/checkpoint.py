"""Saving and loading CapsNet weights safely.

A checkpoint is a `torch.save` dict of plain tensors and numbers, read back with
`torch.load(..., weights_only=True)`: loading never unpickles arbitrary objects, so a crafted
file cannot run code. Every write goes to a temporary file in the same folder and is renamed over
the target, so a killed process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from .model import CapsNet

FORMAT = "capsnet-v1"
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CHECKPOINT = PACKAGE_DIR.parent / "checkpoints" / "capsnet_mnist.pt"

HOW_TO_FIX = (
    "Get a good file with `git checkout -- checkpoints/` (the shipped weights), or train one with "
    "`python -m capsnet.train --data-root DIR --out checkpoints/capsnet_mnist.pt`."
)


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable or not a CapsNet of this architecture."""


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call write(file_object) on a temp file beside `path`, fsync, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
    atomic_write(path, lambda f: f.write(data))


def save_checkpoint(path: str | os.PathLike, model: CapsNet, meta: dict | None = None, **extra) -> None:
    """Write the model's weights (and any extra plain state, e.g. an optimizer's) atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}  # channels-last too
    payload = {"format": FORMAT, "state_dict": state, "meta": json.dumps(meta or {}), **extra}
    atomic_write(path, lambda f: torch.save(payload, f))


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Read and check a checkpoint file; raise CheckpointError saying what is wrong."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"Checkpoint not found: {path}. {HOW_TO_FIX}")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint path is not a file: {path}. {HOW_TO_FIX}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"Checkpoint is empty (0 bytes): {path}. {HOW_TO_FIX}")
    if _is_lfs_pointer(path):
        raise CheckpointError(
            f"Checkpoint {path} is a Git LFS pointer, not the weights. Run `git lfs pull`. {HOW_TO_FIX}"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses anything but tensors and plain containers: a crafted pickle ends here.
        raise CheckpointError(
            f"Checkpoint {path} holds objects other than weights and was refused unopened "
            f"(it may be a pickle that runs code). {HOW_TO_FIX}\nDetail: {_first_line(e)}"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"Checkpoint {path} ({size:,} bytes) is truncated or corrupt and cannot be read. "
            f"{HOW_TO_FIX}\nDetail: {_first_line(e)}"
        ) from e
    except Exception as e:  # any other failure inside torch's reader is still a bad file
        raise CheckpointError(
            f"Checkpoint {path} could not be read ({type(e).__name__}). {HOW_TO_FIX}\n"
            f"Detail: {_first_line(e)}"
        ) from e
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise CheckpointError(
            f"{path} is a readable torch file but not a CapsNet checkpoint of this project "
            f"(no 'state_dict'). {HOW_TO_FIX}"
        )
    return payload


def load_state(model: torch.nn.Module, state: dict, path: str | os.PathLike) -> None:
    """Load `state` into `model`, turning every mismatch into a CheckpointError."""
    expected = model.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'state_dict' is not a mapping of tensors. {HOW_TO_FIX}")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:5])}" + (" ..." if len(unexpected) > 5 else ""))
        if wrong:
            parts.append("shape mismatch " + "; ".join(wrong[:5]))
        raise CheckpointError(
            f"{path} holds weights of a different architecture than this {type(model).__name__} "
            f"({'; '.join(parts)}). {HOW_TO_FIX}"
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"{path} holds NaN or Inf values in {', '.join(bad[:5])}: the training that wrote it "
            f"diverged or the file is damaged. {HOW_TO_FIX}"
        )
    model.load_state_dict(state)


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> CapsNet:
    """Load a trained CapsNet in eval mode. `None` loads the shipped checkpoint.

    Raises CheckpointError (with what is wrong and how to get a good file) for a missing,
    empty, truncated, corrupt, non-weights or architecture-mismatched file.
    """
    path = Path(DEFAULT_CHECKPOINT if path is None else path)
    payload = read_checkpoint(path)
    if payload.get("format") == "baseline-cnn-v1":  # capsnet.baseline.FORMAT (imports this module)
        raise CheckpointError(
            f"{path} is a baseline CNN checkpoint, not a CapsNet: load it with capsnet.baseline.load_baseline."
        )
    model = CapsNet()
    load_state(model, payload["state_dict"], path)
    return model.to(device).eval()


def checkpoint_meta(path: str | os.PathLike | None = None) -> dict:
    """The metadata JSON beside a checkpoint (`x.pt` -> `x.json`), or {} when there is none."""
    path = Path(DEFAULT_CHECKPOINT if path is None else path)
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _is_lfs_pointer(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(40).startswith(b"version https://git-lfs")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
