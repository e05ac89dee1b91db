"""clean_pose: whatever a page sends as the pose component's state becomes 16 safe offsets."""

import math

import numpy as np
import pytest

from app.pose_sliders import NARROW, WIDE, clean_pose


def test_values_pass_through_on_the_grid():
    values = [0.05 * k - 0.25 for k in range(11)] + [0.0] * 5
    out, wide = clean_pose({"values": values, "wide": False}, 16)
    assert out.dtype == np.float32 and out.shape == (16,) and wide is False
    np.testing.assert_allclose(out, values, atol=1e-6)


@pytest.mark.parametrize("wide, limit", [(False, NARROW), (True, WIDE)])
def test_clamped_to_the_range_shown_and_rounded_to_the_step(wide, limit):
    out, got_wide = clean_pose({"values": [9.0, -9.0, 0.123, 0.1249, -0.026], "wide": wide}, 16)
    assert got_wide is wide
    np.testing.assert_allclose(out[:5], [limit, -limit, 0.1, 0.1, -0.05], atol=1e-6)
    assert np.all(out[5:] == 0)


@pytest.mark.parametrize(
    "raw",
    [None, "pose", 3, [], {}, {"values": "0.1"}, {"values": None, "wide": "yes"}, {"values": {"a": 1}}],
)
def test_unreadable_state_is_all_zero_and_narrow(raw):
    out, wide = clean_pose(raw, 16)
    assert out.shape == (16,) and np.all(out == 0) and wide is False


def test_bad_entries_become_zero_and_extra_ones_are_ignored():
    raw = {"values": ["0.2", math.nan, math.inf, -math.inf, True, None, [0.1], 0.2] + [0.05] * 20, "wide": 1}
    out, wide = clean_pose(raw, 16)
    assert wide is False  # only a real true widens the range
    np.testing.assert_allclose(
        out, [0.0] * 7 + [0.2] + [0.05] * 8, atol=1e-6
    )  # NaN and +-inf: 0, not the limit
    assert np.all(np.isfinite(out))
