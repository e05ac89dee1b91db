"""The equivariance lab's pure parts: the sweep's numbers (app/sweep_measures.py) and sentences
(app/sentences.py), and its pictures (app/images.py, app/figures.py), on hand-made inputs whose
answers are known."""

import numpy as np
import pytest

from app import figures as F
from app import images as I
from app import palette as P
from app import sentences, sweep_measures


def test_pose_dims_are_ranked_by_how_far_they_move_with_their_correlation():
    values = np.linspace(-60, 60, 31)
    poses = np.zeros((31, 16))
    poses[:, 3] = 0.004 * values  # spread 0.48, follows the parameter
    poses[:, 5] = -0.002 * values  # spread 0.24, against it
    poses[:, 9] = 0.1 * np.cos(np.deg2rad(values) * 3)  # moves, uncorrelated (symmetric)
    poses[:, 0] = 0.7  # constant: spread 0, r 0
    dims = sweep_measures.pose_dims_ranked(values, poses)
    assert [d.dim for d in dims[:3]] == [3, 5, 9]
    assert dims[0].spread == pytest.approx(0.48) and dims[0].r == pytest.approx(1.0)
    assert dims[1].spread == pytest.approx(0.24) and dims[1].r == pytest.approx(-1.0)
    assert abs(dims[2].r) < 1e-9
    zero = next(d for d in dims if d.dim == 0)
    assert zero.spread == 0 and zero.r == 0
    assert all(d.r == 0 for d in dims if d.spread == 0)  # all-zero dimensions too: no 0/0
    assert sorted(d.dim for d in dims) == list(range(16))


def test_sweep_summary_counts_the_steps_each_model_keeps_the_digit():
    values = np.arange(5.0)
    lengths = np.full((5, 10), 0.1)
    lengths[:, 2] = [0.9, 0.8, 0.6, 0.3, 0.2]
    lengths[3:, 7] = 0.5  # capsule 7 wins the last two steps
    probs = np.full((5, 10), 0.05)
    probs[:4, 2] = 0.55  # the CNN keeps 2 for four steps
    probs[4, 1] = 0.55
    poses = np.zeros((5, 10, 16))
    poses[:, 2, 4] = values  # capsule 2's dimension 4 follows the parameter
    poses[:, 7, 1] = 10 * values  # another capsule's pose is not the followed one's
    s = sweep_measures.sweep_summary(values, lengths, poses, 2, probs)
    assert (s.digit, s.steps, s.capsnet_kept, s.cnn_kept) == (2, 5, 3, 4)
    assert s.length_range == (pytest.approx(0.2), pytest.approx(0.9))
    assert s.dims[0].dim == 4 and s.dims[0].spread == 4.0
    assert sweep_measures.sweep_summary(values, lengths, poses, 2).cnn_kept is None

    text = sentences.sweep_sentence(s, "rotation", "-60° to 60°")
    assert text.startswith("Across rotation from -60° to 60°, CapsNet reads 2")
    assert "reads 2 for 3 of 5 steps; the CNN for 4" in text
    assert (
        text.count("(spread ") == 3
        and sentences.sweep_sentence(s, "rotation", "x", top=1).count("(spread ") == 1
    )
    assert "from 0.20 to 0.90" in text and "dimensions 4 (spread 4.00, r = +1.00)" in text
    assert "CNN" not in sentences.sweep_sentence(
        sweep_measures.sweep_summary(values, lengths, poses, 2), "scale", "0.5 to 1.5"
    )


def test_sweep_figure_draws_the_sweeps_numbers_on_one_axis():
    """The lab's sweep chart plots the sweep's own numbers: every digit's length and probability
    against the swept values, the followed digit thick in the winner colour; the pose strip is the
    change from the identity on the diverging scale -limit..+limit; the marker sits at the slider."""
    values = np.linspace(-60, 60, 31)
    lengths = np.random.default_rng(0).uniform(0, 1, (31, 10)).astype(np.float32)
    probs = np.random.default_rng(1).uniform(0, 1, (31, 10))
    change = np.random.default_rng(2).normal(0, 0.05, (31, 16))
    fig = F.sweep_figure(values, lengths, probs, change, 0.1, 6, "rotation, degrees", marker=30.0)
    lines = [t for t in fig.data if t.type == "scatter"]
    assert len(lines) == 20
    by_axis = {}
    for t in lines:
        by_axis.setdefault(t.yaxis, {})[int(t.name.split()[-1])] = t
    caps, cnn = by_axis["y"], by_axis["y2"]
    for j in range(10):
        np.testing.assert_array_equal(caps[j].x, values)
        np.testing.assert_array_equal(caps[j].y, lengths[:, j])
        np.testing.assert_array_equal(cnn[j].y, probs[:, j])
    assert caps[6].line.color == P.WINNER and caps[6].line.width > caps[0].line.width
    (heat,) = [t for t in fig.data if t.type == "heatmap"]
    np.testing.assert_allclose(heat.z, change.T.astype(np.float32))
    assert (heat.zmin, heat.zmax, heat.zmid) == (-0.1, 0.1, 0.0)
    assert heat.colorscale[0][1] == P.DIVERGING[0][1] and heat.colorscale[-1][1] == P.DIVERGING[-1][1]
    assert list(heat.y) == [f"dim {d}" for d in range(16)]
    assert {s.x0 for s in fig.layout.shapes} == {30.0} and len(fig.layout.shapes) == 3  # "now", every row
    without = F.sweep_figure(values, lengths, None, change, 0.1, 6, "x", marker=None)
    assert len([t for t in without.data if t.type == "scatter"]) == 10 and not without.layout.shapes


def test_image_strip_lays_out_every_step_in_rows_without_text():
    S = 31
    inputs = np.zeros((S, 28, 28))
    recon = np.zeros((S, 28, 28))
    inputs[7, 10:18, 10:18] = 1.0  # one bright square in step 7 of the first row
    img = I.image_strip([inputs, recon], factor=2)
    cell, gap = 56, 2
    assert img.shape[:2] == (2 * (cell + gap) - gap, S * (cell + gap) - gap)  # no room for labels
    for r in range(2):
        for k in range(S):
            y, x = r * (cell + gap), k * (cell + gap)
            white = int((img[y : y + cell, x : x + cell] == 255).all(-1).sum())
            assert white == ((8 * 2) ** 2 if (r, k) == (0, 7) else 0), (r, k)  # the 8x8 square, doubled
    block = np.zeros((S, 28, 28))
    block[7, 10:18, 4:8] = 1.0  # 8 rows x 4 columns: not transposed
    img = I.image_strip([block], factor=2)
    white = (img[0:cell, 7 * (cell + gap) : 7 * (cell + gap) + cell] == 255).all(-1)
    assert white[20:36, 8:16].all() and white.sum() == 16 * 8


def robustness_result(caps: float, cnn: float) -> dict:
    return {"images": 10_000, "models": {"capsnet": {"random_affine": {"accuracy": caps}},
                                          "cnn": {"random_affine": {"accuracy": cnn}}}}  # fmt: skip


def test_robustness_sentence_says_who_keeps_more_digits_from_the_numbers():
    text = sentences.robustness_sentence(robustness_result(0.8958, 0.9021))
    assert "CapsNet reads 89.58% and the CNN 90.21%" in text and "within 0.63 points" in text
    assert "no advantage for capsules" in text and "10,000 MNIST test digits" in text
    assert "CapsNet keeps 13.0 points more" in sentences.robustness_sentence(robustness_result(0.79, 0.66))
    assert "the CNN keeps 2.5 points more" in sentences.robustness_sentence(robustness_result(0.80, 0.825))


def test_accuracy_curves_figure_plots_each_familys_measured_accuracies():
    values = np.linspace(-60, 60, 9)
    caps = np.array([0.3, 0.6, 0.85, 0.97, 0.99, 0.97, 0.85, 0.6, 0.30])
    cnn = caps + 0.005
    curves = {"rotation": (values, caps, cnn), "scale": (np.linspace(0.5, 1.5, 5), caps[:5], cnn[:5])}
    fig = F.accuracy_curves_figure(curves, {"rotation": "rotation, degrees", "scale": "scale"})
    named = {(t.name, t.xaxis): t for t in fig.data}
    np.testing.assert_array_equal(named["CapsNet", "x"].y, caps)
    np.testing.assert_array_equal(named["CNN", "x"].y, cnn)
    np.testing.assert_array_equal(named["CapsNet", "x2"].x, np.linspace(0.5, 1.5, 5))
    assert named["CapsNet", "x"].line.color == P.WINNER and named["CNN", "x"].line.color == P.OTHER
    assert fig.layout.xaxis.title.text == "rotation, degrees" and fig.layout.xaxis2.title.text == "scale"
    assert sum(t.showlegend for t in fig.data) == 2  # one legend entry per model
