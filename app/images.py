"""The page's pictures as plain RGB arrays (numpy + PIL). Pure: no Streamlit.

Pixel-like views (the input, feature maps, type grids, overlays on the input, reconstructions,
Figure 4) and the small charts that redraw on every stroke or lab slider move (lengths per
iteration, entropy, the lab's bars, sweep lines and accuracy curves). A Plotly chart costs the
browser 50-150 ms of main-thread work to lay out; a PNG almost nothing. The interactive views are
Plotly (app/figures.py); no view is drawn both ways.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from plotly.colors import get_colorscale, hex_to_rgb, unlabel_rgb

from app.palette import (
    ACTIVATION_SCALE,
    COUPLING_SCALE,
    DIGIT_COLORS,
    DIVERGING,
    HEAT_SCALE,
    M_MINUS,
    M_PLUS,
    OTHER,
    OVERLAY_SCALE,
    THRESHOLD,
    WINNER,
)
from app.palette import TEXT as P_TEXT
from app.pixel_arrays import diverging_rgb, to_uint8, upscale
from app.sentences import fmt2

BACKGROUND = (255, 255, 255)
TEXT = tuple(hex_to_rgb(P_TEXT))  # palette.TEXT as RGB
FRAME = (214, 214, 217)


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


def position_image(weights: np.ndarray, vmax: float, vmin: float = 0.0, px: int = 32) -> np.ndarray:
    """6x6 PrimaryCaps grid, colour vmin..vmax (the same range for every iteration)."""
    rgba = colorize(weights, vmin, max(float(vmax), vmin + 1e-12), HEAT_SCALE)
    return _cells(_over(rgba, BACKGROUND), px, px)


def evidence_image(image: np.ndarray, evidence: np.ndarray, vmax: float, px: int = 7) -> np.ndarray:
    """The 28x28 input in grey with the routed evidence laid over it (translucent, 0..vmax)."""
    grey = np.clip(np.asarray(image, dtype=np.float64), 0, 1)[..., None] * np.array([255.0, 255.0, 255.0])
    overlay = colorize(evidence, 0.0, max(float(vmax), 1e-12), OVERLAY_SCALE)
    return _cells(_over(overlay, grey), px, px)


def perturbation_grid_image(
    grid: np.ndarray, steps: np.ndarray, size: int = 28, scale: int = 2, names: tuple[str, ...] | None = None
) -> np.ndarray:
    """The paper's Fig. 4: (16*28, S*28) greys in [0, 1], columns the offsets, rows named by
    `names` (default "dim d"), the name column as wide as the longest name."""
    g = np.clip(np.asarray(grid, dtype=np.float64), 0, 1)
    rows, cols = g.shape[0] // size, g.shape[1] // size
    names = tuple(names) if names is not None else tuple(f"dim {d}" for d in range(rows))
    cell = size * scale
    body = _cells((g * 255 + 0.5).astype(np.uint8), scale, scale)
    font = _font(12)
    left, top = 12 + max(int(font.getlength(n)) for n in names), 22
    img = _canvas(left + body.shape[1] + 4, top + body.shape[0] + 4)
    img.paste(Image.fromarray(body, mode="L").convert("RGB"), (left, top))
    draw = ImageDraw.Draw(img)
    for s in range(cols):
        draw.text(
            (left + s * cell + cell / 2, top / 2), f"{steps[s]:+.2f}", fill=TEXT, font=font, anchor="mm"
        )
    for d in range(rows):
        draw.text((4, top + d * cell + cell / 2), names[d], fill=TEXT, font=font, anchor="lm")
    return np.asarray(img)


# ---------------------------------------------------------------- small charts
# Drawn at twice the size they are shown and reduced with a Lanczos filter by png(..., width=W):
# PIL draws lines and text without anti-aliasing, the reduction smooths them.
SS = 2
AXIS = (120, 124, 135)
GRID = (236, 238, 242)


class _Chart:
    """A plot area with linear axes: data -> pixel mapping, gridlines, ticks and titles."""

    def __init__(self, width, height, xlim, ylim, xticks, yticks, xlabel, ylabel, right=12):
        self.img = _canvas(width * SS, height * SS)
        self.draw = ImageDraw.Draw(self.img)
        self.x0, self.x1 = 58 * SS, (width - right) * SS  # `right`: room for line labels
        self.y0, self.y1 = 12 * SS, (height - 44) * SS  # top, bottom of the plot area
        self.xlim, self.ylim = xlim, ylim
        f = _font(11 * SS)
        for v, label in yticks:
            y = self.py(v)
            self.draw.line([(self.x0, y), (self.x1, y)], fill=GRID, width=SS)
            self.draw.text((self.x0 - 6 * SS, y), label, fill=TEXT, font=f, anchor="rm")
        for v, label in xticks:
            self.draw.text((self.px(v), self.y1 + 6 * SS), label, fill=TEXT, font=f, anchor="mt")
        self.draw.line([(self.x0, self.y1), (self.x1, self.y1)], fill=AXIS, width=SS)
        self.draw.text(((self.x0 + self.x1) / 2, self.y1 + 24 * SS), xlabel, fill=TEXT, font=f, anchor="mt")
        title = Image.new("RGB", (self.y1 - self.y0, 16 * SS), BACKGROUND)
        ImageDraw.Draw(title).text((title.width / 2, 8 * SS), ylabel, fill=TEXT, font=f, anchor="mm")
        self.img.paste(title.rotate(90, expand=True), (2 * SS, self.y0))

    def px(self, x):
        a, b = self.xlim
        return self.x0 + (x - a) / (b - a) * (self.x1 - self.x0)

    def py(self, y):
        a, b = self.ylim
        return self.y1 - (min(max(y, a), b) - a) / (b - a) * (self.y1 - self.y0)

    def hline(self, y, label, colour=AXIS):
        """A dashed reference line, labelled in the right margin."""
        yy, dash = self.py(y), 6 * SS
        for x in range(int(self.x0), int(self.x1), 2 * dash):
            self.draw.line([(x, yy), (min(x + dash, self.x1), yy)], fill=colour, width=SS)
        self.draw.text((self.x1 + 5 * SS, yy), label, fill=colour, font=_font(11 * SS), anchor="lm")

    def line(self, xs, ys, colour, width):
        pts = [(self.px(x), self.py(y)) for x, y in zip(xs, ys)]
        if len(pts) > 1:
            self.draw.line(pts, fill=colour, width=int(width * SS), joint="curve")
        r = (width + 1.5) * SS
        for x, y in pts:
            self.draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)

    def array(self):
        return np.asarray(self.img)


def bar_chart_image(
    lengths: np.ndarray,
    winner: int,
    width: int = 460,
    height: int = 280,
    ylabel: str = "length |v_j|",
    xlabel: str = "digit capsule j",
    thresholds: bool = True,
) -> np.ndarray:
    """The 10 capsule lengths as bars (0..1), the winner highlighted, the values printed on top,
    and (thresholds) the margin-loss thresholds m+ = 0.9 and m- = 0.1 as dashed lines. Any other
    ten values in 0..1 (a CNN's probabilities) with their own axis titles and no thresholds."""
    lengths = np.asarray(lengths, dtype=np.float64)
    n = len(lengths)
    ch = _Chart(
        width,
        height,
        (-0.5, n - 0.5),
        (0.0, 1.08),
        [(j, str(j)) for j in range(n)],
        [(v, f"{v:.1f}") for v in np.arange(0, 1.01, 0.2)],
        xlabel,
        ylabel,
        right=66 if thresholds else 12,
    )
    half = 0.36
    for j, v in enumerate(lengths):
        colour = hex_to_rgb(WINNER) if j == winner else hex_to_rgb(OTHER)
        ch.draw.rectangle([ch.px(j - half), ch.py(v), ch.px(j + half), ch.y1], fill=tuple(colour))
        ch.draw.text((ch.px(j), ch.py(v) - 3 * SS), f"{v:.2f}", fill=TEXT, font=_font(10 * SS), anchor="mb")
    if thresholds:
        ch.hline(M_PLUS, f"m+ = {M_PLUS}", tuple(hex_to_rgb(THRESHOLD)))
        ch.hline(M_MINUS, f"m- = {M_MINUS}", tuple(hex_to_rgb(THRESHOLD)))
    return ch.array()


def lengths_over_iterations_image(lengths_per_iter: np.ndarray, winner: int, width=460, height=280):
    """|v_j| after each routing iteration, one line per digit; the winner thick and labelled."""
    lpi = np.asarray(lengths_per_iter, dtype=np.float64)  # (T, 10)
    T = lpi.shape[0]
    iters = np.arange(1, T + 1)
    ch = _Chart(
        width,
        height,
        (0.8, T + 0.2),
        (0.0, 1.02),
        [(t, str(t)) for t in iters],
        [(v, f"{v:.1f}") for v in np.arange(0, 1.01, 0.2)],
        "routing iteration",
        "length |v_j|",
        right=40,
    )
    colours = {j: tuple(hex_to_rgb(WINNER if j == winner else DIGIT_COLORS[j])) for j in range(lpi.shape[1])}
    for j in sorted(colours, key=lambda j: j == winner):  # winner drawn last, on top
        ch.line(iters, lpi[:, j], colours[j], 3.5 if j == winner else 1.2)
    labelled: list[float] = []  # label line ends from the winner down, skipping ones that would overlap
    for j in sorted(colours, key=lambda j: (j != winner, -lpi[-1, j])):
        y = ch.py(lpi[-1, j])
        if all(abs(y - other) > 12 * SS for other in labelled):
            labelled.append(y)
            ch.draw.text(
                (ch.x1 + 6 * SS, y),
                str(j),
                fill=colours[j],
                font=_font((13 if j == winner else 10) * SS),
                anchor="lm",
            )
    return ch.array()


# ---------------------------------------------------------------- routing: small changes made visible


def nice_ticks(hi: float, n: int = 4) -> list[float]:
    """About n round tick values from 0 to at least hi (hi > 0)."""
    raw = hi / n
    mag = 10 ** np.floor(np.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [float(k * step) for k in range(int(np.ceil(hi / step - 1e-9)) + 1)]


def _fmt(v: float, step: float) -> str:
    decimals = max(0, int(-np.floor(np.log10(step))) if step < 1 else 0)
    return f"{v:.{decimals}f}"


def entropy_drop_image(entropy: np.ndarray, width: int = 460, height: int = 240) -> np.ndarray:
    """How far the mean entropy of c_i falls below uniform (log2 10 = 3.32 bits) after each
    iteration, in millibits on an axis from 0 to the largest drop: the axis includes every value it
    plots, and a drop of 0.002 bits is visible instead of a flat line at 3.32."""
    drop = 1000 * (np.log2(10) - np.asarray(entropy, dtype=np.float64))  # millibits, >= 0
    iters = np.arange(1, len(drop) + 1)
    ticks = nice_ticks(max(float(drop.max()), 1e-3))
    step = ticks[1] - ticks[0]
    ch = _Chart(width, height, (0.8, len(drop) + 0.2), (0.0, ticks[-1]), [(t, str(t)) for t in iters],
                [(v, _fmt(v, step)) for v in ticks], "routing iteration", "below uniform, millibits")  # fmt: skip
    ch.line(iters, drop, tuple(hex_to_rgb(WINNER)), 2.5)
    return ch.array()


def diverging_grid_image(grid: np.ndarray, limit: float, px: int = 10, px_w: int | None = None) -> np.ndarray:
    """Signed values (NaN gaps stay white) on a diverging scale -limit..+limit, white at 0; each
    value a cell px high and px_w (default px) wide."""
    limit = max(float(limit), 1e-12)
    return _cells(_over(colorize(grid, -limit, limit, DIVERGING), BACKGROUND), px, px_w or px)


def diverging_colorbar_image(limit: float, width: int = 200, height: int = 12) -> np.ndarray:
    """The diverging colour bar with its range printed as the page's text prints it (sentences.fmt2,
    two significant digits): -limit (blue) .. 0 (white) .. +limit (red)."""
    margin = 56  # room for a label such as "-0.0123" on each side
    bar = _over(colorize(np.linspace(-1, 1, width)[None, :].repeat(height, 0), -1, 1, DIVERGING), BACKGROUND)
    img = _canvas(width + 2 * margin, height)
    img.paste(Image.fromarray(bar), (margin, 0))
    draw = ImageDraw.Draw(img)
    draw.text((margin - 4, height / 2), f"−{fmt2(limit)}", fill=TEXT, font=_font(11), anchor="rm")
    draw.text((width + margin + 4, height / 2), f"+{fmt2(limit)}", fill=TEXT, font=_font(11), anchor="lm")
    return np.asarray(img)


def type_grid_image(maps: np.ndarray, limit: float, px: int = 6, cols: int = 8) -> np.ndarray:
    """A signed number per primary capsule as the 32 type panels (32, 6, 6), `cols` to a row, each
    panel headed by its type number (so "type 20" can be found), on the diverging scale
    -limit..+limit, white at 0. RGB uint8."""
    maps = np.asarray(maps, dtype=np.float64)
    n, grid = maps.shape[0], maps.shape[1]
    img = _type_grid_frame(n, grid, px, cols).copy()  # numbers and outlines, drawn once
    panels = diverging_grid_image(maps.reshape(n * grid, grid), limit, px)
    panel = grid * px
    for t in range(n):
        x, y = _type_panel_origin(t, cols, panel)
        img[y + TYPE_HEAD : y + TYPE_HEAD + panel, x : x + panel] = panels[t * panel : (t + 1) * panel]
    return img


TYPE_GAP, TYPE_HEAD = 6, 13  # px between type panels; the heading with a panel's number


def _type_panel_origin(t: int, cols: int, panel: int) -> tuple[int, int]:
    """Top-left (x, y) of type t's heading in type_grid_image: `cols` panels of `panel` px to a row."""
    r, c = divmod(t, cols)
    return c * (panel + TYPE_GAP), r * (panel + TYPE_HEAD + TYPE_GAP)


@lru_cache(maxsize=8)
def _type_grid_frame(n: int, grid: int, px: int, cols: int) -> np.ndarray:
    """type_grid_image without its colours: each panel's number above it and a light outline."""
    rows, panel, gap, head = n // cols, grid * px, TYPE_GAP, TYPE_HEAD
    img = _canvas(cols * (panel + gap) - gap, rows * (panel + head + gap) - gap)
    draw = ImageDraw.Draw(img)
    for t in range(n):
        x, y = _type_panel_origin(t, cols, panel)
        draw.text((x + panel / 2, y + head / 2), str(t), fill=TEXT, font=_font(11), anchor="mm")
        draw.rectangle([x - 1, y + head - 1, x + panel, y + head + panel], outline=FRAME)
    frame = np.asarray(img)
    frame.flags.writeable = False  # shared by every call: copied before it is coloured
    return frame


def activation_mosaic_image(mosaic: np.ndarray, vmax: float, px: int = 1) -> np.ndarray:
    """Feature maps stitched into one array (NaN gaps, pixel_arrays.stitch) on a sequential scale
    0..vmax: black where a map is silent, yellow where it fires most. RGB uint8."""
    rgba = colorize(mosaic, 0.0, max(float(vmax), 1e-12), ACTIVATION_SCALE)
    return _cells(_over(rgba, BACKGROUND), px, px)


def signed_overlay_image(image: np.ndarray, values: np.ndarray, limit: float, px: int = 7) -> np.ndarray:
    """The 28x28 input in grey under signed values on the diverging scale -limit..limit, each pixel
    as opaque as its value is large (0: the input shows through unchanged; +-limit: 85% colour)."""
    limit = max(float(limit), 1e-12)
    grey = np.clip(np.asarray(image, dtype=np.float64), 0, 1)[..., None] * np.array([255.0, 255.0, 255.0])
    rgba = colorize(values, -limit, limit, DIVERGING)
    rgba[..., 3] = (
        255.0 * 0.85 * np.clip(np.abs(np.nan_to_num(np.asarray(values, dtype=np.float64))) / limit, 0, 1)
    )
    return _cells(_over(rgba, grey), px, px)


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
def sweep_lines_image(
    values: np.ndarray,
    series: np.ndarray,
    followed: int,
    xlabel: str,
    ylabel: str,
    marker: float | None = None,
    width: int = 460,
    height: int = 280,
) -> np.ndarray:
    """series (S, 10) in 0..1 against the swept values (S,): one line per digit, the followed digit
    thick and labelled; `marker` a dashed vertical line at the sliders' value ("now")."""
    xs = np.asarray(values, dtype=np.float64)
    ys = np.asarray(series, dtype=np.float64)
    lo, hi = float(xs[0]), float(xs[-1])
    ticks = np.linspace(lo, hi, 5)
    ch = _Chart(
        width,
        height,
        (lo, hi),
        (0.0, 1.02),
        [(t, f"{t:g}") for t in ticks],
        [(v, f"{v:.1f}") for v in np.arange(0, 1.01, 0.2)],
        xlabel,
        ylabel,
        right=30,
    )
    colours = {j: tuple(hex_to_rgb(WINNER if j == followed else DIGIT_COLORS[j])) for j in range(ys.shape[1])}
    if marker is not None and lo <= marker <= hi:
        x, dash = ch.px(marker), 5 * SS
        for y in range(int(ch.y0), int(ch.y1), 2 * dash):
            ch.draw.line([(x, y), (x, min(y + dash, ch.y1))], fill=AXIS, width=SS)
        ch.draw.text((x, ch.y0 - 2 * SS), "now", fill=AXIS, font=_font(10 * SS), anchor="mb")
    for j in sorted(colours, key=lambda j: j == followed):  # the followed digit drawn last, on top
        ch.line(xs, ys[:, j], colours[j], 3.0 if j == followed else 1.0)
    labelled: list[float] = []  # label the line ends, the followed digit first, skipping overlaps
    for j in sorted(colours, key=lambda j: (j != followed, -ys[-1, j])):
        y = ch.py(ys[-1, j])
        if all(abs(y - other) > 11 * SS for other in labelled):
            labelled.append(y)
            size = (13 if j == followed else 10) * SS
            ch.draw.text((ch.x1 + 5 * SS, y), str(j), fill=colours[j], font=_font(size), anchor="lm")
    return ch.array()


def pose_change_image(
    change: np.ndarray, values: np.ndarray, limit: float, px: int = 14, px_w: int = 24
) -> np.ndarray:
    """A heat strip: change (S, 16), one pose dimension per row ("dim d"), one sweep step per
    column, on the diverging scale -limit..+limit (white = as at the identity); the first, middle
    and last swept values printed under their columns."""
    z = np.asarray(change, dtype=np.float64).T  # (16, S)
    body = diverging_grid_image(z, limit, px, px_w)
    left, top, bottom = 50, 4, 20
    img = _canvas(left + body.shape[1] + 4, top + body.shape[0] + bottom)
    img.paste(Image.fromarray(body), (left, top))
    draw = ImageDraw.Draw(img)
    for d in range(z.shape[0]):
        draw.text((4, top + d * px + px / 2), f"dim {d}", fill=TEXT, font=_font(11), anchor="lm")
    S = z.shape[1]
    for k in sorted({0, S // 2, S - 1}):
        draw.text((left + k * px_w + px_w / 2, top + body.shape[0] + 4), f"{values[k]:.3g}", fill=TEXT,
                  font=_font(11), anchor="mt")  # fmt: skip
    return np.asarray(img)


def image_strip(rows: list[np.ndarray], names: list[str], values: np.ndarray, factor: int = 2) -> np.ndarray:
    """Rows of S [0, 1] images (each (S, 28, 28)), named on the left, every fifth step's value
    printed above the columns: the sweep's inputs and reconstructions, step by step."""
    S = rows[0].shape[0]
    gap, cell = 2, rows[0].shape[1] * factor
    left, top, font = 150, 30, _font(20)  # shown about 0.6x: 12 px text
    img = _canvas(left + S * (cell + gap), top + len(rows) * (cell + gap))
    draw = ImageDraw.Draw(img)
    for r, (images, name) in enumerate(zip(rows, names)):
        y = top + r * (cell + gap)
        draw.text((4, y + cell / 2), name, fill=TEXT, font=font, anchor="lm")
        for k in range(S):
            tile = digit_image(images[k], factor)
            img.paste(Image.fromarray(tile, mode="L").convert("RGB"), (left + k * (cell + gap), y))
    for k in range(0, S, 5):
        draw.text((left + k * (cell + gap) + cell / 2, top / 2), f"{values[k]:.3g}", fill=TEXT,
                  font=font, anchor="mm")  # fmt: skip
    return np.asarray(img)


def accuracy_curves_image(
    values, capsnet, cnn, xlabel: str, width: int = 300, height: int = 220
) -> np.ndarray:
    """Test accuracy (0..1) against one transform's value, both models: CapsNet thick in the
    winner colour, the CNN in grey, each labelled at its right end."""
    xs = np.asarray(values, dtype=np.float64)
    ticks = np.linspace(xs[0], xs[-1], 3)
    ch = _Chart(width, height, (float(xs[0]), float(xs[-1])), (0.0, 1.02), [(t, f"{t:g}") for t in ticks],
                [(v, f"{v:.0%}") for v in (0.0, 0.5, 1.0)], xlabel, "accuracy", right=56)  # fmt: skip
    label_y = {"CapsNet": ch.py(capsnet[-1]), "CNN": ch.py(cnn[-1])}
    if abs(label_y["CapsNet"] - label_y["CNN"]) < 12 * SS:  # keep the two end labels apart
        label_y["CNN" if cnn[-1] <= capsnet[-1] else "CapsNet"] += 12 * SS  # the lower one moves down
    for ys, colour, name, w in ((cnn, OTHER, "CNN", 1.5), (capsnet, WINNER, "CapsNet", 2.5)):
        rgb = tuple(hex_to_rgb(colour))
        ch.line(xs, ys, rgb, w)
        ch.draw.text((ch.x1 + 4 * SS, label_y[name]), name, fill=rgb, font=_font(10 * SS), anchor="lm")
    return ch.array()
