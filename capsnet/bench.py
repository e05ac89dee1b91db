"""Speed figures for the README.

    python -m capsnet.bench              # inference: one digit, traced vs plain forward, decoder, grid
    python -m capsnet.bench --json       # the same, ending with one JSON line

Medians of many repeats after warm-up, on whatever device is picked (cpu by default).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np
import torch

from .checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_model
from .model import CapsNet
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m capsnet.bench", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = load_model(args.checkpoint)
    except CheckpointError as e:
        print(f"note: {e}\nbenchmarking random weights instead (speed does not depend on them)", file=sys.stderr)
        model = CapsNet().eval()
    results = bench_inference(model, args.repeats)
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine(), "repeats": args.repeats}
    print(f"capsnet inference on cpu: torch {env['torch']}, {env['threads']} threads, "
          f"median of {args.repeats} runs (90th percentile)")
    for name, r in results.items():
        if isinstance(r, dict):
            print(f"  {name:<24} {r['median_ms']:8.2f} ms  ({r['p90_ms']:.2f})")
    print(f"  traced / plain forward   {results['traced_over_plain']:.2f}x")
    if args.json:
        print(json.dumps({"env": env, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
