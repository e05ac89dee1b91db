"""Numbers the app derives from one traced forward pass: numpy in, numpy out, no Streamlit.

Shapes use the model's axis names: T = routing iterations, i = primary capsule (1152),
j = digit capsule (10). Primary index i = type * 36 + row * 6 + col.
"""

from __future__ import annotations

import numpy as np

from capsnet.model import DIGIT_DIM, NUM_DIGITS, NUM_PRIMARY, receptive_field  # noqa: F401 (re-exported)
from capsnet.model import NUM_PRIMARY_TYPES as NUM_TYPES
from capsnet.model import PRIMARY_GRID as GRID


def perturbation_steps(wide: bool = False) -> np.ndarray:
    """The paper's Fig. 4 offsets: -0.25..0.25 in steps of 0.05 (11 values); wide: -0.5..0.5."""
    limit = 0.5 if wide else 0.25
    n = int(round(2 * limit / 0.05)) + 1
    return np.round(np.linspace(-limit, limit, n), 2)


def coupling_entropy(coupling: np.ndarray) -> np.ndarray:
    """Mean entropy (bits) of c_i. over primary capsules, per iteration: (T, 1152, 10) -> (T,).

    Uniform c (iteration 1) gives log2(10) = 3.32 bits; a capsule routing everything to one
    digit gives 0.
    """
    c = np.clip(np.asarray(coupling, dtype=np.float64), 1e-12, 1.0)
    return -(c * np.log2(c)).sum(axis=-1).mean(axis=-1)


def type_position_map(c_j: np.ndarray, primary_len: np.ndarray) -> np.ndarray:
    """c_ij * |u_i| for one digit j, as (32 types, 6 rows, 6 cols). c_j, primary_len: (1152,)."""
    w = np.asarray(c_j, dtype=np.float64) * np.asarray(primary_len, dtype=np.float64)
    return w.reshape(NUM_TYPES, GRID, GRID)


def evidence_map(weights: np.ndarray) -> np.ndarray:
    """Spread one number per primary capsule, (1152,), over the 28x28 input.

    The 32 capsule types at each grid position are summed and the sum is added to every pixel of
    that position's 17x17 receptive field (rows 2r..2r+16, cols 2c..2c+16); the result is divided
    by the number of fields covering a pixel so the overlap in the middle does not dominate.
    Returns (28, 28).
    """
    per_pos = np.asarray(weights, dtype=np.float64).reshape(NUM_TYPES, GRID, GRID).sum(axis=0)  # (6, 6)
    total = np.zeros((28, 28))
    cover = np.zeros((28, 28))
    for r in range(GRID):
        for c in range(GRID):
            rs, cs = receptive_field(r, c)
            total[rs, cs] += per_pos[r, c]
            cover[rs, cs] += 1.0
    return total / np.maximum(cover, 1.0)  # row/col 27 lies in no field: stays 0


def agreement_shares(coupling: np.ndarray, u_hat: np.ndarray, poses_per_iter: np.ndarray) -> np.ndarray:
    """Each primary capsule's share of |s_j| in every iteration: c_ij (u_hat_j|i . v_j) / |v_j|.

    coupling (T, 1152, 10), u_hat (1152, 10, 16), poses_per_iter (T, 10, 16) -> (T, 1152, 10).
    Because s_j = sum_i c_ij u_hat_j|i points the same way as v_j, the shares of digit j add up
    to |s_j| exactly: positive where a vote agrees with the output, negative where it disagrees.
    """
    v = np.asarray(poses_per_iter, dtype=np.float64)
    v_dir = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)  # (T, 10, 16)
    along = np.einsum("ijh,tjh->tij", np.asarray(u_hat, dtype=np.float64), v_dir)  # u_hat . v/|v|
    return (np.asarray(coupling, dtype=np.float64) * along).astype(np.float32)


def strongest_primary(coupling: np.ndarray, primary_len: np.ndarray, digit: int) -> tuple[int, np.ndarray]:
    """The primary capsule sending most to `digit` after routing (largest c_ij * |u_i| in the
    last iteration) and its c_ij in every iteration: (index i, (T,) array)."""
    coupling = np.asarray(coupling)
    i = int(np.argmax(coupling[-1, :, digit] * np.asarray(primary_len)))
    return i, coupling[:, i, digit].copy()


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


def stitch(images: np.ndarray, rows: int, cols: int, gap: int = 0, fill: float = 0.0) -> np.ndarray:
    """(rows * cols, h, w) images, row-major -> one (rows*h + gaps, cols*w + gaps) array."""
    images = np.asarray(images)
    n, h, w = images.shape
    if n != rows * cols:
        raise ValueError(f"need {rows * cols} images for a {rows}x{cols} grid, got {n}")
    out = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap), fill, dtype=images.dtype)
    for k in range(n):
        r, c = divmod(k, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = images[k]
    return out


def type_grid(maps: np.ndarray, cols: int = 8, gap: int = 1) -> np.ndarray:
    """(32, 6, 6) per-type maps -> one (4*6+3, 8*6+7) array with NaN gaps between panels."""
    maps = np.asarray(maps, dtype=np.float64)
    return stitch(maps, len(maps) // cols, cols, gap=gap, fill=np.nan)


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement, so a 28x28 digit stays crisp on screen."""
    return np.repeat(np.repeat(np.asarray(image), factor, axis=0), factor, axis=1)  # (H*f, W*f, ...)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 grey levels."""
    return (np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def diverging_rgb(diff: np.ndarray, limit: float = 1.0) -> np.ndarray:
    """Signed difference -> RGB uint8: blue where it went down, white at 0, red where it went up."""
    t = np.clip(np.asarray(diff, dtype=np.float64) / limit, -1.0, 1.0)[..., None]  # (H, W, 1)
    white, red, blue = np.array([1.0, 1.0, 1.0]), np.array([0.80, 0.10, 0.15]), np.array([0.13, 0.30, 0.75])
    rgb = np.where(t >= 0, white + t * (red - white), white + (-t) * (blue - white))
    return to_uint8(rgb)
