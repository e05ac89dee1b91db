"""Section 2: routing by agreement, iteration by iteration, for the inspected digit capsule."""

from __future__ import annotations

import numpy as np
import streamlit as st

import capsnet
from app import analysis as A
from app import figures as F
from app.cache import picture

ITER_COUPLING_WIDTH = 760  # px: the coupling picture of an iteration, beside two 192 px ones


def show(pixels: np.ndarray, res: dict, digit: int, interactive: bool) -> None:
    lengths, pred = res["lengths"], res["prediction"]
    coupling, primary_len = res["coupling"], res["primary_len"]  # (T, 1152, 10), (1152,)
    T = coupling.shape[0]
    entropy = A.coupling_entropy(coupling)
    strong_i, strong_c = A.strongest_primary(coupling, primary_len, digit)
    s_type, s_row, s_col = capsnet.primary_position(strong_i)
    maps = [A.type_position_map(coupling[t, :, digit], primary_len) for t in range(T)]  # (32, 6, 6) each
    pos_maps = [m.sum(axis=0) for m in maps]
    # c barely differs between positions when routing stays near uniform: colour from the smallest to
    # the largest value over all iterations, so the differences show and iterations still compare.
    pos_min, pos_max = min(float(m.min()) for m in pos_maps), max(float(m.max()) for m in pos_maps)
    agreement = res["agreement"][:, :, digit]  # (T, 1152)
    evidence = [np.clip(A.evidence_map(agreement[t]), 0.0, None) for t in range(T)]  # support only
    ev_max = max(float(e.max()) for e in evidence)
    s_len = agreement.sum(axis=1)  # = |s_j| per iteration
    share_pos = agreement[-1].reshape(A.NUM_TYPES, A.GRID * A.GRID).sum(axis=0)  # (36,) per grid position
    top_pos = int(np.argmax(share_pos))

    with st.container(key="routing"):
        st.header(f"2 · Routing by agreement, shown for digit {digit}", divider="gray")
        left, right = st.columns([1, 1], gap="large")
        with left:
            st.markdown(
                "Each primary capsule $i$ predicts every digit capsule: $\\hat u_{j|i} = W_{ij} u_i$. "
                "The coupling coefficients $c_{ij}$ decide how much of capsule $i$'s vote goes to digit "
                "$j$. They start uniform and move towards the digits whose output agrees with the vote:"
            )
            st.latex(
                r"c_{ij} = \frac{e^{b_{ij}}}{\sum_k e^{b_{ik}}},\quad s_j = \sum_i c_{ij}\,\hat u_{j|i},"
                r"\quad v_j = \mathrm{squash}(s_j),\quad b_{ij} \mathrel{+}= \hat u_{j|i}\cdot v_j"
            )
            trail = " → ".join(f"{c:.2f}" for c in strong_c)
            st.markdown(
                f"**Live:** the primary capsule sending most to digit {digit} is $i = {strong_i}$ "
                f"(type {s_type}, grid position ({s_row}, {s_col}), $|u_i| = {primary_len[strong_i]:.2f}$). "
                f"Its $c_{{i,{digit}}}$ over the iterations: **{trail}**. "
                + (
                    f"The mean entropy of $c_i$ falls from {entropy[0]:.2f} bits (uniform, $\\log_2 10$) "
                    f"to {entropy[-1]:.2f} bits: routing sharpens."
                    if entropy[0] - entropy[-1] >= 0.05
                    else f"The mean entropy of $c_i$ stays at {entropy[-1]:.2f} bits (uniform is "
                    f"$\\log_2 10 = 3.32$): for most primary capsules the agreement $\\hat u_{{j|i}}\\cdot v_j$ "
                    f"is small, so c moves only a little from 0.1. Trained CapsNets often route like this; "
                    f"the decision then rests mostly on the votes $\\hat u_{{j|i}}$ themselves."
                )
            )
            if interactive:
                st.plotly_chart(
                    F.entropy_line(entropy), alt="Mean entropy of the coupling coefficients per iteration"
                )
            else:
                st.image(picture("entropy_image", entropy, shown_width=460), width=460, output_format="PNG")
        with right:
            st.markdown(
                f"How each digit capsule's length $|v_j|$ changes as routing proceeds; "
                f"digit {pred} ends at {lengths[pred]:.2f}."
            )
            if interactive:
                st.plotly_chart(F.lengths_over_iterations(res["lengths_per_iter"], pred),
                                alt="Capsule lengths after each routing iteration")  # fmt: skip
            else:
                st.image(
                    picture("lengths_over_iterations_image", res["lengths_per_iter"], pred, shown_width=460),
                    width=460,
                    output_format="PNG",
                )

        st.markdown(
            f"Below, for each iteration: **left**, all $c_{{ij}}$ (10 digits × 1152 primary capsules, "
            f"colour fixed to 0..1, row {digit} outlined); **middle**, $\\sum_{{\\text{{types}}}} c_{{i{digit}}}\\,|u_i|$ "
            f"on the 6×6 PrimaryCaps grid (light = least, dark = most, one scale for all iterations); "
            f"**right**, where in the drawing the evidence for digit {digit} comes from: each primary "
            f"capsule's share of $|s_{{{digit}}}|$, $c_{{i{digit}}}\\,\\hat u_{{{digit}|i}}\\cdot v_{{{digit}}}/|v_{{{digit}}}|$, "
            f"spread over its 17×17 receptive field. These shares add up to $|s_{{{digit}}}|$: "
            + " → ".join(f"{v:.2f}" for v in s_len)
            + f" over the iterations; the grid position giving most is ({top_pos // 6}, {top_pos % 6})."
        )
        if not interactive:
            st.image(
                picture("colorbar_image"),
                caption="colour of c, the same 0..1 scale in every iteration",
                output_format="PNG",
            )
        for t in range(T):
            st.subheader(f"Iteration {t + 1}")
            if interactive:
                c1, c2, c3 = st.columns([2.6, 1, 1])
                c1.plotly_chart(F.coupling_heatmap(coupling[t], highlight=digit),
                                alt=f"Coupling coefficients in iteration {t + 1}")  # fmt: skip
                c2.plotly_chart(
                    F.position_map(pos_maps[t], pos_max, pos_min), alt=f"c·|u| to {digit} per grid position"
                )
                c3.plotly_chart(F.evidence_overlay(pixels, evidence[t], ev_max),
                                alt=f"Evidence for {digit} on the input")  # fmt: skip
            else:
                # One element for the three pictures (they sit side by side and wrap on a narrow
                # screen): a run sends, and the page draws, one element instead of a row of columns.
                st.image(
                    [picture("coupling_image", coupling[t], highlight=digit, shown_width=ITER_COUPLING_WIDTH),
                     picture("position_image", pos_maps[t], pos_max, pos_min),
                     picture("evidence_image", pixels, evidence[t], ev_max)],
                    caption=["c_ij: rows are digits j, columns the 1152 primary capsules i = type·36 + row·6 + col",
                             f"Σ c·|u| to {digit}: {pos_min:.2f} (light) to {pos_max:.2f} (dark)",
                             f"share of |s_{digit}| on the input"],
                    output_format="PNG",
                )  # fmt: skip
        with st.expander(f"All 32 capsule types after the last iteration (c·|u| to digit {digit})"):
            st.caption("32 panels (types 0–31, row by row), each the 6×6 grid of one capsule type.")
            if interactive:
                st.plotly_chart(F.type_grid_figure(A.type_grid(maps[-1]), float(maps[-1].max())),
                                alt="Per-type routed evidence")  # fmt: skip
            else:
                st.image(
                    picture("type_grid_image", A.type_grid(maps[-1]), float(maps[-1].max())),
                    output_format="PNG",
                )
