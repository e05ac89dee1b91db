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
import shlex
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from .model import CapsNet

FORMAT = "capsnet-v1"
PACKAGE_DIR = Path(__file__).resolve().parent
# The shipped weights in a source checkout (the app and the tests use this path and its neighbours).
DEFAULT_CHECKPOINT = PACKAGE_DIR.parent / "checkpoints" / "capsnet_mnist.pt"
# The same file as `pip install .` puts it into the package (pyproject.toml: capsnet.weights).
INSTALLED_CHECKPOINT = PACKAGE_DIR / "weights" / DEFAULT_CHECKPOINT.name
CHECKPOINT_ENV = "CAPSNET_CHECKPOINT"
TRAIN_DATA = "DATA: a folder holding MNIST/raw; torchvision downloads MNIST there if it is absent"


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable or not a CapsNet of this architecture."""


def resolve_checkpoint(path: str | os.PathLike | None = None) -> Path:
    """The CapsNet weights file to load, in this order: `path` when given; else $CAPSNET_CHECKPOINT
    when set (it must exist); else the source checkout's checkpoints/capsnet_mnist.pt
    (DEFAULT_CHECKPOINT) when it exists; else the copy installed with the package
    (capsnet/weights/capsnet_mnist.pt). Raises CheckpointError listing what was tried when none is
    there. Says nothing about the file's contents: load_model checks those.
    """
    if path is not None:
        return Path(path)
    env = os.environ.get(CHECKPOINT_ENV)
    if env:
        if not Path(env).exists():
            raise CheckpointError(
                f"${CHECKPOINT_ENV} is {env}, which does not exist. Point it at a CapsNet weights file, "
                "or unset it to use the shipped weights."
            )
        return Path(env)
    for candidate in (DEFAULT_CHECKPOINT, INSTALLED_CHECKPOINT):
        if candidate.exists():
            return candidate
    raise CheckpointError(
        f"No CapsNet weights found. Tried, in order: ${CHECKPOINT_ENV} (not set); {DEFAULT_CHECKPOINT} "
        f"(a source checkout's checkpoints/); {INSTALLED_CHECKPOINT} (what `pip install .` from a "
        "checkout installs). Pass the file to load_model(path) or --checkpoint, or set "
        f"{CHECKPOINT_ENV}=/path/to/capsnet_mnist.pt. To train weights: "
        f"`python -m capsnet.train --data-root DATA --out capsnet_mnist.pt` ({TRAIN_DATA})."
    )


def how_to_fix(path: str | os.PathLike, arch: str = "capsnet") -> str:
    """Advice for a bad weights file at `path` that works when followed with the bad file still there."""
    path = Path(path)
    arch_flag = "" if arch == "capsnet" else f" --arch {arch}"
    train = f"python -m capsnet.train --data-root DATA{arch_flag} --out {shlex.quote(str(path))} --overwrite"
    advice = f"train new weights into it with `{train}` ({TRAIN_DATA})."
    shipped = DEFAULT_CHECKPOINT.parent
    if path.resolve().parent == shipped and path.name in ("capsnet_mnist.pt", "cnn_mnist.pt"):
        restore = f"git -C {shlex.quote(str(shipped.parent))} checkout -- checkpoints/{path.name}"
        return f"Restore the shipped file with `{restore}`, or {advice}"
    if path.resolve() == INSTALLED_CHECKPOINT:
        return f"Reinstall capsnet (`pip install --force-reinstall .` in a checkout), or {advice}"
    return advice[0].upper() + advice[1:]


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


def read_checkpoint(path: str | os.PathLike, fix: str | None = None) -> dict:
    """Read and check a checkpoint file; raise CheckpointError saying what is wrong and, after it,
    `fix` (default: how_to_fix(path), the advice for a CapsNet's weights)."""
    path = Path(path)
    fix = how_to_fix(path) if fix is None else fix
    if not path.exists():
        raise CheckpointError(f"Checkpoint not found: {path}. {fix}")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint path is not a file: {path}. {fix}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"Checkpoint is empty (0 bytes): {path}. {fix}")
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"version https://git-lfs"):
        raise CheckpointError(
            f"Checkpoint {path} is a Git LFS pointer, not the weights. Run `git lfs pull`. {fix}"
        )
    # torch.save writes a zip archive ("PK"); its legacy format and pickles start with the protocol
    # byte 0x80. Anything else is no PyTorch file at all (and never reaches the unpickler).
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint: {_describe(head)}. {fix}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses anything but tensors and plain containers: a crafted pickle ends here.
        raise CheckpointError(
            f"Checkpoint {path} holds objects other than weights and was refused unopened "
            f"(it may be a pickle that runs code). {fix}\nDetail: {_first_line(e)}"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"Checkpoint {path} ({size:,} bytes) is truncated or corrupt and cannot be read. "
            f"{fix}\nDetail: {_first_line(e)}"
        ) from e
    except Exception as e:  # any other failure inside torch's reader is still a bad file
        raise CheckpointError(
            f"Checkpoint {path} could not be read ({type(e).__name__}). {fix}\nDetail: {_first_line(e)}"
        ) from e
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise CheckpointError(
            f"{path} is a readable torch file but not a CapsNet checkpoint of this project "
            f"(no 'state_dict'). {fix}"
        )
    return payload


def load_state(model: torch.nn.Module, state: dict, path: str | os.PathLike, fix: str | None = None) -> None:
    """Load `state` into `model`, turning every mismatch into a CheckpointError (ending with `fix`,
    default how_to_fix(path))."""
    fix = how_to_fix(path) if fix is None else fix
    expected = model.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'state_dict' is not a mapping of tensors. {fix}")
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
            f"({'; '.join(parts)}). {fix}"
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(
            f"{path} holds NaN or Inf values in {', '.join(bad[:5])}: the training that wrote it "
            f"diverged or the file is damaged. {fix}"
        )
    model.load_state_dict(state)


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> CapsNet:
    """Load a trained CapsNet in eval mode. `None` loads the file resolve_checkpoint() picks:
    $CAPSNET_CHECKPOINT, else the shipped weights (a checkout's or the installed package's).

    Raises CheckpointError (with what is wrong and how to get a good file) for a missing,
    empty, truncated, corrupt, non-weights or architecture-mismatched file.
    """
    path = resolve_checkpoint(path)
    payload = read_checkpoint(path)
    if payload.get("format") == "baseline-cnn-v1":  # capsnet.baseline.FORMAT (imports this module)
        raise CheckpointError(
            f"{path} is a baseline CNN checkpoint, not a CapsNet: load it with capsnet.baseline.load_baseline."
        )
    model = CapsNet()
    load_state(model, payload["state_dict"], path)
    return model.to(device).eval()


def checkpoint_meta(path: str | os.PathLike | None = None) -> dict:
    """The metadata JSON beside a checkpoint (`x.pt` -> `x.json`; None: resolve_checkpoint()'s), or {}
    when there is none."""
    try:
        path = resolve_checkpoint(path)
        meta = json.loads(path.with_suffix(".json").read_text())
    except (CheckpointError, OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _describe(head: bytes) -> str:
    """What the first bytes of a file that is not a torch file look like, for the error message."""
    text = head.decode("utf-8", errors="ignore")
    if len(text) >= 0.95 * len(head) and all(c.isprintable() or c.isspace() for c in text):
        first = text.strip().splitlines()[0][:60] if text.strip() else ""
        return f"it is a text file (it begins {first!r}); a torch.save file is a zip archive"
    return f"a torch.save file is a zip archive beginning 'PK', this file begins {head[:8].hex(' ')}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__
