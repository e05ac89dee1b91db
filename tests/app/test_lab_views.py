"""The equivariance lab's pure parts: the sweep's numbers (app/sweep_measures.py) and sentences
(app/sentences.py), and its pictures (app/images.py, app/figures.py), on hand-made inputs whose
answers are known."""

import numpy as np
import pytest
from test_images import colour_mask

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


def test_bar_chart_without_thresholds_for_probabilities():
    probs = np.full(10, 0.02)
    probs[4] = 0.82
    img = I.bar_chart_image(probs, 4, ylabel="probability", thresholds=False)
    assert not (colour_mask(img, P.THRESHOLD).sum(1) > img.shape[1] * 0.3).any()  # no m+ / m- lines
    assert colour_mask(img, P.WINNER).any()


def test_sweep_lines_draw_the_followed_digit_and_the_marker():
    values = np.linspace(-60, 60, 31)
    series = np.full((31, 10), 0.05)
    series[:, 6] = np.linspace(0.9, 0.1, 31)  # the followed digit falls from left to right
    img = I.sweep_lines_image(values, series, 6, "rotation, degrees", "length |v_j|", marker=30.0)
    ys, xs = np.nonzero(colour_mask(img, P.WINNER))
    x0, x1 = xs.min(), xs.max()  # the line's ends (x1 includes the "6" label printed at its end)
    assert x1 - x0 > img.shape[1] * 0.6  # across the whole range
    q1, q3 = x0 + (x1 - x0) // 4, x0 + 3 * (x1 - x0) // 4
    assert (
        ys[xs == q1].mean() < ys[xs == q3].mean() - img.shape[0] * 0.2
    )  # high on the left, low on the right
    # The marker: a dashed vertical line 3/4 of the way along the plot area.
    axis = colour_mask(img, "#787c87")
    cols = np.nonzero(axis.sum(0) > img.shape[0] * 0.2)[0]
    assert len(cols) and abs((cols.mean() - x0) / (x1 - x0) - 0.75) < 0.03
    assert np.abs(np.diff(axis[:, cols].any(1).astype(int))).sum() >= 20  # dashed, not solid
    series[:, 2] = 0.5  # another digit ends above the followed 6: the thick line is still 6's
    img2 = I.sweep_lines_image(values, series, 6, "x", "y")
    assert np.ptp(np.nonzero(colour_mask(img2, P.WINNER))[0]) > img2.shape[0] * 0.4
    without = I.sweep_lines_image(values, series, 6, "x", "y", marker=None)
    assert not (colour_mask(without, "#787c87").sum(0) > img.shape[0] * 0.2).any()


def test_pose_change_image_is_white_where_nothing_changed_and_signed_elsewhere():
    change = np.zeros((31, 16))
    change[:, 2] = np.linspace(-0.1, 0.1, 31)  # dimension 2 grows along the sweep
    img = I.pose_change_image(change, np.linspace(-60, 60, 31), 0.1, px=14, px_w=24)
    left, top = 50, 4
    row = lambda d: top + d * 14 + 7  # noqa: E731
    col = lambda k: left + k * 24 + 12  # noqa: E731
    assert (img[row(0), col(5)] >= 245).all()  # an unchanged dimension is white (RdBu's #f7f7f7)
    assert (img[row(2), col(15)] >= 245).all()  # the identity column of dimension 2 too
    r, g, b = img[row(2), col(30)].astype(int)
    assert r > b + 50 and r > g + 50  # +0.1 at the top of the range: (dark) red
    r, g, b = img[row(2), col(0)].astype(int)
    assert b > r + 50  # -0.1: (dark) blue
    # The range is the one given: with limit 0.2, +0.1 is half-way to the end, a lighter red.
    half = I.pose_change_image(change, np.linspace(-60, 60, 31), 0.2, px=14, px_w=24)
    full_px, half_px = img[row(2), col(30)].astype(int), half[row(2), col(30)].astype(int)
    assert half_px[1] > full_px[1] + 40 and half_px[2] > full_px[2] + 40
    assert img.shape == (4 + 16 * 14 + 20, 50 + 31 * 24 + 4, 3)
    assert (img[row(2), left - 1] == 255).all() and (img[row(2), left] != 255).any()


def test_image_strip_lays_out_every_step_in_named_rows():
    S = 31
    inputs = np.zeros((S, 28, 28))
    recon = np.zeros((S, 28, 28))
    inputs[7, 10:18, 10:18] = 1.0  # one bright square in step 7 of the first row
    img = I.image_strip([inputs, recon], ["input", "decoded v2"], np.linspace(-60, 60, S), factor=2)
    cell, gap, left, top = 56, 2, 150, 30
    assert img.shape[:2] == (top + 2 * (cell + gap), left + S * (cell + gap))
    for r in range(2):
        for k in range(S):
            y, x = top + r * (cell + gap), left + k * (cell + gap)
            white = int((img[y : y + cell, x : x + cell] == 255).all(-1).sum())
            assert white == ((8 * 2) ** 2 if (r, k) == (0, 7) else 0), (r, k)  # the 8x8 square, doubled
    block = np.zeros((S, 28, 28))
    block[7, 10:18, 4:8] = 1.0  # 8 rows x 4 columns: not transposed
    img = I.image_strip([block], ["input"], np.linspace(-60, 60, S), factor=2)
    white = (img[top : top + cell, left + 7 * (cell + gap) : left + 7 * (cell + gap) + cell] == 255).all(-1)
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


def test_accuracy_curves_draw_both_models_and_keep_their_labels_apart():
    values = np.linspace(-60, 60, 9)
    caps = np.array([0.3, 0.6, 0.85, 0.97, 0.99, 0.97, 0.85, 0.6, 0.30])
    cnn = caps + 0.005  # nearly the same line: the end labels must not overlap
    img = I.accuracy_curves_image(values, caps, cnn, "rotation, degrees")
    win = colour_mask(img, P.WINNER)
    other = colour_mask(img, P.OTHER)
    assert win.sum() > 200 and other.sum() > 50
    right = img.shape[1] - 56 * 2 + 12  # the label margin (at twice the size), past the last dot
    rows_w = np.nonzero(win[:, right:].any(1))[0]
    rows_o = np.nonzero(other[:, right:].any(1))[0]
    assert len(rows_w) and len(rows_o)
    assert rows_o.max() < rows_w.min() or rows_w.max() < rows_o.min()  # "CapsNet" and "CNN" apart
    ys, xs = np.nonzero(win[:, :right])
    assert ys[xs == xs.min()].mean() > ys[np.abs(xs - np.median(xs)) < 3].mean()  # low at -60, high at 0
