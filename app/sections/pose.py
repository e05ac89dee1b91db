"""The pose view: the pose explorer. 16 sliders nudge the inspected capsule's pose and the decoder
redraws it, beside the unperturbed reconstruction and the difference: in the browser while a
slider moves (app/pose_sliders.py), and here when it is released."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import analysis as A
from app import images as I
from app.cache import decode, picture
from app.decoder_weights import browser_copy
from app.pose_sliders import DIFF_LIMIT, pose_sliders

# The server's pictures are the reconstruction until the page runs the decoder itself; then its
# own canvases show the same three pictures, live, and these would only repeat them.
HIDE_WHEN_LIVE = """<style>
.st-key-reconstruction:has([data-live="ready"]) [data-testid="stImage"] { display: none; }
</style>"""


@st.fragment
def _explorer(model, poses: np.ndarray, d: int) -> None:
    """Reruns alone when a slider is released (the forward pass is not redone)."""
    weights, why = browser_copy(model)
    with st.container(key="reconstruction"):
        live = {"weights": weights, "why": why, "pose": [float(v) for v in poses[d]], "digit": d}
        offsets = pose_sliders(f"pose_{d}", A.DIGIT_DIM, live=live)
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


def show(model, res: dict, digit: int) -> None:
    lengths, pred = res["lengths"], res["prediction"]
    with st.container(key="pose"):
        st.subheader(f"What the 16 numbers of capsule {digit} encode")
        as_if = (
            "" if digit == pred
            else f" The network says {pred}; decoding capsule {digit} shows the input *as if* it were a {digit}."
        )  # fmt: skip
        st.markdown(
            f"The decoder (three fully connected layers) redraws the input from $v_{{{digit}}}$ alone, "
            f"all other capsules masked to zero. Nudge one of its 16 dimensions and watch what it "
            f"controls: stroke width, slant, scale, a local part. |v{digit}| = {lengths[digit]:.2f}.{as_if} "
            "Right: the change, red where the new image is brighter, blue where it is darker."
        )
        st.html(HIDE_WHEN_LIVE)
        _explorer(model, res["poses"], digit)
