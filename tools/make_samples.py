"""Regenerate app/samples.npz: a few MNIST test digits per class for the app's sample picker.

    python tools/make_samples.py --data-root ../shared/data --out app/samples.npz

--data-root is the folder holding MNIST/raw (torchvision's layout; default: $CAPSNET_DATA, as for
the tests); the raw IDX files may be plain or gzipped. The picks are deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
import gzip
import os
import struct
from pathlib import Path

import numpy as np


def read_idx(path: Path) -> np.ndarray:
    """IDX file (optionally .gz) -> numpy uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def find(raw: Path, name: str) -> Path:
    for candidate in (raw / name, raw / f"{name}.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"neither {raw / name} nor {raw / name}.gz exists")


def pick(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """`per_class` indices of each digit 0..9, ordered by class."""
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [np.sort(rng.choice(np.flatnonzero(labels == d), per_class, replace=False)) for d in range(10)]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = os.environ.get("CAPSNET_DATA")
    parser.add_argument(
        "--data-root",
        type=Path,
        default=data,
        required=not data,
        help="folder containing MNIST/raw (default: $CAPSNET_DATA)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "app" / "samples.npz"
    )
    parser.add_argument("--per-class", type=int, default=4, help="digits per class (default: 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)

    raw = args.data_root / "MNIST" / "raw"
    images = read_idx(find(raw, "t10k-images-idx3-ubyte"))
    labels = read_idx(find(raw, "t10k-labels-idx1-ubyte"))
    idx = pick(labels, args.per_class, args.seed)
    np.savez_compressed(args.out, images=images[idx], labels=labels[idx], test_index=idx.astype(np.int32))
    print(f"wrote {len(idx)} digits to {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
