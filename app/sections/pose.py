"""The pose view: the pose explorer. 16 sliders nudge the inspected capsule's pose and the decoder
redraws it, beside the unperturbed reconstruction and the difference: in the browser while a
slider moves (app/pose_sliders.py), and here when it is released. Each slider is named by what
it measurably does to that digit (the pose atlas, capsnet.atlas, when it was measured on these
weights); below, the same measures on this input's capsule for one dimension beside the atlas's
average, and the atlas's 10 x 16 map, whose cells open that digit and dimension here."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import cache, pose_measures
from app import images as I
from app.cache import decode, picture
from app.capsule_map import atlas_map, capsule_map, picked
from app.decoder_weights import browser_copy
from app.pose_sliders import DIFF_LIMIT, pose_sliders
from app.view_context import ViewContext
from capsnet.atlas import OFFSET, describe
from capsnet.model import DIGIT_DIM, NUM_DIGITS

ATLAS_MAP = "pose_atlas_map"
DIM_KEY = "pose_dim"  # the chosen dimension (measured below, outlined among the sliders; ?dim=)
# The measures as the atlas's map and the sliders' names give them: capsnet.atlas's standardised
# effects, pixels the ink moves per unit of pose offset (one definition), and the local share.
MEASURE_ROWS = [("ink", "stroke thickness, px"), ("x", "right, px"), ("y", "down, px"), ("width", "px"),
                ("height", "px"), ("slant", "top moves right, px"), ("local", "share of the change")]  # fmt: skip


@st.fragment
def _explorer(model, poses: np.ndarray, d: int, names: list[str], chosen: int) -> None:
    """Reruns alone when a slider is released (the forward pass is not redone)."""
    weights, why = browser_copy(model)
    with st.container(key="reconstruction"):
        live = {"weights": weights, "why": why, "pose": [float(v) for v in poses[d]], "digit": d}
        offsets = pose_sliders(f"pose_{d}", DIGIT_DIM, live=live, names=names, chosen=chosen)
        moved = poses.copy()
        moved[d] += offsets
        base, new = decode(model, np.stack([poses, moved]), [d, d])
        diff = new - base
        st.image(
            [picture("digit_image", base, 7), I.png(I.digit_image(new, 7)),
             I.png(I.difference_image(diff, DIFF_LIMIT, 7))],
            caption=[f"decoded from v{d} as it is", f"with the offsets ({np.count_nonzero(offsets)} moved)",
                     f"difference (max {np.abs(diff).max():.2f})"],
            output_format="PNG",
        )  # fmt: skip


def _pick_cell() -> None:
    """A click on a cell of the atlas map: explore that digit's capsule and that dimension."""
    k = picked(ATLAS_MAP)
    if k is not None and 0 <= k < NUM_DIGITS * DIGIT_DIM:
        st.session_state.capsule, st.session_state[DIM_KEY] = divmod(k, DIGIT_DIM)


def show(ctx: ViewContext) -> None:
    model, version, pixel_bytes, iterations, res, digit = (
        ctx.model, ctx.version, ctx.pixel_bytes, ctx.iterations, ctx.res, ctx.digit
    )  # fmt: skip
    lengths, pred = res["lengths"], res["prediction"]
    atlas, why = cache.pose_atlas(ctx.checkpoint)
    names = pose_measures.dimension_names(atlas, digit)
    with st.container(key="pose"):
        st.subheader(f"What the 16 numbers of capsule {digit} encode")
        as_if = (
            "" if digit == pred
            else f" The network says {pred}; decoding capsule {digit} shows the input *as if* it were a {digit}."
        )  # fmt: skip
        named = (
            f" Each slider is named by what it measurably does to a {digit} on average, from the pose atlas "
            "below." if atlas else ""
        )  # fmt: skip
        st.markdown(
            f"The decoder (three fully connected layers) redraws the input from $v_{{{digit}}}$ alone, "
            f"all other capsules masked to zero. Nudge one of its 16 dimensions and watch what it "
            f"controls. |v{digit}| = {lengths[digit]:.2f}.{as_if}{named} "
            "Right: the change, red where the new image is brighter, blue where it is darker. "
            f"The outlined slider, dim {int(st.session_state.get(DIM_KEY, 0))}, is the dimension measured on your "
            "digit below (choose another there, or click a cell of the atlas)."
        )
        if why:
            st.warning(f"**The sliders are not named:** {why}")
        st.session_state.setdefault(DIM_KEY, 0)
        chosen = int(st.session_state[DIM_KEY])
        _explorer(model, res["poses"], digit, names, chosen)
        _this_input(model, version, pixel_bytes, iterations, digit, atlas, names)
        if atlas:
            _atlas_map(atlas, digit, chosen)


def _this_input(model, version: str, pixel_bytes: bytes, iterations: int, digit: int, atlas: dict | None,
                names: list[str]) -> None:  # fmt: skip
    """The atlas's measures on this input's capsule for the chosen dimension, beside the average."""
    with st.container(key="pose_measure"):
        st.markdown("**Measured on your digit**")
        d = st.selectbox(
            "Dimension", range(DIGIT_DIM), key=DIM_KEY, format_func=lambda k: names[k], width=420
        )
        live = cache.capsule_measures(model, version, pixel_bytes, iterations, digit)[d]
        avg = atlas["digits"][digit][d] if atlas else None
        text = f"Moving dim {d} of this input's capsule {digit} by ±{OFFSET:g}: **{describe(live)}**."
        if avg:
            n = atlas["per_digit_used"][digit]
            same = "the same change" if avg["label"] == live["label"] else "a different change"
            text += f" On average over {n} test {digit}s: **{describe(avg)}**, so your digit shows {same}."
        st.markdown(text)
        head = "| per unit of pose offset | your digit |" + (" atlas average |" if avg else "") + "\n"
        head += "|---|---|" + ("---|" if avg else "") + "\n"
        rows = "".join(
            f"| {m} ({unit}) | {_effect(m, live)} |" + (f" {_effect(m, avg)} |" if avg else "") + "\n"
            for m, unit in MEASURE_ROWS
        )
        st.markdown(head + rows)


def _effect(measure: str, cell: dict) -> str:
    if measure == "local":
        return f"{cell['effects']['local']:.0%}"
    return f"{cell['standardised'][measure]:+.2f}"


def _atlas_map(atlas: dict, digit: int, dim: int) -> None:
    with st.container(key="pose_atlas"):
        st.markdown(
            f"**The pose atlas:** what each dimension of each digit capsule does, measured over the first "
            f"{min(atlas['per_digit_used'])} test digits of each class (`{atlas['checkpoint']}`, decoded with each "
            f"dimension moved by ±{atlas['offset']:g}; `python -m capsnet.atlas`). Colour: position (blue), slant (orange), "
            "size (green), stroke thickness (purple), a local part (red); darker is stronger; the number is "
            "pixels per unit of pose offset (the share of the change for a local part). Hover for every "
            "slope; click a cell to explore it above."
        )
        capsule_map(ATLAS_MAP, atlas_map(atlas, digit, dim), _pick_cell)
