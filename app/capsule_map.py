"""Maps of capsules and the capsule-length chart as one small custom component: cells on a grid
(the 1152 primary capsules on their 32 type panels, the pose atlas's 10 x 16 cells) or bars (the
10 digit capsule lengths with m+ and m-, wherever the page shows them), drawn in the page in real
pixels and fonts (12 px or more), with a hover note and a click that reports which one. Several
maps, pictures, colour bars and paragraphs can also go in as one element, in rows (kind "rows"):
the overview's six stages and the routing view's how c changed, where each of some thirty
Streamlit elements cost the browser a pass of its React on every stroke (tools/bench_stroke.py:
page idle 0.43 s with them, 0.36 s as two elements, against 0.26 s for a page that only predicts).

Plotly did this in the overview first; its two charts cost the browser about 0.23 s of layout
on every stroke (tools/bench_stroke.py, overview only: page idle 0.59 s with them, 0.36 s
without), more than the whole predict-only page needs. This draws the same in a few
milliseconds. Colours are computed in Python (app/palette.py), so a map looks as the pictures
around it; the page only places them. The builders below are pure: numbers in, the map's data out.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable

import numpy as np
import streamlit as st
from plotly.colors import hex_to_rgb

from app import components
from app.palette import (
    ATLAS_FAMILIES,
    DIVERGING,
    FRAME,
    LABEL,
    M_MINUS,
    M_PLUS,
    OTHER,
    PRIMARY_SCALE,
    TEXT,
    THRESHOLD,
    WINNER,
    css_gradient,
    packed_colours,
)
from app.sentences import fmt2

# The page draws them with app/components/capsule_map/ (its main.js says what `data` holds); a
# click sends the trigger "picked" with the cell's or bar's index.
_COMPONENT = components.register("capsule_map")


def payload(data: dict, clickable: bool = False, max_width: int | None = None) -> bytes:
    """A map's data (see main.js) as the component receives it: UTF-8 JSON, encoded once here.
    Streamlit sends bytes as they are; a dict it scans for dataframes (under Python 3.11 ~2 ms a
    top-level value) and encodes twice (once more, key-sorted, for the element's identity): ~10 ms
    of a stroke's run for the routing view's rows. Bytes can also be made ahead and cached
    (routing.change_rows)."""
    data = {**data, "max_width": max_width, "clickable": clickable}
    # allow_nan=False: JSON has no NaN; a NaN would fail in the page's JSON.parse, so it fails here.
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def capsule_map(
    key: str, data: dict | bytes, on_pick: Callable[[], None] | None = None, max_width: int | None = None
) -> None:
    """Draw a map (data: see main.js, or its payload()) under `key`, at most `max_width` px wide (it
    shrinks with its column). With `on_pick`, a click reruns the page after calling it (it reads the
    index as picked(key)); without, the map only shows its hover notes."""
    if not isinstance(data, bytes):
        data = payload(data, on_pick is not None, max_width)
    _COMPONENT(key=key, data=data, on_picked_change=on_pick or (lambda: None))


def _clicked(key: str):
    """What the map `key` sent with its last click (the trigger "picked"), or None."""
    state = st.session_state.get(key)
    return None if state is None else state.get("picked")


def _index(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def picked(key: str) -> int | None:
    """The index of the cell or bar just clicked in the map `key` (inside its on_pick callback)."""
    return _index(_clicked(key))


def picked_in(key: str) -> tuple[str, int] | None:
    """The map's id and the index of the cell or bar just clicked in a "rows" element `key` whose
    maps have ids (inside its on_pick callback)."""
    value = _clicked(key)
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and _index(value[1]) is not None
    ):
        return value[0], value[1]
    return None


def map_item(data: dict, caption: str, id: str | None = None, max_width: int | None = None) -> dict:
    """A map (data: see main.js) as a figure of a "rows" element; with `id`, a click on it sends
    [id, index] (read with picked_in)."""
    item = {"map": {**data, "max_width": max_width}, "caption": caption}
    return item if id is None else {**item, "id": id}


def bar_item(scale, lo: str, hi: str, name: str, mid: str | None = None) -> dict:
    """A colour bar as a figure of a "rows" element: the range as text (lo, hi, mid under the middle)
    beside the scale's CSS gradient, and what it shows (`name`)."""
    return {
        "bar": {"gradient": css_gradient(scale), "lo": lo, "hi": hi, "mid": mid, "name": name, "frame": FRAME}
    }


def image_item(png: bytes, caption: str, alt: str = "") -> dict:
    """A picture (PNG bytes) as a figure of a "rows" element, with its size so the page keeps its
    room before it is decoded."""
    width, height = struct.unpack(">II", png[16:24])  # the PNG's IHDR chunk
    url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return {"image": url, "width": width, "height": height, "alt": alt or caption, "caption": caption}


# ---------------------------------------------------------------- the maps' data (pure)
def _hex(rgb) -> str:
    return "#%02x%02x%02x" % tuple(int(v) for v in rgb)


def _panels(n: int, pitch: tuple[int, int], head: int = 0) -> dict:
    """The map's `panels`: primary capsule i on its type's 6x6 panel, eight panels to a row, `pitch`
    cells apart (across, down), the grid `head` cells below the panel's top; main.js places the
    cells and derives the hover note's i, type, row and column."""
    return {"n": n, "per_row": 8, "pitch": list(pitch), "head": head}


def _rounded(values: np.ndarray, decimals: int) -> list[float]:
    return np.round(np.asarray(values, dtype=np.float64), decimals).tolist()


def primary_map(primary_len, inspected: int | None = None) -> dict:
    """The 1152 primary capsules' lengths |u_i| on the 32 type panels of 6x6, eight panels to a row
    as in the routing view's grids (one cell between panels), coloured from their least to their
    largest (most are close to 1). Cell k is capsule i = k."""
    u = np.asarray(primary_len, dtype=np.float64)
    return {
        "kind": "cells", "size": [8 * 7 - 1, 4 * 7 - 1], "panels": _panels(u.size, (7, 7)),
        "colors": packed_colours(u, float(u.min()), max(float(u.max()), float(u.min()) + 1e-6), PRIMARY_SCALE),
        "outline": inspected, "outline_color": WINNER, "text_color": LABEL,
        "tip": "primary capsule i = {i}: type {t}, grid ({r}, {c})<br>|u_i| = {u}<br>click: open it in the routing view",
        "fields": {"u": _rounded(u, 3)}, "formats": {"u": [3, False]},
        "label": "The 1152 primary capsule lengths by type and grid position",
    }  # fmt: skip


def type_panels(values, limit: float, name: str, digit: int) -> dict:
    """A signed number per primary capsule (1152,) on the 32 numbered type panels of 6x6, eight to a
    row, on the diverging scale -limit..+limit (white 0; beyond the range: the end colours). Each
    panel's type number is set above it as text; the hover gives i, type, position and the value;
    cell k is capsule i = k (a click opens it in the routing view's inspector)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    pitch_x, pitch_y, head = 7, 9, 2  # a panel: 6 cells, a gap; a heading of 2 cells above it
    limit = max(float(limit), 1e-12)
    types = range(v.size // 36)
    return {
        "kind": "cells", "size": [8 * pitch_x - 1, 4 * pitch_y - 1], "panels": _panels(v.size, (pitch_x, pitch_y), head),
        "colors": packed_colours(v, -limit, limit, DIVERGING), "outline": None, "outline_color": WINNER,
        "text_color": LABEL, "labels": [[t % 8 * pitch_x + 3, t // 8 * pitch_y + head - 0.4, str(t)] for t in types],
        "frames": [[t % 8 * pitch_x, t // 8 * pitch_y + head, 6, 6] for t in types], "frame_color": FRAME,
        "tip": f"primary capsule i = {{i}}: type {{t}}, grid ({{r}}, {{c}})<br>{name} = {{v}}<br>click: inspect it",
        "fields": {"v": _rounded(v, 4)}, "formats": {"v": [4, True]},
        "label": f"{name} to digit {digit} of the 1152 primary capsules on the 32 type panels, ±{fmt2(limit)}",
    }  # fmt: skip


def digit_bars(
    lengths,
    prediction: int,
    inspected: int | None = None,
    thresholds: bool = True,
    what: str = "|v_{j}|",
    label: str | None = None,
    height: int = 180,
    hint: str = "",
) -> dict:
    """The capsule-length chart, the one drawing of the 10 digit capsule lengths |v_j| wherever the
    page shows them: bars on 0..1, each value printed above its bar, the prediction in the winner
    colour, the inspected capsule outlined, the margin-loss targets m+ = 0.9 and m- = 0.1 dashed.
    thresholds=False and `what`: any other ten values in 0..1 (a CNN's probabilities) as the same
    bars without the margin lines. `hint`: a line added to the hover note ("click: inspect it")."""
    values = [float(v) for v in lengths]
    return {
        "kind": "bars", "values": values, "labels": [str(j) for j in range(len(values))],
        "colors": [WINNER if j == prediction else OTHER for j in range(len(values))],
        "outline": None if inspected is None else int(inspected),
        "lines": [[M_PLUS, f"m⁺ {M_PLUS:g}"], [M_MINUS, f"m⁻ {M_MINUS:g}"]] if thresholds else [],
        "line_color": THRESHOLD, "text_color": TEXT, "height": height,
        "tip": f"digit{' capsule' if thresholds else ''} {{j}}: {what} = {{v}}" + (f"<br>{hint}" if hint else ""), "fields": {"j": list(range(len(values))), "v": [f"{v:.3f}" for v in values]},
        "label": label or f"The 10 digit capsule lengths: {prediction} is the longest",
    }  # fmt: skip


ATLAS_SHORT = {
    "moves right": "→", "moves left": "←", "moves down": "↓", "moves up": "↑", "leans right": "lean R",
    "leans left": "lean L", "wider": "wider", "narrower": "narrow", "taller": "taller", "shorter": "shorter",
    "thicker strokes": "thicker", "thinner strokes": "thinner", "local part": "local", "no visible change": "–",
}  # fmt: skip


def atlas_strength(cell: dict, top: float) -> float:
    """0..1: a local part's share of the change, any other effect's strength over `top` (the
    atlas's strongest), nothing for no visible change."""
    if cell["label"] == "no visible change":
        return 0.0
    s = cell["strength"] if cell["label"] == "local part" else cell["strength"] / max(top, 1e-9)
    return min(max(s, 0.0), 1.0)


def atlas_map(atlas: dict, digit: int | None = None, dim: int | None = None) -> dict:
    """capsnet.atlas's 10 x 16 cells, one row per digit capsule, one column per pose dimension
    (cell k is digit k // 16, dimension k % 16): coloured by the family of what the dimension mostly
    does to that digit, from the family's light end (weak) to its dark end (the atlas's strongest),
    with its short label and strength; the hover gives every slope. `digit`, `dim`: the cell outlined."""
    family = {label: spec for spec in ATLAS_FAMILIES.values() for label in spec[0]}
    rows = atlas["digits"]
    top = max(
        [c["strength"] for r in rows for c in r if c["label"] not in ("local part", "no visible change")]
        + [0]
    )
    x, y, colors, texts, tips = [], [], [], [], []
    for j, row in enumerate(rows):
        for d, c in enumerate(row):
            _, light, dark = family[c["label"]]
            colors.append(_blend(light, dark, atlas_strength(c, top)))
            x.append(d), y.append(j)
            shown = f"{c['strength']:.0%}" if c["label"] == "local part" else f"{c['strength']:.1f}"
            texts.append(
                ATLAS_SHORT[c["label"]] + ("" if c["label"] == "no visible change" else "\n" + shown)
            )
            e = c["effects"]
            tips.append(
                f"digit {j}, dim {d}: <b>{c['label']}</b> ({c['strength']:.3g}; {c.get('agreement', 0):.0%} of the "
                f"digits agree)<br>per unit of pose offset: ink {e['ink']:+.1f}, x {e['x']:+.2f} px, y {e['y']:+.2f} "
                f"px,<br>width {e['width']:+.2f} px, height {e['height']:+.2f} px, slant {e['slant']:+.3f}; local "
                f"{e['local']:.0%}<br>click: explore it"
            )
    n_dims = len(rows[0])
    return {
        "kind": "cells", "size": [n_dims, len(rows)], "x": x, "y": y, "colors": colors, "texts": texts,
        "outline": None if digit is None or dim is None else digit * n_dims + dim, "outline_color": THRESHOLD,
        "text_color": LABEL,
        "row_labels": [[j, f"digit {j}"] for j in range(len(rows))], "left": 1.1,
        "col_labels": [[d, f"dim {d}"] for d in range(n_dims)], "top": 0.5,
        "tip": "{text}", "fields": {"text": tips},
        "label": "The pose atlas: what each of the 16 dimensions does to each digit",
    }  # fmt: skip


def _blend(light: str, dark: str, t: float) -> str:
    return _hex(round(u + t * (v - u)) for u, v in zip(hex_to_rgb(light), hex_to_rgb(dark)))
