"""The GPU plan of issue 20 in one command: bench, CapsNet seeds, baselines, robustness, under a budget.

Run it through `bash tools/gpu_plan.sh` (its header is the how-to: the device call, what comes back,
how to collect). Subcommands:

    python tools/gpu_plan.py run        # the plan; reads its settings from PLAN_* variables and $OUT
    python tools/gpu_plan.py probe ...  # one worker of the 1-vs-3-process throughput check (run by `run`)
    python tools/gpu_plan.py preflight  # here, before the device call: data, md5, size of what travels

Only the standard library is imported at the top: the GPU machine has torch 2.11, torchvision 0.26,
numpy and tqdm, no Streamlit. torch is imported where a step needs it, and training, evaluation,
benchmarking and robustness run as the project's own CLIs (`python -m capsnet.train` ...), so the
GPU path is theirs: bf16 autocast, TF32, channels-last, fused Adam, torch.compile.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# What the device tool brings back from $OUT (its README's Limits).
OUT_MAX_FILES = 8
OUT_MAX_FILE_BYTES = 16 * 2**20
OUT_MAX_TOTAL_BYTES = 64 * 2**20
OUT_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
PIECE_BYTES = 15 * 2**20  # under the 16 MiB a file may have, with room to spare
TRAVEL_MAX_BYTES = 64 * 2**20  # the working tree that travels, carried paths included
ARCHIVE = "gpu_runs.tar.gz"
SUMMARY = "summary.json"
SUMS = "SHA256SUMS"
ARCHIVE_SUFFIXES = (".json", ".log", ".out", ".txt")
ARCHIVE_FILE_CAP = 4 * 2**20  # a runaway log keeps its last 4 MiB in the archive
RUN_MARKER = ".gpu_plan_run"  # a run folder the plan made, and may empty on the next run

# md5 of the uncompressed files, as ../shared/README.md lists them (read from there when present).
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MEASURED_BF16_TFLOPS = 788.0  # an 8192^3 bf16 matmul on this workplace's H200 (device KINDS.md)


# ---------------------------------------------------------------------------------------------
# Settings


def _env(name: str, default, cast=str):
    value = os.environ.get(name)
    return default if value in (None, "") else cast(value)


@dataclass
class Config:
    """Everything the plan decides with; GPU defaults, PLAN_TINY=1 for a CPU rehearsal on tiny data."""

    tiny: bool
    t0: float  # when the command started (PLAN_T0 from gpu_plan.sh), wall clock
    plan_seconds: float  # everything, packing included, ends by t0 + plan_seconds
    out: Path
    data_root: Path
    run_dir: Path
    device: str
    python: str
    seeds: str  # auto | 1 | 3
    threads: int
    check_md5: bool
    # step 1
    bench_args: list[str]
    bench_timeout: float
    # concurrency probe
    probe_procs: int
    probe_steps: int
    probe_timeout: float
    # step 2
    batch_size: int
    lr: float
    final_lr_factor: float  # the last planned epoch trains at lr x this
    max_epochs: int
    min_epochs_concurrent: int  # 3 seeds only if each still gets this many epochs
    concurrency_gain: float  # 3 seeds only if together they train this much faster than 1
    val: int
    max_steps: int  # 0 = whole epochs (tiny runs cut them)
    eval_reserve: float
    pack_reserve: float
    # step 3
    step3_min: float  # the whole step 3 (both CNNs, robustness) starts only with this much time left
    step3_pooled_min: float  # else the pooled CNN and robustness alone, with this much
    robustness_reserve: float
    robustness_args: list[str]
    unpooled_robustness_args: list[str]
    unpooled_max_steps: int
    unpooled_epochs: int  # 0 = the CapsNet's epochs
    skip: set[str] = field(default_factory=set)
    piece_bytes: int = PIECE_BYTES

    @classmethod
    def from_env(cls) -> Config:
        tiny = _env("PLAN_TINY", "0") == "1"
        out = os.environ.get("OUT")
        if not out:
            raise SystemExit(
                "error: $OUT is not set: it names the folder whose files the device tool brings back"
            )
        run_default = ROOT / "runs" / "gpu"
        g = {  # GPU defaults, then the tiny rehearsal's
            "plan_seconds": (540.0, 240.0),
            "device": ("cuda", "cpu"),
            "threads": (4, 1),
            "bench_args": ([], ["--n", "16", "--batch-size", "8", "--rounds", "1", "--workers", "0",
                               "--peak-tflops", "1"]),
            "bench_timeout": (170.0, 90.0),
            "probe_steps": (300, 2),
            "probe_timeout": (110.0, 90.0),
            "batch_size": (128, 8),
            "max_epochs": (50, 2),
            "min_epochs_concurrent": (30, 1),
            "val": (5000, 16),
            "max_steps": (0, 2),
            "eval_reserve": (45.0, 30.0),
            "pack_reserve": (25.0, 15.0),
            "step3_min": (240.0, 60.0),
            "step3_pooled_min": (150.0, 40.0),
            "robustness_reserve": (80.0, 40.0),
            "robustness_args": (["--points", "9", "--curve-limit", "0"], ["--points", "3", "--curve-limit", "8"]),
            "unpooled_robustness_args": (["--points", "9", "--curve-limit", "0"],
                                         ["--points", "3", "--limit", "4", "--curve-limit", "2"]),
            "unpooled_max_steps": (0, 1),
            "unpooled_epochs": (0, 1),
        }  # fmt: skip
        pick = {k: v[1] if tiny else v[0] for k, v in g.items()}
        return cls(
            tiny=tiny,
            t0=_env("PLAN_T0", time.time(), float),
            plan_seconds=_env("PLAN_SECONDS", pick["plan_seconds"], float),
            out=Path(out),
            data_root=Path(_env("PLAN_DATA_ROOT", ".data")),
            run_dir=Path(_env("PLAN_RUN_DIR", str(run_default))),
            device=_env("PLAN_DEVICE", pick["device"]),
            python=_env("PYTHON", sys.executable),
            seeds=_env("PLAN_SEEDS", "auto"),
            threads=_env("PLAN_THREADS", pick["threads"], int),
            check_md5=_env("PLAN_CHECK_MD5", "0" if tiny else "1") == "1",
            bench_args=pick["bench_args"] if tiny else ["--rounds", _env("PLAN_BENCH_ROUNDS", "3")],
            bench_timeout=_env("PLAN_BENCH_TIMEOUT", pick["bench_timeout"], float),
            probe_procs=_env("PLAN_PROBE_PROCS", 3, int),
            probe_steps=_env("PLAN_PROBE_STEPS", pick["probe_steps"], int),
            probe_timeout=_env("PLAN_PROBE_TIMEOUT", pick["probe_timeout"], float),
            batch_size=_env("PLAN_BATCH", pick["batch_size"], int),
            lr=_env("PLAN_LR", 1e-3, float),
            final_lr_factor=_env("PLAN_FINAL_LR", 0.01, float),
            max_epochs=_env("PLAN_MAX_EPOCHS", pick["max_epochs"], int),
            min_epochs_concurrent=_env("PLAN_MIN_EPOCHS_3", pick["min_epochs_concurrent"], int),
            concurrency_gain=_env("PLAN_GAIN", 1.10, float),
            val=_env("PLAN_VAL", pick["val"], int),
            max_steps=_env("PLAN_MAX_STEPS", pick["max_steps"], int),
            eval_reserve=_env("PLAN_EVAL_RESERVE", pick["eval_reserve"], float),
            pack_reserve=_env("PLAN_PACK_RESERVE", pick["pack_reserve"], float),
            step3_min=_env("PLAN_STEP3_MIN", pick["step3_min"], float),
            step3_pooled_min=_env("PLAN_STEP3_POOLED_MIN", pick["step3_pooled_min"], float),
            robustness_reserve=_env("PLAN_ROBUSTNESS_RESERVE", pick["robustness_reserve"], float),
            robustness_args=pick["robustness_args"],
            unpooled_robustness_args=pick["unpooled_robustness_args"],
            unpooled_max_steps=pick["unpooled_max_steps"],
            unpooled_epochs=pick["unpooled_epochs"],
            skip={s for s in _env("PLAN_SKIP", "").split(",") if s},
        )

    def public(self) -> dict:
        d = {k: (str(v) if isinstance(v, Path) else sorted(v) if isinstance(v, set) else v)
             for k, v in self.__dict__.items()}  # fmt: skip
        d.pop("python")
        return d


# ---------------------------------------------------------------------------------------------
# Pure decisions (tested one by one in tests/test_gpu_plan.py)


def lr_decay_for(epochs: int, final_factor: float) -> float:
    """Per-epoch factor of capsnet.train's ExponentialLR so that the last of `epochs` epochs trains at
    lr x final_factor (epoch e, from 0, trains at lr x decay**e)."""
    if epochs <= 1:
        return 1.0
    return final_factor ** (1.0 / (epochs - 1))


def epoch_seconds(images_per_epoch: int, images_per_second: float, overhead: float) -> float:
    """Wall time of one epoch of capsnet.train: the training steps plus the per-epoch evaluation of
    the validation and test digits and the three atomic writes (overhead)."""
    return images_per_epoch / images_per_second + overhead


def epochs_that_fit(
    window: float, startup: float, seconds_per_epoch: float, max_epochs: int, safety=1.1
) -> int:
    """How many whole epochs fit in `window` seconds after `startup` (imports, data, compile), with
    each epoch assumed `safety` times slower than measured; at most max_epochs, at least 0."""
    if seconds_per_epoch <= 0:
        return max_epochs
    return max(0, min(max_epochs, math.floor((window - startup) / (seconds_per_epoch * safety))))


def choose_seeds(
    forced: str,
    gain: float | None,
    epochs_one: int,
    epochs_many: int,
    min_gain: float,
    min_epochs: int,
    many=3,
) -> tuple[int, str]:
    """1 or `many` concurrent seeds, and why. `gain`: total images/s of `many` processes on the one
    device over that of one process (None: not measured)."""
    if forced in ("1", str(many)):
        return int(forced), f"forced by PLAN_SEEDS={forced}"
    if gain is None:
        return 1, "the concurrency check gave no figure: one seed, the safe choice"
    if gain < min_gain:
        return 1, (
            f"{many} processes train {gain:.2f}x as many images per second as one (needs >= {min_gain:.2f}x): "
            f"the device is saturated by one, so one seed gets all of it ({epochs_one} epochs)"
        )
    if epochs_many < min_epochs:
        return 1, (
            f"{many} processes train {gain:.2f}x as fast together, but each would get only {epochs_many} "
            f"epochs (< {min_epochs}); one seed gets {epochs_one}"
        )
    return many, (
        f"{many} processes train {gain:.2f}x as many images per second as one (>= {min_gain:.2f}x) and each "
        f"still gets {epochs_many} epochs (>= {min_epochs})"
    )


def median_by_validation(runs: list[dict]) -> tuple[dict, str]:
    """The run to ship: the median by validation accuracy (the lower middle one for an even count;
    ties by seed). Test accuracy plays no part."""
    if not runs:
        raise ValueError("no finished run to choose from")
    ranked = sorted(runs, key=lambda r: (r["val_accuracy"], r["seed"]))
    chosen = ranked[(len(ranked) - 1) // 2]
    order = ", ".join(f"seed {r['seed']} {r['val_accuracy']:.4%}" for r in ranked)
    if len(ranked) == 1:
        why = f"the only finished run (validation {order}); test accuracy not used"
    else:
        why = f"median by validation accuracy of {len(ranked)} seeds ({order}); test accuracy not used"
    return chosen, why


def mean_std(values: list[float]) -> dict:
    """{"n", "mean", "std" (sample standard deviation; None for one value), "values"}."""
    values = [float(v) for v in values]
    return {
        "n": len(values),
        "mean": round(statistics.fmean(values), 6) if values else None,
        "std": round(statistics.stdev(values), 6) if len(values) > 1 else None,
        "values": values,
    }


# ---------------------------------------------------------------------------------------------
# Files: checksums, pieces, the limits of what comes back


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
            name = f"{src.name}.{i:03d}"
            (dest_dir / name).write_bytes(chunk)
            pieces.append({"file": name, "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
    return {"file": src.name, "bytes": src.stat().st_size, "sha256": whole.hexdigest(), "pieces": pieces}


class IntegrityError(Exception):
    """A returned file is missing or does not match its recorded checksum."""


def join_pieces(entry: dict, folder: Path, dest: Path) -> Path:
    """Check every piece of `entry` (as split_file returned it) in folder, join them into dest (written
    to a temp file and renamed), and check the whole. Raises IntegrityError naming the bad file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.joining.tmp")
    whole = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for piece in entry["pieces"]:
                path = folder / piece["file"]
                if not path.is_file():
                    raise IntegrityError(f"{path}: piece {piece['file']} of {entry['file']} is missing")
                data = path.read_bytes()
                got = hashlib.sha256(data).hexdigest()
                if len(data) != piece["bytes"] or got != piece["sha256"]:
                    raise IntegrityError(
                        f"{path}: piece of {entry['file']} is damaged: {len(data):,} bytes with sha256 "
                        f"{got[:16]}..., expected {piece['bytes']:,} bytes with sha256 {piece['sha256'][:16]}... "
                        "Fetch the files again; nothing was installed."
                    )
                whole.update(data)
                out.write(data)
        if whole.hexdigest() != entry["sha256"] or tmp.stat().st_size != entry["bytes"]:
            raise IntegrityError(
                f"{entry['file']}: the joined pieces have sha256 {whole.hexdigest()[:16]}..., expected "
                f"{entry['sha256'][:16]}...; nothing was installed"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def write_sums(folder: Path, names: list[str]) -> Path:
    """folder/SHA256SUMS in `sha256sum -c` format for the given files of folder."""
    lines = [f"{sha256_file(folder / n)}  {n}\n" for n in sorted(names)]
    (folder / SUMS).write_text("".join(lines))
    return folder / SUMS


def verify_sums(folder: Path) -> list[str]:
    """Check every file SHA256SUMS lists; the names checked. Raises IntegrityError on the first bad one."""
    sums = folder / SUMS
    if not sums.is_file():
        raise IntegrityError(f"{sums} is missing: not a folder of returned GPU-plan files")
    names = []
    for line in sums.read_text().splitlines():
        if not line.strip():
            continue
        want, name = line.split(None, 1)
        name = name.strip().lstrip("*")
        path = folder / name
        if not path.is_file():
            raise IntegrityError(f"{path} is listed in {SUMS} but missing")
        got = sha256_file(path)
        if got != want:
            raise IntegrityError(
                f"{path}: sha256 {got[:16]}... does not match {SUMS} ({want[:16]}...): the file is damaged "
                "or was not brought back whole. Fetch the files again; nothing was installed."
            )
        names.append(name)
    return names


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
            if len(rel.parts) > 3:
                problems.append(f"{rel}: more than 2 folders down")
            if path.stat().st_size > OUT_MAX_FILE_BYTES:
                problems.append(f"{rel}: {path.stat().st_size:,} bytes, over {OUT_MAX_FILE_BYTES:,}")
    if len(files) > OUT_MAX_FILES:
        problems.append(f"{len(files)} files, over {OUT_MAX_FILES}")
    total = sum(p.stat().st_size for p in files)
    if total > OUT_MAX_TOTAL_BYTES:
        problems.append(f"{total:,} bytes together, over {OUT_MAX_TOTAL_BYTES:,}")
    return problems


def make_archive(run_dir: Path, dest: Path, cap: int = ARCHIVE_FILE_CAP) -> list[str]:
    """dest (tar.gz) of every JSON, log and text file under run_dir (paths relative to it; weights,
    temp files and links left out); a file over `cap` bytes keeps its last `cap` bytes."""
    members = []
    with tarfile.open(dest, "w:gz", compresslevel=6) as tar:
        for path in sorted(run_dir.rglob("*")):
            if path.is_symlink() or not path.is_file() or path.suffix not in ARCHIVE_SUFFIXES:
                continue
            if path.name.startswith("."):
                continue
            rel = path.relative_to(run_dir).as_posix()
            size = path.stat().st_size
            with open(path, "rb") as f:
                if size > cap:
                    f.seek(size - cap)
                data = f.read()
            info = tarfile.TarInfo(rel)
            info.size, info.mtime, info.mode = len(data), int(path.stat().st_mtime), 0o644
            tar.addfile(info, io.BytesIO(data))
            members.append(rel)
    return members


def atomic_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def last_json_line(text: str) -> dict | None:
    """The JSON object a CLI's --json printed last on stdout."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def mnist_md5_table(readme: Path) -> dict[str, str]:
    """{file: md5} from ../shared/README.md's table, else the copy in this file."""
    table = dict(MNIST_MD5)
    try:
        for m in re.finditer(
            r"^\|\s*([a-z0-9-]+-ubyte)\s*\|[^|]*\|\s*([0-9a-f]{32})\s*\|", readme.read_text(), re.M
        ):
            table[m.group(1)] = m.group(2)
    except OSError:
        pass
    return table


def open_raw(raw: Path, name: str):
    """An MNIST file under raw for reading: unpacked, else its .gz, else its .xz (tools/gpu_prepare.sh)."""
    import gzip
    import lzma

    if (raw / name).is_file():
        return open(raw / name, "rb")
    if (raw / f"{name}.gz").is_file():
        return gzip.open(raw / f"{name}.gz", "rb")
    return lzma.open(raw / f"{name}.xz", "rb")


def unpack_raw(raw: Path) -> list[str]:
    """Unpack each MNIST .gz or .xz under raw whose file is not there yet (.xz comes from XZ=1
    gpu_prepare.sh); the names still missing after that."""
    for name in MNIST_MD5:
        if not (raw / name).exists() and any((raw / f"{name}{x}").exists() for x in (".gz", ".xz")):
            with open_raw(raw, name) as src, open(raw / f"{name}.part", "wb") as dst:
                shutil.copyfileobj(src, dst)
            (raw / f"{name}.part").replace(raw / name)
    return [n for n in MNIST_MD5 if not (raw / n).is_file()]


def md5_problems(raw: Path, table: dict[str, str]) -> list[str]:
    """Which MNIST files under raw (unpacked, or else their .gz or .xz) are missing or differ."""
    problems = []
    for name, want in table.items():
        h = hashlib.md5()
        try:
            with open_raw(raw, name) as f:
                h.update(f.read())
        except (OSError, EOFError) as e:
            problems.append(f"{name}: cannot be read ({e})")
            continue
        if h.hexdigest() != want:
            problems.append(f"{name}: md5 {h.hexdigest()}, expected {want}")
    return problems


# ---------------------------------------------------------------------------------------------
# Processes: each CLI in its own process group, so that a kill takes its compile workers too


class Proc:
    def __init__(self, name: str, cmd: list[str], log: Path, stdout: Path | None = None, env=None):
        log.parent.mkdir(parents=True, exist_ok=True)
        self.name, self.cmd, self.log, self.stdout_path = name, cmd, log, stdout
        self.killed: str | None = None
        self._err = open(log, "w")
        self._out = open(stdout, "w") if stdout else subprocess.DEVNULL
        self.started = time.time()
        self.p = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
            start_new_session=True,
        )  # fmt: skip
        self.ended: float | None = None

    def alive(self) -> bool:
        if self.p.poll() is None:
            return True
        if self.ended is None:
            self.ended = time.time()
            self._reap()
        return False

    def kill(self, why: str) -> None:
        if self.alive():
            self.killed = why
            self._reap()
            self.p.wait()
            self.ended = time.time()

    def _reap(self) -> None:
        """SIGKILL whatever is left in the process group (compile workers, a hung child)."""
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for f in (self._err, self._out):
            if hasattr(f, "close"):
                f.close()

    @property
    def rc(self) -> int | None:
        return self.p.returncode

    def seconds(self) -> float:
        return round((self.ended or time.time()) - self.started, 1)

    def tail(self, n: int = 600) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stdout_text(self) -> str:
        try:
            return self.stdout_path.read_text(errors="replace") if self.stdout_path else ""
        except OSError:
            return ""


def wait_all(procs: list[Proc], deadline: float, poll: float = 0.2) -> None:
    """Until every process ended or the deadline passed; those still running then are killed."""
    while any(p.alive() for p in procs) and time.time() < deadline:
        time.sleep(poll)
    for p in procs:
        p.kill("time limit of the step")


@dataclass
class Watched:
    """A training run whose OUT.json the watchdog reads after every epoch."""

    proc: Proc
    out: Path  # the checkpoint; its .json is the progress
    planned: int = 0  # epochs asked for (0: unknown); a run that has done them all is left to exit
    done: list[tuple[float, int]] = field(default_factory=list)  # (mtime of the JSON, epochs in it)

    def poll_json(self) -> None:
        path = self.out.with_suffix(".json")
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return
        if self.done and mtime == self.done[-1][0]:
            return
        meta = read_json(path)
        if (
            meta
            and isinstance(meta.get("epochs"), int)
            and (not self.done or meta["epochs"] > self.done[-1][1])
        ):
            self.done.append((mtime, meta["epochs"]))


def epoch_interval(done: list[tuple[float, int]]) -> float | None:
    """Wall time per epoch between the last two completed epochs of `done` ((time, epochs) each;
    evaluation and writes included), or None before two."""
    if len(done) < 2:
        return None
    (t1, e1), (t2, e2) = done[-2], done[-1]
    return (t2 - t1) / max(1, e2 - e1)


def stop_reason(done: list[tuple[float, int]], planned: int, now: float, deadline: float) -> str | None:
    """Why a training run must stop now, or None. `done`: (time, epochs) of each completed epoch.
    At the deadline, always; before it, when the epoch under way cannot end by the deadline (last
    completion + the last epoch's wall time > deadline), unless the run has done all `planned`."""
    if now >= deadline:
        return "deadline of the training window"
    interval = epoch_interval(done)
    if interval is not None and done[-1][1] != planned:
        t2, e2 = done[-1]
        if t2 + interval > deadline:
            return f"the next epoch ({interval:.1f} s) would end after the training window; stopped after epoch {e2}"
    return None


def watch(runs: list[Watched], deadline: float, poll: float = 0.25) -> None:
    """Let the runs train until they end or stop_reason says stop (then SIGKILL). Each epoch's files
    are written atomically, so a killed run keeps its last complete epoch (the README's Training
    section; fix_meta checks its JSON against the weights)."""
    while True:
        now = time.time()
        alive = [r for r in runs if r.proc.alive()]
        for r in runs:
            r.poll_json()
        if not alive:
            return
        for r in alive:
            why = stop_reason(r.done, r.planned, now, deadline)
            if why:
                r.proc.kill(why)
        time.sleep(poll)


def inner_meta(path: Path) -> dict:
    """The metadata capsnet.train stores inside a weights file, read with the project's checks
    (capsnet.checkpoint.read_checkpoint: missing, empty, LFS pointer, not a torch file, no weights)."""
    from capsnet.checkpoint import read_checkpoint

    return json.loads(read_checkpoint(path).get("meta", "{}"))


def fix_meta(out: Path) -> str | None:
    """Make OUT.json describe the weights in OUT. A run killed between writing the weights of an epoch
    and its JSON leaves the JSON one epoch behind; the checkpoint carries the same metadata inside
    it, so the JSON is rewritten from there. Returns what was done, or None."""
    if not out.is_file():
        return None
    try:
        inner = inner_meta(out)
    except Exception as e:  # a damaged file is reported, not fixed
        return f"cannot read the metadata inside {out.name}: {type(e).__name__}: {e}"
    outer = read_json(out.with_suffix(".json")) or {}
    if inner.get("epochs") != outer.get("epochs") or inner.get("test_accuracy") != outer.get("test_accuracy"):
        atomic_json(out.with_suffix(".json"), inner)
        return f"{out.with_suffix('.json').name} said epoch {outer.get('epochs')}; rewritten from the weights (epoch {inner.get('epochs')})"
    return None


# ---------------------------------------------------------------------------------------------
# The plan


class Plan:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.procs: list[Proc] = []
        self.S: dict = {
            "plan": {
                "issue": 20,
                "tiny": cfg.tiny,
                "plan_seconds": cfg.plan_seconds,
                "started": dt.datetime.fromtimestamp(cfg.t0, dt.timezone.utc).isoformat(timespec="seconds"),
                "config": cfg.public(),
            },
            "machine": {},
            "steps": {},
            "skipped": [],
            "errors": [],
            "weights": {},
        }
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        # Inductor's caches (on by default in recent torch) let the later processes reuse the graphs
        # the benchmark compiled first.
        self.env.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
        self.env.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
        self.env.setdefault("TQDM_MININTERVAL", "2")

    # --- time
    def now(self) -> float:
        return time.time() - self.cfg.t0

    @property
    def end(self) -> float:
        """Wall-clock time by which every step has ended; packing follows."""
        return self.cfg.t0 + self.cfg.plan_seconds - self.cfg.pack_reserve

    def left(self) -> float:
        return self.end - time.time()

    def log(self, msg: str) -> None:
        line = f"[{self.now():6.1f} s] {msg}"
        print(line, flush=True)
        try:
            with open(self.cfg.run_dir / "plan.log", "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    def step(self, name: str, **info) -> dict:
        s = self.S["steps"].setdefault(name, {})
        s.update(info)
        return s

    def skip(self, what: str, why: str) -> None:
        self.S["skipped"].append(f"{what}: {why}")
        self.log(f"skipped {what}: {why}")

    def error(self, where: str, text: str) -> None:
        self.S["errors"].append(f"{where}: {text}")
        self.log(f"ERROR in {where}: {text}")

    def rel(self, path: Path) -> str:
        """A path as the commands and metadata should show it: relative to the repository if inside."""
        try:
            return str(path.relative_to(ROOT))
        except ValueError:
            return str(path)

    def start(self, name: str, args: list[str], log: Path, stdout: Path | None = None) -> Proc:
        p = Proc(name, [self.cfg.python, *args], log, stdout, self.env)
        self.procs.append(p)
        return p

    def cli(self, module: str, *args: str) -> list[str]:
        return ["-m", module, *args]

    # --- setup
    def setup(self) -> None:
        cfg = self.cfg
        t = time.time()
        run = cfg.run_dir
        # A link (to /dev/shm) left by an earlier run on this machine: its target is emptied.
        target = run.resolve()
        if target.is_dir() and any(target.iterdir()):
            if not (target / RUN_MARKER).exists():
                raise SystemExit(
                    f"error: {run} holds files the plan did not make; choose another PLAN_RUN_DIR"
                )
            shutil.rmtree(target)
        if run.is_symlink():
            target.mkdir(parents=True, exist_ok=True)
        elif not run.exists():
            shm = Path("/dev/shm")
            if not cfg.tiny and "PLAN_RUN_DIR" not in os.environ and _free_bytes(shm) > 8 * 2**30:
                # Each run writes ~130 MB per epoch (weights, metadata, resume state, each fsynced): in memory.
                target = shm / "capsnet_gpu_plan"
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir(parents=True)
                run.parent.mkdir(parents=True, exist_ok=True)
                run.symlink_to(target, target_is_directory=True)
            else:
                run.mkdir(parents=True)
        (run / RUN_MARKER).write_text("made by tools/gpu_plan.py; emptied by its next run\n")
        cfg.out.mkdir(parents=True, exist_ok=True)
        m = self.S["machine"]
        m.update(
            python=platform.python_version(),
            cpu_count=os.cpu_count(),
            run_dir=str(run.resolve()),
            host=platform.node(),
        )
        # torch's versions and the device, from a process of its own, read before the bench's results
        # (finish_setup); the bench starts meanwhile.
        self.versions = self.start(
            "versions", ["-c", _VERSIONS_PY, cfg.device], run / "versions.log", run / "versions.out"
        )
        smi = shutil.which("nvidia-smi")
        try:
            if smi:
                q = subprocess.run(
                    [smi, "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,temperature.gpu,"
                     "utilization.gpu", "--format=csv"], capture_output=True, text=True, timeout=30,
                )  # fmt: skip
                m["nvidia_smi"] = q.stdout.strip()
                full = subprocess.run([smi], capture_output=True, text=True, timeout=30).stdout
                (run / "nvidia-smi.txt").write_text(q.stdout + "\n" + full)
        except (OSError, subprocess.SubprocessError) as e:
            self.error("nvidia-smi", f"{type(e).__name__}: {e}")
        raw = cfg.data_root / "MNIST" / "raw"
        missing = unpack_raw(raw)
        if missing:
            raise SystemExit(
                f"error: {raw} lacks {', '.join(missing)}: run tools/gpu_prepare.sh here and carry .data"
            )
        if cfg.check_md5:
            bad = md5_problems(raw, mnist_md5_table(ROOT.parent / "shared" / "README.md"))
            if bad:
                raise SystemExit("error: MNIST files differ from ../shared/README.md: " + "; ".join(bad))
        self.step("setup", status="ok", seconds=round(time.time() - t, 1))

    def finish_setup(self) -> None:
        """Wait for the version check; stop the plan if the device it needs is not there."""
        if getattr(self, "setup_done", False):
            return
        self.setup_done = True
        wait_all([self.versions], time.time() + 120)
        versions = last_json_line(self.versions.stdout_text()) or {"error": self.versions.tail(800)}
        m = self.S["machine"]
        m.update(versions)
        if self.cfg.device.startswith("cuda") and not versions.get("cuda_available"):
            raise SystemExit(f"error: no CUDA device here ({versions}); the plan needs one")
        self.log(
            f"setup: {m.get('device_name')}, torch {m.get('torch')}, python {m.get('python')}, runs in {m['run_dir']}"
        )

    # --- step 1
    def bench(self) -> None:
        cfg = self.cfg
        if "bench" in cfg.skip:
            return self.skip("bench", "PLAN_SKIP")
        d = cfg.run_dir
        args = self.cli("capsnet.bench", "train", "--data-root", str(cfg.data_root), "--device", cfg.device,
                        "--threads", str(cfg.threads), *cfg.bench_args, "--json")  # fmt: skip
        self.log("step 1: python " + " ".join(args))
        p = self.start("bench", args, d / "bench.log", d / "bench.out")
        self.finish_setup()
        wait_all([p], min(time.time() + cfg.bench_timeout, self.end))
        result = last_json_line(p.stdout_text())
        s = self.step("bench", seconds=p.seconds(), rc=p.rc, command="python " + " ".join(args))
        if not result:
            s["status"] = "killed" if p.killed else "failed"
            return self.error("bench", f"rc {p.rc}, {p.killed or ''} {p.tail()}")
        atomic_json(d / "bench.json", result)
        floor_measured = result["flop_per_epoch"] / (MEASURED_BF16_TFLOPS * 1e12)
        b = {
            "usual_images_per_second": result["usual"]["images_per_second"],
            "ours_images_per_second": result["ours"]["images_per_second"],
            "usual_seconds_per_epoch": result["usual"]["seconds_per_epoch"],
            "ours_seconds_per_epoch": result["ours"]["seconds_per_epoch"],
            "ratio": result["ratio"],
            "peak_tflops": result.get("peak_tflops"),
            "floor_seconds_per_epoch": result.get("floor_seconds_per_epoch"),
            "ours_times_floor": result["ours"].get("times_floor"),
            "usual_times_floor": result["usual"].get("times_floor"),
            "floor_seconds_per_epoch_at_measured_788_tflops": round(floor_measured, 4),
            "ours_times_measured_floor": round(result["ours"]["seconds_per_epoch"] / floor_measured, 1),
            "speed": result["ours"].get("speed"),
            "target_ratio_at_least_5": result["ratio"] >= 5,
            "target_epoch_under_3_s": result["ours"]["seconds_per_epoch"] < 3,
            "wall_seconds_incl_compile": p.seconds(),
        }
        self.S["bench"] = b
        s["status"] = "ok"
        self.log(
            f"bench: usual {b['usual_images_per_second']:,.0f} img/s, ours {b['ours_images_per_second']:,.0f} img/s "
            f"({b['ours_seconds_per_epoch']:.2f} s/epoch), ratio {b['ratio']:.2f}x, "
            f"{b['ours_times_floor']}x the floor ({p.seconds():.0f} s with compile)"
        )

    # --- step 1b: does a second and third process add throughput?
    def probe(self) -> None:
        cfg = self.cfg
        if "probe" in cfg.skip:
            return self.skip("probe", "PLAN_SKIP")
        d = cfg.run_dir / "probe"
        d.mkdir(parents=True, exist_ok=True)
        n = cfg.probe_procs
        procs = []
        for rank in range(n):
            args = [str(Path(__file__).resolve()), "probe", "--rank", str(rank), "--procs", str(n), "--dir", str(d),
                    "--steps", str(cfg.probe_steps), "--batch-size", str(cfg.batch_size), "--device", cfg.device,
                    "--data-root", str(cfg.data_root), "--threads", str(cfg.threads),
                    "--eval-images", str(cfg.val + self.digits("t10k"))]  # fmt: skip
            procs.append(self.start(f"probe{rank}", args, d / f"probe{rank}.log"))
        self.log(
            f"probe: {n} processes, {cfg.probe_steps} steps of {cfg.batch_size} alone (rank 0) then together"
        )
        wait_all(procs, min(time.time() + cfg.probe_timeout, self.end))
        results = [read_json(d / f"probe{r}.json") for r in range(n)]
        s = self.step("probe", seconds=max(p.seconds() for p in procs), rc=[p.rc for p in procs])
        if not all(results):
            s["status"] = "failed"
            return self.error("probe", " | ".join(f"rank {p.name}: rc {p.rc} {p.killed or ''} {p.tail(300)}"
                                                  for p in procs if p.rc))  # fmt: skip
        solo = results[0]["solo"]
        ips1 = solo["images"] / solo["seconds"]
        begin = min(r["together"]["begin"] for r in results)
        end = max(r["together"]["end"] for r in results)
        total = sum(r["together"]["images"] for r in results) / (end - begin)
        startup = max(r["ready_at"] - p.started for r, p in zip(results, procs))
        c = {
            "processes": n,
            "images_per_second_one": round(ips1, 1),
            "images_per_second_together": round(total, 1),
            "gain": round(total / ips1, 3),
            "eval_seconds": results[0]["eval_seconds"],
            "eval_images": results[0]["eval_images"],
            "save_seconds": results[0]["save_seconds"],
            "startup_seconds": round(startup, 1),
            "gpu_memory_gb": [r.get("max_memory_gb") for r in results],
            "speed": results[0].get("speed"),
        }
        self.S["concurrency"] = c
        s["status"] = "ok"
        self.log(
            f"probe: one process {ips1:,.0f} img/s; {n} together {total:,.0f} img/s (x{c['gain']:.2f}); "
            f"evaluation {c['eval_seconds']:.2f} s, writes {c['save_seconds']:.2f} s, start-up {startup:.0f} s"
        )

    # --- step 2
    def images_per_epoch(self, batch: int, max_steps: int) -> int:
        steps = (self.digits("train") - self.cfg.val) // batch
        return batch * (min(steps, max_steps) if max_steps else steps)

    def digits(self, part: str) -> int:
        """How many digits MNIST's train or t10k files hold (the count in the labels file's header)."""
        with open(self.cfg.data_root / "MNIST" / "raw" / f"{part}-labels-idx1-ubyte", "rb") as f:
            return int.from_bytes(f.read(8)[4:8], "big")

    def plan_capsnet(self) -> dict:
        """Seeds, epochs and lr decay from the measurements, for a training window ending in time
        for evaluation and packing."""
        cfg = self.cfg
        images = self.images_per_epoch(cfg.batch_size, cfg.max_steps)
        c, b = self.S.get("concurrency"), self.S.get("bench")
        if c:
            ips1, gain = c["images_per_second_one"], c["gain"]
            overhead = c["eval_seconds"] + c["save_seconds"]
            startup = c["startup_seconds"] * 1.2 + 5
            source = "the concurrency probe"
        elif b:
            ips1, gain, overhead, startup = b["ours_images_per_second"], None, 3.0, 60.0
            source = "the benchmark (no probe: one seed)"
        else:
            ips1, gain, overhead, startup = 20_000.0 if not cfg.tiny else 20.0, None, 3.0, 60.0
            source = "a guess (no benchmark, no probe): the watchdog stops the run in time"
        window = self.end - cfg.eval_reserve - time.time()
        n = cfg.probe_procs
        one = epoch_seconds(images, ips1, overhead)
        # n processes together: each at 1/n of the measured total (no gain measured: none assumed), the
        # per-epoch evaluation and writes slowed by half by the others' training.
        many = epoch_seconds(images, ips1 * (gain or 1.0) / n, overhead * 1.5)
        e1 = epochs_that_fit(window, startup, one, cfg.max_epochs)
        en = epochs_that_fit(window, startup, many, cfg.max_epochs)
        seeds, why = choose_seeds(cfg.seeds, gain, e1, en, cfg.concurrency_gain, cfg.min_epochs_concurrent, n)
        epochs = max(1, e1 if seeds == 1 else en)
        decay = lr_decay_for(epochs, cfg.final_lr_factor)
        return {
            "seeds": list(range(seeds)),
            "seeds_why": why,
            "epochs": epochs,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "lr_decay": round(decay, 6),
            "final_lr_factor": cfg.final_lr_factor,
            "val": cfg.val,
            "images_per_epoch": images,
            "estimated_seconds_per_epoch": {"one": round(one, 2), "together": round(many, 2)},
            "estimated_startup_seconds": round(startup, 1),
            "training_window_seconds": round(window, 1),
            "epochs_that_fit": {"one": e1, "together": en},
            "estimates_from": source,
            "schedule_why": (
                f"Adam lr {cfg.lr:g} decayed x{decay:.4f} per epoch, so that the last of the {epochs} planned "
                f"epochs trains at {cfg.final_lr_factor:g} x the initial rate: a short run needs its rate "
                "annealed by its end (the paper's 0.96 per 2000 steps would leave it near 1e-3 here); "
                "CapsNet-Keras (XifengGuo) reaches 99.66% with x0.9 per epoch over 50 epochs, the same end "
                f"point. At most {cfg.max_epochs} epochs (PLAN_MAX_EPOCHS; 50 is where that recipe ends)."
            ),
        }

    def run_info(self, name: str, r: Watched) -> dict:
        """What a training run left: its last complete epoch's figures (or the error)."""
        # A run that ended by itself wrote its JSON last; a killed or crashed one may be an epoch behind.
        note = fix_meta(r.out) if r.proc.rc != 0 else None
        meta = read_json(r.out.with_suffix(".json"))
        info = {
            "rc": r.proc.rc,
            "stopped": r.proc.killed,
            "wall_seconds": r.proc.seconds(),
            "epochs_planned": r.planned,
        }
        if note:
            info["meta_fixed"] = note
        if not meta or not r.out.is_file():
            info.update(epochs=0, error=r.proc.tail())
            self.error(name, f"no complete epoch (rc {r.proc.rc}, {r.proc.killed}): {r.proc.tail(300)}")
            return info
        hist = meta.get("history", [])
        after = [h["seconds"] for h in hist[1:]]
        info.update(
            epochs=meta["epochs"],
            parameters=meta.get("parameters"),
            val_accuracy=meta.get("val_accuracy"),
            test_accuracy=meta["test_accuracy"],
            test_errors=meta.get("test_errors"),
            seconds_per_epoch=meta.get("seconds_per_epoch"),
            seconds_per_epoch_after_first=round(statistics.fmean(after), 2) if after else None,
            first_epoch_seconds=hist[0]["seconds"] if hist else None,
            train_seconds=meta.get("train_seconds"),
            speed=meta.get("speed"),
            history=[
                {k: h.get(k) for k in ("epoch", "val_accuracy", "test_accuracy", "seconds")} for h in hist
            ],
        )
        self.log(
            f"{name}: {info['epochs']}/{r.planned} epochs, val {pct(info['val_accuracy'])}, test "
            f"{pct(info['test_accuracy'])}, {info['seconds_per_epoch_after_first']} s/epoch after the first "
            f"({r.proc.killed or f'rc {r.proc.rc}'})"
        )
        return info

    def capsnet(self) -> None:
        """Train the seeds; choose the one to ship by validation accuracy; start step 3's baselines on
        the time left; evaluate every seed meanwhile; pack the CapsNet."""
        cfg = self.cfg
        plan = self.plan_capsnet()
        self.S["capsnet_plan"] = plan
        per_epoch = plan["estimated_seconds_per_epoch"]["one" if len(plan["seeds"]) == 1 else "together"]
        self.log(
            f"step 2: {len(plan['seeds'])} seed(s) x {plan['epochs']} epochs, lr {plan['lr']:g} "
            f"x{plan['lr_decay']}/epoch, ~{per_epoch} s/epoch; {plan['seeds_why']}"
        )
        runs = []
        for seed in plan["seeds"]:
            out = cfg.run_dir / f"s{seed}" / "capsnet_mnist.pt"
            args = self.train_args("capsnet", out, plan["epochs"], plan["lr_decay"], seed, cfg.max_steps)
            runs.append(
                Watched(self.start(f"capsnet s{seed}", args, out.with_name("train.log")), out, plan["epochs"])
            )
        t = time.time()
        watch(runs, self.end - cfg.eval_reserve)
        self.step("capsnet_train", seconds=round(time.time() - t, 1), status="ok")
        seeds = [{"seed": s, "dir": f"s{s}", **self.run_info(f"capsnet seed {s}", r)}
                 for s, r in zip(plan["seeds"], runs)]  # fmt: skip
        self.S["seeds"] = seeds
        finished = [s for s in seeds if s["epochs"] > 0]
        if not finished:
            return self.error("capsnet", "no seed finished an epoch: nothing to ship")
        self.chosen = median_by_validation(
            [s for s in finished if s.get("val_accuracy") is not None] or finished
        )
        try:
            self.start_baselines()
        except Exception as e:
            self.error("step 3 (start)", f"{type(e).__name__}: {e}")
        self.evaluate(finished)
        self.ship(finished)

    def train_args(
        self, arch: str, out: Path, epochs: int, decay: float, seed: int, max_steps: int
    ) -> list[str]:
        cfg = self.cfg
        args = ["--data-root", str(cfg.data_root), "--no-download", "--epochs", str(epochs),
                "--batch-size", str(cfg.batch_size), "--lr", f"{cfg.lr:g}", "--lr-decay", f"{decay:.6f}",
                "--val", str(cfg.val), "--seed", str(seed), "--device", cfg.device, "--threads", str(cfg.threads),
                "--log-every", "100", "--out", self.rel(out)]  # fmt: skip
        if arch != "capsnet":
            args = ["--arch", arch, *args]
        if max_steps:
            args += ["--max-steps", str(max_steps)]
        return self.cli("capsnet.train", *args)

    def evaluate(self, finished: list[dict]) -> None:
        """Every finished seed through capsnet.evaluate --iterations 1..5 --routing-stats --write-meta,
        concurrently; the JSON beside each checkpoint comes back complete."""
        cfg = self.cfg
        procs = []
        for info in finished:
            d = cfg.run_dir / info["dir"]
            args = self.cli("capsnet.evaluate", "--checkpoint", self.rel(d / "capsnet_mnist.pt"), "--data-root",
                            str(cfg.data_root), "--no-download", "--iterations", "1", "2", "3", "4", "5",
                            "--routing-stats", "--write-meta", "--json", "--device", cfg.device,
                            "--threads", str(cfg.threads))  # fmt: skip
            procs.append(
                self.start(f"evaluate s{info['seed']}", args, d / "evaluate.log", d / "evaluate.out")
            )
        t = time.time()
        wait_all(procs, min(self.end, t + max(90.0, 2 * cfg.eval_reserve)))
        self.step("evaluate", seconds=round(time.time() - t, 1), status="ok",
                  commands=["python " + " ".join(p.cmd[1:]) for p in procs])  # fmt: skip
        for info, p in zip(finished, procs):
            result = last_json_line(p.stdout_text())
            if not result:
                self.error(f"evaluate seed {info['seed']}", f"rc {p.rc} {p.killed or ''} {p.tail(300)}")
                continue
            atomic_json(cfg.run_dir / info["dir"] / "evaluate.json", result)
            info.update(
                test_accuracy_evaluate=result["accuracy"],
                test_errors_evaluate=result["errors"],
                iteration_accuracy=result.get("iteration_accuracy"),
                routing_stats=result.get("routing_stats"),
                evaluate_images_per_second=result.get("images_per_second"),
            )

    def ship(self, finished: list[dict]) -> None:
        cfg = self.cfg
        chosen, why = self.chosen
        tests = [r.get("test_accuracy_evaluate", r["test_accuracy"]) for r in finished]
        self.S["test_accuracy_over_seeds"] = {
            **mean_std(tests),
            "what": "capsnet.evaluate's accuracy with 3 routing iterations where it ran, else the training JSON's",
        }
        self.S["val_accuracy_over_seeds"] = mean_std(
            [r["val_accuracy"] for r in finished if r.get("val_accuracy")]
        )
        acc = chosen.get("test_accuracy_evaluate", chosen["test_accuracy"])
        self.S["shipped"] = {
            "seed": chosen["seed"],
            "dir": chosen["dir"],
            "why": why,
            "epochs": chosen["epochs"],
            "val_accuracy": chosen.get("val_accuracy"),
            "test_accuracy": acc,
            "target_99_70_met": acc >= 0.997,
        }
        ship = cfg.run_dir / "ship"
        ship.mkdir(exist_ok=True)
        shutil.copy2(cfg.run_dir / chosen["dir"] / "capsnet_mnist.json", ship / "capsnet_mnist.json")
        self.S["weights"]["capsnet_mnist.pt"] = {"source": f"{chosen['dir']}/capsnet_mnist.pt",
                                                  "json": "ship/capsnet_mnist.json"}  # fmt: skip
        self.log(f"shipping seed {chosen['seed']} (test {acc:.4%}): {why}")
        self.pack(final=False)  # the CapsNet comes back even if step 3 runs out of time

    # --- step 3
    def start_baselines(self) -> None:
        """The pooled and the unpooled CNN with the shipped CapsNet's data, lr, decay, seed and
        completed epochs, started beside the CapsNet's evaluation when enough time is left."""
        cfg = self.cfg
        self.cnn_runs: dict[str, Watched] = {}
        what = "step 3 (baseline CNNs, robustness)"
        left = self.left()
        archs = ["cnn", "cnn-unpooled"]
        if "step3" in cfg.skip:
            return self.skip(what, "PLAN_SKIP")
        if left < cfg.step3_pooled_min:
            return self.skip(what, f"{left:.0f} s left, under the {cfg.step3_pooled_min:.0f} s even the pooled CNN and "
                                   "robustness need; waits for the next GPU session")  # fmt: skip
        if left < cfg.step3_min:
            archs = ["cnn"]
            self.skip("the unpooled CNN", f"{left:.0f} s left, under the {cfg.step3_min:.0f} s the whole step 3 needs: "
                                          "the pooled CNN and robustness only; waits for the next GPU session")  # fmt: skip
        if "unpooled" in cfg.skip and "cnn-unpooled" in archs:
            archs.remove("cnn-unpooled")
            self.skip("the unpooled CNN", "PLAN_SKIP")
        chosen = self.chosen[0]
        plan = self.S["capsnet_plan"]
        epochs, seed = chosen["epochs"], chosen["seed"]
        self.log(
            f"step 3: baseline CNNs, {epochs} epochs x{plan['lr_decay']}/epoch, seed {seed}, {self.left():.0f} s left"
        )
        for arch in archs:
            name = {"cnn": "cnn_mnist.pt", "cnn-unpooled": "cnn_unpooled_mnist.pt"}[arch]
            d = cfg.run_dir / arch.replace("-", "_")
            e = (cfg.unpooled_epochs or epochs) if arch == "cnn-unpooled" else epochs
            steps = cfg.unpooled_max_steps if arch == "cnn-unpooled" else cfg.max_steps
            args = self.train_args(arch, d / name, e, plan["lr_decay"], seed, steps)
            self.cnn_runs[arch] = Watched(self.start(arch, args, d / "train.log"), d / name, e)

    def baselines(self) -> None:
        cfg = self.cfg
        runs = getattr(self, "cnn_runs", None)
        if not runs:
            return
        t = time.time()
        watch(list(runs.values()), self.end - cfg.robustness_reserve)
        self.step("baselines_train", seconds=round(time.time() - t, 1), status="ok")
        for arch, r in runs.items():
            key = arch.replace("-", "_")
            self.S[key] = {"dir": key, **self.run_info(arch, r)}
        if self.S.get("cnn", {}).get("epochs"):
            shutil.copy2(cfg.run_dir / "cnn" / "cnn_mnist.json", cfg.run_dir / "ship" / "cnn_mnist.json")
            self.S["weights"]["cnn_mnist.pt"] = {"source": "cnn/cnn_mnist.pt", "json": "ship/cnn_mnist.json"}
        self.robustness()

    def robustness(self) -> None:
        cfg = self.cfg
        if "robustness" in cfg.skip:
            return self.skip("robustness", "PLAN_SKIP")
        caps = cfg.run_dir / self.S["shipped"]["dir"] / "capsnet_mnist.pt"
        cnn = cfg.run_dir / "cnn" / "cnn_mnist.pt"
        unpooled = cfg.run_dir / "cnn_unpooled" / "cnn_unpooled_mnist.pt"
        jobs = []
        if self.S.get("cnn", {}).get("epochs"):
            jobs.append(
                ("robustness", ["--capsnet", self.rel(caps), "--cnn", self.rel(cnn), *cfg.robustness_args])
            )
        else:
            jobs.append(("robustness_capsnet_only", ["--capsnet", self.rel(caps), *cfg.robustness_args]))
        if self.S.get("cnn_unpooled", {}).get("epochs"):
            jobs.append(("robustness_unpooled", ["--cnn", self.rel(unpooled), *cfg.unpooled_robustness_args]))
        common = ["--data-root", str(cfg.data_root), "--no-download", "--device", cfg.device, "--threads",
                  str(cfg.threads)]  # fmt: skip
        procs = [  # each writes its JSON, stamped with its command, machine and date (--out)
            self.start(name, self.cli("capsnet.robustness", *args, *common, "--out",
                                      self.rel(cfg.run_dir / f"{name}.json")),
                       cfg.run_dir / f"{name}.log", cfg.run_dir / f"{name}.out")
            for name, args in jobs
        ]  # fmt: skip
        self.log("robustness: " + "; ".join("python " + " ".join(p.cmd[1:]) for p in procs))
        t = time.time()
        wait_all(procs, self.end)
        self.step("robustness", seconds=round(time.time() - t, 1), status="ok")
        # what the checkpoints' JSONs record (training's own evaluation), which the app compares with
        recorded = {
            "capsnet": self.chosen[0]["test_accuracy"],
            "cnn": self.S.get("cnn", {}).get("test_accuracy"),
        }
        summary = {}
        for (name, _), p in zip(jobs, procs):
            result = read_json(cfg.run_dir / f"{name}.json") if p.rc == 0 else None
            if not result:
                self.error(name, f"rc {p.rc} {p.killed or ''} {p.tail(300)}")
                continue
            if name == "robustness":
                shutil.copy2(cfg.run_dir / f"{name}.json", cfg.run_dir / "ship" / "robustness.json")
            summary[name] = {"curve_images": result.get("curve_images")}
            for model, v in result["models"].items():
                summary[name][model] = {
                    "clean": v["clean"]["accuracy"],
                    "random_affine": v["random_affine"]["accuracy"],
                }
                if name == "robustness":  # the app and tests/test_checkpoint.py want these equal
                    summary[name][model]["clean_equals_checkpoint_json"] = (
                        v["clean"]["accuracy"] == recorded[model]
                    )
        self.S["robustness"] = summary

    # --- what comes back
    def pack(self, final: bool) -> None:
        """$OUT: the weights in pieces, one archive of every JSON and log, summary.json, SHA256SUMS."""
        cfg = self.cfg
        out = cfg.out
        t = time.time()
        for old in out.iterdir():  # this plan's files only: earlier packs are replaced
            if re.fullmatch(r".+\.pt\.\d{3}", old.name) or old.name in (ARCHIVE, SUMMARY, SUMS):
                old.unlink()
        names = []
        for name, w in list(self.S["weights"].items()):
            try:
                entry = split_file(cfg.run_dir / w["source"], out, cfg.piece_bytes)
            except OSError as e:
                self.error(f"pack {name}", f"{type(e).__name__}: {e}")
                del self.S["weights"][name]
                continue
            w.update(entry)
            names += [p["file"] for p in entry["pieces"]]
        self.S["plan"]["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.S["plan"]["elapsed_seconds"] = round(self.now(), 1)
        self.S["plan"]["final"] = final
        atomic_json(cfg.run_dir / SUMMARY, self.S)
        members = make_archive(cfg.run_dir, out / ARCHIVE)
        if (out / ARCHIVE).stat().st_size > cfg.piece_bytes:  # runaway logs: keep less of each
            members = make_archive(cfg.run_dir, out / ARCHIVE, cap=256 * 2**10)
        self.S["archive"] = {"file": ARCHIVE, "bytes": (out / ARCHIVE).stat().st_size, "members": members}
        names.append(ARCHIVE)
        self.S["files"] = [{"file": n, "bytes": (out / n).stat().st_size} for n in names]
        self.step("pack", seconds=round(time.time() - t, 1), status="ok")
        self.S["out_problems"] = []
        atomic_json(out / SUMMARY, self.S)
        names.append(SUMMARY)
        write_sums(out, names)
        problems = out_problems(out)
        if problems:
            self.S["out_problems"] = problems
            atomic_json(out / SUMMARY, self.S)
            write_sums(out, names)
            self.log("WARNING: $OUT breaks the device tool's limits: " + "; ".join(problems))
        self.log(
            f"packed {len(names) + 1} files in $OUT ({'final' if final else 'early'}), {time.time() - t:.1f} s"
        )

    def report(self) -> None:
        """The short table the device tool's output tail shows."""
        S = self.S
        m = S["machine"]
        lines = ["", "=" * 100, f"GPU plan: {S['plan'].get('elapsed_seconds')} s of {self.cfg.plan_seconds:.0f} on "
                 f"{m.get('device_name')}, torch {m.get('torch')}, python {m.get('python')}"]  # fmt: skip
        if b := S.get("bench"):
            lines.append(
                f"bench    usual {b['usual_images_per_second']:,.0f} img/s, ours {b['ours_images_per_second']:,.0f} img/s "
                f"= {b['ratio']:.2f}x (>=5: {b['target_ratio_at_least_5']}); ours {b['ours_seconds_per_epoch']:.2f} "
                f"s/epoch (<3: {b['target_epoch_under_3_s']}); {b['ours_times_floor']}x the 989-TFLOP floor"
            )
        if c := S.get("concurrency"):
            lines.append(
                f"probe    1 process {c['images_per_second_one']:,.0f} img/s; {c['processes']} together "
                f"{c['images_per_second_together']:,.0f} img/s (x{c['gain']:.2f})"
            )
        if p := S.get("capsnet_plan"):
            lines.append(
                f"capsnet  {len(p['seeds'])} seed(s) x {p['epochs']} epochs, lr x{p['lr_decay']}/epoch: {p['seeds_why']}"
            )
        for s in S.get("seeds", []):
            lines.append(
                f"  seed {s['seed']}: {s.get('epochs', 0)} epochs, val {pct(s.get('val_accuracy'))}, test "
                f"{pct(s.get('test_accuracy'))} (evaluate {pct(s.get('test_accuracy_evaluate'))}), "
                f"{s.get('seconds_per_epoch_after_first')} s/epoch after the first"
            )
        if t := S.get("test_accuracy_over_seeds"):
            std = f"{t['std']:.4%}" if t["std"] is not None else "-"
            lines.append(f"  test over {t['n']} seed(s): mean {pct(t['mean'])}, std {std}")
        if sh := S.get("shipped"):
            lines.append(
                f"shipped  seed {sh['seed']}, test {pct(sh['test_accuracy'])} (>=99.70%: {sh['target_99_70_met']}): {sh['why']}"
            )
        for key in ("cnn", "cnn_unpooled"):
            if c := S.get(key):
                lines.append(
                    f"{key:<8} {c.get('epochs', 0)} epochs, test {pct(c.get('test_accuracy'))}, {c.get('seconds_per_epoch')} s/epoch"
                )
        for name, r in S.get("robustness", {}).items():
            lines.append(f"{name}: " + ", ".join(f"{k} clean {pct(v['clean'])} affine {pct(v['random_affine'])}"
                                                 for k, v in r.items() if isinstance(v, dict)))  # fmt: skip
        for s in S["skipped"]:
            lines.append(f"skipped  {s}")
        for e in S["errors"]:
            lines.append(f"ERROR    {e[:400]}")
        lines.append(
            "files    "
            + ", ".join(f"{f['file']} ({f['bytes'] / 2**20:.1f} MiB)" for f in S.get("files", []))
            + f", {SUMMARY}, {SUMS}"
        )
        if S.get("out_problems"):
            lines.append("OUT PROBLEMS: " + "; ".join(S["out_problems"]))
        print("\n".join(lines), flush=True)

    def run(self) -> int:
        def on_term(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, on_term)
        rc = 0
        try:
            self.setup()
            for name, fn in (("bench", self.bench), ("probe", self.probe), ("capsnet", self.capsnet),
                             ("step 3", self.baselines)):  # fmt: skip
                self.finish_setup()
                if self.left() <= 0:
                    self.skip(name, "the plan's time is up")
                    continue
                try:
                    fn()
                except Exception as e:
                    rc = 1
                    self.error(name, f"{type(e).__name__}: {e}\n{traceback.format_exc()[-1500:]}")
        except (SystemExit, KeyboardInterrupt, Exception) as e:
            rc = 1
            self.error("plan", f"{type(e).__name__}: {e}")
        finally:
            for p in self.procs:
                p.kill("the plan ended")
            try:
                self.pack(final=True)
            except Exception as e:
                rc = 1
                print(f"ERROR while packing: {type(e).__name__}: {e}\n{traceback.format_exc()}", flush=True)
            self.report()
        return rc


def pct(x) -> str:
    """A fraction as a percentage with two decimals, '-' when there is none."""
    return f"{x:.2%}" if isinstance(x, (int, float)) else "-"


def _free_bytes(path: Path) -> int:
    try:
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize
    except OSError:
        return 0


_VERSIONS_PY = r"""
import json, sys, importlib.metadata, torch
dev = sys.argv[1]
d = {"torch": torch.__version__, "torchvision": importlib.metadata.version("torchvision"), "cuda": torch.version.cuda,
     "cuda_available": torch.cuda.is_available(), "device": dev}
if dev.startswith("cuda") and torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    d.update(device_name=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)),
             multiprocessors=p.multi_processor_count, memory_gb=round(p.total_memory / 2**30, 1),
             bf16=torch.cuda.is_bf16_supported())
else:
    d["device_name"] = "cpu"
print(json.dumps(d))
"""


# ---------------------------------------------------------------------------------------------
# probe: one of N processes that time capsnet.train's own training step, alone and together


def probe_main(a: argparse.Namespace) -> int:
    """Rank 0 times `steps` steps alone (the others wait, warmed up), then all ranks time `steps` steps
    at the same moment. Each writes DIR/probe<rank>.json. The step is capsnet.train's (its loss
    module, TrainStep, train_epoch and speed settings), as capsnet.bench times it."""
    import torch

    from capsnet import distributed
    from capsnet.checkpoint import atomic_write_json, save_checkpoint
    from capsnet.data import load_mnist
    from capsnet.evaluate import predict, use_device_args
    from capsnet.model import CapsNet
    from capsnet.train import TrainingLoss, TrainStep, make_optimizer, resolve_speed, train_epoch
    from capsnet.train import parse_args as train_args

    d = Path(a.dir)
    args = train_args(["--device", a.device, "--batch-size", str(a.batch_size), "--seed", str(a.rank),
                       "--threads", str(a.threads), "--log-every", str(10**9), "--max-steps", str(a.steps)])  # fmt: skip
    device = use_device_args(args)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(a.rank)
    images, labels = load_mnist(a.data_root, train=True, download=False)
    n = min(len(images), a.steps * a.batch_size)
    train_x, train_y = images[:n].to(device), labels[:n].to(device)
    speed = resolve_speed(args, device)
    model = CapsNet().to(device)
    if speed.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, args.lr, speed)
    step = TrainStep(TrainingLoss(model, args.iterations, args.recon_weight, speed.amp), opt, speed,
                     say=lambda *x, **k: print(*x, **{**k, "file": sys.stderr}))  # fmt: skip
    world = distributed.World()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def epoch(e: int, steps: int) -> int:
        args.max_steps = steps
        order = torch.randperm(n, device=device)
        return train_epoch(step, train_x, train_y, order, args, e, world, progress=False)["images"]

    epoch(0, min(3, a.steps))  # compile (from inductor's cache when the benchmark ran first), cuDNN search
    sync()
    result = {"rank": a.rank, "ready_at": time.time(), "speed": speed.as_meta()}
    _touch(d / f"ready{a.rank}")
    _wait_for([d / f"ready{r}" for r in range(a.procs)], a.barrier_timeout)
    if a.rank == 0:
        t = time.perf_counter()
        images_solo = epoch(1, a.steps)
        sync()
        result["solo"] = {"images": images_solo, "seconds": time.perf_counter() - t}
        # What every epoch of capsnet.train adds: validation + test predictions, and three writes.
        test_x, _ = load_mnist(a.data_root, train=False, download=False)
        eval_x = torch.cat([test_x, images[: max(0, a.eval_images - len(test_x))]])
        t = time.perf_counter()
        predict(model, eval_x, iterations=args.iterations)
        result["eval_seconds"], result["eval_images"] = round(time.perf_counter() - t, 3), len(eval_x)
        t = time.perf_counter()
        meta = {"probe": True}
        save_checkpoint(d / "probe_weights.pt", model, meta)
        atomic_write_json(d / "probe_weights.json", meta)
        save_checkpoint(d / "probe_resume.pt", model, meta, optimizer=opt.state_dict())
        result["save_seconds"] = round(time.perf_counter() - t, 3)
        for f in ("probe_weights.pt", "probe_weights.json", "probe_resume.pt"):
            (d / f).unlink(missing_ok=True)
        _touch(d / "go")
    else:
        _wait_for([d / "go"], a.barrier_timeout)
    begin = time.time()
    images_together = epoch(2, a.steps)
    sync()
    result["together"] = {"images": images_together, "begin": begin, "end": time.time()}
    if device.type == "cuda":
        result["max_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    atomic_json(d / f"probe{a.rank}.json", result)
    return 0


def _touch(path: Path) -> None:
    path.write_text(str(time.time()))


def _wait_for(paths: list[Path], timeout: float) -> None:
    end = time.time() + timeout
    while not all(p.exists() for p in paths):
        if time.time() > end:
            raise SystemExit(f"probe: gave up waiting for {[p.name for p in paths if not p.exists()]}")
        time.sleep(0.002)


# ---------------------------------------------------------------------------------------------
# preflight: here, before spending device time


def travel_bytes(root: Path, carry: list[str]) -> int:
    """Bytes of what the device tool sends: tracked and untracked-not-ignored files, and carried paths."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root, capture_output=True,
        check=True,
    ).stdout.split(b"\0")  # fmt: skip
    total = 0
    for f in files:
        p = root / os.fsdecode(f)
        if f and p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    for c in carry:
        for p in (root / c).rglob("*"):
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
    return total


def preflight_main(a: argparse.Namespace) -> int:
    raw = ROOT / ".data" / "MNIST" / "raw"
    problems = []
    packed = sorted([*raw.glob("*.gz"), *raw.glob("*.xz")])
    if len(packed) != 4:
        problems.append(f"{raw} holds {len(packed)} .gz/.xz files, not 4: run tools/gpu_prepare.sh")
    else:
        bad = md5_problems(raw, mnist_md5_table(Path(a.shared_readme)))
        problems += bad
        if not bad:
            print(f"ok: the 4 MNIST archives in {raw} unpack to the md5s of {a.shared_readme}")
    extra = [p.name for p in raw.iterdir() if p.suffix not in (".gz", ".xz")] if raw.is_dir() else []
    if extra:
        problems.append(f"{raw} also holds {extra}: carry only the .gz files (the plan unpacks them there)")
    ignored = subprocess.run(["git", "check-ignore", "-q", ".data"], cwd=ROOT).returncode == 0
    if not ignored:
        problems.append(".data is not git-ignored: it would travel twice")
    size = travel_bytes(ROOT, [".data"])
    print(f"{'ok' if size <= TRAVEL_MAX_BYTES else 'TOO BIG'}: the tree that travels with carry ['.data'] is "
          f"{size / 2**20:.1f} MiB of {TRAVEL_MAX_BYTES / 2**20:.0f} MiB")  # fmt: skip
    if size > TRAVEL_MAX_BYTES:
        problems.append(
            "the tree that travels is over 64 MiB: git-ignore or remove untracked files, or carry MNIST as "
            "xz (XZ=1 bash tools/gpu_prepare.sh: 2.2 MB less)"
        )
    for p in problems:
        print(f"problem: {p}")
    if not problems:
        print('ready: run(command="bash tools/gpu_plan.sh", carry=[".data"], timeout_s=570), then give_back')
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools/gpu_plan.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="the whole plan (settings from PLAN_* variables and $OUT)")
    pr = sub.add_parser("probe", help="one worker of the concurrency probe")
    pr.add_argument("--rank", type=int, required=True)
    pr.add_argument("--procs", type=int, required=True)
    pr.add_argument("--dir", required=True)
    pr.add_argument("--steps", type=int, required=True)
    pr.add_argument("--batch-size", type=int, required=True)
    pr.add_argument("--device", default="cuda")
    pr.add_argument("--data-root", required=True)
    pr.add_argument("--threads", type=int, default=0)
    pr.add_argument("--eval-images", type=int, default=15_000)
    pr.add_argument("--barrier-timeout", type=float, default=90.0)
    pf = sub.add_parser("preflight", help="here: the carried data and the size of what travels")
    pf.add_argument("--shared-readme", default=str(ROOT.parent / "shared" / "README.md"))
    a = p.parse_args(argv)
    if a.cmd == "probe":
        return probe_main(a)
    if a.cmd == "preflight":
        return preflight_main(a)
    return Plan(Config.from_env()).run()


if __name__ == "__main__":
    sys.exit(main())
