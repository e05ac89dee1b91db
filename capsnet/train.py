"""Train the CapsNet on MNIST, as in the paper: Adam, margin loss + 0.0005 x reconstruction SSE,
random shifts of up to 2 px, 3 routing iterations. `--arch cnn` trains the paper's baseline CNN
(capsnet.baseline, cross-entropy, dropout) the same way: same data, shifts, optimizer and schedule.

    python -m capsnet.train --data-root ../shared/data --epochs 30 --out checkpoints/capsnet_mnist.pt
    python -m capsnet.train --data-root ../shared/data --arch cnn ...   # -> checkpoints/cnn_mnist.pt
    python -m capsnet.train --data-root ../shared/data --val 5000 ...   # hold out 5000 digits to select on
    torchrun --nproc_per_node=4 -m capsnet.train --data-root ../shared/data ...   # one process per GPU

Each epoch writes, atomically: the weights (OUT), their metadata (OUT with .json) and the full
training state for `--resume` (OUT with .resume.pt). A killed run continues from the last epoch
it finished with the same command plus `--resume`.

    python -m capsnet.train --data-root ../shared/data --time-limit 90 --val 5000 \
        --init-from checkpoints/capsnet_mnist.pt --out runs/cpu/capsnet_mnist.pt

`--time-limit MINUTES` trains for that long: it measures its speed, plans the steps that fit and
anneals the lr on a cosine to `--lr-floor` over them (re-planned as the speed changes, so the
floor comes at the limit), writes the resume state every `--save-every` minutes (mid-epoch too)
and at the limit, and exits cleanly. With `--val N`, OUT keeps the weights that scored best on
the held-out digits and the test set is scored once, on those, when the run ends.
`--init-from CHECKPOINT` starts from given weights with a fresh optimizer; the metadata's
"lineage" lists every run the weights came from (command, epochs, hours, device).

The hot loop never leaves the device: the training set sits there as uint8, each epoch's
permutation too, the shift is one batched gather, and the host reads the running loss only every
`--log-every` steps. On CUDA it also runs in bf16 autocast with TF32, channels-last convolutions,
a fused Adam and `torch.compile`; each is on by default where the device supports it, off by its
`--no-...` flag, and the metadata's "speed" records which were actually on. The accuracies it
records are counted in full fp32 (evaluate.fp32_numerics), as capsnet.evaluate counts them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from . import baseline, distributed
from .checkpoint import FORMAT as CAPSNET_FORMAT
from .checkpoint import CheckpointError, atomic_write_json, load_state, read_checkpoint, save_checkpoint
from .data import load_mnist, random_shift, to_float
from .evaluate import add_data_args, add_device_args, cli_command, device_name, predict, use_device_args
from .model import CapsNet, count_parameters, training_loss

VAL_SPLIT_SEED = 2017  # the validation digits are the same for every --seed: runs compare on one set
SPEED_FLAGS = {
    "compile": "torch.compile the training step (falls back to eager, with a warning, if it cannot compile)",
    "amp": "bf16 autocast in the training step",
    "tf32": "TF32 matmuls and convolutions for what stays fp32 (Ampere or newer)",
    "channels_last": "channels-last memory format for the convolutions",
    "fused": "fused Adam (one kernel for the whole update)",
    "cudnn_benchmark": "let cuDNN time its convolution algorithms once and keep the fastest",
}
# --arch: the network trained and where it goes unless --out says otherwise.
ARCHS = {
    "capsnet": "checkpoints/capsnet_mnist.pt",
    "cnn": "checkpoints/cnn_mnist.pt",  # baseline CNN, 2x2 max-pooling after conv1 and conv2 (4.6 M)
    "cnn-unpooled": "checkpoints/cnn_unpooled_mnist.pt",  # the paper-size 35.4 M baseline
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m capsnet.train",
        description="Train the CapsNet of Sabour, Frosst & Hinton (2017), or its baseline CNN, on MNIST.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--arch",
        choices=list(ARCHS),
        default="capsnet",
        help="capsnet; cnn: the paper's baseline CNN with 2x2 max-pooling after its first two "
        "convolutions (4.6 M parameters); cnn-unpooled: without pooling (35.4 M, the paper's size)",
    )
    p.add_argument(
        "--dropout", type=float, default=0.5, help="dropout before the CNN's 10-way layer (CNNs only)"
    )
    add_data_args(p)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128, help="images per step in each process")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--lr-decay", type=float, default=0.96, help="multiply the lr by this every epoch")
    p.add_argument("--iterations", type=int, default=3, help="routing iterations")
    p.add_argument("--recon-weight", type=float, default=0.0005, help="scale of the reconstruction SSE")
    p.add_argument("--max-shift", type=int, default=2, help="random shift augmentation, pixels")
    p.add_argument(
        "--val",
        type=int,
        default=0,
        metavar="N",
        help="hold out N training digits (a fixed split, the same for every seed) and report "
        "their accuracy each epoch; use 5000 when choosing epochs, schedules or runs, "
        "never the test set",
    )
    p.add_argument("--seed", type=int, default=0)
    add_device_args(p)
    p.add_argument(
        "--out",
        default=None,
        help="checkpoint path to write (default: " + ", ".join(f"{k}: {v}" for k, v in ARCHS.items()) + ")",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT's .resume.pt")
    p.add_argument(
        "--init-from",
        default=None,
        metavar="CHECKPOINT",
        help="start from these CapsNet weights with a fresh optimizer and schedule (not a resume); "
        "the metadata's lineage records the runs they came from",
    )
    timed = p.add_argument_group("time limit")
    timed.add_argument(
        "--time-limit",
        type=float,
        default=0.0,
        metavar="MINUTES",
        help="train for this long (0 = off): plan the steps that fit, a cosine lr to --lr-floor over "
        "them, checkpoints every --save-every minutes and at the limit; --epochs is then an upper bound",
    )
    timed.add_argument("--lr-floor", type=float, default=1e-5, help="the lr the cosine ends at")
    timed.add_argument(
        "--warmup-steps",
        type=int,
        default=0,
        help="linear lr warm-up steps (a fresh Adam on trained weights)",
    )
    timed.add_argument(
        "--save-every", type=float, default=5.0, metavar="MINUTES", help="minutes between resume checkpoints"
    )
    p.add_argument("--overwrite", action="store_true", help="start afresh even if OUT already exists")
    p.add_argument(
        "--max-steps", type=int, default=0, help="stop each epoch after N steps (0 = all; for smoke tests)"
    )
    p.add_argument(
        "--log-every", type=int, default=50, help="steps between progress-bar updates (host syncs)"
    )
    add_speed_args(p)
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or not 1 <= args.iterations <= 10:
        p.error("--epochs and --batch-size must be >= 1 and --iterations in 1..10")
    if args.val < 0 or args.max_shift < 0:
        p.error("--val and --max-shift must be >= 0")
    if not 0 <= args.dropout < 1:
        p.error("--dropout must be in [0, 1)")
    if (
        args.time_limit < 0
        or args.save_every <= 0
        or args.warmup_steps < 0
        or not 0 <= args.lr_floor <= args.lr
    ):
        p.error(
            "--time-limit must be >= 0, --save-every > 0, --warmup-steps >= 0 and 0 <= --lr-floor <= --lr"
        )
    if args.init_from and args.arch != "capsnet":
        p.error("--init-from takes CapsNet weights: use it with --arch capsnet")
    if args.out is None:
        args.out = ARCHS[args.arch]
    return args


def add_speed_args(p: argparse.ArgumentParser) -> None:
    speed = p.add_argument_group(
        "speed",
        "auto: on where the device supports it (CUDA), off elsewhere; --FLAG forces it on, --no-FLAG off",
    )
    for name, text in SPEED_FLAGS.items():
        speed.add_argument(
            f"--{name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default="auto", help=text
        )
    speed.add_argument(
        "--compile-mode",
        default="default",
        help="torch.compile mode: default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs",
    )


def resume_path(out: Path) -> Path:
    return out.with_name(out.stem + ".resume.pt")


def train_val_split(n: int, val: int) -> tuple[Tensor, Tensor]:
    """Indices (train, val) of n training digits, val of them held out; fixed by VAL_SPLIT_SEED."""
    if not 0 <= val < n:
        raise ValueError(f"--val {val} must leave training digits: the training set has {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))
    return perm[val:].sort().values, perm[:val].sort().values


def epoch_order(n: int, seed: int, epoch: int, world: distributed.World) -> Tensor:
    """Positions 0..n-1 in this epoch's order, this process's shard only.

    Every process draws the same permutation (seeded by seed and epoch, so a resumed run repeats
    it) and takes its own contiguous slice; the n % world_size left over are skipped this epoch.
    """
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=gen)
    per_rank = n // world.world_size
    return order[world.rank * per_rank : (world.rank + 1) * per_rank]


@dataclass
class Speed:
    """Which speed features are on; decided once from the flags and the device."""

    compile: bool = False
    compile_mode: str = "default"
    amp: bool = False  # bf16 autocast
    tf32: bool = False
    channels_last: bool = False
    fused: bool = False
    cudnn_benchmark: bool = False
    notes: list[str] = field(default_factory=list)  # why a feature asked for is off

    def as_meta(self) -> dict:
        meta = asdict(self)
        meta["amp"] = "bf16" if self.amp else "off"
        return meta


def resolve_speed(args: argparse.Namespace, device: torch.device) -> Speed:
    """Turn the flags (True, False or "auto") into features, and set the global backend switches."""
    cuda = device.type == "cuda"
    want = {name: cuda if getattr(args, name) == "auto" else getattr(args, name) for name in SPEED_FLAGS}
    speed = Speed(compile_mode=args.compile_mode)
    speed.compile = want["compile"]
    if speed.compile and not hasattr(torch, "compile"):
        speed.compile = False
        speed.notes.append(f"torch.compile: not in torch {torch.__version__}")
    speed.amp = want["amp"]
    if speed.amp and cuda and not torch.cuda.is_bf16_supported():
        speed.amp = False
        speed.notes.append(f"amp: {device_name(device)} has no bf16")
    speed.tf32 = want["tf32"] and cuda and torch.cuda.get_device_capability(device) >= (8, 0)
    if args.tf32 is True and not speed.tf32:
        speed.notes.append(f"tf32: not available on {device.type}")
    if cuda:  # cuDNN allows TF32 convolutions by default: --no-tf32 must say no to both
        torch.set_float32_matmul_precision("high" if speed.tf32 else "highest")
        torch.backends.cudnn.allow_tf32 = speed.tf32
    speed.channels_last = want["channels_last"]
    speed.fused = want["fused"]  # checked when the optimizer is made
    speed.cudnn_benchmark = want["cudnn_benchmark"] and cuda
    torch.backends.cudnn.benchmark = speed.cudnn_benchmark
    return speed


def make_optimizer(model: nn.Module, lr: float, speed: Speed) -> torch.optim.Adam:
    if speed.fused:
        try:
            return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
        except (RuntimeError, TypeError, ValueError) as e:  # device or torch without a fused Adam
            speed.fused = False
            speed.notes.append(f"fused Adam: {str(e).splitlines()[0][:200]}")
    return torch.optim.Adam(model.parameters(), lr=lr)


def rng_state(device: torch.device) -> dict[str, Tensor]:
    """The global generators dropout draws from (the CPU's, and the device's on CUDA): saved with the
    resume state so a resumed run draws the masks an uninterrupted one would. Every process seeds
    them alike and draws alike, so rank 0's state is every rank's."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Tensor], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def match_state_layout(opt: torch.optim.Optimizer) -> None:
    """Give Adam's moments the memory format of their parameters (after a resume that changed
    --channels-last): the fused kernel walks both with the parameter's strides."""
    for group in opt.param_groups:
        for p in group["params"]:
            for k, t in opt.state.get(p, {}).items():
                if isinstance(t, Tensor) and t.shape == p.shape and t.stride() != p.stride():
                    opt.state[p][k] = torch.empty_like(p, dtype=t.dtype).copy_(t)


class TrainingLoss(nn.Module):
    """Loss of one batch: capsnet.model.training_loss (margin + scaled SSE of the true digit's decode).

    One module around the CapsNet so that DDP and torch.compile see the whole forward, decoder
    included. Returns the loss () and the number of correct predictions (), both on the device.
    """

    def __init__(self, capsnet: CapsNet, iterations: int, recon_weight: float, amp: bool):
        super().__init__()
        self.capsnet = capsnet
        self.iterations = iterations
        self.recon_weight = recon_weight
        self.amp = amp

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        loss, out = training_loss(self.capsnet, x, y, self.iterations, self.recon_weight, self.amp)
        return loss, (out.prediction == y).sum()


class CrossEntropyLoss(nn.Module):
    """Loss of one batch for the baseline CNN: cross-entropy of its logits (the paper's "10 class
    softmax layer with cross entropy loss"). Same contract as TrainingLoss: (loss, correct count)."""

    def __init__(self, cnn: baseline.BaselineCNN, amp: bool):
        super().__init__()
        self.cnn = cnn
        self.amp = amp

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.cnn(x)  # (B, 10)
        loss = nn.functional.cross_entropy(logits.float(), y)
        return loss, (logits.argmax(dim=1) == y).sum()


def build(args) -> nn.Module:
    """The network --arch names, freshly initialised (seeded by the caller)."""
    if args.arch == "capsnet":
        return CapsNet()
    return baseline.BaselineCNN(pooled=args.arch == "cnn", dropout=args.dropout)


def save(path: Path, model: nn.Module, meta: dict, **extra) -> None:
    """Weights (+ extra state for a resume file) in the model's own checkpoint format."""
    if isinstance(model, CapsNet):
        save_checkpoint(path, model, meta, **extra)
    else:
        baseline.save_baseline(path, model, meta, metadata_json=False, **extra)


def check_resume_format(state: dict, args) -> None:
    """CheckpointError unless the resume file holds the network --arch asks for."""
    kind = state.get("format")
    if args.arch == "capsnet":
        ok, found = kind == CAPSNET_FORMAT, kind
    else:
        arch = state.get("arch") if isinstance(state.get("arch"), dict) else {}
        ok = kind == baseline.FORMAT and arch.get("pooled") == (args.arch == "cnn")
        found = f"{kind}, pooled={arch.get('pooled')}"
    if not ok:
        raise CheckpointError(f"it holds a different network ({found}) than --arch {args.arch}")


def compile_errors() -> tuple[type[BaseException], ...]:
    """What torch.compile raises when it cannot compile a function (no C++ compiler, no Triton, an
    unsupported op, a backend that fails): Dynamo's errors, which wrap the backend's, and Inductor's
    own. Out-of-memory and other errors of running the step are not among them."""
    try:
        from torch._dynamo.exc import TorchDynamoException
        from torch._inductor import exc as inductor
    except ImportError:  # a torch without them has no compiler to fail either
        return ()
    return (
        TorchDynamoException,
        inductor.CppCompileError,
        inductor.InvalidCxxCompiler,
        inductor.OperatorIssue,
    )


def describe_error(e: BaseException) -> str:
    """The error as "Type: first line", and its innermost cause (a failing backend's own error)."""

    def line(err: BaseException) -> str:
        text = str(err).strip()
        return f"{type(err).__name__}: {text.splitlines()[0][:200]}" if text else type(err).__name__

    root = e
    for _ in range(10):  # BackendCompilerFailed keeps the backend's error as inner_exception
        inner = getattr(root, "inner_exception", None) or root.__cause__
        if inner is None:
            break
        root = inner
    return line(e) if root is e else f"{line(e)} <- {line(root)}"


class TrainStep:
    """zero_grad, forward, backward, Adam step. With speed.compile the forward is compiled. If the
    first compiled step fails to compile (compile_errors()), the step is redone eager (nothing was
    updated yet): when that works it warns once, records why and goes on eager; when the eager step
    fails too, the fault is the step's own and its error is raised. Any other error (out of memory,
    say) is raised as it is, compiled or not."""

    def __init__(self, loss_module: nn.Module, opt: torch.optim.Optimizer, speed: Speed, say=print):
        self.eager = loss_module
        self.opt = opt
        self.speed = speed
        self.say = say
        self.compiled = None
        self.proven = False  # a compiled step has run through
        if speed.compile:
            try:
                self.compiled = torch.compile(
                    loss_module,
                    mode=None if speed.compile_mode == "default" else speed.compile_mode,
                    dynamic=False,
                )
            except Exception as e:  # e.g. "Dynamo is not supported on Python 3.x"
                self._fall_back(e, "could not be set up")

    def _fall_back(self, e: BaseException, what: str) -> None:
        self.compiled = None
        self.speed.compile = False
        why = describe_error(e)
        self.speed.notes.append(f"torch.compile {what}, trained eager ({why})")
        self.say(f"warning: torch.compile {what} ({why}); continuing eager", file=sys.stderr)

    def _step(self, fn, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        self.opt.zero_grad(set_to_none=True)
        loss, correct = fn(x, y)
        loss.backward()
        self.opt.step()
        return loss.detach(), correct

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.compiled is None or self.proven:
            return self._step(self.eager if self.compiled is None else self.compiled, x, y)
        try:
            result = self._step(self.compiled, x, y)
        except compile_errors() as e:
            result = self._step(self.eager, x, y)  # a fault of the step itself raises here, as itself
            self._fall_back(e, "failed to compile the training step")
            return result
        self.proven = True
        return result


def train_epoch(
    step: TrainStep,
    images: Tensor,
    labels: Tensor,
    order: Tensor,
    args,
    epoch: int,
    world: distributed.World,
    progress: bool = True,
    start: int = 0,
    shift_state: Tensor | None = None,
    after_step=None,
) -> dict:
    """One pass over `order` (positions in images, on the device); returns mean loss and accuracy
    over every process's images. Batches are full: the len(order) % batch_size left over are
    skipped (a different few each epoch), so compiled shapes never change.

    A run resumed mid-epoch passes the step to start at and the shift generator's saved state.
    `after_step(k, shift_gen)`, called after step k, may return True to end the epoch there
    (a --time-limit run at its limit); the result's "stopped" says whether it did."""
    from tqdm import tqdm

    device = images.device
    step.eager.train()
    shift_gen = torch.Generator(device=device).manual_seed((args.seed * 100_003 + epoch) * 1_000 + world.rank)
    if shift_state is not None:
        shift_gen.set_state(shift_state)
    steps = len(order) // args.batch_size
    if args.max_steps:
        steps = min(steps, args.max_steps)
    if steps == 0:
        raise ValueError(f"--batch-size {args.batch_size} is larger than the {len(order)} images per process")
    channels_last = torch.channels_last if step.speed.channels_last else torch.contiguous_format
    # Sums kept on the device: reading them (a host sync) happens only every log_every steps.
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen, stopped = 0, False
    bar = tqdm(
        range(start, steps),
        initial=start,
        total=steps,
        desc=f"epoch {epoch + 1}/{args.epochs}",
        unit="batch",
        file=sys.stderr,
        dynamic_ncols=True,
        disable=not (progress and world.is_main),
    )
    for k in bar:
        idx = order[k * args.batch_size : (k + 1) * args.batch_size]  # (B,) on the device
        x = random_shift(to_float(images[idx]), args.max_shift, shift_gen)  # (B, 1, 28, 28)
        x = x.contiguous(memory_format=channels_last)
        y = labels[idx]
        loss, n_correct = step(x, y)
        loss_sum += loss * len(y)
        correct += n_correct
        seen += len(y)
        if (k + 1) % args.log_every == 0 or k + 1 == steps:
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.4f}")
        if after_step is not None and after_step(k, shift_gen):
            stopped = True
            break
    bar.close()
    if seen == 0:  # resumed at the very end of an epoch
        return {"train_loss": float("nan"), "train_accuracy": float("nan"), "images": 0, "stopped": stopped}
    totals = torch.stack([loss_sum.double(), correct.double(), torch.tensor(seen, device=device).double()])
    loss_sum, correct, seen = distributed.all_reduce_sum(totals, world).tolist()
    loss_mean = loss_sum / seen
    if not math.isfinite(loss_mean):
        raise FloatingPointError(f"training diverged in epoch {epoch + 1}: loss is {loss_mean}")
    return {
        "train_loss": round(loss_mean, 6),
        "train_accuracy": round(correct / seen, 6),
        "images": int(seen),
        "stopped": stopped,
    }


@dataclass
class LrPlan:
    """The lr of a --time-limit run: a cosine from `lr` to `floor` along `progress` (0..1), times a
    linear warm-up over the first `warmup` steps. Each step adds `per_step` to the progress; each
    re-plan spreads what is left of the cosine over the steps the measured speed still fits before
    the limit, so the curve stays continuous and ends at the floor at the limit, even when the
    machine slows down or speeds up on the way."""

    lr: float
    floor: float
    warmup: int = 0
    steps: int = 0  # steps taken
    progress: float = 0.0
    per_step: float = 0.0  # 0 until the first plan: the starting lr

    def current(self) -> float:
        cosine = self.floor + 0.5 * (self.lr - self.floor) * (
            1.0 + math.cos(math.pi * min(self.progress, 1.0))
        )
        return cosine * min(1.0, (self.steps + 1) / self.warmup) if self.warmup else cosine

    def advance(self) -> None:
        self.steps += 1
        self.progress = min(1.0, self.progress + self.per_step)

    def replan(self, steps_left: float) -> None:
        self.per_step = (1.0 - self.progress) / max(steps_left, 1.0)


class Clock:
    """Where a --time-limit run stands against its limit. Training time is told apart from the
    evaluations and saves, so the speed it plans with is the training step's own."""

    def __init__(self, limit_s: float, start: float):
        self.deadline = start + limit_s
        self.limit_s = limit_s
        self.other_s = 0.0  # evaluations and saves since `mark`
        self.mark_time: float | None = None
        self.mark_steps = 0

    def mark(self, steps: int) -> None:
        """Start measuring the speed here (after the first, compiling steps)."""
        self.mark_time, self.mark_steps, self.other_s = time.perf_counter(), steps, 0.0

    def seconds_per_step(self, steps: int) -> float | None:
        if self.mark_time is None or steps - self.mark_steps < 5:
            return None
        return (time.perf_counter() - self.mark_time - self.other_s) / (steps - self.mark_steps)

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def accuracy(model: nn.Module, images: Tensor, labels: Tensor, iterations: int) -> tuple[float, int]:
    """(accuracy, errors) on uint8 images (N, 28, 28): CapsNet's longest capsule, a CNN's argmax."""
    model.eval()
    preds = predict(model, images, iterations=iterations)
    wrong = int((preds != labels.cpu()).sum())
    return 1 - wrong / len(labels), wrong


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    world = distributed.world_from_env()
    device = use_device_args(args)
    if device.type == "cuda" and world.distributed and device.index is None:
        device = torch.device("cuda", world.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    out = Path(args.out)
    say = print if world.is_main else (lambda *a, **k: None)
    torch.manual_seed(args.seed)

    # Every process looks (read-only) before any writes, so all of them agree to stop.
    if not (args.resume or args.overwrite) and (out.exists() or resume_path(out).exists()):
        say(
            f"error: {out} already exists; nothing was changed. Pass --resume to continue its training, "
            "--overwrite to replace it, or choose another --out.",
            file=sys.stderr,
        )
        return 2
    try:
        all_x, all_y = load_mnist(args.data_root, train=True, download=not args.no_download and world.is_main)
        test_x, test_y = load_mnist(
            args.data_root, train=False, download=not args.no_download and world.is_main
        )
        train_idx, val_idx = train_val_split(len(all_x), args.val)
    except (RuntimeError, ValueError) as e:
        say(f"error: {e}", file=sys.stderr)
        return 2
    # The whole training set lives on the device as uint8 (47 MB): no loader in the hot loop.
    train_x, train_y = all_x[train_idx].to(device), all_y[train_idx].to(device)
    val_x, val_y = all_x[val_idx].to(device), all_y[val_idx]
    test_x = test_x.to(device)

    distributed.init(world, device)
    try:
        command = cli_command("capsnet.train", argv)
        return _train(args, world, device, out, say, command, train_x, train_y, val_x, val_y, test_x, test_y)
    finally:
        distributed.finish(world)


def init_weights(model: CapsNet, path: Path, out: Path) -> list[dict]:
    """Load --init-from's weights into `model`; return the lineage they carry (the runs that made
    them, oldest first). Weights from before lineages were recorded count as one run, described by
    their own metadata."""
    if path.resolve() == out.resolve():
        raise CheckpointError(f"--init-from {path} is --out too: the run would overwrite its own start")
    fix = "Pass --init-from a CapsNet checkpoint written by capsnet.train."
    state = read_checkpoint(path, fix)
    if state.get("format") != CAPSNET_FORMAT:
        raise CheckpointError(f"{path} does not hold CapsNet weights ({state.get('format')}). {fix}")
    load_state(model, state["state_dict"], path, fix)
    try:
        meta = json.loads(state.get("meta") or "{}")
    except json.JSONDecodeError:
        meta = {}
    if meta.get("lineage"):
        return list(meta["lineage"])
    return [run_summary(meta, source=str(path))] if meta else [{"source": str(path), "note": "no metadata"}]


def run_summary(meta: dict, **extra) -> dict:
    """One run of a lineage, from its metadata: what ran, for how long, where."""
    keys = ("command", "date", "device", "torch_version", "epochs", "steps", "batch_size", "lr", "lr_decay")
    summary = {k: meta[k] for k in keys if k in meta}
    if "train_seconds" in meta:
        summary["hours"] = round(meta["train_seconds"] / 3600, 3)
    for k in ("val_accuracy", "test_accuracy"):
        if k in meta:
            summary[k] = meta[k]
    return summary | extra


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def _train(args, world, device, out, say, command, train_x, train_y, val_x, val_y, test_x, test_y) -> int:
    timed = args.time_limit > 0
    if timed and world.distributed:
        say("error: --time-limit runs in one process (each would stop at its own step)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    speed = resolve_speed(args, device)
    model = build(args).to(device)
    parents: list[dict] = []  # the runs the starting weights came from
    if args.init_from and not args.resume:
        try:
            parents = init_weights(model, Path(args.init_from), out)
        except CheckpointError as e:
            say(f"error: --init-from: {e}", file=sys.stderr)
            return 2
    if speed.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, args.lr, speed)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=args.lr_decay)
    plan = LrPlan(args.lr, args.lr_floor, args.warmup_steps) if timed else None
    start_epoch, start_step, shift_state, history, train_seconds = 0, 0, None, [], 0.0
    best_val, best_state = -1.0, None

    if args.resume:
        rpath = resume_path(out)
        if not rpath.exists():
            say(
                f"error: --resume given but {rpath} does not exist; run without --resume to start.",
                file=sys.stderr,
            )
            return 2
        fix = "Run the same command with --overwrite instead of --resume to start afresh."
        try:
            state = read_checkpoint(rpath, fix)
            check_resume_format(state, args)
            load_state(model, state["state_dict"], rpath, fix)
            opt.load_state_dict(state["optimizer"])
            match_state_layout(opt)
            sched.load_state_dict(state["scheduler"])
            held_out = int(state.get("val_images", 0))
            if timed != ("plan" in state):
                raise CheckpointError("resume a --time-limit run with --time-limit, and only such a run")
            if timed:
                plan = LrPlan(**state["plan"])
            parents = list(json.loads(state["meta"]).get("lineage", [{}]))[:-1]
        except (CheckpointError, KeyError, ValueError, TypeError) as e:
            say(f"error: cannot resume from {rpath}: {e}", file=sys.stderr)
            return 2
        if held_out != args.val:
            say(
                f"error: {rpath} was trained with --val {held_out}; resume with the same --val.",
                file=sys.stderr,
            )
            return 2
        if "rng" in state:
            set_rng_state(state["rng"], device)
        else:  # written before the state was saved: only dropout (the CNNs') is affected
            say(f"note: {rpath} holds no random-generator state; dropout masks will differ", file=sys.stderr)
        start_epoch, history = int(state["epoch"]), list(state["history"])
        start_step, shift_state = int(state.get("step", 0)), state.get("shift_state")
        train_seconds = float(state["train_seconds"])
        best_val = float(state.get("best_val", -1.0))
        if best_val >= 0:  # OUT holds the weights chosen so far
            best_state = read_checkpoint(out, fix)["state_dict"]
        where = (
            f"at epoch {start_epoch + 1}, step {start_step}" if start_step else f"after epoch {start_epoch}"
        )
        say(f"resuming {where} of {args.epochs} from {rpath}", file=sys.stderr)

    if isinstance(model, CapsNet):
        loss_module = TrainingLoss(model, args.iterations, args.recon_weight, speed.amp)
    else:
        loss_module = CrossEntropyLoss(model, speed.amp)
    if world.distributed:
        loss_module = nn.parallel.DistributedDataParallel(
            loss_module, device_ids=[device.index] if device.type == "cuda" else None
        )
    step = TrainStep(loss_module, opt, speed, say)
    steps_per_epoch = len(train_x) // world.world_size // args.batch_size
    if args.max_steps:
        steps_per_epoch = min(steps_per_epoch, args.max_steps)

    if world.is_main:  # temp files left by a run killed while writing: the real files beside them are intact
        for stale in (
            *out.parent.glob(f".{out.name}.*.tmp"),
            *out.parent.glob(f".{resume_path(out).name}.*.tmp"),
        ):
            stale.unlink(missing_ok=True)

    def make_meta(epochs_done: float, **extra) -> dict:
        meta = {
            "arch": args.arch,
            "parameters": count_parameters(model),
            **({"dropout": args.dropout} if args.arch != "capsnet" else {}),
            **extra,
            "epochs": epochs_done,
            "seconds_per_epoch": round(train_seconds / epochs_done, 2) if epochs_done else None,
            "train_seconds": round(train_seconds, 1),
            "device": device_name(device),
            "torch_version": torch.__version__,
            "seed": args.seed,
            "command": command,
            "batch_size": args.batch_size,
            "world_size": world.world_size,
            "global_batch_size": args.batch_size * world.world_size,
            "lr": args.lr,
            **(
                {"lr_schedule": f"cosine to {args.lr_floor:g} over the steps that fit", "steps": plan.steps}
                if timed
                else {"lr_decay": args.lr_decay}
            ),
            **({"routing_iterations": args.iterations} if args.arch == "capsnet" else {}),
            "max_shift": args.max_shift,
            "train_images": len(train_x),
            "images_per_epoch": steps_per_epoch * args.batch_size * world.world_size,
            "val_images": len(val_x),
            "test_images": len(test_x),
            "speed": speed.as_meta(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "history": history,
        }
        here = run_summary(meta, **({"init_from": args.init_from} if args.init_from else {}))
        meta["lineage"] = [*parents, here]
        hours = [r.get("hours") for r in meta["lineage"]]
        if all(h is not None for h in hours):
            meta["total_hours"] = round(sum(hours), 3)
        return meta

    def write_resume(meta: dict, epoch: int, at_step: int, shift_gen_state) -> None:
        save(
            resume_path(out),
            model,
            meta,
            optimizer=opt.state_dict(),
            scheduler=sched.state_dict(),
            epoch=epoch,
            step=at_step,
            **({"shift_state": shift_gen_state} if at_step else {}),
            **({"plan": asdict(plan)} if timed else {}),
            best_val=best_val,
            history=history,
            train_seconds=train_seconds,
            rng=rng_state(device),
            val_images=len(val_x),
        )

    def epochs_done(epoch: int, at_step: int) -> float:
        return round(epoch + at_step / steps_per_epoch, 3) if timed else epoch

    # --time-limit: the speed is measured after the first (compiling) steps, and the time an end
    # needs (scoring the validation and test digits, the saves) is kept in reserve.
    clock = Clock(args.time_limit * 60, started) if timed else None
    eval_s_per_image = 0.0
    if timed and world.is_main:
        t0 = time.perf_counter()
        accuracy(model, test_x[:256], test_y[:256], args.iterations)
        eval_s_per_image = (time.perf_counter() - t0) / min(256, len(test_x))
    reserve = eval_s_per_image * (len(val_x) + len(test_x)) * 1.3 + 10.0
    next_save = time.perf_counter() + args.save_every * 60
    first_step = plan.steps if timed else 0
    stop_at: dict = {}

    def after_step(epoch: int, k: int, shift_gen) -> bool:
        nonlocal next_save, train_seconds
        plan.advance()
        set_lr(opt, plan.current())
        if plan.steps - first_step == 3:
            clock.mark(plan.steps)
        now = time.perf_counter()
        sps = clock.seconds_per_step(plan.steps)
        if sps is not None and (plan.per_step == 0.0 or now >= next_save):
            # Each epoch's end also scores the validation digits: spread that over its steps.
            per_step = sps + eval_s_per_image * len(val_x) / steps_per_epoch
            plan.replan((clock.left() - reserve) / per_step)
        if now >= next_save and k + 1 < steps_per_epoch:  # an epoch's end writes its own
            t0 = time.perf_counter()
            write_resume(make_meta(epochs_done(epoch, k + 1)), epoch, k + 1, shift_gen.get_state())
            clock.other_s += time.perf_counter() - t0
            next_save = time.perf_counter() + args.save_every * 60
        if clock.left() <= reserve:
            stop_at.update(step=k + 1, shift_state=shift_gen.get_state())
            return True
        return False

    if timed:
        set_lr(opt, plan.current())
    meta = None
    for epoch in range(start_epoch, args.epochs):
        lr = opt.param_groups[0]["lr"]
        order = epoch_order(len(train_x), args.seed, epoch, world).to(device)
        t0 = time.perf_counter()
        other_before = clock.other_s if timed else 0.0
        first = epoch == start_epoch
        stats = train_epoch(
            step,
            train_x,
            train_y,
            order,
            args,
            epoch,
            world,
            start=start_step if first else 0,
            shift_state=shift_state if first else None,
            after_step=(lambda k, gen, e=epoch: after_step(e, k, gen)) if timed else None,
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0 - ((clock.other_s - other_before) if timed else 0.0)
        train_seconds += seconds
        if not timed:
            sched.step()
        stopped = stats["stopped"]
        at_step = (
            stop_at["step"] % steps_per_epoch if stopped else 0
        )  # 0: the limit came with the epoch's end
        finished = at_step == 0
        record = {
            "epoch": epoch + 1,
            "train_loss": stats["train_loss"],
            "train_accuracy": stats["train_accuracy"],
        }
        if not finished:
            record["steps"] = at_step  # the limit came mid-epoch
        if world.is_main:
            t_eval = time.perf_counter()
            extra = {}
            if args.val:
                record["val_accuracy"] = round(accuracy(model, val_x, val_y, args.iterations)[0], 6)
                if record["val_accuracy"] > best_val:
                    best_val = record["val_accuracy"]
                    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                    record["chosen"] = True
                extra = {"val_accuracy": best_val}
            else:
                acc, wrong = accuracy(model, test_x, test_y, args.iterations)
                record["test_accuracy"] = round(acc, 6)
                extra = {"test_accuracy": round(acc, 6), "test_errors": wrong}
            record.update(
                seconds=round(seconds, 2),
                images_per_second=round(stats["images"] / seconds, 1) if seconds > 0 else None,
                lr=lr,
            )
            history.append(record)
            score = (
                f"val acc {record['val_accuracy']:.4%}"
                if args.val
                else f"test acc {record['test_accuracy']:.4%}"
            )
            lr_now = f", lr {opt.param_groups[0]['lr']:.2e}" if timed else ""
            say(
                f"epoch {epoch + 1}{' (stopped at the time limit)' if stopped else ''}: "
                f"loss {stats['train_loss']:.4f}  train acc {stats['train_accuracy']:.4f}  {score}  "
                f"({seconds:.1f} s, {record['images_per_second'] or 0:,.0f} img/s{lr_now})",
                file=sys.stderr,
                flush=True,
            )
            done = epochs_done(epoch + finished, at_step)
            meta = make_meta(done, **extra)
            # Order matters for a kill between writes: weights, then metadata, then the resume state.
            if not args.val or record.get("chosen"):
                save(out, model, meta)
                atomic_write_json(out.with_suffix(".json"), meta)
            write_resume(meta, epoch + finished, at_step, stop_at.get("shift_state"))
            if timed:
                clock.other_s += time.perf_counter() - t_eval
        if stopped:
            break
    if args.val and world.is_main and best_state is not None:
        # The test set is scored once, on the weights the validation digits chose.
        final = build(args).to(device)
        final.load_state_dict(best_state)
        acc, wrong = accuracy(final, test_x, test_y, args.iterations)
        chosen = max((r for r in history if r.get("chosen")), key=lambda r: r["val_accuracy"], default=None)
        meta = make_meta(
            meta["epochs"] if meta else epochs_done(start_epoch, start_step),
            val_accuracy=best_val,
            test_accuracy=round(acc, 6),
            test_errors=wrong,
            chosen_epoch=chosen["epoch"] if chosen else None,
        )
        say(f"chosen on validation: epoch {meta['chosen_epoch']}, test acc {acc:.4%}", file=sys.stderr)
        save(out, final, meta)
        atomic_write_json(out.with_suffix(".json"), meta)
    distributed.barrier(world)  # nobody leaves before rank 0 has written the last epoch
    say(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
