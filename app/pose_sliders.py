"""The 16 pose sliders as one element, with a live preview: native range inputs in a small custom
component that also runs the decoder in the browser.

Sixteen st.slider widgets cost a lot per move of any one of them, on both ends. In the browser
each is a BaseWeb React slider that Streamlit draws again on every run of the pose explorer
(about 35 ms of the page's main thread on this machine, before the images). On the server each is
a separate element message, and every message wakes the event loop from the script's thread: with
20 sessions on 2 cores those wake-ups queue for the interpreter lock (measured with py-spy, the
largest single wait of a pose run). Here the 16 dimensions, the "wider range" switch and the reset
button are one element with plain HTML inputs: one message per run, and the browser only updates
16 numbers. Arrow keys, Home/End and dragging work as on any range input; a value is sent when the
slider is released (the input's `change` event), as st.slider does.

While a slider moves, the page redraws the reconstruction itself: the component fetches the
decoder's weights once (app/decoder_weights.py: a static file named after its content, kept by the
browser's cache) and on every `input` event decodes the moved pose in JavaScript (three dense
layers, about 1.3 M multiply-adds) into its own canvases. Nothing goes to the server until the
slider is released. If the weights cannot be had (static serving off, a failed download), the
component says so and the server's pictures below it stay the reconstruction, redrawn on release.

The browser's state is checked on the way in (clean_pose): whatever a page sends, the explorer
gets 16 finite offsets on the slider grid, within the range shown.
"""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from app import components
from app.palette import DIVERGING_RGB

STEP = 0.05
NARROW, WIDE = 0.25, 0.5
DIFF_LIMIT = 0.5  # the difference picture's colour range, as the server's (app/sections/pose.py)

# app/components/pose_sliders/: the sliders and the decoder in JavaScript (main.js).
_COMPONENT = components.register("pose_sliders")


def clean_pose(raw, dims: int) -> tuple[np.ndarray, bool]:
    """What a page sent ({"values": [...], "wide": bool}, or anything else) -> (dims offsets as
    float32, wide): finite, rounded to the slider step, within +-0.5 if wide else +-0.25; missing
    or unreadable values are 0."""
    raw = raw if isinstance(raw, dict) else {}
    wide = raw.get("wide") is True
    limit = WIDE if wide else NARROW
    values = raw.get("values")
    values = list(values) if isinstance(values, (list, tuple)) else []
    out = np.zeros(dims, dtype=np.float32)
    for k, v in enumerate(values[:dims]):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = round(min(max(float(v), -limit), limit) / STEP) * STEP
    return out, wide


def pose_sliders(
    key: str,
    dims: int = 16,
    live: dict | None = None,
    names: list[str] | None = None,
    chosen: int | None = None,
) -> np.ndarray:
    """Show the sliders for one capsule (its own `key`, so each capsule keeps its offsets) and
    return the `dims` offsets they set. `live`: {"weights": URL of the decoder file or None,
    "why": why there is none, "pose": the capsule's `dims` numbers, "digit": its index} to redraw
    in the browser while a slider moves; without it, only the sliders. `names`: each slider's
    name (default "dim d"); `chosen`: a dimension to outline."""
    state = st.session_state.get(key)
    offsets, wide = clean_pose(state.get("pose") if state is not None else None, dims)
    _COMPONENT(
        key=key,
        data={"values": [round(float(v), 2) for v in offsets], "wide": wide, "step": STEP,
              "limit": WIDE if wide else NARROW, "narrow_limit": NARROW, "wide_limit": WIDE,
              "diff_limit": DIFF_LIMIT, "diverging": DIVERGING_RGB, "live": live, "names": names, "chosen": chosen},
        on_pose_change=lambda: None,
    )  # fmt: skip
    return offsets
