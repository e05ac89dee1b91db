// Capsule maps and the capsule-length chart (app/capsule_map.py builds `data`), drawn in the page's
// own pixels (cells on a canvas, everything else SVG), with a hover note and, where
// data.clickable, a click that reports which.
// Everything is laid out for the width the map has (at most data.max_width) and again when that
// width changes, so text is set in real pixels: never below data.font (12 px), whatever the width.
// data.kind "cells": {size: [W, H] in cell units, x, y: cell positions (top-left), colors, texts
// (optional, one per cell, "\n" between lines), outline (a cell index or null), outline_color,
// text_color, row_labels / col_labels: [[position, text]], labels: [[x, y, text]] anywhere (cell
// units, text centred on x, baseline at y), frames: [[x, y, w, h]] light outlines (frame_color),
// left / top: room for the labels in cell units}. In place of x and y, panels: {n, per_row, pitch:
// [across, down], head} puts n capsules on type panels of 6x6, per_row panels to a row (capsule k:
// type t = k / 36, grid row r = k % 36 / 6, column c = k % 6, at x = (t % per_row) across + c, y =
// (t / per_row) down + head + r), and the hover note's fields i, t, r and c are derived from it.
// colors: "#rrggbb" each, or one string of "rrggbb" after "rrggbb" (how the page holds them).
// data.kind "bars": {values (0..1), colors, labels, outline (a bar index or null), lines:
// [[value, text]] (dashed), line_color, text_color, height (px)}. A bar's value is printed above
// it, moved above a dashed line that would strike through it.
// Both: tip, a template whose {name} is fields[name][k] (a number with formats[name] = [decimals,
// signed] is printed so); fields; label (for screen readers); max_width (px or null); font (px);
// clickable. A click sends the trigger "picked" with the index.
const NS = "http://www.w3.org/2000/svg";
const el = (name, attrs, parent) => {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
};
const number = (v, [decimals, signed]) => (signed && v >= 0 ? "+" : "") + v.toFixed(decimals);
// Capsule k on data.panels: its index i, type t and grid row r and column c.
const onPanel = k => ({i: k, t: Math.floor(k / 36), r: Math.floor(k % 36 / 6), c: k % 6});
const fill = (d, k) => d.tip.replace(/\{(\w+)\}/g, (_, name) => {
  if (d.panels && !(name in d.fields)) return onPanel(k)[name];  // i, t, r, c of a panels map
  const v = d.fields[name][k], format = d.formats && d.formats[name];
  return format && typeof v === "number" ? number(v, format) : v;
});

// The cells' positions from data.panels where given, and their colours as one packed string.
function expand(d) {
  if (d.panels) {
    const {n, per_row: perRow, pitch, head} = d.panels, x = [], y = [];
    for (let k = 0; k < n; k++) {
      const {t, r, c} = onPanel(k);
      x.push(t % perRow * pitch[0] + c);
      y.push(Math.floor(t / perRow) * pitch[1] + head + r);
    }
    d = {...d, x, y};
  }
  if (d.kind === "cells" && typeof d.colors !== "string") d = {...d, colors: d.colors.map(c => c.slice(1)).join("")};
  return d;
}
const text = (parent, attrs, content) => { el("text", attrs, parent).textContent = content; };

// The cells' fills and the panels' frames go on one <canvas> under the SVG (the labels, outline and
// any cell text stay SVG): a map of 1152 cells is then a handful of DOM nodes, not 1152 rects that the browser
// would create, style, lay out and walk on every stroke. Which cell is under the pointer is
// arithmetic on the grid (root.cellAt).
function cells(root, svg, d, width) {
  const [W, H] = d.size, left = d.left || 0, top = d.top || 0, font = d.font;
  const u = width / (W + left);  // px per cell
  const X = x => (x + left) * u, Y = y => (y + top) * u;
  const height = Math.ceil((H + top) * u) + 2;
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.classList.add("over");
  const canvas = document.createElement("canvas"), dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.width = width + "px";
  canvas.style.height = height + "px";
  canvas.setAttribute("aria-hidden", "true");
  canvas.dataset.cells = d.x.length;
  root.insertBefore(canvas, svg);
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  // One pixel per cell (the gaps transparent), scaled up without smoothing: a few array writes
  // instead of a fillStyle to parse and a rectangle to fill per cell.
  const grid = new ImageData(W, H), at = new Map();  // at: grid position -> cell index
  d.x.forEach((x, k) => {
    const p = 4 * (d.y[k] * W + x), from = 6 * k;
    const hex = i => parseInt(d.colors.slice(from + 2 * i, from + 2 * i + 2), 16);  // colour k's channel i
    grid.data.set([hex(0), hex(1), hex(2), 255], p);
    at.set(d.y[k] * W + x, k);
  });
  const small = document.createElement("canvas");
  small.width = W;
  small.height = H;
  small.getContext("2d").putImageData(grid, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(small, X(0), Y(0), W * u, H * u);
  ctx.strokeStyle = d.frame_color;
  ctx.lineWidth = 1;
  for (const [x, y, w, h] of d.frames || []) {  // a light outline, so a panel of near-white cells still shows
    ctx.strokeRect(X(x) - 0.5, Y(y) - 0.5, w * u + 1, h * u + 1);
  }
  root.cellAt = (clientX, clientY) => {
    const r = canvas.getBoundingClientRect();
    const x = Math.floor((clientX - r.left) / u - left), y = Math.floor((clientY - r.top) / u - top);
    return x >= 0 && x < W && y >= 0 && y < H && at.has(y * W + x) ? at.get(y * W + x) : null;
  };
  // The pointer's cell, outlined while it is over a clickable map (moved by the mouse handler).
  root.hover = el("rect", {width: u, height: u, fill: "none", stroke: "currentColor", "stroke-width": 1.5,
                           visibility: "hidden", "pointer-events": "none"}, svg);
  root.hoverAt = k => {
    root.hover.setAttribute("visibility", k === null || d.clickable === false ? "hidden" : "visible");
    if (k !== null) { root.hover.setAttribute("x", X(d.x[k])); root.hover.setAttribute("y", Y(d.y[k])); }
  };
  const cellFont = Math.max(font, Math.min(14, 0.22 * u));
  if (d.texts) {
    const g = el("g", {"pointer-events": "none"}, svg);
    d.x.forEach((x, k) => {
      if (!d.texts[k]) return;
      const lines = d.texts[k].split("\n");
      const t = el("text", {x: X(x + 0.5), y: Y(d.y[k] + 0.5) - 0.55 * cellFont * (lines.length - 1),
                            "font-size": cellFont, "text-anchor": "middle", "dominant-baseline": "middle",
                            fill: d.text_color}, g);
      lines.forEach((line, n) => {
        const s = el("tspan", {x: X(x + 0.5), dy: n ? 1.1 * cellFont : 0}, t);
        s.textContent = line;
      });
    });
  }
  const muted = {fill: "currentColor", opacity: 0.8, "font-size": font, "pointer-events": "none"};
  for (const [pos, content] of d.row_labels || []) {
    text(svg, {...muted, x: X(0) - 6, y: Y(pos + 0.5), "text-anchor": "end", "dominant-baseline": "middle"}, content);
  }
  for (const [pos, content] of d.col_labels || []) {
    text(svg, {...muted, x: X(pos + 0.5), y: Y(0) - 6, "text-anchor": "middle"}, content);
  }
  for (const [x, y, content] of d.labels || []) {
    text(svg, {...muted, x: X(x), y: Y(y), "text-anchor": "middle"}, content);
  }
  if (d.outline !== null && d.outline !== undefined) {
    // At most 3 + 4 / 2 = 5 px beyond the cell: the row and column labels 6 px away stay clear of it.
    const pad = Math.min(3, Math.max(1.5, 0.06 * u)), stroke = Math.min(4, Math.max(2, 0.14 * u));
    el("rect", {x: X(d.x[d.outline]) - pad, y: Y(d.y[d.outline]) - pad, width: u + 2 * pad, height: u + 2 * pad,
                fill: "none", stroke: d.outline_color, "stroke-width": stroke, "pointer-events": "none"}, svg);
  }
}

function bars(svg, d, width) {
  const n = d.values.length, font = d.font, H = d.height || 180;
  const right = (d.lines || []).length ? 4.2 * font : 4;  // room for "m⁺ 0.9"
  const top = 1.6 * font, base = H - 1.7 * font, slot = (width - right) / n;
  const y = v => base - (base - top) * Math.min(Math.max(v, 0), 1) ;
  svg.setAttribute("width", width);
  svg.setAttribute("height", H);
  svg.setAttribute("viewBox", `0 0 ${width} ${H}`);
  const g = el("g", {class: "bars"}, svg);
  const plotRight = n * slot;
  el("line", {x1: 0, x2: plotRight, y1: base, y2: base, stroke: d.line_color, "stroke-width": 1, opacity: 0.5}, svg);
  const lineYs = (d.lines || []).map(([v]) => y(v));
  for (const [v, content] of d.lines || []) {
    el("line", {x1: 0, x2: plotRight, y1: y(v), y2: y(v), stroke: d.line_color, "stroke-dasharray": "4 3",
                "stroke-width": 1}, svg);
    text(svg, {x: plotRight + 4, y: y(v), "font-size": font, "dominant-baseline": "middle", fill: d.line_color},
         content);
  }
  d.values.forEach((v, k) => {
    const x = k * slot + slot * 0.16, w = slot * 0.68, outlined = k === d.outline;
    el("rect", {x, y: y(v), width: w, height: Math.max(base - y(v), 0.5), fill: d.colors[k], "data-k": k,
                stroke: outlined ? d.line_color : "none", "stroke-width": outlined ? 2 : 0}, g);
    el("rect", {x: k * slot, y: top - font, width: slot, height: base - top + font, fill: "transparent", "data-k": k}, g);
    // The value's baseline: just above the bar, or above a dashed line its text would cross.
    let baseline = y(v) - 3;
    for (const ly of [...lineYs].sort((a, b) => b - a)) {
      if (baseline + 2 >= ly && baseline - font <= ly + 1) baseline = ly - 3;
    }
    text(svg, {x: k * slot + slot / 2, y: baseline, "font-size": font, "text-anchor": "middle", fill: d.text_color,
               class: "value", "pointer-events": "none"}, v.toFixed(2));
    text(svg, {x: k * slot + slot / 2, y: H - 0.35 * font, "font-size": font + 1, "text-anchor": "middle",
               fill: "currentColor", "pointer-events": "none"}, d.labels[k]);
  });
}

function draw(root, d) {
  const width = Math.floor(Math.min(root.clientWidth || d.max_width || 400, d.max_width || Infinity));
  if (width <= 0 || width === root.drawnWidth && d === root.drawnData) return;
  root.drawnWidth = width;
  root.drawnData = d;
  root.replaceChildren();
  root.cellAt = root.hoverAt = null;
  // A group of cells or bars; each map's choices can also be made with the page's selectboxes.
  const svg = el("svg", {role: "group", "aria-label": d.label || ""}, root);
  if (d.kind === "bars") bars(svg, d, width);
  else cells(root, svg, d, width);
  return svg;
}

const NEAR = 400;  // px
// The page scrolls in Streamlit's main area, not the window: a margin around the window would be
// cut off at that area's edge, so the look-ahead is measured in the area itself.
const scroller = () => document.querySelector('[data-testid="stMain"]');
const near = e => {
  const r = e.getBoundingClientRect(), area = scroller(), box = area ? area.getBoundingClientRect() : null;
  const top = box ? box.top : 0, bottom = box ? box.bottom : innerHeight;
  return r.top < bottom + NEAR && r.bottom > top - NEAR;
};

// A map's room before it is drawn (its aspect ratio, or a bars chart's height), and the room given
// back to the drawing; its label stays readable to a screen reader meanwhile.
function hold(root, d) {
  if (d.kind === "bars") root.style.height = (d.height || 180) + "px";
  else root.style.aspectRatio = `${d.size[0] + (d.left || 0)} / ${d.size[1] + (d.top || 0)}`;
  root.setAttribute("role", "img");
  root.setAttribute("aria-label", d.label || "");
}
function release(root) {
  root.style.height = root.style.aspectRatio = "";
  root.removeAttribute("role");
  root.removeAttribute("aria-label");
}

// One map (cells or bars) in `root`: drawn at its width, and again when that changes, with its
// hover note in `tip` and, where it is clickable, a click that calls pick(index).
// wait: a map far from the window (a "rows" element's, below the overview) keeps the room hold()
// gave it and is drawn when it comes within NEAR px of the visible area (as a lazy image is).
function mount(root, d, tip, pick, wait = false) {
  root.style.maxWidth = d.max_width ? d.max_width + "px" : "";
  root.classList.toggle("clickable", d.clickable !== false);
  root.current = d;
  if (wait) {
    root.waiting = true;
    root.watcher = new IntersectionObserver(entries => {
      if (!entries.some(e => e.isIntersecting)) return;
      root.watcher.disconnect();
      root.waiting = false;
      release(root);
      draw(root, root.current);
    }, {root: scroller(), rootMargin: `${NEAR}px 0px`});
    root.watcher.observe(root);
  } else {
    release(root);
    draw(root, d);
  }
  if (!root.resizer) {  // one observer per element: redraw at the new width
    root.resizer = new ResizeObserver(() => { if (!root.waiting) draw(root, root.current); });
    root.resizer.observe(root);
  }
  const hit = e => {
    if (root.cellAt) return root.cellAt(e.clientX, e.clientY);
    const t = e.target.closest && e.target.closest("[data-k]");
    return t ? Number(t.dataset.k) : null;
  };
  root.onmousemove = e => {
    const k = hit(e);
    if (root.hoverAt) root.hoverAt(k);
    if (k === null) { tip.hidden = true; return; }
    tip.innerHTML = fill(d, k);
    tip.hidden = false;
    // Beside the pointer, on whichever side keeps it inside the window.
    const w = tip.offsetWidth, h = tip.offsetHeight;
    const x = e.clientX + 14 + w > innerWidth - 4 ? e.clientX - 14 - w : e.clientX + 14;
    const y = e.clientY + 14 + h > innerHeight - 4 ? e.clientY - 14 - h : e.clientY + 14;
    tip.style.left = Math.max(4, x) + "px";
    tip.style.top = Math.max(4, y) + "px";
  };
  root.onmouseleave = () => { tip.hidden = true; if (root.hoverAt) root.hoverAt(null); };
  root.onclick = e => {
    const k = hit(e);
    if (k !== null && d.clickable !== false) { tip.hidden = true; pick(k); }
  };
}

const child = (parent, tag, className, content) => {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (content !== undefined) e.textContent = content;
  parent.appendChild(e);
  return e;
};

// Text with **bold** spans, as the page's markdown sets them (nothing else is markup).
const rich = (parent, content) => content.split("**").forEach((part, k) => {
  if (k % 2) child(parent, "strong", "", part);
  else parent.append(part);
});

// A colour bar: the scale's CSS gradient, its end values (and mid, under the middle) and its name.
function colourBar(parent, b) {
  const bar = child(parent, "div", "colour-bar");
  bar.setAttribute("role", "img");
  bar.setAttribute("aria-label", `${b.name}: ${b.lo} to ${b.hi}`);
  Object.assign(child(bar, "div", "ramp").style, {background: b.gradient, borderColor: b.frame});
  const ends = child(bar, "div", "ends");
  child(ends, "span", "", b.lo);
  if (b.mid) child(ends, "span", "mid", b.mid);
  child(ends, "span", "", b.hi);
  child(bar, "div", "", b.name);
}

// data.kind "rows": figures in rows, drawn as one element: {rows: [{title (optional), note (optional,
// **bold** allowed), widths (optional, else data.widths: the items' relative column widths), items:
// [{title, subtitle (optional: a heading over the figure, "title · subtitle"), caption (optional),
// and one of map: a cells or bars map's data, with id (optional); image: a URL, width, height (px),
// alt; bar: a colour bar {gradient, lo, hi, mid, name, frame}}]}]}. A click on a map's cell sends
// "picked" with its index, or [id, index] where the map has an id.
function rows(root, d, tip, pick) {
  for (const m of root.maps || []) { m.resizer.disconnect(); if (m.watcher) m.watcher.disconnect(); }
  root.replaceChildren();
  root.classList.add("rows");
  const maps = [];
  for (const row of d.rows) {
    const section = child(root, "section", "row");
    if (row.title) child(section, "h3", "", row.title);
    if (row.note) rich(child(section, "p", "note"), row.note);
    if (!row.items) continue;
    const grid = child(section, "div", "items");
    grid.style.gridTemplateColumns = (row.widths || d.widths).map(w => `minmax(0, ${w}fr)`).join(" ");
    for (const item of row.items) {
      const figure = child(grid, "figure");
      if (item.title) {
        const heading = child(figure, "p", "title");
        child(heading, "strong", "", item.title);
        if (item.subtitle) heading.append(" · " + item.subtitle);
      }
      if (item.image) {
        const img = child(figure, "img");
        Object.assign(img, {src: item.image, alt: item.alt || "", width: item.width, height: item.height,
                            decoding: "async"});
      } else if (item.bar) {
        colourBar(figure, item.bar);
      } else {
        const id = item.id;
        if (id !== undefined) figure.dataset.id = id;
        maps.push([child(figure, "div", "map"), expand({font: d.font, clickable: d.clickable, ...item.map}),
                   id === undefined ? pick : k => pick([id, k])]);
      }
      if (item.caption) child(figure, "figcaption", "", item.caption);
    }
  }
  // Every map's room first, then where each lies (one layout), then each drawn or left to wait.
  for (const [m, md] of maps) hold(m, md);
  const far = maps.map(([m]) => !near(m));
  maps.forEach(([m, md, onPick], k) => mount(m, md, tip, onPick, far[k]));
  root.maps = maps.map(([m]) => m);
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  const root = parentElement.querySelector(".map"), tip = parentElement.querySelector(".tip");
  const pick = k => setTriggerValue("picked", k);
  const json = new TextDecoder().decode(data);  // data: the map's data as UTF-8 JSON (capsule_map.py)
  if (root.source === json) return;  // drawn already (a render with the same data)
  root.source = json;
  const d = expand({font: 12, ...JSON.parse(json)});
  if (d.kind === "rows") rows(root, d, tip, pick);
  else mount(root, d, tip, pick);
}
