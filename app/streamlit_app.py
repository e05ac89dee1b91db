"""Capsule Network, live: draw a digit and watch dynamic routing decide what it is.

Run from the repository root:  streamlit run app/streamlit_app.py
The weights come from $CAPSNET_CHECKPOINT, else checkpoints/capsnet_mnist.pt.

This file is the page's table of contents: load the model, read the input, run the forward pass
once, draw the overview (the whole network for this input), then the one detailed view that is
open: the tabs come from the registry in app/views.py, and every view's `show` takes the same
ViewContext. The other views compute nothing. Cached computations live in app/cache.py.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts app/ on the path, not the repository root
    sys.path.insert(0, str(ROOT))

import numpy as np
import streamlit as st
import torch

import capsnet
from app import cache, views
from app.sections import classroom, lab, overview
from app.sections import input as digit_input
from app.view_context import ViewContext

INPUT_PX = 290  # the overview's input column: the 280 px canvas and its margin
ASSETS = ROOT / "app" / "assets"  # the page's icon and own CSS (the components' are in app/components/)

st.set_page_config(page_title="Capsule Network, live", page_icon=ASSETS / "icon.svg", layout="wide")
# One torch thread: a batch of one gains nothing from two (12 ms vs 120 ms when the cores are
# busy), and concurrent sessions then never oversubscribe the cores.
torch.set_num_threads(1)
# Every element a run emits wakes the server's event loop from the script's thread, and each wake-up
# hands the interpreter lock back and forth; with many sessions running at once a thread waits up
# to the switch interval (5 ms by default) for it every time. 1 ms: with 20 sessions on 2 cores the
# median server time of a pose-slider run fell from 0.31 s to 0.17 s (p95 2.5 s to 1.3 s).
sys.setswitchinterval(0.001)
st.html(ASSETS / "page.css")  # a .css file goes in as a <style>, outside the page's flow

st.title("Capsule Network, live")

# ---------------------------------------------------------------- the model
try:
    path = cache.checkpoint_path()
    version = str(path)  # cache key of every per-input result: the weights loaded from this path
    model = cache.load_model(version)
except capsnet.CheckpointError as e:  # the library's message says what is wrong and how to fix it
    st.error(
        f"**The CapsNet weights could not be loaded.**\n\n{e}\n\n"
        "To use another file, start the app with `CAPSNET_CHECKPOINT=/path/to/file.pt`."
    )
    st.stop()
meta = capsnet.checkpoint_meta(path)
accuracy = (
    f" Checkpoint `{path.name}`: {float(meta['test_accuracy']):.2%} on the MNIST test set."
    if meta.get("test_accuracy") is not None
    else ""
)
st.caption(
    "A CapsNet (Sabour, Frosst & Hinton, *Dynamic Routing Between Capsules*, 2017) reads a digit with "
    "**capsules**, groups of neurons whose output is a vector: its length says how likely a part or "
    "digit is present, its direction how it looks. Draw a digit and follow it through the network, "
    "then open a view below for the details." + accuracy
)

# ---------------------------------------------------------------- the overview: input and all six stages
samples, sample_labels = cache.load_samples()
digit_input.init_state(len(samples))
lab.init_state()
classroom.init_state()
with st.container(key="overview", horizontal=True, gap="medium"):
    # The canvas is 280 px wide: the input column never gets narrower; the stages take the rest.
    col_in, col_net = st.container(width=INPUT_PX), st.container(width="stretch")
    with col_in:
        picked = classroom.picked_input()  # a class drawing the teacher opened, drawn in its place
    # The input's and the controls' values before their widgets: the prediction goes to the page
    # ahead of them (the browser draws it before it redraws the input column).
    choice = picked or digit_input.current_choice(samples, sample_labels)
    controls = digit_input.current_controls()
    pixels = digit_input.network_input(choice, col_net)
    ctx = None
    if pixels is not None:
        # One forward pass for the whole page; the overview and the open view read it.
        pixel_bytes = np.ascontiguousarray(pixels, dtype=np.float32).tobytes()
        res = cache.forward(model, version, pixel_bytes, controls.iterations)
        digit = res["prediction"] if controls.capsule == digit_input.AUTO else int(controls.capsule)
        ctx = ViewContext(model=model, version=version, pixels=pixels, pixel_bytes=pixel_bytes, res=res,
                          controls=controls, meta=meta, checkpoint=path, digit=digit)  # fmt: skip
        view = views.get(views.view())
        # The open view's numbers are computed while the browser draws the prediction.
        prepare = (lambda: view.prepare(ctx)) if view.prepare else (lambda: None)
        overview.show(col_net, ctx, choice.label, meanwhile=prepare)
    with col_in:
        if picked is None:
            digit_input.draw_choice(choice, samples, sample_labels)
        controls = digit_input.controls()
        classroom.send_box(ctx)  # with ?class=CODE: send this input to the class
digit_input.write_query_params(choice, controls, {**lab.query_params(), **classroom.query_params()})
if ctx is None and views.get(views.view()).needs_input:
    st.stop()

# ---------------------------------------------------------------- details on demand: only the open view runs
tabs = st.tabs([v.label for v in views.VIEWS.values()], key=views.VIEW_KEY, on_change="rerun")
for view, tab in zip(views.VIEWS.values(), tabs):
    if tab.open:
        with tab:
            view.show(ctx)
