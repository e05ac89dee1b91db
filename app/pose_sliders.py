"""The 16 pose sliders as one element, with a live preview: native range inputs in a small custom
component that also runs the decoder in the browser.

Sixteen st.slider widgets cost a lot per move of any one of them, on both ends. In the browser
each is a BaseWeb React slider that Streamlit draws again on every run of the pose explorer
(about 35 ms of the page's main thread on this machine, before the images). On the server each is
a separate element message, and every message wakes the event loop from the script's thread: with
20 sessions on 2 cores those wake-ups queue for the interpreter lock (measured with py-spy, the
largest single wait of a pose run). Here the 16 dimensions, the "wider range" switch and the reset
button are one element with plain HTML inputs: one message per run, and the browser only updates
16 numbers. Arrow keys, Home/End and dragging work as on any range input; a value is sent when the
slider is released (the input's `change` event), as st.slider does.

While a slider moves, the page redraws the reconstruction itself: the component fetches the
decoder's weights once (app/decoder_weights.py: a static file named after its content, kept by the
browser's cache) and on every `input` event decodes the moved pose in JavaScript (three dense
layers, about 1.3 M multiply-adds) into its own canvases. Nothing goes to the server until the
slider is released. If the weights cannot be had (static serving off, a failed download), the
component says so and the server's pictures below it stay the reconstruction, redrawn on release.

The browser's state is checked on the way in (clean_pose): whatever a page sends, the explorer
gets 16 finite offsets on the slider grid, within the range shown.
"""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

STEP = 0.05
NARROW, WIDE = 0.25, 0.5
DIFF_LIMIT = 0.5  # the difference picture's colour range, as the server's (app/sections/pose.py)

HTML = """
<div class="pose" role="group" aria-label="Pose offsets">
  <div class="grid"></div>
  <div class="bar">
    <label class="wide-label"><input type="checkbox" class="wide"> Wider range (±0.5)</label>
    <button type="button" class="reset">Reset all 16 to 0</button>
  </div>
  <div class="live" hidden>
    <figure><canvas class="base" width="28" height="28" role="img"></canvas><figcaption></figcaption></figure>
    <figure><canvas class="moved" width="28" height="28" role="img"></canvas><figcaption></figcaption></figure>
    <figure><canvas class="diff" width="28" height="28" role="img"></canvas><figcaption></figcaption></figure>
  </div>
  <p class="status" role="status"></p>
</div>
"""

CSS = """
.pose { font-family: var(--st-font, sans-serif); color: var(--st-text-color, #31333f); font-size: 0.875rem; }
.grid { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 0.35rem 1.5rem; }
.cell { display: flex; flex-direction: column; }
.cell .head { display: flex; justify-content: space-between; gap: 0.4rem; align-items: baseline; }
.cell .name { font-size: 0.8rem; line-height: 1.2; }
.cell.chosen { outline: 2px solid var(--st-primary-color, #ff4b4b); outline-offset: 3px; border-radius: 4px; }
.cell output { font-variant-numeric: tabular-nums; color: var(--st-primary-color, #ff4b4b); }
.cell input { width: 100%; margin: 0.2rem 0 0.3rem; accent-color: var(--st-primary-color, #ff4b4b); }
.bar { display: flex; gap: 1.5rem; align-items: center; margin-top: 0.6rem; }
.reset { font: inherit; padding: 0.35rem 0.8rem; border-radius: 0.5rem; cursor: pointer;
         border: 1px solid var(--st-border-color, #d6d6d9); background: var(--st-background-color, #fff);
         color: inherit; }
.reset:hover { border-color: var(--st-primary-color, #ff4b4b); color: var(--st-primary-color, #ff4b4b); }
.live { display: flex; gap: 1rem; flex-wrap: wrap; margin-top: 1rem; }
.live[hidden] { display: none; }
.live figure { margin: 0; display: flex; flex-direction: column; align-items: center; }
.live canvas { width: 196px; height: 196px; image-rendering: pixelated; box-sizing: border-box; }
.live canvas.diff { border: 1px solid rgb(214, 214, 217); }
.live figcaption { margin-top: 0.25rem; color: var(--st-text-color, #31333f); opacity: 0.6; font-size: 0.8rem;
                   font-variant-numeric: tabular-nums; }
.status { margin: 0.5rem 0 0; opacity: 0.7; font-size: 0.8rem; }
.status:empty { display: none; }
"""

# Hydrates the inputs from `data` on every run (only where they differ, so a slider being dragged
# is not reset under the pointer) and reports {values, wide} when a slider is released, the range
# switched or everything reset. With `data.live.weights` it also decodes the moved pose on every
# input event and paints the three pictures; the element that hosts it carries data-live
# (loading / ready / fallback) and, for tests and benchmarks, the instance's state as `capsnetLive`.
JS = """
const fmt = v => (v >= 0 ? "+" : "") + v.toFixed(2);
const RED = [0.80, 0.10, 0.15], BLUE = [0.13, 0.30, 0.75];  // app/analysis.py diverging_rgb
const PIXELS = 784;
const nets = new Map();        // weights URL -> promise of the decoder: one download per page
const views = new WeakMap();   // parentElement -> this instance's live state

let HALF = null;               // float16 bit pattern -> its value
function halfTable() {
  if (HALF) return HALF;
  HALF = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const e = (h >> 10) & 31, f = h & 1023;
    const v = e === 0 ? f * 2 ** -24 : e === 31 ? (f ? NaN : Infinity) : (1 + f / 1024) * 2 ** (e - 15);
    HALF[h] = h & 0x8000 ? -v : v;
  }
  return HALF;
}

// The file of app/decoder_weights.py -> {dim, digits, l1, l2, l3}. Layers 2 and 3 are stored
// transposed (inputs x outputs), so a decode skips the inputs that ReLU set to zero.
function parse(buf) {
  const bytes = new Uint8Array(buf), text = new TextDecoder();
  if (buf.byteLength < 12 || text.decode(bytes.subarray(0, 8)) !== "CAPSDEC1") throw new Error("not a decoder file");
  const n = new DataView(buf).getUint32(8, true);
  const head = JSON.parse(text.decode(bytes.subarray(12, 12 + n)));
  const size = { float16: 2, float32: 4 }[head.dtype];
  if (!size) throw new Error("unknown dtype " + head.dtype);
  let offset = 12 + n;
  const take = count => {
    if (offset + count * size > buf.byteLength) throw new Error("decoder file cut short");
    let out;
    if (size === 2) {
      const raw = new Uint16Array(buf, offset, count), half = halfTable();
      out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = half[raw[i]];
    } else out = new Float32Array(buf.slice(offset, offset + 4 * count));
    offset += count * size;
    return out;
  };
  const layers = head.layers.map(([rows, cols]) => ({ rows, cols, w: take(rows * cols), b: take(rows) }));
  const [l1, l2, l3] = layers;
  if (layers.length !== 3 || offset !== buf.byteLength || l1.cols !== head.digits * head.dim ||
      l2.cols !== l1.rows || l3.cols !== l2.rows || l3.rows !== PIXELS) throw new Error("unexpected decoder shape");
  for (const l of [l2, l3]) {
    l.wt = new Float32Array(l.w.length);
    for (let o = 0; o < l.rows; o++) for (let i = 0; i < l.cols; i++) l.wt[i * l.rows + o] = l.w[o * l.cols + i];
    delete l.w;
  }
  return { dim: head.dim, digits: head.digits, l1, l2, l3, h1: new Float64Array(l1.rows), h2: new Float64Array(l2.rows) };
}

function load(url) {
  if (!nets.has(url)) {
    const t0 = performance.now();
    const p = fetch(url).then(r => {
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      return new Response(r.body.pipeThrough(new DecompressionStream("gzip"))).arrayBuffer();
    }).then(buf => {
      const net = parse(buf);
      const entry = performance.getEntriesByName(url).pop();
      net.load = { ms: performance.now() - t0, bytes: entry ? entry.encodedBodySize : null, inflated: buf.byteLength,
                   transferred: entry ? entry.transferSize : null, fetchMs: entry ? entry.duration : null };
      return net;
    });
    p.catch(() => nets.delete(url));  // a later run may try again
    nets.set(url, p);
  }
  return nets.get(url);
}

// y = W x + b from the transposed weight, with the inputs x that are 0 skipped.
function dense(l, x, y) {
  const n = l.rows, wt = l.wt;
  y.set(l.b);
  for (let i = 0; i < l.cols; i++) {
    const xi = x[i];
    if (xi === 0) continue;
    for (let o = 0, row = i * n; o < n; o++) y[o] += xi * wt[row + o];
  }
}

// The decoder on the (10, 16) poses with all but capsule d masked to 0: only d's 16 columns of
// the first layer count. pose: the 16 numbers of capsule d; out: Float64Array(784) in [0, 1].
function decode(net, pose, d, out) {
  const { l1, h1, h2, dim } = net;
  for (let o = 0; o < l1.rows; o++) {
    let s = l1.b[o];
    for (let k = 0, row = o * l1.cols + d * dim; k < dim; k++) s += l1.w[row + k] * pose[k];
    h1[o] = s > 0 ? s : 0;
  }
  dense(net.l2, h1, h2);
  for (let o = 0; o < h2.length; o++) if (h2[o] < 0) h2[o] = 0;
  dense(net.l3, h2, out);
  for (let p = 0; p < PIXELS; p++) out[p] = 1 / (1 + Math.exp(-out[p]));
}

const u8 = x => Math.floor(Math.min(Math.max(x, 0), 1) * 255 + 0.5);  // app/analysis.py to_uint8

function paint(canvas, fill) {
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(28, 28);
  fill(img.data);
  ctx.putImageData(img, 0, 0);
}
const grey = values => px => {
  for (let p = 0; p < PIXELS; p++) {
    px[4 * p] = px[4 * p + 1] = px[4 * p + 2] = u8(values[p]);
    px[4 * p + 3] = 255;
  }
};
const diverging = (diff, limit) => px => {  // blue down, white 0, red up, as diverging_rgb
  for (let p = 0; p < PIXELS; p++) {
    const t = Math.min(Math.max(diff[p] / limit, -1), 1), c = t >= 0 ? RED : BLUE, a = Math.abs(t);
    for (let ch = 0; ch < 3; ch++) px[4 * p + ch] = u8(1 + a * (c[ch] - 1));
    px[4 * p + 3] = 255;
  }
};

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
      cell.innerHTML = `<span class="head"><span class="name"></span><output></output></span>` +
                       `<input type="range">`;
      grid.appendChild(cell);
    }
  }
  // Names (what each dimension measurably does, from the pose atlas) and the chosen dimension.
  [...grid.children].forEach((cell, k) => {
    const name = (data.names && data.names[k]) || `dim ${k}`;
    cell.querySelector(".name").textContent = name;
    cell.querySelector("input").ariaLabel = name;
    cell.classList.toggle("chosen", data.chosen === k);
  });
  const inputs = [...grid.querySelectorAll("input")];
  const outputs = [...grid.querySelectorAll("output")];
  const limit = data.limit;

  // ---- the live preview
  const host = parentElement.host || parentElement;
  let view = views.get(parentElement);
  if (!view) {
    view = { status: "off", reason: "", net: null, baseKey: "", base: new Float64Array(PIXELS),
             moved: new Float64Array(PIXELS), diff: new Float64Array(PIXELS), values: [],
             decodes: 0, decodeMs: [], load: null };
    views.set(parentElement, view);
    host.capsnetLive = view;
  }
  view.data = data;
  const box = parentElement.querySelector(".live");
  const status = parentElement.querySelector(".status");
  const captions = [...box.querySelectorAll("figcaption")];
  const [cBase, cMoved, cDiff] = box.querySelectorAll("canvas");
  const live = data.live || null;
  const setStatus = (s, reason = "") => {
    view.status = s; view.reason = reason;
    host.dataset.live = s;
    box.hidden = s !== "ready";
    status.textContent =
      s === "loading" ? "Loading the decoder's weights to redraw while you drag…" :
      s === "ready" ? "Redrawn in your browser while you drag; the server gets the pose when you let go." :
      s === "fallback" ? `No live preview (${reason}): the pictures below are redrawn by the server when you let go of a slider.` : "";
  };
  const redraw = () => {
    const net = view.net;
    if (!net) return;
    const { digit: d, pose } = view.data.live;
    const key = d + ":" + pose.join(",");
    if (key !== view.baseKey) {
      decode(net, Float32Array.from(pose), d, view.base);
      view.baseKey = key;
      paint(cBase, grey(view.base));
      captions[0].textContent = `decoded from v${d} as it is`;
      cBase.ariaLabel = "reconstruction " + captions[0].textContent;
    }
    // As the server: float32 pose + float32 offset, rounded to float32.
    const values = inputs.map(i => Number(i.value));
    const moved = Float32Array.from(pose, (v, k) => Math.fround(v + Math.fround(values[k])));
    const t0 = performance.now();
    decode(net, moved, d, view.moved);
    view.decodeMs.push(performance.now() - t0);  // the last 5000, for tools/bench_browser.py
    if (view.decodeMs.length > 5000) view.decodeMs.shift();
    let max = 0;
    for (let p = 0; p < PIXELS; p++) {
      view.diff[p] = view.moved[p] - view.base[p];
      max = Math.max(max, Math.abs(view.diff[p]));
    }
    view.decodes++;
    view.values = values;
    paint(cMoved, grey(view.moved));
    paint(cDiff, diverging(view.diff, view.data.diff_limit));
    captions[1].textContent = `with the offsets (${values.filter(v => v !== 0).length} moved)`;
    captions[2].textContent = `difference (max ${max.toFixed(2)})`;
    cMoved.ariaLabel = "reconstruction " + captions[1].textContent;
    cDiff.ariaLabel = captions[2].textContent + ", red brighter, blue darker";
  };
  if (!live || !live.weights) {
    view.net = null; view.url = null;
    setStatus(live ? "fallback" : "off", live ? live.why : "");
  } else if (view.url !== live.weights || !view.net) {
    view.url = live.weights;
    setStatus("loading");
    const url = new URL(live.weights, document.baseURI).href;
    load(url).then(net => {
      if (view.url !== live.weights) return;  // a newer run asked for other weights
      view.net = net; view.load = net.load; view.baseKey = "";
      redraw();
      setStatus("ready");
    }).catch(e => {
      if (view.url !== live.weights) return;
      view.net = null;
      setStatus("fallback", `the decoder's weights could not be loaded: ${e.message || e}`);
    });
  }

  inputs.forEach((input, k) => {
    input.min = String(-limit); input.max = String(limit); input.step = String(data.step);
    if (Number(input.value) !== data.values[k]) input.value = String(data.values[k]);
    outputs[k].textContent = fmt(Number(input.value));
    input.oninput = () => { outputs[k].textContent = fmt(Number(input.value)); redraw(); };
    input.onchange = () => send();
  });
  if (view.net) redraw();  // the values just hydrated
  wide.checked = data.wide;
  const send = () => setStateValue("pose", { values: inputs.map(i => Number(i.value)), wide: wide.checked });
  wide.onchange = () => {
    const lim = wide.checked ? data.wide_limit : data.narrow_limit;
    inputs.forEach(i => { i.min = String(-lim); i.max = String(lim); });  // the browser clamps the values
    outputs.forEach((o, k) => { o.textContent = fmt(Number(inputs[k].value)); });
    redraw();
    send();
  };
  reset.onclick = () => {
    inputs.forEach((i, k) => { i.value = "0"; outputs[k].textContent = fmt(0); });
    redraw();
    send();
  };
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


def pose_sliders(
    key: str,
    dims: int = 16,
    live: dict | None = None,
    names: list[str] | None = None,
    chosen: int | None = None,
) -> np.ndarray:
    """Show the sliders for one capsule (its own `key`, so each capsule keeps its offsets) and
    return the `dims` offsets they set. `live`: {"weights": URL of the decoder file or None,
    "why": why there is none, "pose": the capsule's `dims` numbers, "digit": its index} to redraw
    in the browser while a slider moves; without it, only the sliders. `names`: each slider's
    name (default "dim d"); `chosen`: a dimension to outline."""
    state = st.session_state.get(key)
    offsets, wide = clean_pose(state.get("pose") if state is not None else None, dims)
    _COMPONENT(
        key=key,
        data={"values": [round(float(v), 2) for v in offsets], "wide": wide, "step": STEP,
              "limit": WIDE if wide else NARROW, "narrow_limit": NARROW, "wide_limit": WIDE,
              "diff_limit": DIFF_LIMIT, "live": live, "names": names, "chosen": chosen},
        on_pose_change=lambda: None,
    )  # fmt: skip
    return offsets
