"""The paper's baseline CNN (Sabour et al. 2017, section 5), to compare with CapsNet.

"Three convolutional layers of 256, 256, 128 channels. Each has 5x5 kernels and stride of 1. The
last convolutional layers are followed by two fully connected layers of size 328, 192. The last
fully connected layer is connected with dropout to a 10 class softmax layer with cross entropy loss."

The paper gives no padding or pooling. Two readings, picked by `pooled`:

    pooled=True   "same" 5x5 convolutions, 2x2 max-pooling after the first two: 28 -> 14 -> 7,
                  fc1 sees 128*7*7 = 6272 features. 4,587,282 parameters, ~368 M multiply-adds.
    pooled=False  "same" convolutions, no pooling: fc1 sees 128*28*28 = 100,352 features.
                  35,445,522 parameters (the paper's 35.4 M), 32.9 M of them in fc1; ~1.96 G
                  multiply-adds.

Weights are saved like CapsNet's (capsnet.checkpoint): one torch file of plain tensors read back
with weights_only=True, written atomically, metadata JSON beside it; every loading failure is a
capsnet.CheckpointError.

    python -m capsnet.baseline --batches 3 --batch-size 32   # sizes, multiply-adds, train time/image
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpoint import (
    CheckpointError,
    atomic_write,
    atomic_write_json,
    how_to_fix,
    load_state,
    read_checkpoint,
)

FORMAT = "baseline-cnn-v1"
NUM_CLASSES = 10


class BaselineCNN(nn.Module):
    """conv 5x5 x256 -> conv 5x5 x256 -> conv 5x5 x128 -> fc 328 -> fc 192 -> dropout -> fc 10.

    forward returns logits (B, 10); train with F.cross_entropy, read with predict_proba.
    """

    def __init__(self, pooled: bool = True, dropout: float = 0.5):
        super().__init__()
        self.pooled = bool(pooled)
        self.dropout_p = float(dropout)
        self.conv1 = nn.Conv2d(1, 256, 5, padding=2)
        self.conv2 = nn.Conv2d(256, 256, 5, padding=2)
        self.conv3 = nn.Conv2d(256, 128, 5, padding=2)
        side = 7 if self.pooled else 28
        self.fc1 = nn.Linear(128 * side * side, 328)
        self.fc2 = nn.Linear(328, 192)
        self.dropout = nn.Dropout(self.dropout_p)
        self.out = nn.Linear(192, NUM_CLASSES)

    @property
    def arch(self) -> dict:
        """What the checkpoint records to rebuild this network."""
        return {"pooled": self.pooled, "dropout": self.dropout_p}

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, 1, 28, 28) in [0, 1] -> logits (B, 10)."""
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1:] != (1, 28, 28):
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected a tensor of shape (B, 1, 28, 28), got {shape}")
        if not x.is_floating_point():
            raise TypeError(f"expected a floating-point tensor with pixels in [0, 1], got {x.dtype}")
        h = F.relu(self.conv1(x))  # (B, 256, 28, 28)
        if self.pooled:
            h = F.max_pool2d(h, 2)  # (B, 256, 14, 14)
        h = F.relu(self.conv2(h))  # (B, 256, 14, 14) pooled, (B, 256, 28, 28) not
        if self.pooled:
            h = F.max_pool2d(h, 2)  # (B, 256, 7, 7)
        h = F.relu(self.conv3(h))  # (B, 128, 7, 7) or (B, 128, 28, 28)
        h = F.relu(self.fc1(h.flatten(1)))  # (B, 328)
        h = F.relu(self.fc2(h))  # (B, 192)
        return self.out(self.dropout(h))  # (B, 10)


def predict_proba(model: BaselineCNN, x: Tensor) -> Tensor:
    """Softmax probabilities (B, 10) for x (B, 1, 28, 28), computed in eval mode (no dropout).

    The model's train/eval mode is left as it was.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.softmax(model(x), dim=1)
    finally:
        model.train(was_training)


def multiply_adds(model: nn.Module, *args, **kwargs) -> int:
    """Multiply-adds of one call model(*args, **kwargs), counted by torch's FLOP counter (FLOPs / 2).

    Counts convolutions, matrix products and einsums; element-wise work (ReLU, softmax, squash,
    pooling) is not counted. Call with a batch of one image for a per-image figure. The model and
    input may live on the meta device: the count needs shapes only.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*args, **kwargs)
    return counter.get_total_flops() // 2


def save_baseline(
    path: str | os.PathLike,
    model: BaselineCNN,
    meta: dict | None = None,
    *,
    metadata_json: bool = True,
    **extra,
) -> None:
    """Write the weights to `path` and, with metadata_json, the metadata (plus the architecture) to
    `path` with .json; both atomically.

    `extra` holds further plain state, e.g. optimizer=opt.state_dict() for a resume file (which
    wants metadata_json=False: its metadata lives beside the weights file, not beside it).
    """
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"arch": "cnn", **model.arch, **(meta or {})}
    payload = {"format": FORMAT, "arch": model.arch, "state_dict": state, "meta": json.dumps(meta), **extra}
    atomic_write(path, lambda f: torch.save(payload, f))
    if metadata_json:
        atomic_write_json(path.with_suffix(".json"), meta)


def load_baseline(path: str | os.PathLike, device: str | torch.device = "cpu") -> BaselineCNN:
    """Load a BaselineCNN saved by save_baseline, in eval mode, rebuilt with its recorded `pooled`.

    Raises CheckpointError for a missing, empty, truncated, corrupt or non-weights file (the checks
    of capsnet.checkpoint.read_checkpoint), for a CapsNet checkpoint, and for weights whose names
    or shapes are not those of the recorded baseline architecture.
    """
    fix = how_to_fix(path, arch="cnn")
    payload = read_checkpoint(path, fix)
    kind = payload.get("format")
    if kind != FORMAT:
        hint = " It is a CapsNet checkpoint: load it with capsnet.load_model." if kind == "capsnet-v1" else ""
        raise CheckpointError(
            f"{path} is not a baseline CNN checkpoint (format {kind!r}, expected {FORMAT!r}).{hint}"
        )
    arch = payload.get("arch")
    if not isinstance(arch, dict) or not isinstance(arch.get("pooled"), bool):
        raise CheckpointError(
            f"{path}: the baseline CNN checkpoint does not record its architecture ('arch')."
        )
    model = BaselineCNN(pooled=arch["pooled"], dropout=float(arch.get("dropout", 0.5)))
    _check_architecture(model, payload["state_dict"], path)
    load_state(model, payload["state_dict"], path, fix)  # also refuses NaN/Inf weights
    return model.to(device).eval()


def _check_architecture(model: BaselineCNN, state, path) -> None:
    """CheckpointError naming the first mismatches when `state` does not fit `model`."""
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: 'state_dict' is not a mapping of tensors.")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    problems = [f"missing {k}" for k in expected if k not in found]
    problems += [f"unexpected {k}" for k in found if k not in expected]
    problems += [
        f"{k}: file {found[k]} vs model {s}" for k, s in expected.items() if k in found and found[k] != s
    ]
    if problems:
        raise CheckpointError(
            f"{path} holds weights of a different architecture than BaselineCNN(pooled={model.pooled}): "
            + "; ".join(problems[:5])
            + (" ..." if len(problems) > 5 else "")
        )


# ---------------------------------------------------------------------------------------------
# Measuring: python -m capsnet.baseline


def _step_seconds(steps: dict, rounds: int) -> dict[str, float]:
    """Median seconds of one call of each step, timed interleaved (a, b, c, a, b, c, ...) after one
    warm-up call each, so load that drifts on a shared machine hits every model alike."""
    for step in steps.values():
        step()  # warm-up: allocations, kernel choice
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def measure(batch_size: int = 32, batches: int = 3, seed: int = 0) -> list[dict]:
    """Parameters, multiply-adds per image and forward+backward+Adam seconds per image, on CPU.

    CapsNet's training step is its own: margin loss on 3-iteration routing plus the 0.0005-scaled
    reconstruction of the true digit. The CNNs' is cross-entropy on the logits. Each model runs
    `batches` timed steps, interleaved with the others; the median step counts.
    """
    from .model import CapsNet, count_parameters, training_loss

    with torch.device("meta"):  # shapes only: counting does no arithmetic
        one = torch.zeros(1, 1, 28, 28)
        caps_macs = multiply_adds(CapsNet(), one, iterations=3)  # train mode: no finiteness check on meta
        decoder_macs = multiply_adds(CapsNet().decoder, torch.zeros(1, 160))
        cnn_macs = {pooled: multiply_adds(BaselineCNN(pooled), one) for pooled in (True, False)}

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, 1, 28, 28, generator=g)
    y = torch.randint(0, NUM_CLASSES, (batch_size,), generator=g)

    def capsnet_step(net, opt):
        loss, _ = training_loss(net, x, y, iterations=3)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def cnn_step(net, opt):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    torch.manual_seed(seed)
    nets = {
        "capsnet": CapsNet(),
        "cnn pooled=True": BaselineCNN(pooled=True),
        "cnn pooled=False": BaselineCNN(pooled=False),
    }
    steps = {}
    for name, net in nets.items():
        opt = torch.optim.Adam(net.train().parameters(), lr=1e-3)
        step = capsnet_step if name == "capsnet" else cnn_step
        steps[name] = lambda step=step, net=net, opt=opt: step(net, opt)
    seconds = _step_seconds(steps, batches)
    macs = {
        "capsnet": caps_macs + decoder_macs,
        "cnn pooled=True": cnn_macs[True],
        "cnn pooled=False": cnn_macs[False],
    }
    rows = []
    for name, net in nets.items():
        row = {"model": name, "parameters": count_parameters(net), "multiply_adds": macs[name]}
        if name == "capsnet":
            row["multiply_adds_without_decoder"] = caps_macs
        row["train_seconds_per_image"] = seconds[name] / batch_size
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m capsnet.baseline",
        description="Size, multiply-adds and CPU training time per image of the baseline CNNs and CapsNet.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--batches",
        type=int,
        default=3,
        help="timed training steps per model (interleaved), after one warm-up",
    )
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = measure(args.batch_size, args.batches)
    caps = rows[0]
    for row in rows:
        row["multiply_adds_vs_capsnet"] = round(row["multiply_adds"] / caps["multiply_adds"], 2)
        row["train_minutes_per_60k_epoch"] = round(row["train_seconds_per_image"] * 60_000 / 60, 1)
    if args.json:
        print(
            json.dumps(
                {"device": _cpu_name(), "batch_size": args.batch_size, "batches": args.batches, "rows": rows}
            )
        )
        return 0
    print(
        f"{_cpu_name()}, batch {args.batch_size}, median of {args.batches} interleaved steps after one warm-up each"
    )
    print(
        f"{'model':<18}{'parameters':>13}{'mult-adds':>15}{'x CapsNet':>11}{'train ms/img':>14}{'min/epoch':>11}"
    )
    for r in rows:
        print(
            f"{r['model']:<18}{r['parameters']:>13,}{r['multiply_adds']:>15,}{r['multiply_adds_vs_capsnet']:>11.2f}"
            f"{1000 * r['train_seconds_per_image']:>14.1f}{r['train_minutes_per_60k_epoch']:>11.1f}"
        )
    return 0


def _cpu_name() -> str:
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


if __name__ == "__main__":
    sys.exit(main())
