// Clickable capsule maps (app/capsule_map.py builds `data`), drawn as SVG with a hover note.
// data.kind "cells": {size: [W, H] in cell units, x, y: cell positions (top-left), colors, texts
// (optional), outline (a cell index or null), outline_color, text_color, row_labels / col_labels:
// [[position, text]], left / top: room for them in cell units}.
// data.kind "bars": {values (0..1), colors, labels, outline, lines: [[value, text]], line_color,
// text_color}.
// Both: tip, a template whose {name} is fields[name][k]; fields; label (for screen readers);
// max_width (px or null). A click sends the trigger "picked" with the cell's or bar's index.
const NS = "http://www.w3.org/2000/svg";
const el = (name, attrs, parent) => {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
};
const fill = (template, fields, k) => template.replace(/\{(\w+)\}/g, (_, name) => fields[name][k]);

function cells(svg, d) {
  const [W, H] = d.size, left = d.left || 0, top = d.top || 0;
  svg.setAttribute("viewBox", `${-left} ${-top} ${W + left} ${H + top}`);
  const g = el("g", {}, svg);
  d.x.forEach((x, k) => {
    el("rect", {x, y: d.y[k], width: 1, height: 1, fill: d.colors[k], "data-k": k}, g);
    if (d.texts && d.texts[k]) {
      const lines = d.texts[k].split("\n");
      const t = el("text", {x: x + 0.5, y: d.y[k] + 0.5 - 0.16 * (lines.length - 1), "font-size": 0.27,
                            "text-anchor": "middle", "dominant-baseline": "middle", fill: d.text_color,
                            "pointer-events": "none"}, g);
      lines.forEach((line, n) => { const s = el("tspan", {x: x + 0.5, dy: n ? 0.33 : 0}, t); s.textContent = line; });
    }
  });
  for (const [pos, text] of d.row_labels || []) {
    el("text", {x: -0.15, y: pos + 0.5, "font-size": 0.32, "text-anchor": "end", "dominant-baseline": "middle",
                fill: "currentColor", opacity: 0.75}, svg).textContent = text;
  }
  for (const [pos, text] of d.col_labels || []) {
    el("text", {x: pos + 0.5, y: -0.2, "font-size": 0.3, "text-anchor": "middle", fill: "currentColor",
                opacity: 0.75}, svg).textContent = text;
  }
  if (d.outline !== null && d.outline !== undefined) {
    el("rect", {x: d.x[d.outline] - 0.06, y: d.y[d.outline] - 0.06, width: 1.12, height: 1.12, fill: "none",
                stroke: d.outline_color, "stroke-width": 0.14, "pointer-events": "none"}, svg);
  }
}

function bars(svg, d) {
  const n = d.values.length, W = 24 * n, H = 120, base = 104, top = 12, slot = W / n;
  const y = v => base - (base - top) * Math.min(Math.max(v, 0), 1.1) / 1.1;
  svg.setAttribute("viewBox", `0 0 ${W + 22} ${H}`);
  const g = el("g", {class: "bars"}, svg);
  for (const [v, text] of d.lines || []) {
    el("line", {x1: 0, x2: W, y1: y(v), y2: y(v), stroke: d.line_color, "stroke-dasharray": "3 3", "stroke-width": 0.7}, svg);
    el("text", {x: W + 2, y: y(v), "font-size": 8, "dominant-baseline": "middle", fill: d.line_color}, svg).textContent = text;
  }
  d.values.forEach((v, k) => {
    const x = k * slot + slot * 0.18, w = slot * 0.64;
    el("rect", {x, y: y(v), width: w, height: base - y(v), fill: d.colors[k], "data-k": k,
                stroke: k === d.outline ? d.line_color : "none", "stroke-width": k === d.outline ? 1.5 : 0}, g);
    el("rect", {x: k * slot, y: top, width: slot, height: base - top, fill: "transparent", "data-k": k}, g);
    el("text", {x: k * slot + slot / 2, y: y(v) - 2, "font-size": 8, "text-anchor": "middle", fill: d.text_color,
                "pointer-events": "none"}, svg).textContent = v.toFixed(2);
    el("text", {x: k * slot + slot / 2, y: H - 5, "font-size": 10, "text-anchor": "middle", fill: "currentColor",
                "pointer-events": "none"}, svg).textContent = d.labels[k];
  });
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  const root = parentElement.querySelector(".map"), tip = parentElement.querySelector(".tip");
  root.style.maxWidth = data.max_width ? data.max_width + "px" : "";
  root.replaceChildren();
  // A group of clickable cells; each map's choices can also be made with the page's selectboxes.
  const svg = el("svg", {role: "group", "aria-label": data.label || ""}, root);
  (data.kind === "bars" ? bars : cells)(svg, data);
  const hit = e => { const t = e.target.closest && e.target.closest("[data-k]"); return t ? Number(t.dataset.k) : null; };
  svg.onmousemove = e => {
    const k = hit(e);
    if (k === null) { tip.hidden = true; return; }
    tip.innerHTML = fill(data.tip, data.fields, k);
    tip.hidden = false;
    // Beside the pointer, on whichever side keeps it inside the window.
    const w = tip.offsetWidth, h = tip.offsetHeight;
    const x = e.clientX + 14 + w > innerWidth - 4 ? e.clientX - 14 - w : e.clientX + 14;
    const y = e.clientY + 14 + h > innerHeight - 4 ? e.clientY - 14 - h : e.clientY + 14;
    tip.style.left = Math.max(4, x) + "px";
    tip.style.top = Math.max(4, y) + "px";
  };
  svg.onmouseleave = () => { tip.hidden = true; };
  svg.onclick = e => { const k = hit(e); if (k !== null) { tip.hidden = true; setTriggerValue("picked", k); } };
}
