"""The 16 pose sliders as one element: native range inputs in a small custom component.

Sixteen st.slider widgets cost a lot per move of any one of them, on both ends. In the browser
each is a BaseWeb React slider that Streamlit draws again on every run of the pose explorer
(about 35 ms of the page's main thread on this machine, before the images). On the server each is
a separate element message, and every message wakes the event loop from the script's thread: with
20 sessions on 2 cores those wake-ups queue for the interpreter lock (measured with py-spy, the
largest single wait of a pose run). Here the 16 dimensions, the "wider range" switch and the reset
button are one element with plain HTML inputs: one message per run, and the browser only updates
16 numbers. Arrow keys, Home/End and dragging work as on any range input; a value is sent when the
slider is released (the input's `change` event), as st.slider does.

The browser's state is checked on the way in (clean_pose): whatever a page sends, the explorer
gets 16 finite offsets on the slider grid, within the range shown.
"""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

STEP = 0.05
NARROW, WIDE = 0.25, 0.5

HTML = """
<div class="pose" role="group" aria-label="Pose offsets">
  <div class="grid"></div>
  <div class="bar">
    <label class="wide-label"><input type="checkbox" class="wide"> Wider range (±0.5)</label>
    <button type="button" class="reset">Reset all 16 to 0</button>
  </div>
</div>
"""

CSS = """
.pose { font-family: var(--st-font, sans-serif); color: var(--st-text-color, #31333f); font-size: 0.875rem; }
.grid { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 0.35rem 1.5rem; }
.cell { display: flex; flex-direction: column; }
.cell .head { display: flex; justify-content: space-between; }
.cell output { font-variant-numeric: tabular-nums; color: var(--st-primary-color, #ff4b4b); }
.cell input { width: 100%; margin: 0.2rem 0 0.3rem; accent-color: var(--st-primary-color, #ff4b4b); }
.bar { display: flex; gap: 1.5rem; align-items: center; margin-top: 0.6rem; }
.reset { font: inherit; padding: 0.35rem 0.8rem; border-radius: 0.5rem; cursor: pointer;
         border: 1px solid var(--st-border-color, #d6d6d9); background: var(--st-background-color, #fff);
         color: inherit; }
.reset:hover { border-color: var(--st-primary-color, #ff4b4b); color: var(--st-primary-color, #ff4b4b); }
"""

# Hydrates the inputs from `data` on every run (only where they differ, so a slider being dragged
# is not reset under the pointer) and reports {values, wide} when a slider is released, the range
# switched or everything reset.
JS = """
const fmt = v => (v >= 0 ? "+" : "") + v.toFixed(2);

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  const grid = parentElement.querySelector(".grid");
  const wide = parentElement.querySelector(".wide");
  const reset = parentElement.querySelector(".reset");
  const n = data.values.length;
  if (grid.children.length !== n) {
    grid.replaceChildren();
    for (let k = 0; k < n; k++) {
      const cell = document.createElement("label");
      cell.className = "cell";
      cell.innerHTML = `<span class="head"><span>dim ${k}</span><output></output></span>` +
                       `<input type="range" aria-label="dim ${k}">`;
      grid.appendChild(cell);
    }
  }
  const inputs = [...grid.querySelectorAll("input")];
  const outputs = [...grid.querySelectorAll("output")];
  const limit = data.limit;
  inputs.forEach((input, k) => {
    input.min = String(-limit); input.max = String(limit); input.step = String(data.step);
    if (Number(input.value) !== data.values[k]) input.value = String(data.values[k]);
    outputs[k].textContent = fmt(Number(input.value));
    input.oninput = () => { outputs[k].textContent = fmt(Number(input.value)); };
    input.onchange = () => send();
  });
  wide.checked = data.wide;
  const send = () => setStateValue("pose", { values: inputs.map(i => Number(i.value)), wide: wide.checked });
  wide.onchange = () => {
    const lim = wide.checked ? data.wide_limit : data.narrow_limit;
    inputs.forEach(i => { i.min = String(-lim); i.max = String(lim); });  // the browser clamps the values
    send();
  };
  reset.onclick = () => { inputs.forEach(i => { i.value = "0"; }); send(); };
}
"""

_COMPONENT = st.components.v2.component("capsnet.pose_sliders", html=HTML, css=CSS, js=JS)


def clean_pose(raw, dims: int) -> tuple[np.ndarray, bool]:
    """What a page sent ({"values": [...], "wide": bool}, or anything else) -> (dims offsets as
    float32, wide): finite, rounded to the slider step, within +-0.5 if wide else +-0.25; missing
    or unreadable values are 0."""
    raw = raw if isinstance(raw, dict) else {}
    wide = raw.get("wide") is True
    limit = WIDE if wide else NARROW
    values = raw.get("values")
    values = list(values) if isinstance(values, (list, tuple)) else []
    out = np.zeros(dims, dtype=np.float32)
    for k, v in enumerate(values[:dims]):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = round(min(max(float(v), -limit), limit) / STEP) * STEP
    return out, wide


def pose_sliders(key: str, dims: int = 16) -> np.ndarray:
    """Show the sliders for one capsule (its own `key`, so each capsule keeps its offsets) and
    return the `dims` offsets they set."""
    state = st.session_state.get(key)
    offsets, wide = clean_pose(state.get("pose") if state is not None else None, dims)
    _COMPONENT(
        key=key,
        data={"values": [round(float(v), 2) for v in offsets], "wide": wide, "step": STEP,
              "limit": WIDE if wide else NARROW, "narrow_limit": NARROW, "wide_limit": WIDE},
        on_pose_change=lambda: None,
    )  # fmt: skip
    return offsets
