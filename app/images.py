"""The page's pixel pictures as plain RGB arrays (numpy + PIL), with no text in them. Pure: no
Streamlit.

The input, feature maps, overlays on the input, reconstructions, the coupling matrix, Figure 4's
and the lab sweep's grids of digits: arrays turned into PNGs. Anything with axes, ticks or labels
is a chart whose text the browser sets in real fonts: the capsule maps and the capsule-length
chart in app/capsule_map.py (SVG), the rest in app/figures.py (Plotly); a colour bar is text
beside a CSS gradient (capsule_map.bar_item). Colours and scales come from app/palette.py.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from plotly.colors import hex_to_rgb

from app.palette import (
    ACTIVATION_SCALE,
    COUPLING_SCALE,
    DIVERGING,
    HEAT_SCALE,
    OVERLAY_SCALE,
    WINNER,
    colorize,
    over,
)
from app.palette import FRAME as P_FRAME
from app.pixel_arrays import diverging_rgb, to_uint8, upscale

FRAME = tuple(hex_to_rgb(P_FRAME))


def png(image: np.ndarray, width: int | None = None) -> bytes:
    """PNG bytes of a uint8 (H, W) or (H, W, 3) image, reduced to `width` pixels if it is wider.

    Shown with st.image(..., output_format="PNG") and a width at least this wide, Streamlit serves
    these bytes as they are. Left to itself it would decode every picture on every run, shrink it
    to the width asked for with a bilinear filter and re-encode it as JPEG (its "auto" format for
    pictures without alpha), blurring the lines and costing the server most of a run's time.
    zlib's fastest level: these pictures are mostly flat colour, so it costs a fraction of the
    default's time for files barely larger."""
    img = Image.fromarray(np.ascontiguousarray(image))
    if width is not None and img.width > width:
        img = img.resize((width, int(img.height * width / img.width)), resample=Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def digit_image(image: np.ndarray, factor: int) -> np.ndarray:
    """A [0, 1] grey image as uint8, enlarged `factor` times (nearest neighbour: pixels stay crisp)."""
    return upscale(to_uint8(image), factor)


def difference_image(diff: np.ndarray, limit: float, factor: int) -> np.ndarray:
    """A signed difference in diverging colours (blue down, white 0, red up), enlarged `factor`
    times, in a light grey frame so that "no difference" (all white) still shows as a picture."""
    img = upscale(diverging_rgb(diff, limit=limit), factor).copy()
    img[[0, -1], :] = img[:, [0, -1]] = FRAME
    return img


def _cells(img: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.repeat(np.repeat(img, h, axis=0), w, axis=1)


def coupling_image(coupling: np.ndarray, highlight: int | None = None, row_px: int = 10) -> np.ndarray:
    """c of one iteration, (1152, 10) in: one row per digit (0 at the top), one column per primary
    capsule, colour fixed to 0..1, the chosen digit's row outlined. Returns RGB uint8."""
    c = np.asarray(coupling, dtype=np.float64).T  # (10, 1152)
    body = _cells(over(colorize(c, 0.0, 1.0, COUPLING_SCALE)), row_px, 1)  # (10*row_px, 1152, 3)
    img = np.full((body.shape[0] + 4, body.shape[1] + 4, 3), 255, dtype=np.uint8)
    img[2:-2, 2:-2] = body
    if highlight is not None:
        y0, y1 = highlight * row_px, (highlight + 1) * row_px + 3
        colour = np.array(hex_to_rgb(WINNER), dtype=np.uint8)
        img[[y0, y0 + 1, y1 - 1, y1], :] = colour
        img[y0 : y1 + 1, [0, 1, -2, -1]] = colour
    return img


def position_image(weights: np.ndarray, vmax: float, vmin: float = 0.0, px: int = 32) -> np.ndarray:
    """6x6 PrimaryCaps grid, colour vmin..vmax (the same range for every iteration)."""
    rgba = colorize(weights, vmin, max(float(vmax), vmin + 1e-12), HEAT_SCALE)
    return _cells(over(rgba), px, px)


def evidence_image(image: np.ndarray, evidence: np.ndarray, vmax: float, px: int = 7) -> np.ndarray:
    """The 28x28 input in grey with the routed evidence laid over it (translucent, 0..vmax)."""
    grey = np.clip(np.asarray(image, dtype=np.float64), 0, 1)[..., None] * np.array([255.0, 255.0, 255.0])
    overlay = colorize(evidence, 0.0, max(float(vmax), 1e-12), OVERLAY_SCALE)
    return _cells(over(overlay, grey), px, px)


def perturbation_grid_image(grid: np.ndarray, scale: int = 2, size: int = 28, gap: int = 2) -> np.ndarray:
    """The paper's Fig. 4 as pixels: (16*28, S*28) greys in [0, 1] -> the 16 x S digits enlarged
    `scale` times, `gap` white pixels between them (the row names and offsets are the chart's
    axes, app/figures.py perturbation_grid_figure). RGB uint8."""
    g = np.clip(np.asarray(grid, dtype=np.float64), 0, 1)
    rows, cols = g.shape[0] // size, g.shape[1] // size
    tiles = g.reshape(rows, size, cols, size).transpose(0, 2, 1, 3).reshape(rows * cols, size, size)
    return _tiled(tiles, rows, cols, scale, gap)


def _tiled(tiles: np.ndarray, rows: int, cols: int, scale: int, gap: int) -> np.ndarray:
    """(rows*cols, h, w) greys in [0, 1], row-major -> one RGB grid, each enlarged, white between."""
    cell = upscale(to_uint8(tiles[0]), scale).shape
    out = np.full((rows * (cell[0] + gap) - gap, cols * (cell[1] + gap) - gap, 3), 255, dtype=np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        y, x = r * (cell[0] + gap), c * (cell[1] + gap)
        out[y : y + cell[0], x : x + cell[1]] = upscale(to_uint8(tile), scale)[..., None]
    return out


def activation_mosaic_image(mosaic: np.ndarray, vmax: float, px: int = 1) -> np.ndarray:
    """Feature maps stitched into one array (NaN gaps, pixel_arrays.stitch) on a sequential scale
    0..vmax: black where a map is silent, yellow where it fires most. RGB uint8."""
    rgba = colorize(mosaic, 0.0, max(float(vmax), 1e-12), ACTIVATION_SCALE)
    return _cells(over(rgba), px, px)


def signed_overlay_image(image: np.ndarray, values: np.ndarray, limit: float, px: int = 7) -> np.ndarray:
    """The 28x28 input in grey under signed values on the diverging scale -limit..limit, each pixel
    as opaque as its value is large (0: the input shows through unchanged; +-limit: 85% colour)."""
    limit = max(float(limit), 1e-12)
    grey = np.clip(np.asarray(image, dtype=np.float64), 0, 1)[..., None] * np.array([255.0, 255.0, 255.0])
    rgba = colorize(values, -limit, limit, DIVERGING)
    rgba[..., 3] = (
        255.0 * 0.85 * np.clip(np.abs(np.nan_to_num(np.asarray(values, dtype=np.float64))) / limit, 0, 1)
    )
    return _cells(over(rgba, grey), px, px)


def field_image(image: np.ndarray, rows: slice, cols: slice, px: int = 7) -> np.ndarray:
    """The 28x28 input in grey, dimmed outside one receptive field, the field outlined in WINNER."""
    grey = np.clip(np.asarray(image, dtype=np.float64), 0, 1) * 255.0
    rgb = np.repeat(grey[..., None], 3, axis=2) * 0.35 + 20
    rgb[rows, cols] = np.repeat(grey[rows, cols][..., None], 3, axis=2)
    img = _cells(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), px, px).copy()
    r0, r1 = rows.start * px, min(rows.stop, 28) * px - 1
    c0, c1 = cols.start * px, min(cols.stop, 28) * px - 1
    colour = np.array(hex_to_rgb(WINNER), dtype=np.uint8)
    for t in range(2):
        img[r0 + t, c0 : c1 + 1] = img[r1 - t, c0 : c1 + 1] = colour
        img[r0 : r1 + 1, c0 + t] = img[r0 : r1 + 1, c1 - t] = colour
    return img


# ---------------------------------------------------------------- equivariance lab
def image_strip(rows: list[np.ndarray], factor: int = 2, gap: int = 2) -> np.ndarray:
    """Rows of S [0, 1] images (each (S, 28, 28)) side by side, the sweep's inputs and
    reconstructions step by step; the page says in words what the rows and columns are."""
    tiles = np.concatenate([np.asarray(r, dtype=np.float64) for r in rows])
    return _tiled(tiles, len(rows), rows[0].shape[0], factor, gap)
