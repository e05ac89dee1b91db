"""How close two float32 results must be, in float32 ulps, when they need not be bit for bit equal.

A float32 sum depends on the order of its terms, and the order is the kernel's: the thread count,
the SIMD width (AVX2's 8 lanes, AVX-512's 16) and AMX tiles each change it, so the same forward
pass in another process, thread or batch size, or on another CPU, can differ in the last bits. The
error scales with the magnitude of the terms, not of each result (an element near 0 from
cancellation is off by as much as the largest), so the tolerance is in ulps of the largest |want|.
"""

from __future__ import annotations

import numpy as np


def ulp32(want) -> float:
    """One float32 ulp at the largest |want|: the gap between it and the next float32."""
    return float(np.spacing(np.float32(np.abs(np.asarray(want, dtype=np.float64)).max())))


def assert_close_f32(got, want, ulps: float, scale=None) -> None:
    """|got - want| <= `ulps` float32 ulps of the largest |value| of `scale` (default: of `want`;
    give the whole result when `want` is a slice of it), element by element."""
    atol = ulps * ulp32(want if scale is None else scale)
    np.testing.assert_allclose(
        np.asarray(got, dtype=np.float64),
        np.asarray(want, dtype=np.float64),
        rtol=0,
        atol=atol,
        err_msg=f"more than {ulps} float32 ulps ({atol:.3g}) apart",
    )


# The poses of one CapsNet forward pass, in ulps of the input's largest |pose| (all 10 capsules):
# on the 40 shipped samples with 1 to 5 routing iterations a float32 pass is within 24 of a
# float64 one, so two float32 passes are within 48 (seen between an AMX CPU and an AVX2 one: 8).
# 64 ulps is about 1e-6 at |pose| 0.2-0.4: a pose scaled by 1.00001 is beyond it.
FORWARD_ULPS = 64
