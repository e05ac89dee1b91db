"""The overview: the whole network on one screen, drawn with this input's numbers.

Six stages in the paper's order, each with its symbol and tensor shape: the input x, Conv1's 256
feature maps, the 1152 primary capsules u_i, routing (where c to the inspected digit rose and
fell, on the ink), the 10 digit capsules v_j and the decoder's reconstruction. Above them, one
sentence says what the network reads and whether routing changed it. A click on a digit capsule
inspects it; a click on a primary capsule opens it in the routing view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

from app import cache, pixel_arrays, routing_measures, sentences, views
from app.cache import picture
from app.capsule_map import capsule_map, digit_bars, image_item, map_item, picked_in, primary_map
from app.sentences import fmt2
from app.view_context import ViewContext
from capsnet.model import NUM_PRIMARY, margin_loss

STAGES = "overview_stages"  # the key of the six stages' element
PRIMARY, DIGITS = "primary", "digits"  # its two maps' ids


def _pick() -> None:
    """A click in a stage: on a DigitCaps bar, inspect that digit everywhere on the page; on a
    PrimaryCaps cell, open the routing view, its inspector on that capsule."""
    which = picked_in(STAGES)
    if which is None:
        return
    chart, k = which
    if chart == DIGITS and 0 <= k < 10:
        st.session_state.capsule = k
    elif chart == PRIMARY and 0 <= k < NUM_PRIMARY:
        views.open_primary(k)


def _formulas(where, lengths: np.ndarray, pred: int) -> None:
    """Squash and the margin loss (Eq. 1 and 4), with this input's margin loss if it were labelled `pred`."""
    # Drawn only while open (on_change="rerun"): KaTeX typesetting them cost the browser ~50 ms a stroke.
    box = where.expander("The formulas: squash and margin loss, with this input's numbers", key="formulas",
                         on_change="rerun")  # fmt: skip
    if not box.open:
        return
    with box:
        st.latex(r"v_j = \frac{\|s_j\|^2}{1 + \|s_j\|^2}\,\frac{s_j}{\|s_j\|}")
        st.latex(r"L_k = T_k \max(0,\, 0.9 - \|v_k\|)^2 + 0.5\,(1 - T_k)\max(0,\, \|v_k\| - 0.1)^2")
        loss = float(margin_loss(torch.tensor(lengths)[None], torch.tensor([pred])))
        st.markdown(
            f"Training pushes the true digit's length above $m^+ = 0.9$ and every other below $m^- = 0.1$. "
            f"If this input were labelled {pred}, its margin loss would be $\\sum_k L_k = {loss:.4f}$."
        )


@dataclass(frozen=True)
class StagePictures:
    input: bytes  # PNG of x
    conv1: bytes  # PNG of Conv1's 256 maps
    routing: bytes  # PNG of delta c to the inspected digit on the ink
    limit: float  # its colour range, +-limit
    decoder: bytes  # PNG of the reconstruction from the inspected digit capsule


def _stage_pictures(ctx: ViewContext) -> StagePictures:
    pixels, digit = ctx.pixels, ctx.digit
    conv1 = cache.conv1_maps(ctx.model, ctx.version, ctx.pixel_bytes)  # (256, 20, 20)
    recon = cache.reconstruction(
        ctx.model, ctx.version, ctx.pixel_bytes, ctx.iterations, digit
    )  # from v_digit
    pooled = pixel_arrays.max_pool(conv1, 2)  # (256, 10, 10): each map at half size, its peaks kept
    top_act = float(np.quantile(conv1[conv1 > 0], 0.99)) if np.any(conv1 > 0) else 1.0
    mosaic = pixel_arrays.stitch(pooled, 16, 16, gap=1, fill=np.nan)
    delta = routing_measures.coupling_change(ctx.res["coupling"][-1, :, digit])  # (1152,)
    on_ink = routing_measures.field_map(delta, ink=pixels)  # (28, 28), 0 off the ink
    limit = pixel_arrays.symmetric_limit(on_ink)
    return StagePictures(
        input=picture("digit_image", pixels, 5),
        conv1=picture("activation_mosaic_image", mosaic, top_act),
        routing=picture("signed_overlay_image", pixels, on_ink, limit, px=5),
        limit=limit,
        decoder=picture("digit_image", recon, 5),
    )


def _stage(title: str, shape: str, item: dict) -> dict:
    """A stage's figure: its heading ("title · shape") over its picture or map and caption."""
    return {"title": title, "subtitle": shape, **item}


def show(col, ctx: ViewContext, label: int | None, meanwhile: Callable[[], None] = lambda: None) -> None:
    """Draw the prediction and the six stages in `col`; ctx.digit: the inspected digit capsule; label:
    the MNIST label of a shipped sample. The prediction goes to the page first, before anything else
    is computed; `meanwhile` is more work for the server while the browser draws it."""
    res, digit = ctx.res, ctx.digit
    lengths, pred, T = res["lengths"], res["prediction"], len(res["coupling"])
    result = routing_measures.Ablation.from_trace(res["lengths_per_iter"])
    with col:
        with st.container(key="prediction"):
            left, right = st.columns([0.24, 0.76], gap="small", vertical_alignment="center")
            left.metric("Prediction", str(pred), delta=f"|v{pred}| = {lengths[pred]:.2f}", delta_color="off",
                        delta_arrow="off", border=True)  # fmt: skip
            # The stages' pictures (and `meanwhile`) are computed now, before anything else goes to
            # the page: the prediction reaches the browser alone and is drawn at once. Whatever came
            # right behind it would go into the same pass of the browser's React, and the
            # prediction would wait for the whole overview (tools/bench_stroke.py: 0.27 s so, 0.35 s
            # without, against 0.25 s for a page that only predicts).
            meanwhile()
            pictures = _stage_pictures(ctx)
            note = (
                "" if label is None else f" MNIST label: {label} ({'correct' if label == pred else 'wrong'})."
            )
            right.markdown(sentences.overview_sentence(result) + note)
            _formulas(right, lengths, pred)

        # The six stages in two rows of three, as one element: one pass of the browser's React, not
        # eighteen.
        u = res["primary_len"]
        top = [
            _stage("1 · Input x", "28×28", image_item(pictures.input, "what the network sees", "the input x")),
            _stage("2 · Conv1", "256 × 20×20", image_item(
                pictures.conv1, "2×2 max-pooled; colour 0 to the 99th percentile", "Conv1's 256 feature maps")),
            _stage("3 · PrimaryCaps u_i", "1152 × 8 = 32 types × 6×6", map_item(
                primary_map(u, st.session_state.get("primary_i")),
                f"|u_i| from {u.min():.2f} (dark) to {u.max():.2f} (yellow); click a capsule to inspect it",
                id=PRIMARY, max_width=400)),
        ]  # fmt: skip
        bottom = [
            _stage(f"4 · Routing c_i{digit}", f"{T} iteration{'s' if T > 1 else ''}", image_item(
                pictures.routing,
                f"Δc to {digit}, summed over the 32 types, on the ink: red rose, blue fell (±{fmt2(pictures.limit)})",
                f"how c to {digit} changed, on the ink")),
            _stage("5 · DigitCaps v_j", "10 × 16; length = presence", map_item(
                digit_bars(lengths, pred, digit, hint="click: inspect it"),
                f"|v_j|; click a bar to inspect that capsule (now: {digit})", id=DIGITS, max_width=330)),
            _stage("6 · Decoder", "v → 28×28", image_item(
                pictures.decoder, f"redrawn from v{digit}", f"the reconstruction from v{digit}")),
        ]  # fmt: skip
        capsule_map(STAGES, {"kind": "rows", "rows": [{"widths": [0.8, 1.05, 2.15], "items": top},
                                                      {"widths": [1.05, 1.95, 1], "items": bottom}]}, _pick)  # fmt: skip
