"""Accuracy of CapsNet and the baseline CNN on affine-transformed MNIST test digits.

    python -m capsnet.robustness --data-root ../shared/data --capsnet checkpoints/capsnet_mnist.pt \\
        [--cnn checkpoints/cnn_mnist.pt] [--limit 1000] [--seed 0] [--points 9] [--affnist test.mat] [--json]

Three measurements per model, each on the same transformed images for every model:
  * random affine: every test digit once, under an affNIST-style random affine transform adapted to
    28x28 (RANDOM_AFFINE: rotation, shear, per-axis scale and translation drawn uniformly and
    independently, fixed seed), composed about the image centre (capsnet.transforms.affine);
  * curves: every test digit under one transform family at a time (rotation, scale, shear,
    translation along x), at `points` evenly spaced values of capsnet.transforms' ranges; the
    middle value is the identity;
  * affNIST (with --affnist; needs scipy): the MATLAB test file of affNIST (40x40 digits), cut to the
    middle 28x28 (rows and columns 6..33, where affNIST's untransformed digits sit), no resizing.
Without --capsnet and --cnn the shipped CapsNet is evaluated. Accuracies come with their counts:
{"correct": k, "total": n, "accuracy": k / n}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .baseline import load_baseline
from .checkpoint import CheckpointError, atomic_write_json, load_model, resolve_checkpoint
from .data import load_mnist, to_float
from .evaluate import (
    add_data_args,
    add_device_args,
    cli_command,
    device_name,
    fp32_numerics,
    predicted_digits,
    use_device_args,
)
from .transforms import FAMILIES, affine, family_values

# affNIST's transform ranges (rotation +-20 degrees, shear +-45 degrees, scale 0.8..1.2 per axis) with
# its 40x40 translations replaced by +-3 px per axis: room a 20x20 MNIST digit has in a 28x28 frame.
RANDOM_AFFINE = {
    "rotate": (-20.0, 20.0),  # degrees
    "shear": (-45.0, 45.0),  # degrees
    "scale_x": (0.8, 1.2),
    "scale_y": (0.8, 1.2),
    "tx": (-3.0, 3.0),  # pixels
    "ty": (-3.0, 3.0),
}
UNITS = {"rotation": "degrees", "scale": "factor", "shear": "degrees", "translation": "pixels (x)"}
AFFNIST_SIDE = 40
AFFNIST_CROP = slice(6, 34)  # affNIST pads MNIST's 28x28 with 6 px on each side


def random_affine_params(n: int, seed: int = 0) -> dict[str, Tensor]:
    """One float64 (n,) tensor per RANDOM_AFFINE parameter, uniform in its range, from `seed`."""
    g = torch.Generator().manual_seed(seed)
    return {
        name: lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)
        for name, (lo, hi) in RANDOM_AFFINE.items()
    }


def _count(correct: int, total: int) -> dict:
    return {
        "correct": int(correct),
        "total": int(total),
        "accuracy": correct / total if total else float("nan"),
    }


@fp32_numerics()
def accuracy_under(
    models: dict[str, nn.Module], images: Tensor, labels: Tensor, batch_size: int = 250, **params
) -> dict:
    """{name: {"correct", "total", "accuracy"}} on uint8 images (N, 28, 28) transformed by
    capsnet.transforms.affine(**params); a parameter is a number or a (N,) tensor."""
    device = next(next(iter(models.values())).parameters()).device
    correct = dict.fromkeys(models, 0)
    for start in range(0, len(images), batch_size):
        stop = min(start + batch_size, len(images))
        part = {k: v[start:stop] if isinstance(v, Tensor) and v.dim() == 1 else v for k, v in params.items()}
        x = to_float(images[start:stop])  # (B, 1, 28, 28)
        if part:
            x = affine(x, **part)
        x = x.to(device)
        y = labels[start:stop].to(device)
        for name, model in models.items():
            correct[name] += int((predicted_digits(model, x) == y).sum())
    return {name: _count(k, len(images)) for name, k in correct.items()}


def evaluate(
    models: dict[str, nn.Module],
    images: Tensor,
    labels: Tensor,
    seed: int = 0,
    points: int = 9,
    affnist: tuple[Tensor, Tensor] | None = None,
    batch_size: int = 250,
    progress=None,
    curve_limit: int = 0,
) -> dict:
    """Every measurement for every model (in eval mode, on its device). images: uint8 (N, 28, 28),
    labels (N,); the curves use the first curve_limit of them (0 = all). Returns {"images",
    "curve_images", "seed", "points", "random_affine_ranges", "families",
    "models": {name: {"clean", "random_affine", "curves": {family: [{"value", "correct", "total",
    "accuracy"}, ...]}, ["affnist"]}}} and, with affnist, {"affnist": {"images"}}."""
    for model in models.values():
        model.eval()

    def tick():
        if progress is not None:
            progress.update(1)

    per_model = {name: {"curves": {}} for name in models}
    for name, counts in accuracy_under(models, images, labels, batch_size).items():
        per_model[name]["clean"] = counts
    tick()
    random = random_affine_params(len(images), seed)
    for name, counts in accuracy_under(models, images, labels, batch_size, **random).items():
        per_model[name]["random_affine"] = counts
    tick()
    families = {}
    curve_images, curve_labels = images[: curve_limit or None], labels[: curve_limit or None]
    for family, param in FAMILIES.items():
        values = family_values(family, points)
        families[family] = {"parameter": param, "unit": UNITS[family], "values": values.tolist()}
        for name in models:
            per_model[name]["curves"][family] = []
        for value in values.tolist():
            curve = accuracy_under(models, curve_images, curve_labels, batch_size, **{param: value})
            for name, counts in curve.items():
                per_model[name]["curves"][family].append({"value": value, **counts})
            tick()
    result = {
        "images": len(images),
        "curve_images": len(curve_images),
        "seed": seed,
        "points": points,
        "random_affine_ranges": {k: list(v) for k, v in RANDOM_AFFINE.items()},
        "families": families,
    }
    if affnist is not None:
        aff_images, aff_labels = affnist
        for name, counts in accuracy_under(models, aff_images, aff_labels, batch_size).items():
            per_model[name]["affnist"] = counts
        result["affnist"] = {"images": len(aff_images), "crop": "rows and columns 6..33 of 40x40"}
        tick()
    result["models"] = per_model
    return result


def progress_steps(points: int, affnist: bool) -> int:
    """How many times evaluate() ticks its progress bar."""
    return 2 + len(FAMILIES) * points + int(affnist)


# ---------------------------------------------------------------------------------------------
# affNIST: its MATLAB .mat files, through scipy


def load_affnist(path: str | Path) -> tuple[Tensor, Tensor]:
    """affNIST digits from one of its MATLAB test files: (uint8 (N, 28, 28), int64 labels (N,)).

    The file holds a struct `affNISTdata` with `image` (1600 x N uint8, each column a 40x40 image in
    MATLAB's column-major order) and `label_int` (N labels). Each image is cut to its middle 28x28.
    Read with scipy.io.loadmat: scipy is optional (`pip install scipy`, or capsnet's extra
    `affnist`); without it this raises ImportError saying so.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"affNIST file not found: {path}")
    try:
        import scipy.io
    except ImportError as e:
        raise ImportError(
            "reading affNIST's MATLAB files needs scipy: pip install scipy (or pip install 'capsnet[affnist]')"
        ) from e
    try:
        mat = scipy.io.loadmat(str(path), variable_names=["affNISTdata"])
    except Exception as e:  # scipy raises ValueError, MatReadError, zlib errors, ... for what it cannot read
        raise ValueError(f"{path} is not a MATLAB file scipy can read ({type(e).__name__}: {e})") from e
    data = mat.get("affNISTdata")  # a (1, 1) record array, one object per field
    names = (data.dtype.names or ()) if isinstance(data, np.ndarray) else ()
    if "image" not in names or "label_int" not in names:
        raise ValueError(
            f"{path} is not an affNIST file: expected a struct 'affNISTdata' with 'image' and 'label_int'"
        )
    image, label = np.asarray(data["image"][0, 0]), np.asarray(data["label_int"][0, 0]).reshape(-1)
    side = AFFNIST_SIDE
    if image.ndim != 2 or image.shape[0] != side * side or image.shape[1] != label.shape[0]:
        raise ValueError(
            f"{path}: expected image 1600 x N and N labels, got {image.shape} and {label.shape[0]}"
        )
    # Column n holds image n column by column: (N, 1600) -> (N, col, row) -> (N, row, col).
    images = np.ascontiguousarray(
        image.T.reshape(-1, side, side).transpose(0, 2, 1)[:, AFFNIST_CROP, AFFNIST_CROP]
    )
    return torch.from_numpy(images.astype(np.uint8)), torch.from_numpy(label.astype(np.int64))


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m capsnet.robustness",
        description="Accuracy of CapsNet and the baseline CNN under affine transforms of the MNIST test digits.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_data_args(p)
    p.add_argument(
        "--capsnet", metavar="CKPT", help="CapsNet checkpoint (the shipped one when neither model is given)"
    )
    p.add_argument("--cnn", metavar="CKPT", help="baseline CNN checkpoint (capsnet.baseline.save_baseline)")
    p.add_argument(
        "--limit", type=int, default=0, help="use only the first N test digits (and affNIST digits); 0 = all"
    )
    p.add_argument(
        "--curve-limit",
        type=int,
        default=0,
        help="the per-family curves use only the first N of those digits (they cost one pass per "
        "point and family); 0 = all",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random affine transforms")
    p.add_argument(
        "--points",
        type=int,
        default=9,
        help="values per transform family (odd: the middle one is the identity)",
    )
    p.add_argument(
        "--affnist",
        metavar="PATH",
        help="an affNIST MATLAB test file (e.g. test_batches/1.mat) to evaluate on too (needs scipy)",
    )
    p.add_argument("--batch-size", type=int, default=250)
    add_device_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument(
        "--out",
        metavar="PATH",
        help="also write the JSON, with the command, machine and date that measured it, to PATH "
        "(atomically; e.g. checkpoints/robustness.json, which the app's lab shows)",
    )
    args = p.parse_args(argv)
    if args.limit < 0 or args.curve_limit < 0:
        p.error("--limit and --curve-limit must be >= 0")
    if args.points < 2:
        p.error("--points must be >= 2")
    if args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = use_device_args(args)
    paths = {"capsnet": args.capsnet, "cnn": args.cnn}
    models = {}
    try:
        if not any(paths.values()):
            paths["capsnet"] = str(resolve_checkpoint())
        if paths["capsnet"]:
            models["capsnet"] = load_model(paths["capsnet"], device=device)
        if paths["cnn"]:
            models["cnn"] = load_baseline(paths["cnn"], device=device)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        images, labels = load_mnist(args.data_root, train=False, download=not args.no_download)
        affnist = load_affnist(args.affnist) if args.affnist else None
    except (RuntimeError, OSError, ValueError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
        if affnist is not None:
            affnist = (affnist[0][: args.limit], affnist[1][: args.limit])

    from tqdm import tqdm

    with tqdm(
        total=progress_steps(args.points, affnist is not None),
        unit="pass",
        desc="robustness",
        file=sys.stderr,
    ) as bar:
        result = evaluate(
            models, images, labels, args.seed, args.points, affnist, args.batch_size, bar, args.curve_limit
        )
    result["device"] = str(device)
    for name, path in paths.items():
        if name in result["models"]:
            result["models"][name]["checkpoint"] = path
    if args.affnist:
        result["affnist"]["path"] = args.affnist
    if args.out:
        result.update(
            command=cli_command("capsnet.robustness", argv),
            machine=f"{device_name(device)}, torch {torch.__version__}",
            date=dt.date.today().isoformat(),
        )
        atomic_write_json(args.out, result)
        print(f"wrote {args.out}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        print(format_table(result))
    return 0


def format_table(result: dict) -> str:
    """The results as text: one column per model, one row per measurement."""
    names = list(result["models"])
    rows = [("clean", "clean"), ("random affine", "random_affine")]
    if "affnist" in result:
        rows.append((f"affNIST ({result['affnist']['images']:,})", "affnist"))
    lines = [
        f"accuracy on {result['images']:,} MNIST test digits (random affine: seed {result['seed']}, "
        + ", ".join(f"{k} {lo:g}..{hi:g}" for k, (lo, hi) in result["random_affine_ranges"].items())
        + ")",
        f"{'':<24}" + "".join(f"{n:>12}" for n in names),
    ]
    for label, key in rows:
        lines.append(
            f"{label:<24}" + "".join(f"{result['models'][n][key]['accuracy']:>12.2%}" for n in names)
        )
    if result["curve_images"] != result["images"]:
        lines.append(f"per-family rows below: the first {result['curve_images']:,} of those digits")
    for family, info in result["families"].items():
        for k, value in enumerate(info["values"]):
            label = f"{family} {value:.4g} {info['unit'].split()[0]}"
            accs = [result["models"][n]["curves"][family][k]["accuracy"] for n in names]
            lines.append(f"{label:<24}" + "".join(f"{a:>12.2%}" for a in accs))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
