"""Fixtures for the app's tests: a random-weight checkpoint, so no test needs the trained one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    import torch

    import capsnet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "random.pt"
    capsnet.save_checkpoint(path, capsnet.CapsNet())
    return path


@pytest.fixture
def app_env(random_checkpoint, monkeypatch) -> Path:
    monkeypatch.setenv("CAPSNET_CHECKPOINT", str(random_checkpoint))
    return random_checkpoint
