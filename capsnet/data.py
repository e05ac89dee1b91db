"""MNIST through torchvision, held as uint8 tensors on the training device, and the paper's shift."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import torch
from torch import Tensor

RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def load_mnist(root: str, train: bool, download: bool = True) -> tuple[Tensor, Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 via torchvision.datasets.MNIST.

    `root` is the folder holding `MNIST/raw/`; with internet and no files there, torchvision
    downloads them.
    """
    from torchvision.datasets import MNIST  # imported here: the app never needs torchvision

    _gunzip_raw(Path(root) / "MNIST" / "raw")
    try:
        ds = MNIST(root, train=train, download=download)
    except RuntimeError as e:  # torchvision says "Dataset not found" when files are absent
        raise RuntimeError(
            f"MNIST not found under {root}/MNIST/raw and could not be downloaded ({e}). "
            "Pass --data-root pointing at a folder that holds MNIST/raw/*-ubyte files."
        ) from e
    return ds.data, ds.targets.long()


def _gunzip_raw(raw: Path) -> None:
    """Unpack MNIST/raw/*.gz where only the archives are there (e.g. the 11 MB carried to a machine
    without internet): torchvision reads the unpacked files and would otherwise try to download."""
    for name in RAW_FILES:
        if not (raw / name).exists() and (raw / f"{name}.gz").exists():
            with gzip.open(raw / f"{name}.gz", "rb") as src, open(raw / f"{name}.part", "wb") as dst:
                shutil.copyfileobj(src, dst)
            (raw / f"{name}.part").replace(raw / name)


def to_float(images: Tensor) -> Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [0, 1], MNIST pixel scale."""
    return images.unsqueeze(1).float().div_(255.0)


def random_shift(x: Tensor, max_shift: int = 2, generator: torch.Generator | None = None) -> Tensor:
    """Shift every image independently by up to `max_shift` px in x and y, with zero padding.

    x: (B, C, H, W) on any device; done in one batched gather on that device, no host sync.
    """
    if max_shift == 0:
        return x
    B, C, H, W = x.shape
    padded = torch.nn.functional.pad(x, (max_shift,) * 4)  # (B, C, H + 2m, W + 2m)
    offsets = torch.randint(
        0, 2 * max_shift + 1, (2, B), device=x.device, generator=generator
    )  # top-left corner of each crop in the padded image
    rows = offsets[0][:, None] + torch.arange(H, device=x.device)  # (B, H)
    cols = offsets[1][:, None] + torch.arange(W, device=x.device)  # (B, W)
    batch = torch.arange(B, device=x.device)[:, None, None, None]
    chan = torch.arange(C, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]
