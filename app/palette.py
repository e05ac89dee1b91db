"""The page's colours and colour scales, in one place: its pictures (app/images.py), its Plotly
charts (app/figures.py), its SVG maps (app/capsule_map.py) and the components' JavaScript, which
gets them as data (app/pose_sliders.py hands DIVERGING_RGB to app/components/pose_sliders/main.js),
so a digit, a sign or a threshold looks the same everywhere.

Every scale is explicit, because importing Streamlit changes Plotly's default template and a
chart should look the same in tests, notebooks and the app.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from plotly.colors import get_colorscale, hex_to_rgb, unlabel_rgb

from capsnet.atlas import LOCAL, NO_CHANGE, WORDS

WINNER = "#e4572e"  # the predicted / chosen digit; also the s_j path (orange-red)
OTHER = "#8a9ab0"
THRESHOLD = "#2e4057"
LABEL = "#1f2430"  # dark text on light backgrounds
TEXT = "#31333f"  # Streamlit's body text
MARKER_EDGE = "#9aa3ad"  # the outline of the votes' markers
REST_NODE = "#c9d1dc"  # the parse tree's "other" node
GRIDLINES = "#ebf0f8"  # the Plotly charts' grid
FRAME = "#d6d6d9"  # the light frame around a difference picture
BACKGROUND = (255, 255, 255)  # what the pictures' translucent colours are laid on
M_PLUS, M_MINUS = 0.9, 0.1  # margin-loss thresholds (Eq. 4)
DIGIT_COLORS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip
NO_ROUTING = "#b8c2d1"
ROUTED = "#2e4057"

COUPLING_SCALE = "Viridis"  # c on 0..1
PRIMARY_SCALE = "Viridis"  # |u_i|
ACTIVATION_SCALE = "Inferno"  # ReLU maps: black (silent) to yellow (strongest)
HEAT_SCALE = [[0.0, "#fff7ec"], [0.5, "#fc8d59"], [1.0, "#7f0000"]]
OVERLAY_SCALE = [[0.0, "rgba(255,69,0,0)"], [0.3, "rgba(255,140,0,0.35)"], [1.0, "rgba(255,215,0,0.85)"]]
# Signed quantities (delta c = c - 0.1, logits b, a pose change, a difference picture): blue below
# 0, white at 0, red above. The one definition: the pictures, the Plotly charts, the SVG maps and
# the pose sliders' live difference (main.js, given DIVERGING_RGB as data) all use it.
DIVERGING_RGB = ((33, 77, 191), (255, 255, 255), (204, 26, 38))  # -limit, 0, +limit
DIVERGING = [[k / 2, "rgb(%d,%d,%d)" % rgb] for k, rgb in enumerate(DIVERGING_RGB)]
# What a pose dimension mostly does, by family of capsnet.atlas's labels, each with a light and a dark
# end: the darker, the stronger the effect.
ATLAS_FAMILIES = {
    "position": ((*WORDS["x"], *WORDS["y"]), "#e3ecf8", "#5b8fd0"),
    "slant": (WORDS["slant"], "#fbe8d5", "#e08a3c"),
    "size": ((*WORDS["width"], *WORDS["height"]), "#e2f2de", "#5fae55"),
    "thickness": (WORDS["ink"], "#ece3f5", "#9a6cc8"),
    "local part": ((LOCAL,), "#f8dede", "#d65c5c"),
    "no visible change": ((NO_CHANGE,), "#f2f2f2", "#f2f2f2"),
}


# ---------------------------------------------------------------- scales applied to numbers
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


def lut(scale) -> np.ndarray:
    """The scale as 256 RGBA rows (floats 0..255), as colorize uses it."""
    return _lut(scale if isinstance(scale, str) else tuple((float(p), c) for p, c in scale))


def colorize(z: np.ndarray, zmin: float, zmax: float, scale) -> np.ndarray:
    """(...) values -> (..., 4) RGBA floats 0..255 on a fixed range; NaN -> transparent."""
    z = np.asarray(z, dtype=np.float64)
    t = np.clip((z - zmin) / max(zmax - zmin, 1e-12), 0.0, 1.0)
    idx = np.round(np.nan_to_num(t, nan=0.0) * 255).astype(int)
    rgba = lut(scale)[idx]
    rgba[np.isnan(z)] = 0.0
    return rgba


def over(rgba: np.ndarray, background=BACKGROUND) -> np.ndarray:
    """Composite RGBA floats over an RGB colour or an (..., 3) image -> uint8 RGB."""
    a = rgba[..., 3:4] / 255.0
    bg = np.broadcast_to(np.asarray(background, dtype=np.float64), rgba[..., :3].shape)
    return np.clip(rgba[..., :3] * a + bg * (1 - a) + 0.5, 0, 255).astype(np.uint8)


def _on_white(values, lo: float, hi: float, scale) -> np.ndarray:
    """Values on a colour scale lo..hi, composited on white as the pictures colour them: (N, 3) uint8."""
    return over(colorize(np.asarray(values, dtype=np.float64).ravel(), lo, hi, scale))


def hex_colours(values, lo: float, hi: float, scale) -> list[str]:
    """Values on a colour scale lo..hi as "#rrggbb" on white, as the pictures colour them."""
    rgb = _on_white(values, lo, hi, scale).astype(np.int32)
    packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]  # one int per colour: 13x faster to format
    return ["#%06x" % v for v in packed.tolist()]


def packed_colours(values, lo: float, hi: float, scale) -> str:
    """hex_colours as one string, "rrggbb" after "rrggbb" (a capsule map's colors: a short JSON
    string for 1152 cells instead of 1152 strings)."""
    return _on_white(values, lo, hi, scale).tobytes().hex()


def css_gradient(scale, steps: int = 9) -> str:
    """A CSS linear-gradient(to right, ...) of the scale on white: a colour bar drawn by the browser."""
    cols = hex_colours(np.linspace(0.0, 1.0, steps), 0.0, 1.0, scale)
    return "linear-gradient(to right, " + ", ".join(cols) + ")"
