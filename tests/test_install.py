"""`pip install .` gives an importable capsnet with its console scripts and the shipped weights,
outside the source tree.

The wheel is built and installed with no downloads: the build uses the test environment's
setuptools (--no-build-isolation) and the new virtual environment sees the test environment's
torch through a .pth file (--no-deps), so the test costs seconds, not a torch download.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = (
    "checkpoints/capsnet_mnist.pt",
    "checkpoints/capsnet_mnist.json",
    "checkpoints/pose_atlas.json",
)  # packaged as capsnet/weights/
pytestmark = pytest.mark.slow


def run(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, (
        f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def test_pip_install_gives_library_console_scripts_and_the_shipped_weights(tmp_path, tiny_mnist):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    site = Path(
        run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    (site / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch, numpy, ... from here
    # A copy of what the package is built from: setuptools writes build/ and *.egg-info beside it.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "capsnet", src / "capsnet", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", *SHIPPED):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, src / name)
    run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "-q", str(src)])  # fmt: skip

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CAPSNET_CHECKPOINT")}
    where = run([str(py), "-c", "import capsnet; print(capsnet.__file__); print(capsnet.__version__)"],
                cwd=tmp_path, env=env).stdout.split()  # fmt: skip
    assert Path(where[0]).is_relative_to(site), f"capsnet imported from {where[0]}, not the install"
    import capsnet

    assert where[1] == capsnet.__version__

    for script, words in (
        ("capsnet-evaluate", "--iterations"),
        ("capsnet-train", "--epochs"),
        ("capsnet-bench", ""),
        ("capsnet-atlas", "--per-digit"),
    ):
        out = run([str(venv / "bin" / script), "--help"], cwd=tmp_path, env=env).stdout
        assert out.startswith("usage:") and words in out, out

    requires = run([str(py), "-c", "from importlib.metadata import requires; print(requires('capsnet'))"],
                   cwd=tmp_path, env=env).stdout  # fmt: skip
    for dep in ("torch", "torchvision", "numpy", "tqdm", "pillow"):
        assert f"'{dep}" in requires, requires
    assert "streamlit" not in requires and "plotly" not in requires

    # The shipped weights come with the package: load_model() with no argument, from elsewhere,
    # classifies real MNIST test digits (the app's 40 samples) with them.
    classify = """
import json, sys
import numpy as np, torch
import capsnet
samples = np.load(sys.argv[1])
x = torch.from_numpy(samples["images"]).float().div(255).unsqueeze(1)  # (40, 1, 28, 28)
with torch.no_grad():
    predicted = capsnet.load_model()(x).prediction
right = int((predicted == torch.from_numpy(samples["labels"]).long()).sum())
print(json.dumps({"weights": str(capsnet.resolve_checkpoint()), "right": right, "n": len(x),
                  "meta": capsnet.checkpoint_meta()}))
"""
    got = json.loads(
        run([str(py), "-c", classify, str(ROOT / "app" / "samples.npz")], cwd=tmp_path, env=env).stdout
    )
    assert got["weights"] == str(site / "capsnet" / "weights" / "capsnet_mnist.pt")
    assert got["n"] == 40 and got["right"] >= 38, got  # the shipped weights get all 40; chance is ~4
    assert got["meta"] == json.loads((ROOT / SHIPPED[1]).read_text())

    # ...and so does the evaluation command with no --checkpoint.
    out = run([str(venv / "bin" / "capsnet-evaluate"), "--data-root", str(tiny_mnist), "--no-download",
               "--device", "cpu", "--json"], cwd=tmp_path, env=env).stdout  # fmt: skip
    result = json.loads(out.splitlines()[-1])
    assert result["checkpoint"] == got["weights"] and result["n"] == 32

    # The pose atlas is installed beside the weights it was measured on, and checks out against them.
    atlas = run([str(py), "-c", "from capsnet import atlas; a = atlas.load_atlas(); print(a['checkpoint_sha256'])"],
                cwd=tmp_path, env=env).stdout.strip()  # fmt: skip
    assert atlas == json.loads((ROOT / "checkpoints" / "pose_atlas.json").read_text())["checkpoint_sha256"]
