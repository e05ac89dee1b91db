"""Section 1, right: the 28x28 image the network sees, its prediction and the 10 capsule lengths."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import figures as F
from app.cache import picture


def show(col_seen, col_len, pixels: np.ndarray, res: dict, label: int | None, interactive: bool) -> None:
    lengths, pred = res["lengths"], res["prediction"]
    runner_up = int(np.argsort(lengths)[::-1][1])
    with col_seen:
        st.image(picture("digit_image", pixels, 8), caption="What the network sees: 28×28, MNIST-style",
                 output_format="PNG")  # fmt: skip
        with st.container(key="prediction"):
            st.metric("Prediction", str(pred), delta=f"|v{pred}| = {lengths[pred]:.2f}", delta_color="off",
                      delta_arrow="off", border=True)  # fmt: skip
            note = f"Runner-up: {runner_up} (|v| = {lengths[runner_up]:.2f})."
            if label is not None:
                note += f" MNIST label: {label} {'(correct)' if label == pred else '(wrong)'}."
            st.caption(note)

    with col_len:
        if interactive:
            st.plotly_chart(F.lengths_bar(lengths, pred), alt=f"Capsule lengths: digit {pred} is longest",
                            key="lengths_bar")  # fmt: skip
        else:
            st.image(
                picture("bar_chart_image", lengths, pred, shown_width=460), width=460, output_format="PNG"
            )
        confidence = (
            "confident" if lengths[pred] >= 0.9 else "fairly sure" if lengths[pred] >= 0.5 else "unsure"
        )
        st.markdown(
            f"Each digit capsule outputs a 16-D vector $v_j$, squashed so its length lies in 0..1. "
            f"Here $|v_{{{pred}}}| = {lengths[pred]:.2f}$: the network is {confidence} a {pred} is present. "
            f"Training pushes the true digit above $m^+ = 0.9$ and all others below $m^- = 0.1$ (dashed lines)."
        )

    with st.expander("The formulas: squash and margin loss", expanded=False):
        st.latex(r"v_j = \frac{\|s_j\|^2}{1 + \|s_j\|^2}\,\frac{s_j}{\|s_j\|}")
        st.latex(r"L_k = T_k \max(0,\, 0.9 - \|v_k\|)^2 + 0.5\,(1 - T_k)\max(0,\, \|v_k\| - 0.1)^2")
        loss = sum(
            (max(0.0, 0.9 - v) ** 2 if k == pred else 0.5 * max(0.0, v - 0.1) ** 2)
            for k, v in enumerate(lengths)
        )
        st.markdown(
            f"If this input were labelled {pred}, its margin loss would be $\\sum_k L_k = {loss:.4f}$."
        )
