"""Collect what tools/gpu_plan.sh brought back from the GPU: verify, join, unpack, install, print.

    .venv/bin/python tools/gpu_collect.py FOLDER                 # FOLDER: where the device tool put $OUT's files
    .venv/bin/python tools/gpu_collect.py FOLDER --check-only    # verify and print; install nothing

1. every file SHA256SUMS lists has its checksum (else: stop, nothing installed);
2. each weights file's pieces (summary.json lists them with their sha256) are joined and the whole
   checked, then loaded with the project's own loader (capsnet.load_model / baseline.load_baseline);
3. the archive of JSON and logs is unpacked into --runs (default runs/gpu/, git-ignored);
4. each JSON to install must describe the weights beside it (same epochs, test accuracy and seed as
   the metadata inside the weights file);
5. --dest (default checkpoints/) gets capsnet_mnist.pt/.json, and when the plan's step 3 ran,
   cnn_mnist.pt/.json and robustness.json (its checkpoint paths pointed at --dest); each written to
   a temp file and renamed;
6. the facts the README's model cards need are printed, and the commands that bring what depends
   on the new weights up to date (follow_ups: the pose atlas, robustness.json if the plan made none).
"""

from __future__ import annotations

import argparse
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
    IntegrityError,
    atomic_json,
    inner_meta,
    join_pieces,
    pct,
    read_json,
    verify_sums,
)


def safe_extract(archive: Path, dest: Path) -> list[str]:
    """Unpack regular files only, each inside dest (no absolute paths, no '..', no links)."""
    names = []
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        for m in tar.getmembers():
            parts = Path(m.name).parts
            if not m.isfile() or Path(m.name).is_absolute() or ".." in parts:
                raise IntegrityError(
                    f"{archive}: member {m.name!r} is not a plain file inside the archive; refused"
                )
            target = dest / m.name
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(m) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            names.append(m.name)
    return names


def check_loads(name: str, path: Path) -> str:
    """Load the joined file with the project's own loader; the architecture in words."""
    from capsnet.baseline import load_baseline
    from capsnet.checkpoint import load_model
    from capsnet.model import count_parameters

    if name.startswith("capsnet"):
        return f"CapsNet, {count_parameters(load_model(path)):,} parameters"
    cnn = load_baseline(path)
    return f"baseline CNN ({'pooled' if cnn.pooled else 'unpooled'}), {count_parameters(cnn):,} parameters"


def check_json(weights: Path, meta: dict) -> None:
    inner = inner_meta(weights)
    for key in ("epochs", "test_accuracy", "seed"):
        if inner.get(key) != meta.get(key):
            raise IntegrityError(
                f"{weights.name}: its JSON says {key}={meta.get(key)!r}, the weights' own metadata "
                f"{key}={inner.get(key)!r}: they are not from the same epoch; nothing was installed"
            )


def robustness_for(dest: Path, result: dict, metas: dict[str, dict]) -> tuple[dict, list[str]]:
    """robustness.json pointing at the installed files, and any clean accuracy that differs from the
    test accuracy its checkpoint's JSON records (tests/test_checkpoint.py checks they agree)."""
    result = json.loads(json.dumps(result))
    warnings = []
    shown = {}
    for model, name in (("capsnet", "capsnet_mnist.pt"), ("cnn", "cnn_mnist.pt")):
        path = dest / name
        try:
            shown[model] = str(path.resolve().relative_to(ROOT))
        except ValueError:
            shown[model] = str(path.resolve())
        old = result["models"][model]["checkpoint"]
        result["models"][model]["checkpoint"] = shown[model]
        result["command"] = result.get("command", "").replace(old, shown[model])
        clean = result["models"][model]["clean"]["accuracy"]
        recorded = metas[name].get("test_accuracy")
        if recorded is None or abs(clean - recorded) > 1e-9:
            warnings.append(
                f"robustness.json: {model} clean accuracy {clean} differs from {name.replace('.pt', '.json')}'s "
                f"test_accuracy {recorded} (tests/test_checkpoint.py wants them equal): both count in full fp32 "
                f"(capsnet.evaluate.fp32_numerics), so another cuDNN algorithm or batch size flipped a "
                f"near-tie digit; rerun "
                f"`python -m capsnet.robustness ... --json` here on the installed files, or accept and note it"
            )
    return result, warnings


def follow_ups(
    installed: list[str],
    dest: Path,
    data_root: str = "../shared/data",
    samples: Path = ROOT / "app" / "samples.npz",
) -> list[str]:
    """The commands that bring what depends on the new weights up to date, for `installed` (the
    paths collect() wrote into dest): the pose atlas is tied to the CapsNet weights by sha256 (the
    page ignores a stale one); robustness.json's clean accuracy must equal the CapsNet JSON's test
    accuracy, so where the plan brought none back it is measured here; the app's samples keep a
    digit that the new weights' routing puts right; then the whole test suite."""
    names = {Path(p).name for p in installed}
    shown = Path(os.path.relpath(dest))
    caps, cnn = shown / "capsnet_mnist.pt", shown / "cnn_mnist.pt"
    commands = []
    if "capsnet_mnist.pt" in names:
        commands.append(
            f"python -m capsnet.atlas --data-root {data_root} --checkpoint {caps} --per-digit 500 --threads 2"
        )
        if "robustness.json" not in names:
            commands.append(
                f"python -m capsnet.robustness --data-root {data_root} --capsnet {caps} --cnn {cnn} --points 9 "
                f"--curve-limit 2000 --threads 2 --out {shown / 'robustness.json'}"
            )
        commands.append(
            f"python {os.path.relpath(ROOT / 'tools' / 'make_samples.py')} --data-root {data_root} "
            f"--checkpoint {caps} --out {os.path.relpath(samples)}"
        )
    commands.append("CI=true python -m pytest -q tests")
    return commands


def collect(folder: Path, runs: Path, dest: Path, check_only: bool = False) -> dict:
    """Verify, join, unpack and (unless check_only) install; returns what was found, for printing."""
    checked = verify_sums(folder)
    summary = read_json(folder / SUMMARY)
    if summary is None:
        raise IntegrityError(f"{folder / SUMMARY} is missing or not JSON")
    weights = summary.get("weights", {})
    if "capsnet_mnist.pt" not in weights:
        raise IntegrityError(
            f"{folder}: the plan brought back no CapsNet weights (see {SUMMARY}: errors, skipped)"
        )
    members = safe_extract(folder / ARCHIVE, runs) if (folder / ARCHIVE).is_file() else []
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".gpu_collect.", dir=dest))
    found = {
        "checked": checked,
        "archive_members": len(members),
        "installed": [],
        "warnings": [],
        "metas": {},
    }
    try:
        staged = {}
        for name, entry in weights.items():
            path = join_pieces(entry, folder, staging / name)
            found.setdefault("loaded", {})[name] = check_loads(name, path)
            meta = read_json(runs / entry["json"])
            if meta is None:
                raise IntegrityError(f"{runs / entry['json']}: the JSON for {name} is not in the archive")
            check_json(path, meta)
            staged[name] = (path, meta)
            found["metas"][name] = meta
        if "cnn_mnist.pt" not in staged:
            found["warnings"].append(
                "no baseline CNN came back: the installed cnn_mnist.pt keeps its own (CPU) training budget, "
                "so tests/test_checkpoint.py (the CNN has the CapsNet's epochs, schedule and seed) fails and "
                "the lab would compare networks trained on different budgets; train the pooled CNN on the "
                "same schedule with the next GPU, or say so on the page and in that test"
            )
        robust = read_json(runs / "ship" / "robustness.json")
        if robust and {"capsnet_mnist.pt", "cnn_mnist.pt"} <= set(staged):
            robust, warnings = robustness_for(dest, robust, found["metas"])
            found["warnings"] += warnings
            found["robustness"] = robust
        if check_only:
            return found
        for name, (path, meta) in staged.items():
            os.replace(path, dest / name)
            atomic_json(dest / Path(name).with_suffix(".json").name, meta)
            found["installed"] += [str(dest / name), str(dest / Path(name).with_suffix(".json").name)]
        if "robustness" in found:
            atomic_json(dest / "robustness.json", found["robustness"])
            found["installed"].append(str(dest / "robustness.json"))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return found


def model_card(summary: dict, found: dict, runs: Path) -> str:
    """The facts for the README's model cards and speed section, as text."""
    meta = found["metas"]["capsnet_mnist.pt"]
    sh = summary.get("shipped", {})
    m = summary.get("machine", {})
    ev = read_json(runs / sh.get("dir", "?") / "evaluate.json") or {}
    plan = summary.get("capsnet_plan", {})
    L = [f"== checkpoints/capsnet_mnist.pt: seed {sh.get('seed')}, {sh.get('why')}"]
    L.append(f"trained on     {meta.get('device')}, torch {meta.get('torch_version')}, {meta.get('date')}")
    L.append(
        f"schedule       Adam, lr {meta.get('lr')} x {meta.get('lr_decay')} per epoch, batch {meta.get('batch_size')}, "
        f"seed {meta.get('seed')}, {meta.get('epochs')} of {plan.get('epochs')} planned epochs, "
        f"{meta.get('val_images')} digits held out for validation; speed {json.dumps(meta.get('speed'))}"
    )
    L.append(f"why            {plan.get('schedule_why')}")
    L.append(f"command        {meta.get('command')}")
    if ev:
        L.append(
            f"test accuracy  {pct(ev.get('accuracy'))} ({ev.get('errors')} errors in {ev.get('n'):,}) with "
            f"`python -m capsnet.evaluate` (3 iterations); the training JSON says {pct(meta.get('test_accuracy'))}"
        )
        L.append(
            "per class      "
            + ", ".join(f"{d}: {pct(a)}" for d, a in ev.get("per_class_accuracy", {}).items())
        )
    else:
        L.append(f"test accuracy  {pct(meta.get('test_accuracy'))} (training JSON; no evaluate.json)")
    hist = meta.get("history", [])
    L.append("per epoch      " + ", ".join(
        f"{h['epoch']}: val {pct(h.get('val_accuracy'))} test {pct(h.get('test_accuracy'))}" for h in hist))  # fmt: skip
    after = [h["seconds"] for h in hist[1:]]
    L.append(
        f"training time  {meta.get('seconds_per_epoch')} s/epoch ({sum(after) / len(after):.2f} s after the first, "
        f"which includes torch.compile: {hist[0]['seconds'] if hist else '-'} s); {meta.get('train_seconds')} s in all"
        if after else f"training time  {meta.get('seconds_per_epoch')} s/epoch, {meta.get('train_seconds')} s in all"
    )  # fmt: skip
    if it := meta.get("iteration_accuracy"):
        L.append("per iteration  " + ", ".join(f"{k}: {pct(v)}" for k, v in it.items()))
    if rs := meta.get("routing_stats"):
        L.append(
            f"routing stats  c to the predicted digit: median {rs['median_c_pred']:.4f}, 90th pct {rs['p90_c_pred']:.4f}; "
            f"{rs['frac_c_above_0_2']:.2%} above 0.2; entropy " + " -> ".join(f"{h:.4f}" for h in rs["mean_entropy_bits"])
        )  # fmt: skip
    for s in summary.get("seeds", []):
        L.append(
            f"seed {s['seed']}         {s.get('epochs', 0)} epochs, val {pct(s.get('val_accuracy'))}, test "
            f"{pct(s.get('test_accuracy_evaluate', s.get('test_accuracy')))}"
        )
    if t := summary.get("test_accuracy_over_seeds"):
        std = f"{t['std']:.4%}" if t.get("std") is not None else "- (one seed)"
        L.append(
            f"over seeds     test mean {pct(t['mean'])}, std {std}, n {t['n']}; target >= 99.70%: {sh.get('target_99_70_met')}"
        )
    if b := summary.get("bench"):
        L.append(
            f"bench train    usual {b['usual_images_per_second']:,.0f} img/s ({b['usual_seconds_per_epoch']:.2f} s/epoch), "
            f"ours {b['ours_images_per_second']:,.0f} img/s ({b['ours_seconds_per_epoch']:.2f} s/epoch): "
            f"{b['ratio']:.2f}x; floor {b.get('floor_seconds_per_epoch')} s/epoch at {b.get('peak_tflops')} TFLOP/s "
            f"(ours {b.get('ours_times_floor')}x it; {b.get('ours_times_measured_floor')}x the floor at the measured 788)"
        )
    if c := summary.get("concurrency"):
        L.append(
            f"concurrency    1 process {c['images_per_second_one']:,.0f} img/s, {c['processes']} together "
            f"{c['images_per_second_together']:,.0f} img/s (x{c['gain']:.2f}): {plan.get('seeds_why')}"
        )
    for key, label in (("cnn", "cnn (pooled)"), ("cnn_unpooled", "cnn unpooled")):
        if c := summary.get(key):
            L.append(
                f"{label:<14} {c.get('parameters', 0) or 0:,} parameters, {c.get('epochs', 0)} of {c.get('epochs_planned')} "
                f"epochs, val {pct(c.get('val_accuracy'))}, test {pct(c.get('test_accuracy'))}, "
                f"{c.get('seconds_per_epoch_after_first')} s/epoch after the first"
            )
    if r := found.get("robustness"):
        ms = r["models"]
        L.append(
            "robustness     " + ", ".join(f"{k}: clean {pct(v['clean']['accuracy'])}, random affine "
                                          f"{pct(v['random_affine']['accuracy'])}" for k, v in ms.items())
            + f" ({r.get('images')} digits, curves on {r.get('curve_images')})"
        )  # fmt: skip
    for name, r in (summary.get("robustness") or {}).items():
        if name != "robustness":
            L.append(f"{name:<14} " + json.dumps(r))
    L.append(f"machine        {m.get('device_name')}, torch {m.get('torch')}, python {m.get('python')}")
    for s in summary.get("skipped", []):
        L.append(f"skipped        {s}")
    for e in summary.get("errors", []):
        L.append(f"error          {e[:300]}")
    for w in found["warnings"]:
        L.append(f"WARNING        {w}")
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
    except (IntegrityError, OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # CheckpointError from the loaders, tar errors
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    summary = read_json(a.folder / SUMMARY)
    print(model_card(summary, found, a.runs))
    print(
        f"\nverified {len(found['checked'])} files by SHA256SUMS; unpacked {found['archive_members']} into {a.runs}"
    )
    for name, what in found.get("loaded", {}).items():
        print(f"loads: {name}: {what}")
    if found["installed"]:
        print("installed: " + ", ".join(found["installed"]))
        print("next, here, in this order (each reads the files installed above):")
        for command in follow_ups(found["installed"], a.dest):
            print(f"    {command}")
        print("then update the README's model cards from the lines above")
    else:
        print("nothing installed (--check-only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
