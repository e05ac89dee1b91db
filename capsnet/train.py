"""Train the CapsNet on MNIST, as in the paper: Adam, margin loss + 0.0005 x reconstruction SSE,
random shifts of up to 2 px, 3 routing iterations.

    python -m capsnet.train --data-root ../shared/data --epochs 30 --out checkpoints/capsnet_mnist.pt

Each epoch writes, atomically: the weights (OUT), their metadata (OUT with .json) and the full
training state for `--resume` (OUT with .resume.pt). A killed run continues from the last epoch
it finished with the same command plus `--resume`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from .checkpoint import CheckpointError, atomic_write_json, load_state, read_checkpoint, save_checkpoint
from .data import load_mnist, random_shift, to_float
from .evaluate import predict, select_device
from .model import CapsNet, margin_loss, reconstruction_loss


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m capsnet.train",
        description="Train the CapsNet of Sabour, Frosst & Hinton (2017) on MNIST.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data-root", default="data", help="folder holding MNIST/raw (downloaded if absent)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading MNIST")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--lr-decay", type=float, default=0.96, help="multiply the lr by this every epoch")
    p.add_argument("--iterations", type=int, default=3, help="routing iterations")
    p.add_argument("--recon-weight", type=float, default=0.0005, help="scale of the reconstruction SSE")
    p.add_argument("--max-shift", type=int, default=2, help="random shift augmentation, pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto picks cuda > mps > cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    p.add_argument("--out", default="checkpoints/capsnet_mnist.pt", help="checkpoint path to write")
    p.add_argument("--resume", action="store_true", help="continue from OUT's .resume.pt")
    p.add_argument("--overwrite", action="store_true", help="start afresh even if OUT already exists")
    p.add_argument("--max-steps", type=int, default=0, help="stop each epoch after N steps (0 = all; for smoke tests)")
    p.add_argument("--log-every", type=int, default=20, help="steps between progress-bar updates")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or not 1 <= args.iterations <= 10:
        p.error("--epochs and --batch-size must be >= 1 and --iterations in 1..10")
    return args


def resume_path(out: Path) -> Path:
    return out.with_name(out.stem + ".resume.pt")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return device.type


def train_epoch(model, opt, images, labels, args, epoch, device) -> dict:
    """One pass over the shuffled training set; returns mean loss and accuracy."""
    from tqdm import tqdm

    model.train()
    n = len(images)
    gen = torch.Generator().manual_seed(args.seed * 100_003 + epoch)  # same order after a resume
    order = torch.randperm(n, generator=gen)
    shift_gen = torch.Generator(device=device).manual_seed(args.seed * 100_003 + epoch)
    steps = math.ceil(n / args.batch_size)
    if args.max_steps:
        steps = min(steps, args.max_steps)
    # Sums kept on the device: reading them (a host sync) happens only every log_every steps.
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch", file=sys.stderr,
               dynamic_ncols=True, disable=False)
    for step in bar:
        idx = order[step * args.batch_size : (step + 1) * args.batch_size].to(device)
        x = random_shift(to_float(images[idx]), args.max_shift, shift_gen)
        y = labels[idx]
        out = model(x, iterations=args.iterations)
        recon = model.reconstruct(out.poses, y)  # decoder sees the true class in training
        loss = margin_loss(out.lengths, y) + reconstruction_loss(recon, x, args.recon_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(y)
        correct += (out.prediction == y).sum()
        seen += len(y)
        if (step + 1) % args.log_every == 0 or step + 1 == steps:
            bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.4f}")
    bar.close()
    loss_mean = loss_sum.item() / seen
    if not math.isfinite(loss_mean):
        raise FloatingPointError(f"training diverged in epoch {epoch + 1}: loss is {loss_mean}")
    return {"train_loss": round(loss_mean, 6), "train_accuracy": round(correct.item() / seen, 6)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    out = Path(args.out)
    torch.manual_seed(args.seed)

    if not (args.resume or args.overwrite) and (out.exists() or resume_path(out).exists()):
        print(f"error: {out} already exists; nothing was changed. Pass --resume to continue its training, "
              "--overwrite to replace it, or choose another --out.", file=sys.stderr)
        return 2
    try:
        train_x, train_y = load_mnist(args.data_root, train=True, download=not args.no_download)
        test_x, test_y = load_mnist(args.data_root, train=False, download=not args.no_download)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # The whole training set lives on the device as uint8 (47 MB): no loader in the hot loop.
    train_x, train_y = train_x.to(device), train_y.to(device)

    model = CapsNet().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=args.lr_decay)
    start_epoch, history, train_seconds = 0, [], 0.0

    if args.resume:
        rpath = resume_path(out)
        if not rpath.exists():
            print(f"error: --resume given but {rpath} does not exist; run without --resume to start.",
                  file=sys.stderr)
            return 2
        try:
            state = read_checkpoint(rpath)
            load_state(model, state["state_dict"], rpath)
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
        except (CheckpointError, KeyError, ValueError) as e:
            print(f"error: cannot resume from {rpath}: {e}", file=sys.stderr)
            return 2
        start_epoch, history = int(state["epoch"]), list(state["history"])
        train_seconds = float(state["train_seconds"])
        print(f"resuming after epoch {start_epoch} of {args.epochs} from {rpath}", file=sys.stderr)

    # Temp files left by a run killed while writing: the real files beside them are intact.
    for stale in (*out.parent.glob(f".{out.name}.*.tmp"), *out.parent.glob(f".{resume_path(out).name}.*.tmp")):
        stale.unlink(missing_ok=True)
    command = " ".join(["python -m capsnet.train", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    for epoch in range(start_epoch, args.epochs):
        t0 = time.perf_counter()
        stats = train_epoch(model, opt, train_x, train_y, args, epoch, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        sched.step()
        model.eval()
        preds = predict(model, test_x, iterations=args.iterations)
        acc = float((preds == test_y).float().mean())
        history.append({"epoch": epoch + 1, **stats, "test_accuracy": round(acc, 6),
                        "seconds": round(seconds, 2), "lr": opt.param_groups[0]["lr"]})
        print(f"epoch {epoch + 1}: loss {stats['train_loss']:.4f}  train acc {stats['train_accuracy']:.4f}  "
              f"test acc {acc:.4%}  ({seconds:.1f} s)", file=sys.stderr, flush=True)
        meta = {
            "test_accuracy": round(acc, 6),
            "test_errors": int((preds != test_y).sum()),
            "epochs": epoch + 1,
            "seconds_per_epoch": round(train_seconds / (epoch + 1), 2),
            "train_seconds": round(train_seconds, 1),
            "device": device_name(device),
            "torch_version": torch.__version__,
            "seed": args.seed,
            "command": command,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "lr_decay": args.lr_decay,
            "routing_iterations": args.iterations,
            "max_shift": args.max_shift,
            "train_images": len(train_x) if not args.max_steps else min(len(train_x), args.max_steps * args.batch_size),
            "test_images": len(test_x),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "history": history,
        }
        # Order matters for a kill between writes: weights, then metadata, then the resume state.
        save_checkpoint(out, model, meta)
        atomic_write_json(out.with_suffix(".json"), meta)
        save_checkpoint(resume_path(out), model, meta, optimizer=opt.state_dict(),
                        scheduler=sched.state_dict(), epoch=epoch + 1, history=history,
                        train_seconds=train_seconds)
    print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
