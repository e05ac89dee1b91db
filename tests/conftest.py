import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/mnist_files.py

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def model():
    torch.manual_seed(0)
    from capsnet import CapsNet

    return CapsNet().eval()


@pytest.fixture
def tiny_mnist(tmp_path):
    from mnist_files import make_mnist_root

    return make_mnist_root(tmp_path / "data")


@pytest.fixture
def one_thread():
    """One torch thread: these steps are small, and two threads on a shared 2-core box mostly wait."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
