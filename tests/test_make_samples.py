"""tools/make_samples.py: the app's 40 sample digits, and the one among them that routing puts right."""

from pathlib import Path

import numpy as np
import pytest

import capsnet
from tools import make_samples

ROOT = Path(__file__).resolve().parents[1]


def test_a_pick_that_routing_already_puts_right_keeps_the_set():
    labels = np.array([0, 1, 0, 1, 2, 2, 0, 1])
    idx = np.array([0, 2, 1, 3, 4, 5])  # ordered by class: 0, 0, 1, 1, 2, 2
    out, what = make_samples.keep_a_routing_fix(idx, labels, np.array([7, 3]))
    assert out is idx and "test image 3 (a 1) is already one" in what


def test_the_clearest_fix_takes_the_last_place_of_its_own_class_and_the_order_holds():
    labels = np.array([0, 1, 0, 1, 2, 2, 0, 1, 1])
    idx = np.array([2, 6, 1, 3, 4, 5])  # class 0: 2, 6; class 1: 1, 3; class 2: 4, 5
    out, what = make_samples.keep_a_routing_fix(idx, labels, np.array([0, 8]))  # 0 is the clearest
    # Test image 0 (a 0) replaces class 0's last pick (6); class 0 is re-sorted; the rest untouched.
    assert out.tolist() == [0, 2, 1, 3, 4, 5]
    assert idx.tolist() == [2, 6, 1, 3, 4, 5]  # the input is not changed in place
    assert what == "test image 0 (a 0, put right by routing) replaces test image 6"
    with pytest.raises(SystemExit, match="no test digit"):
        make_samples.keep_a_routing_fix(idx, labels, np.array([], dtype=np.int64))


def test_the_shipped_samples_are_what_the_tool_makes_for_the_shipped_weights(real_mnist, tmp_path, capsys):
    """After a retrain the sample set is remade for the new weights (tests/app/test_apptest.py needs
    a sample that routing puts right); this fails until it is, and says the command."""
    out = tmp_path / "samples.npz"
    checkpoint = capsnet.DEFAULT_CHECKPOINT
    make_samples.main(["--data-root", str(real_mnist), "--checkpoint", str(checkpoint), "--out", str(out)])
    printed = capsys.readouterr().out
    made, shipped = np.load(out), np.load(ROOT / "app" / "samples.npz")
    for key in ("images", "labels", "test_index"):
        assert np.array_equal(made[key], shipped[key]), (
            f"app/samples.npz is not what `python tools/make_samples.py --data-root DATA --checkpoint "
            f"{checkpoint.relative_to(ROOT)}` makes ({printed.strip()}): run it"
        )


def test_routing_fixes_are_the_digits_routing_puts_right_clearest_first(real_mnist):
    """Against two plain forwards (1 and 3 iterations, untraced) on the first 2000 test digits as the
    page prepares them, and the MNIST labels."""
    import torch

    from capsnet.data import load_mnist
    from capsnet.preprocess import to_mnist

    images, labels = (t.numpy()[:2000] for t in load_mnist(str(real_mnist), train=False, download=False))
    checkpoint = capsnet.DEFAULT_CHECKPOINT
    fixes = make_samples.routing_fixes(images, labels, checkpoint)
    net = capsnet.load_model(checkpoint)
    x = torch.from_numpy(np.stack([to_mnist(img) for img in images])).float().reshape(-1, 1, 28, 28)
    with torch.no_grad():
        plain = torch.cat([net(x[i : i + 500], iterations=1).lengths for i in range(0, 2000, 500)]).numpy()
        routed = torch.cat([net(x[i : i + 500], iterations=3).lengths for i in range(0, 2000, 500)]).numpy()
    expected = np.flatnonzero((plain.argmax(1) != labels) & (routed.argmax(1) == labels))
    assert len(expected) and sorted(fixes.tolist()) == expected.tolist()
    top2 = np.sort(routed[fixes], axis=1)[:, -2:]
    lead = top2[:, 1] - top2[:, 0]
    assert np.all(np.diff(lead) <= 1e-6)  # clearest first
