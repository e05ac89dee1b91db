"""Arrays made into pictures: grids of maps, pooling, enlargement, grey levels, and the
diverging colour scale of signed quantities with its symmetric range. numpy in, numpy out.
"""

from __future__ import annotations

import numpy as np

from app.palette import DIVERGING_RGB


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


def max_pool(maps: np.ndarray, k: int) -> np.ndarray:
    """(..., H, W) -> (..., H // k, W // k): the largest value of each k x k block."""
    maps = np.asarray(maps)
    *lead, h, w = maps.shape
    blocks = maps[..., : h - h % k, : w - w % k].reshape(*lead, h // k, k, w // k, k)
    return blocks.max(axis=(-3, -1))


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement, so a 28x28 digit stays crisp on screen."""
    return np.repeat(np.repeat(np.asarray(image), factor, axis=0), factor, axis=1)  # (H*f, W*f, ...)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 grey levels."""
    return (np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def diverging_rgb(diff: np.ndarray, limit: float = 1.0) -> np.ndarray:
    """Signed difference -> RGB uint8 on palette.DIVERGING_RGB: blue where it went down, white at 0,
    red where it went up, linear in between (the pose sliders' main.js paints the same from it)."""
    t = np.clip(np.asarray(diff, dtype=np.float64) / limit, -1.0, 1.0)[..., None]  # (H, W, 1)
    blue, white, red = (np.array(c, dtype=np.float64) / 255.0 for c in DIVERGING_RGB)
    rgb = np.where(t >= 0, white + t * (red - white), white + (-t) * (blue - white))
    return to_uint8(rgb)


def symmetric_limit(values: np.ndarray, quantile: float = 1.0, floor: float = 1e-6) -> float:
    """L for a colour range -L..L centred on 0: the largest |value| (NaN ignored), at least `floor`.

    quantile < 1 takes that quantile of |value| instead, so a few outliers saturate the colour
    rather than wash out everything else; the caller should then say so (see `saturated`)."""
    a = np.abs(np.asarray(values, dtype=np.float64)).ravel()
    a = a[np.isfinite(a)]
    if a.size == 0:
        return float(floor)
    limit = a.max() if quantile >= 1.0 else np.quantile(a, quantile)
    return float(max(limit, floor))


def saturated(values: np.ndarray, limit: float) -> int:
    """How many values lie outside -limit..limit (drawn in the end colours)."""
    return int(np.count_nonzero(np.abs(np.asarray(values, dtype=np.float64)) > limit))
