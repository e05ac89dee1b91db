"""The drawing canvas, with its toolbar moved below the drawing area.

streamlit-drawable-canvas 0.13 floats its toolbar (undo, redo, reset) over the top of the
canvas' right half whenever the pointer is near, and it has no option to hide it. A stroke that
starts there (the top bar of a 5 or a 7) lands on the toolbar, not the canvas. The component's
styles live in a shadow root that page CSS cannot reach, so we register the component again
under its own name with the same JavaScript and its stylesheet plus an override that docks the
toolbar under the canvas. Streamlit logs one "already registered" warning for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st
import streamlit_drawable_canvas
from streamlit_drawable_canvas import CanvasResult, st_canvas

from app import components

COMPONENT = "streamlit-drawable-canvas.streamlit_drawable_canvas"
# Docks the toolbar under the canvas, after the component's own stylesheet.
TOOLBAR_BELOW = components.read("canvas", "toolbar_below.css")


def _register_with_toolbar_below() -> None:
    build = Path(streamlit_drawable_canvas.__file__).parent / "frontend" / "build"
    css_files = sorted(build.glob("index-*.css"))
    if not css_files:  # a different build layout: keep the component as it is
        return
    css = "\n".join([*(p.read_text() for p in css_files), TOOLBAR_BELOW])
    st.components.v2.component(
        COMPONENT, js="index-*.js", css=css, html='<div class="canvas-root"></div>', isolate_styles=True
    )


_register_with_toolbar_below()  # once per process: modules are imported once


def drawing_canvas(key: str, size: int = 280):
    """A size x size canvas, white 20 px ink on black; returns the component's CanvasResult."""
    return st_canvas(
        stroke_width=20,
        stroke_color="#FFFFFF",
        background_color="#000000",
        height=size,
        width=size,
        drawing_mode="freedraw",
        return_image_data=True,
        key=key,
    )


def canvas_image(value) -> np.ndarray | None:
    """The RGBA image of a drawing_canvas's state (st.session_state[key]), decoded by the
    component's own CanvasResult as st_canvas returns it, or None for an empty canvas; readable
    before the canvas is drawn in a run."""
    drawing = (value or {}).get("drawing") or {}
    return CanvasResult(drawing.get("raw"), drawing.get("data"), return_image_data=True).image_data
