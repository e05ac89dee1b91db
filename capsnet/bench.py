"""Speed figures for the README.

    python -m capsnet.bench              # inference: one digit, traced vs plain forward, decoder, grid
    python -m capsnet.bench --json       # the same, ending with one JSON line
    python -m capsnet.bench train --data-root ../shared/data [--n 60000] [--peak-tflops 989] [--json]
    python -m capsnet.bench paths --data-root ../shared/data --threads 2 [--check-steps 300] [--json]

Inference: medians of many repeats after warm-up, on the cpu. Training: images/s of (a) the usual
pipeline, a torchvision DataLoader over torchvision.datasets.MNIST with a per-image
RandomCrop(28, padding=2) (the paper's shift of up to 2 px, zero padded), fp32, eager, reading the
loss every step, against (b) ours (capsnet.train: the set on the device as uint8, the shift as one
batched gather, and on CUDA bf16, TF32, channels-last, fused Adam, torch.compile), interleaved
a, b, a, b, ... on the same device, with the arithmetic floor of the training FLOPs.

Paths (a CPU's training step, one formulation at a time): images/s of capsnet.train's step with
fp32 or bf16 autocast on the two convolutions (routing, decoder and losses stay fp32), with or
without channels-last, torch.compile, and PrimaryCaps' convolution as itself, as a stride-1
convolution over 2x2 pixel blocks (s2d) or as unfold + one matrix product (unfold); timed in
interleaved rounds, against the floor this machine's own measured matrix-product peaks put on the
step. With --check-steps N, each path's numerics are checked: N steps from the same start and
the held-out loss they reach, against the spread of fp32 runs that differ only in their seed.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import CheckpointError, load_model
from .evaluate import backend_switches, device_name, select_device, set_backend_switches
from .model import (
    DIGIT_DIM,
    NUM_DIGITS,
    NUM_PRIMARY,
    NUM_PRIMARY_TYPES,
    PRIMARY_DIM,
    PRIMARY_GRID,
    CapsNet,
    PrimaryCaps,
    training_loss,
)
from .preprocess import to_mnist


def timeit(fns: dict, repeats: int, warmup: int = 5) -> dict:
    """Time several functions interleaved (a, b, a, b, ...) so drifting load hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: _summary(ts) for name, ts in times.items()}


def _summary(times: list[float]) -> dict:
    times = sorted(times)
    return {
        "median_ms": round(1000 * statistics.median(times), 3),
        "p90_ms": round(1000 * times[int(0.9 * (len(times) - 1))], 3),
    }


def bench_inference(model: CapsNet, repeats: int) -> dict:
    torch.manual_seed(0)
    x = torch.rand(1, 1, 28, 28)
    canvas = np.zeros((280, 280, 4), np.uint8)
    canvas[60:220, 130:150] = 255
    with torch.inference_mode():
        out = model(x, trace=True)
        digit = out.prediction
        grid_poses = out.poses.repeat(176, 1, 1)
        results = timeit(
            {
                "forward_plain": lambda: model(x, iterations=3),
                "forward_traced": lambda: model(x, iterations=3, trace=True),
            },
            repeats,
        )
        results |= timeit(
            {
                "preprocess_canvas_280": lambda: to_mnist(canvas),
                "reconstruct_1": lambda: model.reconstruct(out.poses, digit),
                "reconstruct_grid_176": lambda: model.reconstruct(grid_poses, digit.repeat(176)),
            },
            repeats,
        )
    results["traced_over_plain"] = round(
        results["forward_traced"]["median_ms"] / results["forward_plain"]["median_ms"], 3
    )
    return results


def training_flops_per_image(iterations: int = 3) -> dict:
    """Multiply-adds x 2 of one training image, forward and backward, from the layer shapes.

    forward: conv1 20x20 outputs x 256 channels x 81 taps; PrimaryCaps 6x6 x 256 x (256 x 81);
    u_hat = W_ij u_i: 1152 x 10 x 16 x 8; routing: s_j = sum_i c_ij u_hat_j|i each iteration and
    the agreement u_hat . v in all but the last, 1152 x 10 x 16 each; decoder 160-512-1024-784.
    Softmax, squash and the losses are a few hundred thousand element-wise operations: left out.
    backward: about twice the forward (gradients of the inputs and of the weights of each layer),
    except conv1, whose input is the image and needs no gradient.
    """
    routing_step = NUM_PRIMARY * NUM_DIGITS * DIGIT_DIM
    forward = {
        "conv1": 2 * 20 * 20 * 256 * 81,
        "primary_caps": 2 * PRIMARY_GRID**2 * NUM_PRIMARY_TYPES * PRIMARY_DIM * 256 * 81,
        "u_hat": 2 * NUM_PRIMARY * NUM_DIGITS * DIGIT_DIM * PRIMARY_DIM,
        "routing": 2 * routing_step * (2 * iterations - 1),
        "decoder": 2 * (NUM_DIGITS * DIGIT_DIM * 512 + 512 * 1024 + 1024 * 784),
    }
    total_forward = sum(forward.values())
    return {"forward": forward, "total": 3 * total_forward - forward["conv1"]}


# Dense bf16 tensor-core peaks from the vendor's data sheets, TFLOP/s, by device-name substring.
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0))


def default_peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in name), None)


def usual_epoch(model, opt, loader, device, iterations: int = 3) -> int:
    """The loop most CapsNet repositories use: batches from the DataLoader, fp32, eager, and the
    loss read back every step for the running average. Returns the images trained."""
    model.train()
    seen, total = 0, 0.0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss, _ = training_loss(model, x, y, iterations)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item() * len(y)
        seen += len(y)
    return seen


def bench_train(args) -> dict:
    from torch.utils.data import DataLoader, Subset
    from torchvision import transforms
    from torchvision.datasets import MNIST

    from . import distributed
    from .data import load_mnist
    from .train import TrainingLoss, TrainStep, make_optimizer, resolve_speed, train_epoch

    device = select_device(args.device)
    torch.manual_seed(0)
    n = args.n or (60_000 if device.type == "cuda" else 512)
    workers = args.workers if args.workers >= 0 else (4 if device.type == "cuda" else 0)

    # (a) the usual pipeline
    dataset = MNIST(
        args.data_root,
        train=True,
        download=False,
        transform=transforms.Compose([transforms.RandomCrop(28, padding=2), transforms.ToTensor()]),
    )
    n = min(n, len(dataset))
    loader = DataLoader(
        Subset(dataset, range(n)),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    usual_model = CapsNet().to(device)
    usual_opt = torch.optim.Adam(usual_model.parameters(), lr=1e-3)

    # (b) ours: the training loop of capsnet.train, speed features as it would pick them
    defaults = backend_switches()  # (a) runs with PyTorch's defaults, (b) with what capsnet.train sets
    speed = resolve_speed(args, device)
    switches = {"usual": defaults, "ours": backend_switches()}
    images, labels = load_mnist(args.data_root, train=True, download=False)
    images, labels = images[:n].to(device), labels[:n].to(device)
    model = CapsNet().to(device)
    if speed.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, 1e-3, speed)
    step = TrainStep(
        TrainingLoss(model, 3, 0.0005, speed.amp),
        opt,
        speed,
        say=lambda *a, **k: print(*a, **{**k, "file": sys.stderr}),
    )
    world = distributed.World()
    loop = SimpleNamespace(
        seed=0, batch_size=args.batch_size, max_shift=2, max_steps=0, log_every=10**9, epochs=args.rounds
    )

    def run_ours(epoch: int, steps: int = 0) -> int:
        loop.max_steps = steps
        order = torch.randperm(n, device=device)
        return train_epoch(step, images, labels, order, loop, epoch, world, progress=False)["images"]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    # Warm-up: workers, cuDNN's algorithm search, torch.compile.
    set_backend_switches(switches["usual"])
    for x, y in [next(iter(loader))]:
        usual_model(x.to(device))
    set_backend_switches(switches["ours"])
    run_ours(0, steps=3)
    sync()
    rounds = {"usual": [], "ours": []}
    for r in range(args.rounds):
        for name in ("usual", "ours"):
            set_backend_switches(switches[name])
            t0 = time.perf_counter()
            seen = usual_epoch(usual_model, usual_opt, loader, device) if name == "usual" else run_ours(r + 1)
            sync()
            rounds[name].append(seen / (time.perf_counter() - t0))
            print(
                f"round {r + 1}/{args.rounds} {name:<5} {rounds[name][-1]:10,.0f} images/s", file=sys.stderr
            )

    flops = training_flops_per_image()
    peak = args.peak_tflops or default_peak_tflops(device)
    result = {
        "device": device_name(device),
        "torch": torch.__version__,
        "n": n,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "workers": workers,
        "flop_per_image": flops["total"],
        "flop_per_epoch": flops["total"] * 60_000,
        "peak_tflops": peak,
    }
    for name, ips in rounds.items():
        med = statistics.median(ips)
        result[name] = {
            "images_per_second": round(med, 3),
            "seconds_per_epoch": round(60_000 / med, 3),
            "rounds_images_per_second": [round(v, 1) for v in ips],
        }
        if peak:
            floor = result["flop_per_epoch"] / (peak * 1e12)
            result["floor_seconds_per_epoch"] = round(floor, 4)
            result[name]["times_floor"] = round(result[name]["seconds_per_epoch"] / floor, 1)
    result["usual"]["pipeline"] = (
        "torchvision DataLoader + RandomCrop(28, padding=2), fp32 (PyTorch's default TF32 "
        "settings), eager, loss.item() each step"
    )
    result["ours"]["pipeline"] = "capsnet.train: uint8 set on the device, batched shift, no per-step sync"
    result["ours"]["speed"] = speed.as_meta()
    result["ratio"] = round(result["ours"]["images_per_second"] / result["usual"]["images_per_second"], 2)
    return result


class SpaceToDepthPrimaryCaps(PrimaryCaps):
    """PrimaryCaps' 9x9 stride-2 convolution as a stride-1 one: each 2x2 block of input pixels
    becomes channels (256 x 20 x 20 -> 1024 x 10 x 10) and the kernel, zero-padded to 10x10, a 5x5
    one over them. Same weights, same result, 23% more multiply-adds (the padding), but no stride."""

    def convolve(self, x: torch.Tensor) -> torch.Tensor:
        w = F.pixel_unshuffle(F.pad(self.conv.weight, (0, 1, 0, 1)), 2)  # (256, 1024, 5, 5)
        return F.conv2d(F.pixel_unshuffle(x, 2), w, self.conv.bias)  # (B, 256, 6, 6)


class UnfoldPrimaryCaps(PrimaryCaps):
    """The same convolution as one matrix product: the 36 receptive fields unfolded into columns
    (B, 256 x 81, 36), multiplied by the (256, 256 x 81) kernel."""

    def convolve(self, x: torch.Tensor) -> torch.Tensor:
        cols = F.unfold(x, 9, stride=2)  # (B, 20736, 36)
        w = self.conv.weight.reshape(self.conv.out_channels, -1)  # (256, 20736)
        out = w @ cols + self.conv.bias[:, None]  # (B, 256, 36)
        return out.view(x.shape[0], -1, PRIMARY_GRID, PRIMARY_GRID)


FORMULATIONS = {"conv": PrimaryCaps, "s2d": SpaceToDepthPrimaryCaps, "unfold": UnfoldPrimaryCaps}
DEFAULT_PATHS = (
    "fp32",
    "bf16",
    "bf16+cl",
    "bf16+s2d",
    "bf16+unfold",
    "fp32+compile",
    "bf16+compile",
    "bf16+cl+compile",
    "bf16+s2d+compile",
)


@dataclass(frozen=True)
class TrainPath:
    """One way to run the training step: "fp32" or "bf16" (autocast on the convolutions), then any
    of "cl" (channels-last), "compile" and a PrimaryCaps formulation ("s2d", "unfold"), joined by +."""

    name: str
    amp: bool
    channels_last: bool
    compile: bool
    formulation: str

    @classmethod
    def parse(cls, name: str) -> TrainPath:
        precision, *rest = name.split("+")
        known = {"cl", "compile", *FORMULATIONS}
        if precision not in ("fp32", "bf16") or not set(rest) <= known or len(set(rest)) != len(rest):
            raise ValueError(
                f"unknown path {name!r}: fp32 or bf16, then any of +cl, +compile, +s2d, +unfold (e.g. bf16+compile)"
            )
        forms = [r for r in rest if r in FORMULATIONS]
        if len(forms) > 1:
            raise ValueError(f"path {name!r} names two formulations of PrimaryCaps")
        return cls(name, precision == "bf16", "cl" in rest, "compile" in rest, forms[0] if forms else "conv")

    def build(self, start: dict, lr: float = 1e-3):
        """A CapsNet with the `start` weights, laid out and formulated as this path says, and
        capsnet.train's step for it: (TrainStep, model)."""
        from .train import Speed, TrainingLoss, TrainStep, make_optimizer

        model = CapsNet()
        model.load_state_dict(start)
        if self.formulation != "conv":
            primary = FORMULATIONS[self.formulation]()
            primary.load_state_dict(model.primary_caps.state_dict())
            model.primary_caps = primary
        speed = Speed(amp=self.amp, channels_last=self.channels_last, compile=self.compile)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        step = TrainStep(
            TrainingLoss(model, 3, 0.0005, self.amp),
            make_optimizer(model, lr, speed),
            speed,
            say=lambda *a, **k: print(*a, **{**k, "file": sys.stderr}),
        )
        return step, model


def matmul_peak_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """This machine's dense matrix-product rate, GFLOP/s: the best of `repeats` n x n products."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def step_floor_seconds(fp32_gflops: float, bf16_gflops: float, iterations: int = 3) -> float:
    """The least time one training image can take here: the convolutions' FLOPs at the bf16
    matrix-product peak, everything else at the fp32 one (it stays fp32)."""
    flops = training_flops_per_image(iterations)
    fwd = flops["forward"]
    conv = 3 * (fwd["conv1"] + fwd["primary_caps"]) - fwd["conv1"]
    return conv / (bf16_gflops * 1e9) + (flops["total"] - conv) / (fp32_gflops * 1e9)


def bench_paths(args) -> dict:
    """Images/s of each path's training step on real digits (interleaved rounds of --steps steps,
    after a warm-up that compiles), and with --check-steps the held-out loss each path reaches."""
    from .data import load_mnist, random_shift, to_float
    from .train import train_val_split

    paths = [TrainPath.parse(name) for name in args.paths.split(",")]
    images, labels = load_mnist(args.data_root, train=True, download=False)
    train_idx, held_idx = train_val_split(len(images), min(1000, len(images) // 2))
    torch.manual_seed(0)
    start = CapsNet().state_dict()
    batch = args.batch_size
    gen = torch.Generator().manual_seed(0)
    pick = train_idx[torch.randint(len(train_idx), (batch,), generator=gen)]
    x, y = random_shift(to_float(images[pick]), 2, gen), labels[pick]

    steps = {}
    for path in paths:
        step, model = path.build(start)
        xx = x.contiguous(memory_format=torch.channels_last) if path.channels_last else x
        t = _timed(lambda: [step(xx, y) for _ in range(args.warmup)])
        print(f"  {path.name:<18} warm-up {t:6.1f} s", file=sys.stderr)
        steps[path.name] = (step, xx)
    rates = {p.name: [] for p in paths}
    for r in range(args.rounds):
        for name, (step, xx) in steps.items():
            t = _timed(lambda: [step(xx, y)[0].item() for _ in range(args.steps)])
            rates[name].append(args.steps * batch / t)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    fp32_peak, bf16_peak = matmul_peak_gflops(torch.float32), matmul_peak_gflops(torch.bfloat16)
    floor = step_floor_seconds(fp32_peak, bf16_peak)
    result = {
        "device": device_name(torch.device("cpu")),
        "torch": torch.__version__,
        "batch_size": batch,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "matmul_gflops": {"fp32": round(fp32_peak, 1), "bf16": round(bf16_peak, 1)},
        "floor_images_per_second": round(1 / floor, 1),
        "floor_seconds_per_epoch": round(60_000 * floor, 1),
        "paths": {},
    }
    for path in paths:
        ips = statistics.median(rates[path.name])
        result["paths"][path.name] = {
            "images_per_second": round(ips, 1),
            "seconds_per_epoch": round(60_000 / ips, 1),
            "times_floor": round((1 / ips) / floor, 2),
            "rounds_images_per_second": [round(v, 1) for v in rates[path.name]],
            "compiled": steps[path.name][0].speed.compile,
        }
    fastest = max(result["paths"], key=lambda n: result["paths"][n]["images_per_second"])
    result["fastest"] = fastest
    if args.check_steps:
        held = (to_float(images[held_idx]), labels[held_idx])
        result["numerics"] = check_numerics(
            [TrainPath.parse("fp32")] * args.check_seeds, TrainPath.parse(args.check or fastest), start, images,
            labels, train_idx, held, args.check_steps, args.check_batch,
        )  # fmt: skip
    return result


def check_numerics(fp32_runs, candidate, start, images, labels, train_idx, held, steps, batch) -> dict:
    """Train from the same start for `steps` steps: fp32 with seeds 0, 1, ... (the seed picks the
    batches and shifts), and the candidate path with seed 0; score each on the held-out digits in
    fp32. The candidate passes when its loss lies within the fp32 runs' seed-to-seed spread."""
    from .data import random_shift, to_float

    def run(path: TrainPath, seed: int) -> float:
        step, model = path.build(start)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            idx = train_idx[torch.randint(len(train_idx), (batch,), generator=gen)]
            x = random_shift(to_float(images[idx]), 2, gen)
            step(x.contiguous(memory_format=torch.channels_last) if path.channels_last else x, labels[idx])
        model.eval()
        with torch.no_grad():
            loss, _ = training_loss(model, held[0].contiguous(), held[1])
        print(f"  {path.name} seed {seed}: held-out loss {float(loss):.5f}", file=sys.stderr)
        return float(loss)

    fp32 = [run(path, seed) for seed, path in enumerate(fp32_runs)]
    value = run(candidate, 0)
    low, high = min(fp32), max(fp32)
    return {
        "steps": steps,
        "batch_size": batch,
        "held_out_digits": len(held[1]),
        "fp32_seed_losses": [round(v, 6) for v in fp32],
        "candidate": candidate.name,
        "candidate_loss": round(value, 6),
        "candidate_minus_fp32_seed0": round(value - fp32[0], 6),
        "fp32_spread": round(high - low, 6),
        "within_spread": low <= value <= high or abs(value - fp32[0]) <= high - low,
    }


def print_paths(result: dict) -> None:
    peaks = result["matmul_gflops"]
    print(
        f"capsnet training step on {result['device']} (torch {result['torch']}): batch {result['batch_size']}, "
        f"median of {result['rounds']} interleaved rounds of {result['steps_per_round']} steps"
    )
    print(f"  {'path':<18} {'images/s':>9} {'s/epoch':>8} {'x floor':>8}")
    for name, r in sorted(result["paths"].items(), key=lambda kv: -kv[1]["images_per_second"]):
        note = "" if r["compiled"] or "compile" not in name else "  (compile failed: ran eager)"
        print(
            f"  {name:<18} {r['images_per_second']:9.1f} {r['seconds_per_epoch']:8.0f} {r['times_floor']:8.2f}{note}"
        )
    print(
        f"  floor {result['floor_images_per_second']:.0f} images/s ({result['floor_seconds_per_epoch']:.0f} s/epoch): "
        f"the convolutions at this CPU's bf16 matrix-product rate ({peaks['bf16']:.0f} GFLOP/s), the rest at "
        f"its fp32 rate ({peaks['fp32']:.0f} GFLOP/s)"
    )
    print(f"  fastest: {result['fastest']}")
    n = result.get("numerics")
    if n:
        verdict = "within" if n["within_spread"] else "OUTSIDE"
        print(
            f"  numerics, {n['steps']} steps of {n['batch_size']} from one start, loss on {n['held_out_digits']} "
            f"held-out digits: fp32 seeds {', '.join(f'{v:.5f}' for v in n['fp32_seed_losses'])} "
            f"(spread {n['fp32_spread']:.5f}); {n['candidate']} {n['candidate_loss']:.5f} "
            f"({n['candidate_minus_fp32_seed0']:+.5f} from fp32 seed 0): {verdict} the seed-to-seed spread"
        )


def print_train(result: dict) -> None:
    print(
        f"capsnet training on {result['device']} (torch {result['torch']}): {result['n']:,} images a round, "
        f"batch {result['batch_size']}, median of {result['rounds']} interleaved rounds"
    )
    for name, label in (("usual", "(a) usual"), ("ours", "(b) ours ")):
        r = result[name]
        floor = f"  {r['times_floor']:,.1f}x the floor" if "times_floor" in r else ""
        print(
            f"  {label} {r['images_per_second']:10,.0f} images/s  {r['seconds_per_epoch']:9.2f} s/epoch{floor}"
            f"   {r['pipeline']}"
        )
    print(f"  ours / usual {result['ratio']:.2f}x")
    print(
        f"  floor: {result['flop_per_image'] / 1e9:.2f} GFLOP per training image (forward + backward), "
        f"{result['flop_per_epoch'] / 1e12:.1f} TFLOP per epoch of 60,000",
        end="",
    )
    if result["peak_tflops"]:
        print(f" = {result['floor_seconds_per_epoch']:.3f} s/epoch at {result['peak_tflops']:g} TFLOP/s")
    else:
        print("; pass --peak-tflops X (the device's dense bf16 peak) to see how far each pipeline is from it")


def main(argv: list[str] | None = None) -> int:
    from .train import add_speed_args

    p = argparse.ArgumentParser(
        prog="python -m capsnet.bench",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "mode",
        nargs="?",
        choices=["infer", "train", "paths"],
        default="infer",
        help="infer: one-digit inference timings; train: training throughput, usual vs ours; "
        "paths: the training step's formulations on this machine (a CPU's bench)",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="infer: weights to time (default: the shipped ones, as load_model())",
    )
    p.add_argument("--repeats", type=int, default=200, help="infer: timed runs of each function")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--json", action="store_true", help="end stdout with one JSON line")
    t = p.add_argument_group("train")
    t.add_argument("--data-root", default="data", help="folder holding MNIST/raw")
    t.add_argument("--device", default="auto", help="auto picks cuda > mps > cpu")
    t.add_argument(
        "--n", type=int, default=0, help="training images a round (0 = 60,000 on CUDA, 512 elsewhere)"
    )
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--rounds", type=int, default=3, help="timed rounds of each pipeline, interleaved")
    t.add_argument(
        "--workers", type=int, default=-1, help="DataLoader workers of (a) (-1 = 4 on CUDA, else 0)"
    )
    t.add_argument(
        "--peak-tflops",
        type=float,
        default=0.0,
        help="dense bf16 peak of the device (0 = from its name: H100 989, H100 PCIe 756, H200 989, "
        "A100 312; unknown devices print no floor ratio)",
    )
    add_speed_args(p)
    q = p.add_argument_group("paths")
    q.add_argument("--paths", default=",".join(DEFAULT_PATHS), help="comma-separated paths to time")
    q.add_argument("--steps", type=int, default=4, help="timed steps of each path a round")
    q.add_argument("--warmup", type=int, default=3, help="untimed steps of each path first (compiles)")
    q.add_argument("--check-steps", type=int, default=0, help="numerics: steps from one start (0 = skip)")
    q.add_argument("--check-batch", type=int, default=32, help="numerics: batch size of those steps")
    q.add_argument("--check-seeds", type=int, default=3, help="numerics: fp32 runs, seeds 0, 1, ...")
    q.add_argument("--check", default="", help="numerics: the path checked (default: the fastest)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mode == "paths":
        if (
            args.batch_size < 1
            or args.rounds < 1
            or args.steps < 1
            or args.warmup < 1
            or args.check_seeds < 2
        ):
            p.error("--batch-size, --rounds, --steps and --warmup must be >= 1, --check-seeds >= 2")
        try:
            for name in [*args.paths.split(","), *([args.check] if args.check else [])]:
                TrainPath.parse(name)
        except ValueError as e:
            p.error(str(e))
    if args.mode == "train" and (args.n < 0 or args.batch_size < 1 or args.rounds < 1):
        p.error("--n must be >= 0, --batch-size and --rounds >= 1")
    if args.mode in ("paths", "train"):
        run, show = (bench_paths, print_paths) if args.mode == "paths" else (bench_train, print_train)
        try:
            result = run(args)
        except RuntimeError as e:  # torchvision: "Dataset not found"
            print(f"error: {e}. Pass --data-root pointing at a folder that holds MNIST/raw.", file=sys.stderr)
            return 2
        show(result)
        if args.json:
            print(json.dumps(result))
        return 0
    try:
        model = load_model(args.checkpoint)
    except CheckpointError as e:
        print(
            f"note: {e}\nbenchmarking random weights instead (speed does not depend on them)", file=sys.stderr
        )
        model = CapsNet().eval()
    results = bench_inference(model, args.repeats)
    env = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "repeats": args.repeats,
    }
    print(
        f"capsnet inference on cpu: torch {env['torch']}, {env['threads']} threads, "
        f"median of {args.repeats} runs (90th percentile)"
    )
    for name, r in results.items():
        if isinstance(r, dict):
            print(f"  {name:<24} {r['median_ms']:8.2f} ms  ({r['p90_ms']:.2f})")
    print(f"  traced / plain forward   {results['traced_over_plain']:.2f}x")
    if args.json:
        print(json.dumps({"env": env, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
