"""Capsule Network, live: draw a digit and watch dynamic routing decide what it is.

Run from the repository root:  streamlit run app/streamlit_app.py
The weights come from $CAPSNET_CHECKPOINT, else checkpoints/capsnet_mnist.pt.

This file is the page's table of contents: load the model, read the input, run the forward pass
once, then draw the sections (app/sections/) in order. Cached computations live in app/cache.py.
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
from app import cache
from app.sections import figure4, lab, pose, prediction, routing
from app.sections import input as digit_input

TRAIN_CMD = "python -m capsnet.train --data-root DIR --out checkpoints/capsnet_mnist.pt"

st.set_page_config(page_title="Capsule Network, live", page_icon=":material/neurology:", layout="wide")
# One torch thread: a batch of one gains nothing from two (12 ms vs 120 ms when the cores are
# busy), and concurrent sessions then never oversubscribe the cores.
torch.set_num_threads(1)
# Every element a run emits wakes the server's event loop from the script's thread, and each wake-up
# hands the interpreter lock back and forth; with many sessions running at once a thread waits up
# to the switch interval (5 ms by default) for it every time. 1 ms: with 20 sessions on 2 cores the
# median server time of a pose-slider run fell from 0.31 s to 0.17 s (p95 2.5 s to 1.3 s).
sys.setswitchinterval(0.001)

st.title("Capsule Network, live")
st.markdown(
    "A CapsNet (Sabour, Frosst & Hinton, *Dynamic Routing Between Capsules*, 2017) reads a "
    "digit with **capsules**: groups of neurons whose output is a vector. Its **length** says "
    "how likely an entity is present; its **direction** (the *pose*) says how it looks. "
    "1152 primary capsules each vote for each of the 10 digit capsules, and *routing by "
    "agreement* decides whose votes count. Draw a digit and follow it through the network."
)

# ---------------------------------------------------------------- the model
path = cache.checkpoint_path()
version = str(path)  # cache key of every per-input result: the weights loaded from this path
try:
    model = cache.load_model(version)
except capsnet.CheckpointError as e:
    st.error(
        f"**The CapsNet weights could not be loaded.**\n\n{e}\n\n"
        "Restore the shipped weights, or train your own (about an hour on a GPU):\n\n"
        f"```\ngit checkout -- checkpoints/\n{TRAIN_CMD}\n```\n\n"
        "To use another file, start the app with `CAPSNET_CHECKPOINT=/path/to/file.pt`."
    )
    st.stop()
meta = capsnet.checkpoint_meta(path)
if meta.get("test_accuracy") is not None:
    st.caption(f"Checkpoint `{path.name}`: test accuracy {float(meta['test_accuracy']):.2%} on MNIST.")

# ---------------------------------------------------------------- 1 · the input
samples, sample_labels = cache.load_samples()
digit_input.init_state(len(samples))
lab.init_state()
st.header("1 · Input", divider="gray")
col_in, col_seen, col_len = st.columns([1.15, 0.85, 1.5], gap="medium")
with col_in:
    choice = digit_input.choose(samples, sample_labels)
controls = digit_input.controls()
digit_input.write_query_params(choice, controls, lab.query_params())
pixels = digit_input.network_input(choice, col_in, col_seen)  # stops the page if there is no digit

# ---------------------------------------------------------------- one forward pass for the whole page
pixel_bytes = np.ascontiguousarray(pixels, dtype=np.float32).tobytes()
res = cache.forward(model, version, pixel_bytes, controls.iterations)
digit = res["prediction"] if controls.capsule == digit_input.AUTO else int(controls.capsule)  # inspected

prediction.show(col_seen, col_len, pixels, res, choice.label, controls.interactive)
routing.show(model, version, pixel_bytes, pixels, res, digit, controls.iterations, meta, controls.interactive)
pose.show(model, res, digit)
figure4.show(model, version, pixel_bytes, controls.iterations, digit)
lab.show(model, version, pixel_bytes, controls.iterations, controls.interactive)
