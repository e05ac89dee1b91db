"""Evaluate a CapsNet checkpoint on the 10,000 MNIST test digits.

    python -m capsnet.evaluate --data-root ../shared/data [--checkpoint PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from torch import Tensor

from .checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_model
from .data import load_mnist, to_float
from .model import CapsNet


@torch.no_grad()
def predict(
    model: CapsNet, images: Tensor, batch_size: int = 500, iterations: int = 3, progress=None
) -> Tensor:
    """Predicted digit for each uint8 (N, 28, 28) image, on the model's device."""
    device = next(model.parameters()).device
    preds = []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size].to(device))
        preds.append(model(x, iterations=iterations).prediction)
        if progress is not None:
            progress.update(len(x))
    return torch.cat(preds).cpu()


def select_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def summarize(preds: Tensor, labels: Tensor) -> dict:
    correct = preds == labels
    per_class = {
        str(d): round(float(correct[labels == d].float().mean()), 6)
        for d in range(10)
        if bool((labels == d).any())
    }
    return {
        "accuracy": round(float(correct.float().mean()), 6),
        "errors": int((~correct).sum()),
        "n": int(len(labels)),
        "per_class_accuracy": per_class,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m capsnet.evaluate",
        description="Accuracy, error count, per-class accuracy and throughput on MNIST's test set.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="weights to evaluate")
    p.add_argument("--data-root", default="data", help="folder holding MNIST/raw (downloaded if absent)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading MNIST")
    p.add_argument("--iterations", type=int, default=3, help="routing iterations (1..5)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--device", default="auto", help="auto picks cuda > mps > cpu")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N test digits (0 = all)")
    p.add_argument("--json", action="store_true", help="end stdout with one JSON object of the results")
    args = p.parse_args(argv)

    device = select_device(args.device)
    try:
        model = load_model(args.checkpoint, device=device)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        images, labels = load_mnist(args.data_root, train=False, download=not args.no_download)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]

    from tqdm import tqdm

    start = time.perf_counter()
    with tqdm(total=len(images), unit="img", desc="evaluate", file=sys.stderr, disable=False) as bar:
        preds = predict(model, images, args.batch_size, args.iterations, progress=bar)
    seconds = time.perf_counter() - start
    result = summarize(preds, labels)
    result.update(
        checkpoint=str(args.checkpoint),
        iterations=args.iterations,
        device=str(device),
        images_per_second=round(len(images) / seconds, 1),
    )
    print(f"checkpoint   {args.checkpoint}")
    print(f"accuracy     {result['accuracy']:.2%}  ({result['errors']} errors in {result['n']:,})")
    print("per class    " + "  ".join(f"{d}: {a:.2%}" for d, a in result["per_class_accuracy"].items()))
    print(f"throughput   {result['images_per_second']:,.0f} images/s on {device} "
          f"({args.iterations} routing iterations, batch {args.batch_size})")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
