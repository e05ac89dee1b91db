"""The overview's left column: where the digit comes from (canvas, MNIST sample, upload) and the
controls every view follows; and the page's state in the share link.

The share link (?sample=&capsule=&iters=&view=&part=&primary=&dim=, plus the lab's values) sets the
state on a session's first run, invalid values ignored, and follows it afterwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import streamlit as st

from app import inputs, pixel_arrays, views
from app.canvas import canvas_image, drawing_canvas
from app.sections.pose import DIM_KEY
from app.sections.routing import DEFAULT_PART, PART_KEY, PARTS, part
from app.view_context import Controls
from capsnet.model import DIGIT_DIM, NUM_PRIMARY
from capsnet.preprocess import to_mnist

MAX_ITERATIONS = 5
DEFAULT_ITERATIONS = 3  # the paper's
DRAW, SAMPLE, UPLOAD = "Draw", "MNIST sample", "Upload a photo"
SOURCES = [DRAW, SAMPLE, UPLOAD]
AUTO = "auto"


# Widget keys of the views whose values outlive the view being closed.
# (None of them is given a default in its widget call: Streamlit warns when a widget has one and
# its value was also written here.)
KEPT = (
    PART_KEY,
    DIM_KEY,
    "primary_i",
    "tree_group",
    "absolute_c",
    "routing_gain",
    "routing_gain_box",
    "routing_formulas",
)


@dataclass(frozen=True)
class Choice:
    source: str
    raw: np.ndarray | None  # the image as given (any size), None if there is none yet
    label: int | None  # MNIST label of a shipped sample
    pixels: np.ndarray | None = None  # already the network's input (a class drawing): used as it is
    error: str | None = None  # why an upload cannot be used (shown under the uploader)


def init_state(n_samples: int) -> None:
    """Defaults, and on a session's first run the share link's values (invalid ones are ignored)."""
    if "started" not in st.session_state:
        st.session_state.started = True
        _read_query_params(n_samples)
    # Streamlit forgets a widget's value in a run that does not draw it: the settings of the views
    # (and the inspected primary capsule) would reset whenever another view is open. Writing them
    # back each run keeps them.
    for key in KEPT:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]
    for key, default in (
        ("source", DRAW),
        ("sample", 0),
        ("iterations", DEFAULT_ITERATIONS),
        ("capsule", AUTO),
        ("canvas_n", 0),
        (views.VIEW_KEY, views.get(views.DEFAULT_VIEW).label),
        (PART_KEY, PARTS[DEFAULT_PART]),
    ):
        st.session_state.setdefault(key, default)


def _small_int(text: str | None, lo: int, hi: int) -> int | None:
    """A share-link value as an int in lo..hi, or None. Only ASCII digits, at most 4 of them:
    str.isdigit() also accepts "²" or "①", which int() refuses, and int() refuses 5000 digits."""
    if text is None or not re.fullmatch(r"[0-9]{1,4}", text):
        return None
    value = int(text)
    return value if lo <= value <= hi else None


def _read_query_params(n_samples: int) -> None:
    qp = st.query_params
    sample = _small_int(qp.get("sample"), 0, n_samples - 1)
    if sample is not None:
        st.session_state.source = SAMPLE
        st.session_state.sample = sample
    iterations = _small_int(qp.get("iters"), 1, MAX_ITERATIONS)
    if iterations is not None:
        st.session_state.iterations = iterations
    capsule = qp.get("capsule")
    if capsule == AUTO or _small_int(capsule, 0, 9) is not None:
        st.session_state.capsule = capsule if capsule == AUTO else int(capsule)
    if qp.get("view") in views.VIEWS:  # user input: an unknown name keeps the default view
        views.open_view(qp["view"])
    if qp.get("part") in PARTS:
        st.session_state[PART_KEY] = PARTS[qp["part"]]
    primary = _small_int(qp.get("primary"), 0, NUM_PRIMARY - 1)
    if primary is not None:
        st.session_state.primary_i = primary
    dim = _small_int(qp.get("dim"), 0, DIGIT_DIM - 1)
    if dim is not None:
        st.session_state[DIM_KEY] = dim


def _clear_canvas() -> None:
    st.session_state.canvas_n += 1  # a new key mounts a fresh, empty canvas


def _canvas_key() -> str:
    n = st.session_state.canvas_n
    return "canvas" if n == 0 else f"canvas-{n}"


def current_choice(samples: np.ndarray, labels: np.ndarray) -> Choice:
    """The chosen input, read from session state before its widgets are drawn (draw_choice draws
    them): the page computes and sends the prediction first, and the browser draws it before the
    input column's widgets come again. An upload that cannot be read carries its message."""
    source = st.session_state.source
    if source == DRAW:
        return Choice(source, canvas_image(st.session_state.get(_canvas_key())), None)
    if source == SAMPLE:
        idx = st.session_state.sample
        return Choice(source, samples[idx], int(labels[idx]))
    upload = st.session_state.get("upload")
    if upload is None:
        return Choice(source, None, None)
    try:
        return Choice(source, inputs.decode_upload(upload.getvalue()), None)
    except inputs.InputError as e:
        return Choice(source, None, None, error=f"**{upload.name}**: {e}")


def draw_choice(choice: Choice, samples: np.ndarray, labels: np.ndarray) -> None:
    """The source picker and the chosen source's widget (their values are read by current_choice)."""
    source = st.radio("Input", SOURCES, horizontal=True, key="source", label_visibility="collapsed")
    if source != choice.source:  # cannot happen: the radio's value is the state current_choice read
        raise RuntimeError(f"the input source changed from {choice.source!r} to {source!r} within a run")
    if source == DRAW:
        drawing_canvas(key=_canvas_key())
        st.button(
            "Clear the canvas", on_click=_clear_canvas, help="Draw one digit, 0 to 9, as large as the square"
        )
    elif source == SAMPLE:
        idx = st.selectbox(
            "MNIST test digit", range(len(samples)), key="sample",
            format_func=lambda i: inputs.sample_label(i, labels),
        )  # fmt: skip
        st.image(pixel_arrays.upscale(samples[idx], 8), caption=inputs.sample_caption(idx, labels))
    else:
        st.file_uploader(
            "A photo or scan of one digit: dark ink on light paper works",
            type=["png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff"], key="upload",
        )  # fmt: skip
        if choice.error:
            st.error(choice.error)
        elif choice.raw is not None:
            st.image(choice.raw, caption="Your upload", width=260)


def current_controls() -> Controls:
    """This run's values of the controls, read before their widgets are drawn (init_state and the
    widgets keep them in session state); anything out of range reads as the default."""
    iterations = st.session_state.get("iterations", DEFAULT_ITERATIONS)
    if not isinstance(iterations, int) or not 1 <= iterations <= MAX_ITERATIONS:
        iterations = DEFAULT_ITERATIONS
    capsule = st.session_state.get("capsule", AUTO)
    if capsule != AUTO and not (isinstance(capsule, int) and 0 <= capsule < 10):
        capsule = AUTO
    return Controls(iterations, capsule)


def controls() -> Controls:
    """The controls every stage and view follows."""
    with st.container(horizontal=True, gap="medium", vertical_alignment="bottom"):
        iterations = st.slider("Routing iterations", 1, MAX_ITERATIONS, key="iterations", width=170,
                               help="How many times routing by agreement updates c (Procedure 1). The paper uses 3; "
                               "1 means no routing: c stays 0.1.")  # fmt: skip
        capsule = st.selectbox(
            "Inspect digit capsule", [AUTO, *range(10)], key="capsule", width=150,
            format_func=lambda c: "the prediction" if c == AUTO else f"digit {c}",
        )  # fmt: skip
    return Controls(iterations, capsule)


def write_query_params(choice: Choice, ctl: Controls, extra: dict[str, str] | None = None) -> None:
    """The share link: these controls, the open view (and routing part), plus `extra` (the lab's)."""
    params = {
        "iters": str(ctl.iterations),
        "capsule": str(ctl.capsule),
        "view": views.view(),
        **(extra or {}),
    }
    if choice.source == SAMPLE:
        params["sample"] = str(st.session_state.sample)
    if params["view"] == "routing":
        params["part"] = part()
        if params["part"] == "inspector" and "primary_i" in st.session_state:
            params["primary"] = str(st.session_state.primary_i)
    if params["view"] == "pose":
        params["dim"] = str(st.session_state.get(DIM_KEY, 0))
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)


def network_input(choice: Choice, where) -> np.ndarray | None:
    """The 28x28 MNIST-style image of the chosen input, or None with a hint drawn in `where`."""
    pixels = choice.pixels
    if pixels is None and choice.raw is not None:
        try:
            pixels = to_mnist(choice.raw)
        except (ValueError, TypeError) as e:
            where.error(f"This image cannot be used: {e}")
            return None
    if pixels is None:
        if choice.source == DRAW:
            where.info("Draw a digit in the black square: the network's answer appears here, stage by stage.")
        elif choice.source == UPLOAD:
            where.info("Upload a PNG or JPEG of a handwritten digit, or draw one instead.")
        else:
            where.info("This image holds no digit the network could read.")
    return pixels
