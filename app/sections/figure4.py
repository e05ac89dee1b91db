"""The Figure 4 view: the paper's Fig. 4 for the inspected capsule, every pose dimension at once,
each row named as the pose explorer's sliders are (from the pose atlas, when there is one for
these weights)."""

from __future__ import annotations

import streamlit as st

from app import cache, pose_measures
from app import figures as F
from app.cache import perturbation_grid
from app.view_context import ViewContext


def show(ctx: ViewContext) -> None:
    digit = ctx.digit
    atlas, why = cache.pose_atlas(ctx.checkpoint)
    names = pose_measures.dimension_names(atlas, digit)
    with st.container(key="grid"):
        st.subheader(f"Every dimension of capsule {digit} at once (the paper's Fig. 4)")
        st.markdown(
            f"Row $d$ decodes $v_{{{digit}}}$ with its dimension $d$ shifted by −0.25, −0.20, …, +0.25 "
            "(11 columns). All 176 images come from one batched call of the decoder. "
            + (
                f"Each row is named by what that dimension does to a {digit} on average (the pose atlas, "
                "in the pose explorer's view)."
                if atlas
                else f"The rows are not named: {why}"
            )
        )
        grid = perturbation_grid(ctx.model, ctx.version, ctx.pixel_bytes, ctx.iterations, digit)
        st.plotly_chart(
            F.perturbation_grid_figure(grid, pose_measures.perturbation_steps(), names),
            key="figure4_chart",
            alt=f"16 by 11 reconstructions of digit {digit}: rows are pose dimensions, columns offsets",
        )
