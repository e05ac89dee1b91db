import gzip
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/mnist_files.py

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `from tools import ...`, also under a bare `pytest`


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


# Real MNIST for the tests that check accuracy claims: $CAPSNET_DATA, else the shared data folder
# beside the checkout (where CI has it). Read only.
DATA_ENV = "CAPSNET_DATA"
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@pytest.fixture(scope="session")
def real_mnist(tmp_path_factory) -> Path:
    """A folder holding MNIST/raw with the four uncompressed IDX files torchvision reads: the data
    folder itself when it has them, else its .gz files unpacked into a temp folder. Missing data
    skips (saying how to point at it), and fails under CI=true."""
    root = Path(os.environ.get(DATA_ENV) or ROOT.parent / "shared" / "data")
    raw = root / "MNIST" / "raw"
    if all((raw / name).is_file() for name in MNIST_FILES):
        return root
    if all((raw / f"{name}.gz").is_file() for name in MNIST_FILES):
        unpacked = tmp_path_factory.mktemp("mnist")
        (unpacked / "MNIST" / "raw").mkdir(parents=True)
        for name in MNIST_FILES:
            with gzip.open(raw / f"{name}.gz") as src:
                (unpacked / "MNIST" / "raw" / name).write_bytes(src.read())
        return unpacked
    message = (
        f"real MNIST not found: no {raw}/*-ubyte[.gz]. Set {DATA_ENV} to a folder holding MNIST/raw "
        f"(torchvision's layout) to run this test (${DATA_ENV} is {os.environ.get(DATA_ENV) or 'not set'}; "
        "without it the shared data folder beside the checkout is used)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
