"""The app's heavy views rendered as plain RGB images (numpy + PIL). Pure: no Streamlit.

A Plotly chart costs the browser 50-100 ms of main-thread work to lay out; the routing section
alone has eleven of them per run, which made 20 classroom sessions on one machine queue for
seconds. The same pictures as PNGs cost almost nothing to show. `app/figures.py` keeps the
interactive (hover) versions for those who ask for them.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from plotly.colors import get_colorscale, hex_to_rgb, unlabel_rgb

from app.figures import COUPLING_SCALE, HEAT_SCALE, OVERLAY_SCALE, WINNER

BACKGROUND = (255, 255, 255)
TEXT = (49, 51, 63)


@lru_cache(maxsize=16)
def _lut(scale: str | tuple) -> np.ndarray:
    """A Plotly colour scale (a name, or ((pos, colour), ...)) -> (256, 4) RGBA floats in 0..255."""
    stops = get_colorscale(scale) if isinstance(scale, str) else [list(s) for s in scale]
    pos = np.array([float(p) for p, _ in stops])
    cols = np.array([_rgba(c) for _, c in stops])  # (S, 4)
    x = np.linspace(0.0, 1.0, 256)
    return np.stack([np.interp(x, pos, cols[:, k]) for k in range(4)], axis=1)


def _rgba(colour: str) -> tuple[float, float, float, float]:
    colour = colour.strip()
    if colour.startswith("#"):
        return (*hex_to_rgb(colour), 255.0)
    if colour.startswith("rgba"):
        r, g, b, a = (float(v) for v in colour[colour.index("(") + 1 : -1].split(","))
        return r, g, b, a * 255.0
    return (*unlabel_rgb(colour), 255.0)


def _as_key(scale) -> str | tuple:
    return scale if isinstance(scale, str) else tuple((float(p), c) for p, c in scale)


def colorize(z: np.ndarray, zmin: float, zmax: float, scale) -> np.ndarray:
    """(H, W) values -> (H, W, 4) RGBA floats 0..255 on a fixed range; NaN -> transparent."""
    z = np.asarray(z, dtype=np.float64)
    t = np.clip((z - zmin) / max(zmax - zmin, 1e-12), 0.0, 1.0)
    idx = np.round(np.nan_to_num(t, nan=0.0) * 255).astype(int)
    rgba = _lut(_as_key(scale))[idx]
    rgba[np.isnan(z)] = 0.0
    return rgba


def _over(rgba: np.ndarray, background) -> np.ndarray:
    """Composite RGBA floats over an RGB colour or an (H, W, 3) image -> uint8 RGB."""
    a = rgba[..., 3:4] / 255.0
    bg = np.broadcast_to(np.asarray(background, dtype=np.float64), rgba[..., :3].shape)
    return np.clip(rgba[..., :3] * a + bg * (1 - a) + 0.5, 0, 255).astype(np.uint8)


def _cells(img: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.repeat(np.repeat(img, h, axis=0), w, axis=1)


@lru_cache(maxsize=4)
def _font(size: int):
    return ImageFont.load_default(size=size)


def _canvas(width: int, height: int) -> Image.Image:
    return Image.new("RGB", (width, height), BACKGROUND)


def coupling_image(coupling: np.ndarray, highlight: int | None = None, row_px: int = 10) -> np.ndarray:
    """c of one iteration, (1152, 10) in: one row per digit (labelled), one column per primary
    capsule, colour fixed to 0..1, the chosen digit's row outlined. Returns RGB uint8."""
    c = np.asarray(coupling, dtype=np.float64).T  # (10, 1152)
    body = _cells(_over(colorize(c, 0.0, 1.0, COUPLING_SCALE), BACKGROUND), row_px, 1)  # (10*row_px, 1152, 3)
    left, top, bottom = 22, 4, 4
    img = _canvas(left + body.shape[1] + 2, top + body.shape[0] + bottom)
    img.paste(Image.fromarray(body), (left, top))
    draw = ImageDraw.Draw(img)
    for j in range(c.shape[0]):
        draw.text((6, top + j * row_px + row_px / 2), str(j), fill=TEXT, font=_font(row_px + 1), anchor="lm")
    if highlight is not None:
        y0 = top + highlight * row_px
        draw.rectangle([left - 2, y0 - 1, left + body.shape[1] + 1, y0 + row_px], outline=WINNER, width=2)
    return np.asarray(img)


def colorbar_image(scale=COUPLING_SCALE, width: int = 240, height: int = 12, lo: str = "0", hi: str = "1"):
    """A horizontal colour bar with its two end labels (RGB uint8)."""
    bar = _over(colorize(np.linspace(0, 1, width)[None, :].repeat(height, 0), 0, 1, scale), BACKGROUND)
    img = _canvas(width + 40, height)
    img.paste(Image.fromarray(bar), (14, 0))
    draw = ImageDraw.Draw(img)
    draw.text((2, height / 2), lo, fill=TEXT, font=_font(11), anchor="lm")
    draw.text((width + 18, height / 2), hi, fill=TEXT, font=_font(11), anchor="lm")
    return np.asarray(img)


def position_image(weights: np.ndarray, vmax: float, px: int = 32) -> np.ndarray:
    """6x6 PrimaryCaps grid, colour 0..vmax (the same vmax for every iteration)."""
    rgba = colorize(weights, 0.0, max(float(vmax), 1e-12), HEAT_SCALE)
    return _cells(_over(rgba, BACKGROUND), px, px)


def evidence_image(image: np.ndarray, evidence: np.ndarray, vmax: float, px: int = 7) -> np.ndarray:
    """The 28x28 input in grey with the routed evidence laid over it (translucent, 0..vmax)."""
    grey = np.clip(np.asarray(image, dtype=np.float64), 0, 1)[..., None] * np.array([255.0, 255.0, 255.0])
    overlay = colorize(evidence, 0.0, max(float(vmax), 1e-12), OVERLAY_SCALE)
    return _cells(_over(overlay, grey), px, px)


def type_grid_image(grid: np.ndarray, vmax: float, px: int = 10) -> np.ndarray:
    """The 32 capsule types as a 4x8 grid of 6x6 panels; NaN gaps stay white."""
    return _cells(_over(colorize(grid, 0.0, max(float(vmax), 1e-12), HEAT_SCALE), BACKGROUND), px, px)


def perturbation_grid_image(grid: np.ndarray, steps: np.ndarray, size: int = 28, scale: int = 2) -> np.ndarray:
    """The paper's Fig. 4: rows "dim d", columns the offsets, (16*28, S*28) greys in [0, 1]."""
    g = np.clip(np.asarray(grid, dtype=np.float64), 0, 1)
    rows, cols = g.shape[0] // size, g.shape[1] // size
    cell = size * scale
    body = _cells((g * 255 + 0.5).astype(np.uint8), scale, scale)
    left, top = 52, 22
    img = _canvas(left + body.shape[1] + 4, top + body.shape[0] + 4)
    img.paste(Image.fromarray(body, mode="L").convert("RGB"), (left, top))
    draw = ImageDraw.Draw(img)
    for s in range(cols):
        draw.text((left + s * cell + cell / 2, top / 2), f"{steps[s]:+.2f}", fill=TEXT, font=_font(12), anchor="mm")
    for d in range(rows):
        draw.text((4, top + d * cell + cell / 2), f"dim {d}", fill=TEXT, font=_font(12), anchor="lm")
    return np.asarray(img)
