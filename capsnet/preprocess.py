"""Turn any drawing, photo or scan into a 28x28 digit the way MNIST was made.

MNIST's recipe (LeCun et al.): white ink on black, the digit's bounding box scaled so its longest
side is 20 px (aspect ratio kept, anti-aliased), placed in a 28x28 field so that its centre of mass
sits at the centre. `to_mnist` does that for the inputs the app meets: the drawing canvas' RGBA
(white ink on black or on transparency), grayscale or RGB photos and scans of dark ink on light
paper (detected and inverted). Faint noise, a few stray pixels and a thin border around the picture
are ignored rather than allowed to stretch the bounding box.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SIZE = 28  # output field
BOX = 20  # longest side of the digit inside it
CENTRE = (SIZE - 1) / 2  # 13.5: centre of mass goes here (pixel centres are 0..27)
MAX_PIXELS = 50_000_000  # refuse larger inputs instead of exhausting memory
WORK_SIDE = 512  # inputs larger than this are box-averaged down first (fast, anti-aliased)
MIN_CONTRAST = 0.15  # ink fainter than this (on a 0..1 scale) counts as nothing drawn
NOISE_FLOOR = 0.2  # after contrast stretch, values below this are background noise
BORDER_BAND = 0.1  # fraction of each side searched for frame lines
FRAME_SPAN = 0.8  # a frame line covers more than this fraction of its row or column
FRAME_THICKNESS = 0.03  # ... and is at most this thick (fraction of the side, at least 2 px)
LUMA = np.array([0.299, 0.587, 0.114])


def to_mnist(image) -> np.ndarray | None:
    """(H, W), (H, W, 1..4) array of any numeric dtype -> (28, 28) float32 in [0, 1], or None.

    None means nothing is drawn (blank, constant or only faint noise). Raises TypeError for
    something that is not a numeric image and ValueError for a shape that is not one.
    """
    gray = _grayscale(_as_float_image(image))  # (H, W) in [0, 1]
    if gray.size == 0:
        return None
    gray = _shrink(gray)
    lo, hi = float(gray.min()), float(gray.max())
    if hi - lo < MIN_CONTRAST:
        return None
    if np.median(gray) > 0.5:  # light paper: dark ink on light background -> invert
        gray = 1.0 - gray
    ink = np.clip(gray - np.median(gray), 0.0, None)
    # Peak of a 3x3 mean: one hot stray pixel cannot set the scale, a real stroke does.
    peak = float(_box3(ink).max())
    if peak < MIN_CONTRAST:
        return None
    ink = np.clip((ink / peak - NOISE_FLOOR) / (1.0 - NOISE_FLOOR), 0.0, 1.0)
    ink = _drop_frame_lines(ink)
    rows, cols = _ink_extent(ink.sum(axis=1)), _ink_extent(ink.sum(axis=0))
    if rows is None or cols is None:
        return None
    digit = ink[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1]
    return _place(_resize_longest(digit, BOX))


def _as_float_image(image) -> np.ndarray:
    """Validate and convert to float64 (H, W, C), C in 1..4, values in [0, 1], no NaN/Inf."""
    if isinstance(image, (str, bytes)) or image is None:
        raise TypeError(f"expected an image array, got {type(image).__name__}")
    try:
        arr = np.asarray(image)
    except Exception as e:  # ragged lists, objects numpy cannot hold
        raise TypeError(f"expected an image array, could not read {type(image).__name__}: {e}") from e
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"expected numeric pixels, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or not 1 <= arr.shape[2] <= 4:
        raise ValueError(
            f"expected a (H, W) grayscale or (H, W, C) image with 1-4 channels, got shape {arr.shape}"
        )
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise ValueError(
            f"image of {arr.shape[1]}x{arr.shape[0]} px is too large (max {MAX_PIXELS:,} pixels)"
        )
    if arr.dtype.kind == "b":
        return arr.astype(np.float64)
    if arr.dtype.kind in "iu":
        top = 255.0 if arr.dtype.itemsize == 1 else float(np.iinfo(arr.dtype).max)
        if arr.dtype.itemsize > 1 and arr.size and arr.max() <= 255:
            top = 255.0  # wide integers holding 8-bit values
        return np.clip(arr.astype(np.float64) / top, 0.0, 1.0)
    out = np.where(np.isfinite(arr), arr, 0.0).astype(np.float64)  # NaN/Inf count as background
    top = float(out.max()) if out.size else 1.0
    if top > 1.0:  # floats on a 0..255 (or other) scale
        out = out / (255.0 if top <= 255.0 else top)
    return np.clip(out, 0.0, 1.0)


def _grayscale(arr: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (H, W). Transparency is composited over the background the ink stands out on."""
    channels = arr.shape[2]
    color = arr[:, :, :3] if channels >= 3 else arr[:, :, :1]
    gray = color @ LUMA if channels >= 3 else color[:, :, 0]
    if channels not in (2, 4):
        return gray
    alpha = arr[:, :, -1]
    if alpha.size == 0 or alpha.min() > 0.99:  # opaque: alpha says nothing
        return gray
    if alpha.max() < 1e-3:  # fully transparent: nothing drawn
        return np.zeros_like(gray)
    # The ink is what is opaque. Light ink (the canvas' white strokes) goes over black,
    # dark ink over white; the polarity check in to_mnist then treats both alike.
    ink_brightness = float((gray * alpha).sum() / alpha.sum())
    background = 0.0 if ink_brightness >= 0.5 else 1.0
    return gray * alpha + background * (1.0 - alpha)


def _shrink(gray: np.ndarray) -> np.ndarray:
    """Box-average by an integer factor so the longest side is at most WORK_SIDE."""
    k = int(np.ceil(max(gray.shape) / WORK_SIDE))
    if k <= 1:
        return gray
    h, w = gray.shape
    pad_h, pad_w = (-h) % k, (-w) % k
    g = np.pad(gray, ((0, pad_h), (0, pad_w)), mode="edge")
    return g.reshape(g.shape[0] // k, k, g.shape[1] // k, k).mean(axis=(1, 3))


def _box3(x: np.ndarray) -> np.ndarray:
    p = np.pad(x, 1)
    h, w = x.shape
    return sum(p[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0


def _drop_frame_lines(ink: np.ndarray) -> np.ndarray:
    """Clear thin lines along the edges that span almost the whole picture: a frame, a scan's
    edge, a ruler line. A thick stroke near an edge (the bar of a 7 drawn at the very top of the
    canvas) is part of the digit and stays."""
    h, w = ink.shape
    if h <= 4 or w <= 4:
        return ink
    ink = ink.copy()
    for axis in (0, 1):  # 0: rows, 1: columns
        n = ink.shape[axis]
        cover = (ink > 0).mean(axis=1 - axis)  # fraction of each row (column) that is ink
        band, thin = max(1, round(n * BORDER_BAND)), max(2, round(n * FRAME_THICKNESS))
        for lo, hi in _runs(cover > FRAME_SPAN):
            if hi - lo <= thin and (lo < band or hi > n - band):
                if axis == 0:
                    ink[lo:hi] = 0.0
                else:
                    ink[:, lo:hi] = 0.0
    return ink


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of every run of True in a 1-D boolean array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.nonzero(edges == 1)[0].tolist(), np.nonzero(edges == -1)[0].tolist()))


def _ink_extent(profile: np.ndarray) -> tuple[int, int] | None:
    """First and last index of the digit along one axis, from its ink profile.

    The core is where the middle 98% of the ink mass lies; it is grown outwards while the
    profile stays non-empty, so a stroke's faint tip is kept and a stray dot beyond an empty
    gap is not.
    """
    total = float(profile.sum())
    if total <= 0:
        return None
    cum = np.cumsum(profile) / total
    lo = int(np.searchsorted(cum, 0.01))
    hi = int(np.searchsorted(cum, 0.99))
    hi = min(hi, len(profile) - 1)
    while lo > 0 and profile[lo - 1] > 0:
        lo -= 1
    while hi < len(profile) - 1 and profile[hi + 1] > 0:
        hi += 1
    return lo, hi


def _resize_longest(digit: np.ndarray, side: int) -> np.ndarray:
    """Scale so the longest side is `side` px, aspect ratio kept, anti-aliased."""
    h, w = digit.shape
    scale = side / max(h, w)
    new_h, new_w = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    if scale < 1:  # area average: every input pixel shares its ink among the outputs it overlaps
        # (PIL's BOX filter drops a row or column whose centre falls on an output pixel's edge,
        # so a 1 px stroke there vanished: the stem of a thin 'T' 21 px wide, for one.)
        out = _area_weights(h, new_h) @ digit @ _area_weights(w, new_w).T
    else:
        img = Image.fromarray(digit.astype(np.float32), mode="F")
        out = np.asarray(img.resize((new_w, new_h), resample=Image.Resampling.BILINEAR), dtype=np.float64)
    out = np.clip(out, 0.0, None)
    return out / max(float(out.max()), 1e-12)


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) averaging matrix: output pixel i spans input [i, i + 1) * n_in / n_out, and
    weighs each input pixel by the length it covers of that span."""
    step = n_in / n_out
    edges = np.arange(n_out + 1) * step
    j = np.arange(n_in)
    overlap = np.minimum(edges[1:, None], j + 1) - np.maximum(edges[:-1, None], j)  # (n_out, n_in)
    return np.clip(overlap, 0.0, None) / step


def _place(digit: np.ndarray) -> np.ndarray:
    """Put the digit in a 28x28 field with its centre of mass at the centre (kept fully inside)."""
    h, w = digit.shape
    ys, xs = np.arange(h), np.arange(w)
    mass = float(digit.sum())
    cy = float((digit.sum(axis=1) * ys).sum() / mass)
    cx = float((digit.sum(axis=0) * xs).sum() / mass)
    top = int(np.clip(round(CENTRE - cy), 0, SIZE - h))
    left = int(np.clip(round(CENTRE - cx), 0, SIZE - w))
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    out[top : top + h, left : left + w] = digit
    return np.clip(out, 0.0, 1.0)
