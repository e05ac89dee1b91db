"""The equivariance lab's sweep in numbers: one transform moved across its range, what CapsNet
(and the CNN) read at each step and which pose dimensions follow it. numpy in, numpy out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PoseDim:
    dim: int
    spread: float  # max - min of the dimension along the sweep
    r: float  # Pearson correlation with the swept parameter (0 for a constant dimension)


@dataclass(frozen=True)
class SweepSummary:
    digit: int  # the capsule followed: the prediction on the untransformed input
    steps: int
    capsnet_kept: int  # steps at which CapsNet still predicts `digit`
    cnn_kept: int | None  # the same for the CNN (None without one)
    length_range: tuple[float, float]  # |v_digit| along the sweep, min and max
    dims: list[PoseDim]  # the 16 pose dimensions, the most moved first


def pose_dims_ranked(values: np.ndarray, poses: np.ndarray) -> list[PoseDim]:
    """Pose dimensions (poses: (S, 16) of one capsule along a sweep of `values` (S,)) ordered by
    how far they move, with their correlation to the swept parameter."""
    values = np.asarray(values, dtype=np.float64)
    poses = np.asarray(poses, dtype=np.float64)
    spread = poses.max(axis=0) - poses.min(axis=0)
    dv = values - values.mean()
    dp = poses - poses.mean(axis=0)
    denom = np.sqrt((dv**2).sum() * (dp**2).sum(axis=0))
    r = np.divide(dv @ dp, denom, out=np.zeros(poses.shape[1]), where=denom > 1e-12)
    order = np.argsort(-spread, kind="stable")
    return [PoseDim(int(d), float(spread[d]), float(r[d])) for d in order]


def sweep_summary(
    values: np.ndarray,
    lengths: np.ndarray,
    poses: np.ndarray,
    digit: int,
    cnn_probs: np.ndarray | None = None,
) -> SweepSummary:
    """What a sweep shows, in numbers. lengths (S, 10), poses (S, 10, 16), cnn_probs (S, 10)."""
    lengths = np.asarray(lengths)
    kept = int((lengths.argmax(axis=1) == digit).sum())
    cnn_kept = None if cnn_probs is None else int((np.asarray(cnn_probs).argmax(axis=1) == digit).sum())
    own = lengths[:, digit]
    return SweepSummary(
        digit=int(digit),
        steps=len(lengths),
        capsnet_kept=kept,
        cnn_kept=cnn_kept,
        length_range=(float(own.min()), float(own.max())),
        dims=pose_dims_ranked(values, np.asarray(poses)[:, digit]),
    )
