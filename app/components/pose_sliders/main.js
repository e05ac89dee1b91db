// The 16 pose sliders with a live preview (app/pose_sliders.py mounts it and says why).
// Hydrates the inputs from `data` on every run (only where they differ, so a slider being dragged
// is not reset under the pointer) and reports {values, wide} when a slider is released, the range
// switched or everything reset. With `data.live.weights` it also decodes the moved pose on every
// input event and paints the three pictures; the element that hosts it carries data-live
// (loading / ready / fallback) and, for tests and benchmarks, the instance's state as `capsnetLive`.
const fmt = v => (v >= 0 ? "+" : "") + v.toFixed(2);
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

const u8 = x => Math.floor(Math.min(Math.max(x, 0), 1) * 255 + 0.5);  // app/pixel_arrays.py to_uint8

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
// scale: [low, zero, high] as [r, g, b] in 0..255 (app/palette.py DIVERGING_RGB, sent as data);
// linear from the middle colour to either end, as app/pixel_arrays.py diverging_rgb.
const diverging = (diff, limit, scale) => px => {
  const [low, mid, high] = scale.map(c => c.map(v => v / 255));
  for (let p = 0; p < PIXELS; p++) {
    const t = Math.min(Math.max(diff[p] / limit, -1), 1), c = t >= 0 ? high : low, a = Math.abs(t);
    for (let ch = 0; ch < 3; ch++) px[4 * p + ch] = u8(mid[ch] + a * (c[ch] - mid[ch]));
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
    paint(cDiff, diverging(view.diff, view.data.diff_limit, view.data.diverging));
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

  // What the server hears: on a release, a range switch or a reset.
  const send = () => setStateValue("pose", { values: inputs.map(i => Number(i.value)), wide: wide.checked });
  inputs.forEach((input, k) => {
    input.min = String(-limit); input.max = String(limit); input.step = String(data.step);
    if (Number(input.value) !== data.values[k]) input.value = String(data.values[k]);
    outputs[k].textContent = fmt(Number(input.value));
    input.oninput = () => { outputs[k].textContent = fmt(Number(input.value)); redraw(); };
    input.onchange = send;
  });
  if (view.net) redraw();  // the values just hydrated
  wide.checked = data.wide;
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
