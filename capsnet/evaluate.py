"""Evaluate a CapsNet checkpoint on the 10,000 MNIST test digits.

    python -m capsnet.evaluate --data-root ../shared/data [--checkpoint PATH] [--json]
    python -m capsnet.evaluate --data-root ../shared/data --iterations 1 2 3 4 5 --routing-stats --json

With several routing-iteration counts the same weights are evaluated once per count. One traced
forward with the largest count gives them all: routing with r iterations is the first r
iterations of routing with more (the logits b start at zero and the loop never looks ahead), so
`lengths_per_iter[r - 1]` is exactly what a forward with `iterations=r` returns.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .checkpoint import CheckpointError, atomic_write_json, checkpoint_meta, load_model, resolve_checkpoint
from .data import load_mnist, to_float
from .model import MAX_ITERATIONS, NUM_DIGITS, CapsNet

ROUTING_STATS_ITERATIONS = 3  # the count the model is trained with and the app shows
C_THRESHOLD = 0.2  # "a primary capsule that chose its digit": c well above the uniform 1/10


def backend_switches() -> tuple:
    """The process-wide settings capsnet.train may change: TF32 matmuls, TF32 and autotuned cuDNN."""
    return (
        torch.get_float32_matmul_precision(),
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
    )


def set_backend_switches(state: tuple) -> None:
    precision, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = state
    torch.set_float32_matmul_precision(precision)


@contextlib.contextmanager
def fp32_numerics():
    """Full fp32 for what runs inside, whatever capsnet.train set for the process: no TF32 in
    matmuls or cuDNN convolutions, and cuDNN's own algorithm choice instead of autotuning. Training's
    per-epoch test accuracy, capsnet.evaluate and capsnet.robustness all count with these numerics,
    so the accuracy a checkpoint's JSON records is the one the others measure again (on a GPU,
    TF32's 10-bit mantissa can flip a near-tie digit). On a CPU it changes nothing."""
    state = backend_switches()
    set_backend_switches(("highest", False, False))
    try:
        yield
    finally:
        set_backend_switches(state)


@torch.no_grad()
def predicted_digits(model: torch.nn.Module, x: Tensor, iterations: int = 3) -> Tensor:
    """Predicted digits (B,) for x (B, 1, 28, 28): a CapsNet by its longest digit capsule after
    `iterations` routing iterations; any other model (the baseline CNN) by the argmax of the
    (B, 10) scores it returns."""
    if isinstance(model, CapsNet):
        return model(x, iterations=iterations).prediction
    return model(x).argmax(dim=1)


@torch.no_grad()
@fp32_numerics()
def predict(
    model: torch.nn.Module, images: Tensor, batch_size: int = 500, iterations: int = 3, progress=None
) -> Tensor:
    """Predicted digit for each uint8 (N, 28, 28) image (predicted_digits, in batches), on the CPU."""
    device = next(model.parameters()).device
    preds = []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size].to(device))
        preds.append(predicted_digits(model, x, iterations))
        if progress is not None:
            progress.update(len(x))
    return torch.cat(preds).cpu()


class RoutingStats:
    """Pools the coupling coefficients c of Procedure 1 over batches of test images.

    For routing with T iterations, after the last iteration: c_ij of every primary capsule i to
    the digit j the network predicts (median, 90th percentile, share above C_THRESHOLD), and the
    entropy of each capsule's c_i. over the 10 digits, in bits, averaged per iteration. Uniform
    coupling (c = 0.1, iteration 1) has entropy log2(10) = 3.32 bits; a capsule sending all its
    output to one digit has 0.
    """

    def __init__(self, iterations: int):
        self.iterations = iterations
        self.c_pred: list[np.ndarray] = []  # float32 per (image, capsule): 46 MB for 10,000 images
        self.entropy_sum = torch.zeros(iterations, dtype=torch.float64)
        self.images = 0

    def update(self, coupling: Tensor, prediction: Tensor) -> None:
        """coupling: (T, B, 1152, 10), the c used in each iteration; prediction: (B,)."""
        T, B, I, O = coupling.shape
        if T != self.iterations or O != NUM_DIGITS:
            raise ValueError(
                f"expected coupling (T={self.iterations}, B, I, 10), got {tuple(coupling.shape)}"
            )
        index = prediction.to(coupling.device).view(B, 1, 1).expand(B, I, 1)
        c_pred = coupling[-1].gather(2, index).squeeze(2)  # (B, 1152)
        self.c_pred.append(c_pred.float().flatten().cpu().numpy())
        c = coupling.float()
        entropy = -torch.special.xlogy(c, c).sum(dim=-1) / math.log(2)  # (T, B, 1152) bits; 0 log 0 = 0
        self.entropy_sum += entropy.double().sum(dim=(1, 2)).cpu()
        self.images += B
        self.capsules = I

    def result(self) -> dict:
        if not self.images:
            raise ValueError(
                "RoutingStats.result(): no images yet; pass at least one batch to update() first"
            )
        c = np.concatenate(self.c_pred)
        median, p90 = np.quantile(c, [0.5, 0.9])
        mean_entropy = self.entropy_sum / (self.images * self.capsules)
        return {
            "iterations": self.iterations,
            "test_images": self.images,
            "median_c_pred": round(float(median), 6),
            "p90_c_pred": round(float(p90), 6),
            "frac_c_above_0_2": round(float((c > C_THRESHOLD).mean()), 6),
            "mean_entropy_bits": [round(float(h), 6) for h in mean_entropy],
        }


@torch.no_grad()
@fp32_numerics()
def predict_per_iteration(
    model: CapsNet,
    images: Tensor,
    iterations: list[int],
    batch_size: int = 500,
    stats: RoutingStats | None = None,
    progress=None,
) -> dict[int, Tensor]:
    """{r: predicted digits (N,) with r routing iterations} for every r in `iterations`, from one
    traced forward per batch; optionally feeds `stats` the coupling of its own iteration count."""
    device = next(model.parameters()).device
    T = max([*iterations, stats.iterations if stats else 1])
    preds = {r: [] for r in iterations}
    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size].to(device))
        out = model(x, iterations=T, trace=True)
        for r in iterations:
            preds[r].append(out.lengths_per_iter[r - 1].argmax(dim=-1).cpu())  # (B,)
        if stats is not None:
            t = stats.iterations
            stats.update(out.coupling[:t], out.lengths_per_iter[t - 1].argmax(dim=-1))
        if progress is not None:
            progress.update(len(x))
    return {r: torch.cat(p) for r, p in preds.items()}


def add_data_args(p) -> None:
    """--data-root and --no-download for the train, evaluate, robustness and atlas CLIs."""
    p.add_argument("--data-root", default="data", help="folder holding MNIST/raw (downloaded if absent)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading MNIST")


def add_device_args(p) -> None:
    """--device and --threads for the train, evaluate, robustness and atlas CLIs (use_device_args
    applies them). bench and baseline declare theirs apart: bench's --device belongs to its train
    subcommand only, and baseline has no --device."""
    p.add_argument("--device", default="auto", help="auto picks cuda > mps > cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")


def use_device_args(args) -> torch.device:
    """Set torch's CPU threads from --threads and return the --device to run on."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return select_device(args.device)


def cli_command(module: str, argv: list[str] | None) -> str:
    """The command line that ran `python -m module` with argv (None: this process's own arguments),
    quoted so it can be pasted back into a shell; recorded beside the figures it made."""
    return " ".join([f"python -m {module}", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])


def device_name(device: torch.device) -> str:
    """The device in words for metadata: the GPU's name, or the CPU with its threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"cpu ({cpu_model() or platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return device.type


def cpu_model() -> str | None:
    """The CPU's model name as Linux reports it (e.g. "AMD EPYC"), None where it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return None


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m capsnet.evaluate",
        description="Accuracy, error count, per-class accuracy and throughput on MNIST's test set.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    counts = range(1, MAX_ITERATIONS + 1)
    p.add_argument(
        "--checkpoint",
        default=None,
        help="weights to evaluate (default: $CAPSNET_CHECKPOINT, else the shipped weights: "
        "checkpoints/capsnet_mnist.pt in a checkout, else the copy installed with the package)",
    )
    add_data_args(p)
    p.add_argument(
        "--iterations",
        type=int,
        nargs="+",
        default=[3],
        choices=counts,
        metavar="R",
        help="routing iteration count(s), each in 1..10; the summary lines are for the last one",
    )
    p.add_argument(
        "--routing-stats",
        type=int,
        nargs="?",
        const=ROUTING_STATS_ITERATIONS,
        default=None,
        choices=counts,
        metavar="T",
        help=f"coupling statistics of routing with T iterations (T defaults to "
        f"{ROUTING_STATS_ITERATIONS}, the count used in training): c to the predicted digit "
        f"after the last iteration, share of capsules with c > {C_THRESHOLD}, entropy per iteration",
    )
    p.add_argument("--batch-size", type=int, default=500)
    add_device_args(p)
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N test digits (0 = all)")
    p.add_argument("--json", action="store_true", help="end stdout with one JSON object of the results")
    p.add_argument(
        "--write-meta",
        action="store_true",
        help="add iteration_accuracy, routing_stats and the command to the checkpoint's JSON "
        "(every other key kept; needs the whole test set and --routing-stats)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.write_meta and (args.limit or not args.routing_stats):
        print(
            "error: --write-meta records figures over the whole test set: drop --limit, add --routing-stats",
            file=sys.stderr,
        )
        return 2
    iterations = list(dict.fromkeys(args.iterations))  # in the given order, without repeats
    device = use_device_args(args)
    try:
        args.checkpoint = str(resolve_checkpoint(args.checkpoint))
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

    stats = RoutingStats(args.routing_stats) if args.routing_stats else None
    start = time.perf_counter()
    with tqdm(total=len(images), unit="img", desc="evaluate", file=sys.stderr, disable=False) as bar:
        if len(iterations) == 1 and stats is None:  # the plain forward, as the app runs it
            preds = {iterations[0]: predict(model, images, args.batch_size, iterations[0], progress=bar)}
        else:
            preds = predict_per_iteration(model, images, iterations, args.batch_size, stats, progress=bar)
    seconds = time.perf_counter() - start
    per_iteration = {str(r): summarize(preds[r], labels) for r in iterations}
    last = iterations[-1]
    result = dict(per_iteration[str(last)])  # the single-count keys, for the last count listed
    result.update(
        checkpoint=str(args.checkpoint),
        iterations=last,
        iterations_evaluated=iterations,
        iteration_accuracy={r: s["accuracy"] for r, s in per_iteration.items()},
        per_iteration=per_iteration,
        device=str(device),
        images_per_second=round(len(images) / seconds, 1),
    )
    if stats is not None:
        result["routing_stats"] = stats.result()

    print(f"checkpoint   {args.checkpoint}")
    for r in iterations:
        s = per_iteration[str(r)]
        print(
            f"accuracy     {s['accuracy']:.2%}  ({s['errors']} errors in {s['n']:,}) "
            f"with {r} routing iteration{'s' if r > 1 else ''}"
        )
    print(
        "per class    "
        + "  ".join(f"{d}: {a:.2%}" for d, a in result["per_class_accuracy"].items())
        + f"  ({last} iterations)"
    )
    print(
        f"throughput   {result['images_per_second']:,.0f} images/s on {device} "
        f"({'traced, ' if len(iterations) > 1 or stats else ''}{max(iterations)} routing iterations, "
        f"batch {args.batch_size})"
    )
    if stats is not None:
        rs = result["routing_stats"]
        print(
            f"routing      {rs['iterations']} iterations over {rs['test_images']:,} images: c to the predicted "
            f"digit after the last iteration: median {rs['median_c_pred']:.4f}, 90th percentile "
            f"{rs['p90_c_pred']:.4f}; {rs['frac_c_above_0_2']:.2%} of primary capsules above {C_THRESHOLD}"
        )
        print(
            "entropy      "
            + "  ".join(f"iteration {t + 1}: {h:.3f} bits" for t, h in enumerate(rs["mean_entropy_bits"]))
        )
    if args.write_meta:
        meta_path = Path(args.checkpoint).with_suffix(".json")
        meta = checkpoint_meta(args.checkpoint)
        meta.update(
            iteration_accuracy=result["iteration_accuracy"],
            routing_stats=result["routing_stats"],
            routing_stats_command=cli_command("capsnet.evaluate", argv),
        )
        atomic_write_json(meta_path, meta)
        print(f"added iteration_accuracy and routing_stats to {meta_path}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
