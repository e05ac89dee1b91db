"""A digit capsule's 16 pose dimensions: named by what each does (the pose atlas), and the poses
of the paper's Fig. 4, every dimension moved by each offset. numpy in, numpy out.
"""

from __future__ import annotations

import numpy as np

from capsnet.atlas import describe
from capsnet.model import DIGIT_DIM


def dimension_names(atlas: dict | None, digit: int) -> list[str]:
    """The 16 pose dimensions of digit capsule `digit` named by what each measurably does to that
    digit in the pose atlas (capsnet.atlas), e.g. "dim 12 · wider (+6.7 px per unit)"; without an
    atlas, just "dim 12"."""
    if atlas is None:
        return [f"dim {d}" for d in range(DIGIT_DIM)]
    return [f"dim {d} · {describe(cell)}" for d, cell in enumerate(atlas["digits"][digit])]


def perturbation_steps(wide: bool = False) -> np.ndarray:
    """The paper's Fig. 4 offsets: -0.25..0.25 in steps of 0.05 (11 values); wide: -0.5..0.5."""
    limit = 0.5 if wide else 0.25
    n = int(round(2 * limit / 0.05)) + 1
    return np.round(np.linspace(-limit, limit, n), 2)


def perturbed_poses(poses: np.ndarray, digit: int, steps: np.ndarray) -> np.ndarray:
    """Poses for the Fig. 4 grid: row d, column s = poses with v_digit[d] += steps[s].

    poses: (10, 16) -> (16 * len(steps), 10, 16), row-major (dimension, step).
    """
    poses = np.asarray(poses, dtype=np.float32)
    steps = np.asarray(steps, dtype=np.float32)
    out = np.repeat(poses[None], DIGIT_DIM * len(steps), axis=0)  # (16*S, 10, 16)
    dims = np.repeat(np.arange(DIGIT_DIM), len(steps))
    out[np.arange(len(out)), digit, dims] += np.tile(steps, DIGIT_DIM)
    return out
