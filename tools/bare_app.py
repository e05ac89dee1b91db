"""A page that only predicts: the app's canvas, to_mnist, one forward pass and the prediction.

The yardstick of tools/bench_stroke.py (how fast a stroke can become a prediction on this machine
with Streamlit and this model), never shown to users. Run from the repository root:
    streamlit run tools/bare_app.py
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np
import streamlit as st
import torch

from app import cache
from app.canvas import drawing_canvas
from capsnet.preprocess import to_mnist

st.set_page_config(page_title="Predict only", layout="wide")
torch.set_num_threads(1)
sys.setswitchinterval(0.001)  # as the app: the same server settings, only the page differs

model = cache.load_model(str(cache.checkpoint_path()))
st.session_state.setdefault("canvas_n", 0)
n = st.session_state.canvas_n
drawn = drawing_canvas(key=f"canvas-{n}")


def _clear() -> None:
    st.session_state.canvas_n += 1


st.button("Clear the canvas", on_click=_clear)
try:
    pixels = None if drawn.image_data is None else to_mnist(drawn.image_data)
except (ValueError, TypeError) as e:  # as the app: a drawing it cannot read is a message, not a crash
    st.error(f"This image cannot be used: {e}")
    pixels = None
if pixels is not None:
    x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[None, None]
    with torch.no_grad():
        lengths = model(x).lengths[0]
    pred = int(lengths.argmax())
    with st.container(key="prediction"):
        st.metric("Prediction", str(pred), delta=f"|v{pred}| = {float(lengths[pred]):.2f}", delta_color="off")
