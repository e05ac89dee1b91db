"""Collect what tools/gpu_plan.sh brought back from the GPU: verify, join, unpack, install, print.

    .venv/bin/python tools/gpu_collect.py FOLDER                 # FOLDER: where the device tool put $OUT's files
    .venv/bin/python tools/gpu_collect.py FOLDER --check-only    # verify and print; install nothing

1. every file SHA256SUMS lists has its checksum (else: stop, nothing installed);
2. the weights' pieces (summary.json lists them with their sha256) are joined, the whole checked and
   loaded with the project's own loader (capsnet.load_model);
3. the archive (capsnet_mnist.json and the logs) is unpacked into --runs (default runs/gpu/, git-ignored);
4. the JSON must describe the weights beside it (same epochs, test accuracy and seed as the metadata
   inside the weights file);
5. --dest (default checkpoints/) gets capsnet_mnist.pt and .json, each written to a temp file and renamed;
6. the facts the README's model card needs are printed, then the commands that bring what depends on
   the weights up to date (follow_ups): routing figures in the JSON, the pose atlas, robustness.json,
   the app's samples, the tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.gpu_plan import (
    ARCHIVE,
    SUMMARY,
    SUMS,
    WEIGHTS,
    atomic_json,
    inner_meta,
    pct,
    read_json,
    sha256_file,
)


class IntegrityError(Exception):
    """A returned file is missing, damaged, or does not belong with the others."""


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
        path = folder / name.strip().lstrip("*")
        if not path.is_file():
            raise IntegrityError(f"{path} is listed in {SUMS} but missing")
        if (got := sha256_file(path)) != want:
            raise IntegrityError(
                f"{path}: sha256 {got[:16]}... does not match {SUMS} ({want[:16]}...): the file is damaged "
                "or was not brought back whole. Fetch the files again; nothing was installed."
            )
        names.append(path.name)
    return names


def join_pieces(entry: dict, folder: Path, dest: Path) -> Path:
    """Check every piece of `entry` (as gpu_plan.split_file returned it) in folder, join them into
    dest (a temp file, renamed) and check the whole. Raises IntegrityError naming the bad file."""
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


def safe_extract(archive: Path, dest: Path) -> list[str]:
    """Unpack regular files only, each inside dest (no absolute paths, no '..', no links)."""
    names = []
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        for m in tar.getmembers():
            if not m.isfile() or Path(m.name).is_absolute() or ".." in Path(m.name).parts:
                raise IntegrityError(
                    f"{archive}: member {m.name!r} is not a plain file inside the archive; refused"
                )
            (dest / m.name).parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(m) as src, open(dest / m.name, "wb") as out:
                shutil.copyfileobj(src, out)
            names.append(m.name)
    return names


def check_json(weights: Path, meta: dict) -> None:
    inner = inner_meta(weights)
    for key in ("epochs", "test_accuracy", "seed"):
        if inner.get(key) != meta.get(key):
            raise IntegrityError(
                f"{weights.name}: its JSON says {key}={meta.get(key)!r}, the weights' own metadata "
                f"{key}={inner.get(key)!r}: they are not from the same epoch; nothing was installed"
            )


def follow_ups(
    installed: list[str],
    dest: Path,
    data_root: str = "../shared/data",
    samples: Path = ROOT / "app" / "samples.npz",
) -> list[str]:
    """The commands that bring what depends on new weights up to date, for `installed` (the paths
    collect() wrote into dest), in this order: the routing figures the model card shows go into the
    JSON; the pose atlas is tied to the weights by sha256 (the page ignores a stale one);
    robustness.json's clean accuracy must equal the JSON's test accuracy (tests/test_checkpoint.py;
    the GPU scored it in fp32 as the CPU does, so a differing near-tie digit is rare); the app's
    samples keep digits the new weights' routing puts right; then the whole test suite."""
    shown = Path(os.path.relpath(dest))
    caps = shown / WEIGHTS
    commands = []
    if WEIGHTS in {Path(p).name for p in installed}:
        commands += [
            f"python -m capsnet.evaluate --data-root {data_root} --checkpoint {caps} --iterations 1 2 3 4 5 "
            "--routing-stats --write-meta --threads 2",
            f"python -m capsnet.atlas --data-root {data_root} --checkpoint {caps} --per-digit 500 --threads 2",
            f"python -m capsnet.robustness --data-root {data_root} --capsnet {caps} --cnn {shown / 'cnn_mnist.pt'} "
            f"--points 9 --curve-limit 2000 --threads 2 --out {shown / 'robustness.json'}",
            f"python {os.path.relpath(ROOT / 'tools' / 'make_samples.py')} --data-root {data_root} "
            f"--checkpoint {caps} --out {os.path.relpath(samples)}",
        ]
    commands.append("CI=true python -m pytest -q tests")
    return commands


def collect(folder: Path, runs: Path, dest: Path, check_only: bool = False) -> dict:
    """Verify, join, unpack and (unless check_only) install; returns what was found, for printing."""
    checked = verify_sums(folder)
    summary = read_json(folder / SUMMARY)
    if summary is None:
        raise IntegrityError(f"{folder / SUMMARY} is missing or not JSON")
    entry = summary.get("weights")
    if not entry:
        raise IntegrityError(f"{folder}: the plan brought back no weights (see {SUMMARY}: errors)")
    members = safe_extract(folder / ARCHIVE, runs)
    meta = read_json(runs / entry["json"])
    if meta is None:
        raise IntegrityError(f"{runs / entry['json']}: the weights' JSON is not in the archive")
    from capsnet.checkpoint import load_model
    from capsnet.model import count_parameters

    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".gpu_collect.", dir=dest))
    try:
        path = join_pieces(entry, folder, staging / WEIGHTS)
        loaded = f"CapsNet, {count_parameters(load_model(path)):,} parameters"
        check_json(path, meta)
        installed = []
        if not check_only:
            os.replace(path, dest / WEIGHTS)
            atomic_json(dest / "capsnet_mnist.json", meta)
            installed = [str(dest / WEIGHTS), str(dest / "capsnet_mnist.json")]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"checked": checked, "members": members, "loaded": loaded, "meta": meta, "installed": installed}


def model_card(summary: dict, meta: dict) -> str:
    """The facts for the README's model card and speed section, as text."""
    t, plan = summary.get("train", {}), summary.get("plan", {})
    start = plan.get("init_from")
    hist = meta.get("history", [])
    L = [
        f"== {WEIGHTS}: "
        + (
            f"fine-tuned from {start['path']} (sha256 {start['sha256'][:16]}...)" if start else "from scratch"
        ),
        f"trained on     {meta.get('device')}, torch {meta.get('torch_version')}, {meta.get('date')}; "
        f"plan {plan.get('elapsed_seconds')} s, GPU {(summary.get('machine', {}).get('nvidia_smi') or '-').splitlines()[-1]}",
        f"schedule       Adam, lr {meta.get('lr')}, {meta.get('lr_schedule')}, {t.get('time_limit_minutes')} min "
        f"limit, batch {meta.get('batch_size')}, seed {meta.get('seed')}, {meta.get('steps')} steps = "
        f"{meta.get('epochs')} epochs; {meta.get('val_images')} digits held out; speed {json.dumps(meta.get('speed'))}",
        f"command        {meta.get('command')}",
        f"accuracy       val {pct(meta.get('val_accuracy'))} (epoch {meta.get('chosen_epoch')} chosen on it), "
        f"test {pct(meta.get('test_accuracy'))} ({meta.get('test_errors')} errors), scored once at the end",
        f"speed          {meta.get('seconds_per_epoch')} s/epoch, {meta.get('train_seconds')} s in all; last epoch "
        f"{hist[-1].get('images_per_second') if hist else '-'} img/s (the first includes torch.compile)",
        "lineage        "
        + " -> ".join(f"{r.get('device')}: {r.get('epochs')} epochs" for r in meta.get("lineage", []))
        + f"; {meta.get('total_hours')} h in all",
    ]
    L += [f"error          {e[:600]}" for e in summary.get("errors", [])]
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools/gpu_collect.py", description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="where the device tool put the files of $OUT")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "gpu", help="where the archive is unpacked")
    p.add_argument("--dest", type=Path, default=ROOT / "checkpoints", help="where the weights are installed")
    p.add_argument("--check-only", action="store_true", help="verify and print; install nothing")
    a = p.parse_args(argv)
    try:
        found = collect(a.folder, a.runs, a.dest, a.check_only)
    except Exception as e:  # IntegrityError, CheckpointError from the loader, OS and tar errors
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(model_card(read_json(a.folder / SUMMARY), found["meta"]))
    print(
        f"\nverified {len(found['checked'])} files by {SUMS}; unpacked {len(found['members'])} into {a.runs}"
    )
    print(f"loads: {found['loaded']}")
    if found["installed"]:
        print("installed: " + ", ".join(found["installed"]))
        print("next, here, in this order (each reads the files installed above):")
        for command in follow_ups(found["installed"], a.dest):
            print(f"    {command}")
        print("then update the README's model card from the lines above")
    else:
        print("nothing installed (--check-only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
