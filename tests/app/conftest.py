"""Fixtures for the app's tests: a random-weight checkpoint, and the browser's whereabouts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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


@pytest.fixture
def shipped(monkeypatch) -> Path:
    """The page on the shipped weights."""
    import capsnet

    monkeypatch.setenv("CAPSNET_CHECKPOINT", str(capsnet.DEFAULT_CHECKPOINT))
    return capsnet.DEFAULT_CHECKPOINT


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium for the browser tests. Skipped without it, except under CI=true, where a
    missing browser is a failure."""
    from tools.browser_driver import CHROMIUM

    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM}: apt-get update && apt-get install -y chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium):
    """One Chromium per test module (Debian's, launched as tools/browser_driver.launch does)."""
    from playwright.sync_api import sync_playwright

    from tools.browser_driver import launch

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()
