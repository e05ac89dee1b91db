"""Regenerate app/samples.npz: a few MNIST test digits per class for the app's sample picker.

    python tools/make_samples.py --data-root ../shared/data --checkpoint checkpoints/capsnet_mnist.pt

--data-root is the folder holding MNIST/raw (torchvision's layout; default: $CAPSNET_DATA, as for
the tests); the raw IDX files may be plain or gzipped. The picks are deterministic for a given --seed.

With --checkpoint (do this after every retrain) the set keeps at least one digit that routing puts
right: read wrongly without routing (1 iteration, c = 0.1 everywhere) and as its label with 3
iterations, on the digit as the page prepares it (capsnet.preprocess.to_mnist). The ablation and the
overview show that case, and tests/app/test_apptest.py looks for it. When no random pick is one,
the clearest such test digit (the largest lead of its capsule after routing) replaces the last pick
of its class.
"""

from __future__ import annotations

import argparse
import gzip
import os
import struct
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # capsnet, for --checkpoint


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


def routing_fixes(images: np.ndarray, labels: np.ndarray, checkpoint: Path, batch: int = 500) -> np.ndarray:
    """Indices of the digits the weights at `checkpoint` read wrongly without routing and as their
    label with 3 iterations, each digit prepared as the page prepares an input (to_mnist); the
    clearest first: by how far |v_label| leads the runner-up after routing, largest first."""
    import torch

    from capsnet import load_model
    from capsnet.preprocess import to_mnist

    net = load_model(checkpoint)
    found, lead = [], []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = np.stack([to_mnist(img) for img in images[start : start + batch]])
            out = net(torch.from_numpy(x).float().reshape(-1, 1, 28, 28), iterations=3, trace=True)
            plain, routed = out.lengths_per_iter[0].numpy(), out.lengths_per_iter[2].numpy()
            y = labels[start : start + batch]
            fixed = np.flatnonzero((plain.argmax(-1) != y) & (routed.argmax(-1) == y))
            top2 = np.sort(routed[fixed], axis=-1)[:, -2:]
            found += (start + fixed).tolist()
            lead += (top2[:, 1] - top2[:, 0]).tolist()
    return np.asarray(found, dtype=np.int64)[np.argsort(-np.asarray(lead), kind="stable")]


def keep_a_routing_fix(idx: np.ndarray, labels: np.ndarray, fixes: np.ndarray) -> tuple[np.ndarray, str]:
    """idx (ordered by class) with one digit that routing puts right: as it is when a pick already
        is one, else with the first of `fixes` (the clearest) in place of the last pick of its class.
    Also says which."""
    already = np.intersect1d(idx, fixes)
    if len(already):
        return idx, f"test image {already[0]} (a {labels[already[0]]}) is already one that routing puts right"
    if not len(fixes):
        raise SystemExit("error: no test digit is read wrongly without routing and rightly with it")
    new = int(fixes[0])
    slot = np.flatnonzero(labels[idx] == labels[new])[-1]
    out = idx.copy()
    replaced, out[slot] = out[slot], new
    same = labels[out] == labels[new]
    out[same] = np.sort(out[same])
    return out, f"test image {new} (a {labels[new]}, put right by routing) replaces test image {replaced}"


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
    parser.add_argument("--out", type=Path, default=ROOT / "app" / "samples.npz")
    parser.add_argument("--per-class", type=int, default=4, help="digits per class (default: 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="keep at least one digit these weights read wrongly without routing and rightly with it",
    )
    args = parser.parse_args(argv)

    raw = args.data_root / "MNIST" / "raw"
    images = read_idx(find(raw, "t10k-images-idx3-ubyte"))
    labels = read_idx(find(raw, "t10k-labels-idx1-ubyte"))
    idx = pick(labels, args.per_class, args.seed)
    if args.checkpoint:
        print(f"reading {len(labels):,} test digits with and without routing ...", file=sys.stderr)
        idx, what = keep_a_routing_fix(idx, labels, routing_fixes(images, labels, args.checkpoint))
        print(what)
    np.savez_compressed(args.out, images=images[idx], labels=labels[idx], test_index=idx.astype(np.int32))
    print(f"wrote {len(idx)} digits to {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
