"""`pip install .` gives an importable capsnet with its console scripts, outside the source tree.

The wheel is built and installed with no downloads: the build uses the test environment's
setuptools (--no-build-isolation) and the new virtual environment sees the test environment's
torch through a .pth file (--no-deps), so the test costs seconds, not a torch download.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, (
        f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def test_pip_install_gives_library_and_console_scripts(tmp_path):
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
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "-q", str(src)])  # fmt: skip

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = run([str(py), "-c", "import capsnet; print(capsnet.__file__); print(capsnet.__version__)"],
                cwd=tmp_path, env=env).stdout.split()  # fmt: skip
    assert Path(where[0]).is_relative_to(site), f"capsnet imported from {where[0]}, not the install"
    import capsnet

    assert where[1] == capsnet.__version__

    for script, words in (
        ("capsnet-evaluate", "--iterations"),
        ("capsnet-train", "--epochs"),
        ("capsnet-bench", ""),
    ):
        out = run([str(venv / "bin" / script), "--help"], cwd=tmp_path, env=env).stdout
        assert out.startswith("usage:") and words in out, out

    requires = run([str(py), "-c", "from importlib.metadata import requires; print(requires('capsnet'))"],
                   cwd=tmp_path, env=env).stdout  # fmt: skip
    for dep in ("torch", "torchvision", "numpy", "tqdm", "pillow"):
        assert f"'{dep}" in requires, requires
    assert "streamlit" not in requires and "plotly" not in requires
