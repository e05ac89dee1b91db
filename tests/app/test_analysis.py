"""The app's compute helpers (app/pixel_arrays.py, app/pose_measures.py, app/routing_measures.py) on
inputs small enough to check by hand."""

import numpy as np
import pytest
from floats import assert_close_f32

from app import pixel_arrays, pose_measures, routing_measures


def test_perturbation_steps_match_the_paper():
    steps = pose_measures.perturbation_steps()
    assert len(steps) == 11
    assert steps[0] == -0.25 and steps[-1] == 0.25 and steps[5] == 0.0
    np.testing.assert_allclose(np.diff(steps), 0.05)
    wide = pose_measures.perturbation_steps(wide=True)
    assert len(wide) == 21 and wide[0] == -0.5 and wide[-1] == 0.5


def test_entropy_uniform_and_one_hot():
    uniform = np.full((1, 1152, 10), 0.1)
    one_hot = np.zeros((1, 1152, 10))
    one_hot[0, :, 3] = 1.0
    half = np.zeros((1, 1152, 10))
    half[0, :, :2] = 0.5
    h = routing_measures.coupling_entropy(np.concatenate([uniform, half, one_hot]))
    np.testing.assert_allclose(h, [np.log2(10), 1.0, 0.0], atol=1e-9)


def test_type_position_map_uses_index_type_row_col():
    c = np.zeros(1152)
    u = np.ones(1152)
    i = 5 * 36 + 2 * 6 + 4  # type 5, row 2, col 4
    c[i] = 0.5
    u[i] = 0.8
    m = routing_measures.type_position_map(c, u)
    assert m.shape == (32, 6, 6)
    assert m[5, 2, 4] == pytest.approx(0.4)
    assert m.sum() == pytest.approx(0.4)


def test_evidence_map_covers_exactly_the_receptive_field():
    c = np.zeros(1152)
    c[1 * 36 + 1 * 6 + 3] = 1.0  # type 1, row 1, col 3 -> input rows 2..18, cols 6..22
    ev = routing_measures.evidence_map(c)
    assert ev.shape == (28, 28)
    inside = ev[2:19, 6:23]
    assert (inside > 0).all()
    assert ev.sum() == pytest.approx(inside.sum())
    # pixel (2, 6) lies in the fields of rows 0-1 and cols 0-3: 8 fields share it
    assert ev[2, 6] == pytest.approx(1 / 8)


def test_evidence_map_uniform_is_flat_where_covered():
    ev = routing_measures.evidence_map(np.full(1152, 0.1))
    # every position carries 32 types * 0.1 = 3.2; averaging over covering fields keeps 3.2
    np.testing.assert_allclose(ev[:27, :27], 3.2)
    assert (ev[27, :] == 0).all() and (ev[:, 27] == 0).all()  # no field reaches row/col 27


def test_perturbed_poses_layout():
    poses = np.arange(160, dtype=np.float32).reshape(10, 16)
    steps = pose_measures.perturbation_steps()
    batch = pose_measures.perturbed_poses(poses, digit=4, steps=steps)
    assert batch.shape == (176, 10, 16)
    # row-major (dim, step): entry 3*11 + 10 moved dim 3 by +0.25 only
    diff = batch[3 * 11 + 10] - poses
    assert diff[4, 3] == pytest.approx(0.25)
    assert np.count_nonzero(diff) == 1
    np.testing.assert_allclose(batch[5], poses)


def test_stitch_places_images_row_major():
    images = np.stack([np.full((2, 3), k) for k in range(6)])
    g = pixel_arrays.stitch(images, rows=2, cols=3)
    assert g.shape == (4, 9)
    assert g[0, 0] == 0 and g[0, 8] == 2 and g[3, 0] == 3 and g[3, 8] == 5
    with pytest.raises(ValueError):
        pixel_arrays.stitch(images, rows=4, cols=4)
    grid = pixel_arrays.stitch(np.zeros((176, 28, 28)), 16, 11)
    assert grid.shape == (16 * 28, 11 * 28)


def test_image_helpers():
    img = np.array([[0.0, 1.0], [0.5, 2.0]])
    up = pixel_arrays.upscale(img, 3)
    assert up.shape == (6, 6) and up[5, 5] == 2.0
    assert pixel_arrays.upscale(np.zeros((2, 2, 3)), 2).shape == (4, 4, 3)
    np.testing.assert_array_equal(pixel_arrays.to_uint8(img), [[0, 255], [128, 255]])
    rgb = pixel_arrays.diverging_rgb(np.array([[-1.0, 0.0, 1.0]]))
    assert rgb.shape == (1, 3, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 1]) == (255, 255, 255)
    assert rgb[0, 2, 0] > rgb[0, 2, 2]  # positive: red
    assert rgb[0, 0, 2] > rgb[0, 0, 0]  # negative: blue


def test_agreement_shares_add_up_to_the_length_of_s():
    """On the real model: sum_i c_ij (u_hat_j|i . v_j/|v_j|) = |s_j|, recovered from |v_j| = |s|^2/(1+|s|^2)."""
    import torch

    import capsnet

    torch.manual_seed(0)
    model = capsnet.CapsNet().eval()
    with torch.no_grad():
        out = model(torch.rand(1, 1, 28, 28), iterations=3, trace=True)
    shares = routing_measures.agreement_shares(
        out.coupling[:, 0].numpy(), out.u_hat[0].numpy(), out.poses_per_iter[:, 0].numpy()
    )
    assert shares.shape == (3, 1152, 10)
    v = out.lengths_per_iter[:, 0].double().numpy()  # (3, 10)
    s_len = np.sqrt(v / (1 - v))
    np.testing.assert_allclose(shares.sum(axis=1), s_len, rtol=1e-3)
    # in hand-made numbers: a vote along v counts fully, one against it negatively
    u_hat = np.zeros((1152, 10, 16))
    u_hat[0, 3, 0], u_hat[1, 3, 0] = 2.0, -1.0
    v_ = np.zeros((1, 10, 16))
    v_[0, 3, 0] = 0.5
    got = routing_measures.agreement_shares(np.full((1, 1152, 10), 0.1), u_hat, v_)
    assert_close_f32(got[0, :2, 3], [0.2, -0.1], 1)  # float64 sums returned as float32: one rounding
