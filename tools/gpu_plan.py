"""The GPU plan: one lent GPU's 15 minutes, spent fine-tuning the best CPU weights.

The next session that is lent a GPU (an H100 or H200; its device time is counted from the machine's
start, so a start of 1-3 minutes leaves room for exactly one command of at most 570 s):

    bash tools/gpu_prepare.sh                                      # here: MNIST .gz into .data, checked
    run(command="bash tools/gpu_plan.sh", carry=[".data"], timeout_s=570)   # then give_back() at once
    .venv/bin/python tools/gpu_collect.py FILES_AT                 # here: verify, install, follow-ups

Why fine-tune by default: 15 minutes of device time leave about 8 minutes of training once the
machine has started and capsnet.train has imported, loaded MNIST and compiled (about a minute of
the 8). No GPU has measured this CapsNet's speed yet: at the benchmark's target of < 3 s per epoch
that is up to ~150 epochs, at a more cautious 10 s a few dozen, while the recipes that reach
99.6-99.7% from scratch run 50 epochs or more (CapsNet-Keras: 50; the paper: far longer). The CPU
weights start at >= 99.5% test accuracy (74 CPU steps of a cosine to 1e-5 took the shipped 4-epoch
weights from 99.17% to 99.51%), so whatever the speed turns out to be, every GPU minute refines
them, and a run that comes out slow or is cut short still comes back near them; a from-scratch run
cut short comes back worse than what ships. The fine-tune: a fresh Adam warmed up over 100 steps
to lr 5e-4 (the long CPU run's settings), then capsnet.train's cosine down to 1e-5 at the time
limit. `--from-scratch` trains fresh weights instead (lr 1e-3, no warm-up, same cosine).

What it does, all of it within --seconds (540) of gpu_plan.sh's start, 30 s before the call's kill:
1. unpack .data/MNIST/raw/*.gz and check the md5s; nvidia-smi's view of the GPU goes into the stamp;
2. `python -m capsnet.train --init-from checkpoints/capsnet_mnist.pt --time-limit M --val 5000 ...`:
   capsnet.train measures its speed, plans the steps that fit M minutes, anneals the lr to the floor
   at the limit, keeps the epoch that scores best on the 5000 held-out digits and scores the test
   set once, on those weights, at the end. M is what is left less start-up and packing; the plan
   SIGKILLs the run only if it overstays the window (a safety net; its files are written atomically).
   The held-out digits were seen by the first 4 CPU epochs (trained without --val): they choose
   among these epochs; the test set never chooses anything.
3. $OUT (what the device tool brings back: at most 8 files of 16 MiB): capsnet_mnist.pt.000-.002 (the
   33 MB weights in 15 MiB pieces), gpu_run.tar.gz (capsnet_mnist.json, train.log, plan.log,
   nvidia-smi.txt, summary.json), summary.json (the stamp: plan, machine, command, figures, the
   sha256 of the weights started from and of every piece) and SHA256SUMS (`sha256sum -c` list).

Only the standard library is imported: training is the project's own CLI, whose GPU path (bf16
autocast, TF32, channels-last, fused Adam, torch.compile) is on by default on CUDA. The same plan
rehearses on the CPU with tiny data (tests/test_gpu_plan.py):

    OUT=/tmp/o PYTHON=.venv/bin/python bash tools/gpu_plan.sh --tiny --data-root D --run-dir /tmp/r
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What the device tool brings back from $OUT, and what it sends (its README's limits).
OUT_MAX_FILES = 8
OUT_MAX_FILE_BYTES = 16 * 2**20
OUT_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
PIECE_BYTES = 15 * 2**20
TRAVEL_MAX_BYTES = 64 * 2**20
WEIGHTS = "capsnet_mnist.pt"
ARCHIVE = "gpu_run.tar.gz"
SUMMARY = "summary.json"
SUMS = "SHA256SUMS"
LOG_CAP = 2 * 2**20  # a runaway log keeps its last 2 MiB in the archive

# md5 of the unpacked files, as ../shared/README.md lists them.
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
# Outside capsnet.train's --time-limit clock: before it, Python, torch and torchvision imports and
# MNIST onto the GPU; after it, the process's exit. (Compiling, the last evaluation and the saves
# are inside it.) The plan kills the run PACK_S before its end, and packs in that time (~3 s).
STARTUP_S = 45
PACK_S = 10
# (lr, warm-up steps): a fresh Adam on trained weights is warmed up, as in the long CPU run.
FINE_TUNE, FROM_SCRATCH = (5e-4, 100), (1e-3, 0)
LR_FLOOR = 1e-5


# ---------------------------------------------------------------------------------------------
# Decisions


def time_limit_minutes(seconds_left: float, startup: float = STARTUP_S) -> float:
    """capsnet.train's --time-limit for a window of seconds_left: its clock starts after start-up."""
    minutes = (seconds_left - startup) / 60
    if minutes < 1:
        raise RuntimeError(f"{seconds_left:.0f} s left: under a minute of training after start-up")
    return round(minutes, 2)


def train_command(a: argparse.Namespace, out: Path, minutes: float) -> list[str]:
    """The capsnet.train arguments of the plan's one run (after `python`)."""
    lr, warmup = FROM_SCRATCH if a.from_scratch else FINE_TUNE
    val, batch, epochs = (16, 8, 2) if a.tiny else (5000, 128, 1000)  # on the GPU the time limit binds
    args = ["-m", "capsnet.train", "--data-root", a.data_root, "--no-download", "--out", str(out),
            "--time-limit", f"{minutes:g}", "--lr", f"{lr:g}", "--lr-floor", f"{LR_FLOOR:g}",
            "--warmup-steps", str(warmup), "--val", str(val), "--batch-size", str(batch),
            "--epochs", str(epochs), "--log-every", "100",
            # one command, no second try: a resume state mid-epoch would never be used
            "--save-every", "60"]  # fmt: skip
    if not a.from_scratch:
        args += ["--init-from", a.init_from]
    if a.tiny:
        args += ["--device", "cpu", "--threads", "1"]
    return args


# ---------------------------------------------------------------------------------------------
# Files: MNIST, checksums, pieces, what comes back


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unpack_mnist(raw: Path) -> list[str]:
    """Unpack each MNIST .gz under raw whose file is not there yet; the names still missing."""
    for name in MNIST_MD5:
        if not (raw / name).exists() and (raw / f"{name}.gz").exists():
            with gzip.open(raw / f"{name}.gz", "rb") as src, open(raw / f"{name}.part", "wb") as dst:
                shutil.copyfileobj(src, dst)
            (raw / f"{name}.part").replace(raw / name)
    return [n for n in MNIST_MD5 if not (raw / n).is_file()]


def md5_problems(raw: Path, table: dict[str, str] = MNIST_MD5) -> list[str]:
    """Which MNIST files under raw (unpacked, or else their .gz) are missing or differ from table."""
    problems = []
    for name, want in table.items():
        try:
            with open(raw / name, "rb") if (raw / name).is_file() else gzip.open(raw / f"{name}.gz") as f:
                got = hashlib.md5(f.read()).hexdigest()
        except (OSError, EOFError) as e:
            problems.append(f"{name}: cannot be read ({e})")
            continue
        if got != want:
            problems.append(f"{name}: md5 {got}, expected {want}")
    return problems


def split_file(src: Path, dest_dir: Path, piece_bytes: int = PIECE_BYTES) -> dict:
    """Cut src into dest_dir/<name>.000, .001, ... of at most piece_bytes each.
    Returns {"file", "bytes", "sha256", "pieces": [{"file", "bytes", "sha256"}, ...]}."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    pieces, whole = [], hashlib.sha256()
    with open(src, "rb") as f:
        for i in range(1000):
            chunk = f.read(piece_bytes)
            if not chunk and i > 0:
                break
            whole.update(chunk)
            (dest_dir / f"{src.name}.{i:03d}").write_bytes(chunk)
            pieces.append({"file": f"{src.name}.{i:03d}", "bytes": len(chunk),
                           "sha256": hashlib.sha256(chunk).hexdigest()})  # fmt: skip
    return {"file": src.name, "bytes": src.stat().st_size, "sha256": whole.hexdigest(), "pieces": pieces}


def write_sums(folder: Path, names: list[str]) -> None:
    """folder/SHA256SUMS in `sha256sum -c` format for the given files of folder."""
    (folder / SUMS).write_text("".join(f"{sha256_file(folder / n)}  {n}\n" for n in sorted(names)))


def out_problems(folder: Path) -> list[str]:
    """Why the device tool would not bring everything in folder back (empty list: all of it comes)."""
    problems, files = [], []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(not OUT_NAME.match(part) for part in rel.parts):
            problems.append(f"{rel}: names may hold only letters, digits, '.', '_' and '-'")
        if path.is_symlink():
            problems.append(f"{rel}: a link does not come back")
        elif path.is_file():
            files.append(path)
            if path.stat().st_size > OUT_MAX_FILE_BYTES:
                problems.append(f"{rel}: {path.stat().st_size:,} bytes, over {OUT_MAX_FILE_BYTES:,}")
    if len(files) > OUT_MAX_FILES:
        problems.append(f"{len(files)} files, over {OUT_MAX_FILES}")
    return problems


def make_archive(run_dir: Path, dest: Path, cap: int = LOG_CAP) -> list[str]:
    """dest (tar.gz) of the JSON, log and text files directly in run_dir (weights, resume state and
    temp files left out); a file over `cap` bytes keeps its last `cap` bytes."""
    members = []
    with tarfile.open(dest, "w:gz") as tar:
        for path in sorted(run_dir.iterdir()):
            if not path.is_file() or path.suffix not in (".json", ".log", ".txt") or path.name[0] == ".":
                continue
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - cap))
                data = f.read()
            info = tarfile.TarInfo(path.name)
            info.size, info.mtime, info.mode = len(data), int(path.stat().st_mtime), 0o644
            tar.addfile(info, io.BytesIO(data))
            members.append(path.name)
    return members


def atomic_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def inner_meta(path: Path) -> dict:
    """The metadata capsnet.train stores inside a weights file, read with the project's checks."""
    from capsnet.checkpoint import read_checkpoint

    return json.loads(read_checkpoint(path).get("meta") or "{}")


def fix_meta(out: Path) -> str | None:
    """Make OUT.json describe the weights in OUT. A run killed between writing the weights and their
    JSON leaves the JSON behind; the checkpoint carries the same metadata inside it, so the JSON is
    rewritten from there. Returns what was done, or None."""
    if not out.is_file():
        return None
    try:
        inner = inner_meta(out)
    except Exception as e:  # a damaged file is reported, not fixed
        return f"cannot read the metadata inside {out.name}: {type(e).__name__}: {e}"
    outer = read_json(out.with_suffix(".json")) or {}
    if any(inner.get(k) != outer.get(k) for k in ("epochs", "val_accuracy", "test_accuracy")):
        atomic_json(out.with_suffix(".json"), inner)
        return f"{out.stem}.json said epoch {outer.get('epochs')}; rewritten from the weights' ({inner.get('epochs')})"
    return None


def run_until(cmd: list[str], log: Path, deadline: float, env: dict) -> tuple[int, str | None]:
    """Run cmd (stdout and stderr into log) in a process group of its own; SIGKILL the group
    (torch.compile's workers too) if it is still running at `deadline`. (returncode, why killed)."""
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                             start_new_session=True)  # fmt: skip
        try:
            p.wait(timeout=max(0.0, deadline - time.time()))
            return p.returncode, None
        except (subprocess.TimeoutExpired, KeyboardInterrupt) as e:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            why = (
                "the plan's window ended"
                if isinstance(e, subprocess.TimeoutExpired)
                else f"the plan stopped ({e})"
            )
            return p.returncode, why


# ---------------------------------------------------------------------------------------------
# The plan


def run_plan(a: argparse.Namespace) -> int:
    t0 = float(os.environ.get("PLAN_T0") or time.time())
    if not os.environ.get("OUT"):
        sys.exit("error: $OUT must name the folder whose files the device tool brings back")
    out = Path(os.environ["OUT"])
    # Every epoch writes ~130 MB (weights, resume state): into memory where there is some.
    shm = Path("/dev/shm")
    default = shm / "capsnet_gpu_plan" if shm.is_dir() and not a.tiny else ROOT / "runs" / "gpu"
    run_dir = Path(a.run_dir or default)
    if run_dir.exists() and any(run_dir.iterdir()):
        sys.exit(f"error: {run_dir} is not empty; the plan writes into a folder of its own")
    run_dir.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    end = t0 + a.seconds - PACK_S  # the run has ended by then (killed if need be); packing follows

    def log(msg: str) -> None:
        line = f"[{time.time() - t0:6.1f} s] {msg}"
        print(line, flush=True)
        with open(run_dir / "plan.log", "a") as f:
            f.write(line + "\n")

    S: dict = {
        "plan": {"started": dt.datetime.fromtimestamp(t0, dt.timezone.utc).isoformat(timespec="seconds"),
                 "seconds": a.seconds, "tiny": a.tiny, "from_scratch": a.from_scratch},
        "machine": {"python": platform.python_version(), "host": platform.node()},
        "errors": [],
    }  # fmt: skip
    signal.signal(signal.SIGTERM, on_term)
    try:
        S["machine"]["nvidia_smi"] = nvidia_smi(run_dir / "nvidia-smi.txt")
        raw = Path(a.data_root) / "MNIST" / "raw"
        missing = unpack_mnist(raw)
        if missing:
            raise RuntimeError(f"{raw} lacks {missing}: run tools/gpu_prepare.sh here and carry .data")
        if not a.tiny and (bad := md5_problems(raw)):
            raise RuntimeError("MNIST differs from ../shared/README.md: " + "; ".join(bad))
        if not a.from_scratch:
            S["plan"]["init_from"] = {"path": a.init_from, "sha256": sha256_file(ROOT / a.init_from)}
        minutes = time_limit_minutes(end - time.time())
        cmd = train_command(a, run_dir / WEIGHTS, minutes)
        S["train"] = {"command": "python " + " ".join(cmd), "time_limit_minutes": minutes}
        log(S["train"]["command"])
        t = time.time()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "5"}
        rc, killed = run_until([sys.executable, *cmd], run_dir / "train.log", end, env)
        S["train"].update(rc=rc, killed=killed, wall_seconds=round(time.time() - t, 1))
        if rc != 0:
            S["train"]["meta_fixed"] = fix_meta(run_dir / WEIGHTS)
            tail = (run_dir / "train.log").read_text(errors="replace")[-1500:]
            S["errors"].append(f"capsnet.train: rc {rc}, {killed or 'not killed'}: {tail}")
        meta = read_json(run_dir / "capsnet_mnist.json") or {}
        keys = ("epochs", "steps", "chosen_epoch", "val_accuracy", "test_accuracy", "test_errors",
                "seconds_per_epoch", "train_seconds", "device", "torch_version", "speed", "total_hours")  # fmt: skip
        S["train"].update({k: meta.get(k) for k in keys})
        log(f"capsnet.train: rc {rc}, {meta.get('epochs')} epochs, val {pct(meta.get('val_accuracy'))}, "
            f"test {pct(meta.get('test_accuracy'))}")  # fmt: skip
    except (Exception, KeyboardInterrupt) as e:
        S["errors"].append(f"{type(e).__name__}: {e}\n{traceback.format_exc()[-1500:]}")
    finally:
        pack(S, run_dir, out, t0)
        print(report(S), flush=True)
    return 1 if S["errors"] else 0


def nvidia_smi(dest: Path, timeout: float = 15) -> str | None:
    """nvidia-smi's name, driver, memory and power limit of the GPU (its full table into dest); None
    without one. A failure is written down, not raised: it must not cost the training run."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,power.limit", "--format=csv"]
        q = subprocess.run(query, capture_output=True, text=True, timeout=timeout).stdout.strip()
        full = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=timeout).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"nvidia-smi failed: {type(e).__name__}: {e}"
    dest.write_text(q + "\n\n" + full)
    return q


def on_term(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pack(S: dict, run_dir: Path, out: Path, t0: float) -> None:
    """$OUT: the weights in pieces, one archive of the JSON and logs, summary.json, SHA256SUMS."""
    names = []
    if (run_dir / WEIGHTS).is_file():
        S["weights"] = {**split_file(run_dir / WEIGHTS, out), "json": "capsnet_mnist.json"}
        names += [p["file"] for p in S["weights"]["pieces"]]
    S["plan"]["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    S["plan"]["elapsed_seconds"] = round(time.time() - t0, 1)
    atomic_json(run_dir / SUMMARY, S)
    S["archive"] = make_archive(run_dir, out / ARCHIVE)
    atomic_json(out / SUMMARY, S)
    names += [ARCHIVE, SUMMARY]
    write_sums(out, names)
    if problems := out_problems(out):
        S["errors"].append("$OUT breaks the device tool's limits: " + "; ".join(problems))
        atomic_json(out / SUMMARY, S)
        write_sums(out, names)


def report(S: dict) -> str:
    """The lines the device tool's output tail ends with."""
    t, m = S.get("train", {}), S["machine"]
    lines = ["=" * 80, f"GPU plan: {S['plan'].get('elapsed_seconds')} s of {S['plan']['seconds']:.0f}, "
             f"{(m.get('nvidia_smi') or 'no nvidia-smi').splitlines()[-1]}, python {m['python']}",
             f"trained  {t.get('epochs')} epochs ({t.get('steps')} steps) in {t.get('train_seconds')} s on "
             f"{t.get('device')}, torch {t.get('torch_version')}: val {pct(t.get('val_accuracy'))} (epoch "
             f"{t.get('chosen_epoch')} chosen), test {pct(t.get('test_accuracy'))}",
             f"command  {t.get('command')}"]  # fmt: skip
    if w := S.get("weights"):
        lines.append(
            f"weights  {w['file']} {w['bytes']:,} bytes in {len(w['pieces'])} pieces, sha256 {w['sha256']}"
        )
    lines += [f"ERROR    {e[:600]}" for e in S["errors"]]
    return "\n".join(lines)


def pct(x) -> str:
    """A fraction as a percentage with two decimals, '-' when there is none."""
    return f"{x:.2%}" if isinstance(x, (int, float)) else "-"


# ---------------------------------------------------------------------------------------------
# preflight: here, before spending device time


def travel_bytes(root: Path, carry: list[str]) -> int:
    """Bytes of what the device tool sends: tracked and untracked-not-ignored files, and carried paths."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=root, capture_output=True, check=True).stdout.split(b"\0")  # fmt: skip
    paths = [root / os.fsdecode(f) for f in listed if f]
    paths += [p for c in carry for p in (root / c).rglob("*")]
    return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())


def preflight() -> int:
    raw = ROOT / ".data" / "MNIST" / "raw"
    problems = []
    found = sorted(p.name for p in raw.iterdir()) if raw.is_dir() else []
    if found != sorted(f"{n}.gz" for n in MNIST_MD5):
        problems.append(f"{raw} holds {found}, not MNIST's four .gz archives alone: run tools/gpu_prepare.sh")
    else:
        problems += md5_problems(raw)
    if subprocess.run(["git", "check-ignore", "-q", ".data"], cwd=ROOT).returncode != 0:
        problems.append(".data is not git-ignored: it would travel twice")
    if not (ROOT / "checkpoints" / WEIGHTS).is_file():
        problems.append(f"checkpoints/{WEIGHTS} is missing: the plan fine-tunes it (or pass --from-scratch)")
    size = travel_bytes(ROOT, [".data"])
    print(
        f"the tree that travels with carry ['.data']: {size / 2**20:.1f} MiB of {TRAVEL_MAX_BYTES / 2**20:.0f}"
    )
    if size > TRAVEL_MAX_BYTES:
        problems.append("the tree that travels is over 64 MiB: remove or git-ignore untracked files")
    for p in problems:
        print(f"problem: {p}")
    if not problems:
        print(
            'ready: run(command="bash tools/gpu_plan.sh", carry=[".data"], timeout_s=570), then give_back()'
        )
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools/gpu_plan.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser(
        "run", help="the plan (through tools/gpu_plan.sh, which sets $PLAN_T0; $OUT comes back)"
    )
    r.add_argument("--seconds", type=float, default=540.0, help="the plan ends this long after $PLAN_T0")
    r.add_argument("--init-from", default=f"checkpoints/{WEIGHTS}", help="the weights fine-tuned")
    r.add_argument("--from-scratch", action="store_true", help="train fresh weights instead of --init-from's")
    r.add_argument("--data-root", default=".data", help="the folder holding MNIST/raw (*.gz unpacked there)")
    r.add_argument(
        "--run-dir", help="where the run writes (default: /dev/shm/capsnet_gpu_plan; must be empty)"
    )
    r.add_argument("--tiny", action="store_true", help="CPU rehearsal on tiny MNIST files: cpu, batch 8, "
                   "16 held out, at most 2 epochs, no md5 check")  # fmt: skip
    sub.add_parser("preflight", help="here: the carried MNIST, the weights, the size of what travels")
    a = p.parse_args(argv)
    return preflight() if a.cmd == "preflight" else run_plan(a)


if __name__ == "__main__":
    sys.exit(main())
