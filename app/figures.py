"""Plotly figures for the app, built from numpy arrays. Pure: no Streamlit import.

Every colour and colour scale is explicit, because importing Streamlit changes Plotly's default
template and a figure should look the same in tests, notebooks and the app.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

WINNER = "#e4572e"  # the predicted / chosen digit
OTHER = "#8a9ab0"
THRESHOLD = "#2e4057"
M_PLUS, M_MINUS = 0.9, 0.1  # margin-loss thresholds (Eq. 4)
GREYS = [[0.0, "#000000"], [1.0, "#ffffff"]]  # MNIST: white ink on black
COUPLING_SCALE = "Viridis"
HEAT_SCALE = [[0.0, "#fff7ec"], [0.5, "#fc8d59"], [1.0, "#7f0000"]]
OVERLAY_SCALE = [[0.0, "rgba(255,69,0,0)"], [0.3, "rgba(255,140,0,0.35)"], [1.0, "rgba(255,215,0,0.85)"]]
DIGIT_COLORS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip
FONT = dict(size=12)


def _layout(fig: go.Figure, height: int, **kw) -> go.Figure:
    kw.setdefault("margin", dict(l=10, r=10, t=30, b=10))
    fig.update_layout(height=height, template="plotly_white", font=FONT, **kw)
    return fig


def _image_axes(fig: go.Figure, row=None, col=None) -> None:
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, row=row, col=col)
    fig.update_yaxes(
        showticklabels=False, showgrid=False, zeroline=False, autorange="reversed",
        scaleanchor="x", row=row, col=col,
    )  # fmt: skip


def lengths_bar(lengths: np.ndarray, winner: int) -> go.Figure:
    """Bar chart of the 10 capsule lengths |v_j|, the winner highlighted, lines at 0.9 and 0.1."""
    lengths = np.asarray(lengths, dtype=float)
    colors = [WINNER if j == winner else OTHER for j in range(len(lengths))]
    fig = go.Figure(
        go.Bar(
            x=[str(j) for j in range(len(lengths))],
            y=lengths,
            marker_color=colors,
            text=[f"{v:.2f}" for v in lengths],
            textposition="outside",
            hovertemplate="digit %{x}: |v| = %{y:.3f}<extra></extra>",
        )
    )
    for y, name in ((M_PLUS, "m⁺ = 0.9"), (M_MINUS, "m⁻ = 0.1")):
        fig.add_hline(
            y=y, line=dict(color=THRESHOLD, dash="dash", width=1),
            annotation_text=name, annotation_position="top left", annotation_font_color=THRESHOLD,
        )  # fmt: skip
    fig.update_yaxes(range=[0, 1.08], title="length |v_j|")
    fig.update_xaxes(title="digit capsule j", type="category")
    return _layout(fig, 300, showlegend=False)


def lengths_over_iterations(lengths_per_iter: np.ndarray, winner: int) -> go.Figure:
    """One line per digit capsule: |v_j| at the end of each routing iteration. (T, 10) in."""
    lpi = np.asarray(lengths_per_iter, dtype=float)
    iters = list(range(1, lpi.shape[0] + 1))
    fig = go.Figure()
    for j in range(lpi.shape[1]):
        fig.add_trace(
            go.Scatter(
                x=iters, y=lpi[:, j], name=str(j), mode="lines+markers",
                line=dict(color=DIGIT_COLORS[j], width=4 if j == winner else 1.5),
                opacity=1.0 if j == winner else 0.6,
                hovertemplate=f"digit {j}, after iteration %{{x}}: %{{y:.3f}}<extra></extra>",
            )
        )  # fmt: skip
    fig.update_xaxes(title="routing iteration", tickmode="array", tickvals=iters)
    fig.update_yaxes(range=[0, 1.02], title="length |v_j|")
    return _layout(fig, 300, legend=dict(title="digit", orientation="v"))


def entropy_axis_range(entropy: np.ndarray, zoom: bool = False) -> list[float]:
    """y range of the entropy chart: every value and the uniform log2(10) line, with 5% margin
    (at least 0.002 bits) each side. From 0 unless `zoom`, which fits the data only, so that a
    change of hundredths of a bit is visible (the axis then must say it does not start at 0)."""
    values = np.append(np.asarray(entropy, dtype=float), np.log2(10))
    values = values[np.isfinite(values)]
    lo, hi = float(values.min()), float(values.max())
    if not zoom:
        lo = min(lo, 0.0)
    margin = max(0.05 * (hi - lo), 0.002)
    return [lo - margin if zoom else lo, hi + margin]


def entropy_line(entropy: np.ndarray, zoom: bool = False) -> go.Figure:
    """Mean entropy of the coupling coefficients per iteration (bits); log2(10) is uniform.

    The y axis always includes every value and the uniform line; `zoom` fits it to them instead
    of starting at 0 (see `entropy_axis_range`)."""
    entropy = np.asarray(entropy, dtype=float)
    iters = list(range(1, len(entropy) + 1))
    fig = go.Figure(
        go.Scatter(
            x=iters, y=entropy, mode="lines+markers", line=dict(color=WINNER, width=3),
            hovertemplate="iteration %{x}: %{y:.3f} bits<extra></extra>", name="mean H(c_i)",
        )
    )  # fmt: skip
    fig.add_hline(
        y=float(np.log2(10)), line=dict(color=THRESHOLD, dash="dot", width=1),
        annotation_text="uniform: log₂10 = 3.32 bits", annotation_position="bottom right",
    )  # fmt: skip
    fig.update_xaxes(title="routing iteration", tickmode="array", tickvals=iters)
    title = "mean H(c_i), bits (zoomed, not from 0)" if zoom else "mean entropy of c_i (bits)"
    fig.update_yaxes(range=entropy_axis_range(entropy, zoom), title=title)
    return _layout(fig, 260, showlegend=False)


def coupling_heatmap(coupling: np.ndarray, highlight: int | None = None) -> go.Figure:
    """Coupling coefficients c_ij of one iteration: (1152, 10) in, digits as rows, fixed 0..1."""
    c = np.asarray(coupling, dtype=float)
    fig = go.Figure(
        go.Heatmap(
            z=c.T, zmin=0.0, zmax=1.0, colorscale=COUPLING_SCALE,
            x=np.arange(c.shape[0]), y=[str(j) for j in range(c.shape[1])],
            colorbar=dict(title="c", thickness=10, len=0.9),
            hovertemplate="primary i=%{x} → digit %{y}: c = %{z:.3f}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_xaxes(title="primary capsule i = type·36 + row·6 + col", showgrid=False)
    fig.update_yaxes(title="digit j", type="category", showgrid=False)
    if highlight is not None:
        fig.add_hrect(y0=highlight - 0.5, y1=highlight + 0.5, line=dict(color=WINNER, width=2))
    return _layout(fig, 230)


def position_map(weights: np.ndarray, vmax: float, vmin: float = 0.0) -> go.Figure:
    """6x6 map of sum over types of c_ij |u_i| for one digit (fixed colour range vmin..vmax)."""
    w = np.asarray(weights, dtype=float)
    fig = go.Figure(
        go.Heatmap(
            z=w, zmin=float(vmin), zmax=max(float(vmax), vmin + 1e-9), colorscale=HEAT_SCALE, showscale=False,
            hovertemplate="row %{y}, col %{x}: %{z:.2f}<extra></extra>",
        )
    )  # fmt: skip
    _image_axes(fig)
    return _layout(fig, 230, margin=dict(l=5, r=5, t=5, b=5))


def evidence_overlay(image: np.ndarray, evidence: np.ndarray, vmax: float) -> go.Figure:
    """The 28x28 input in grey with the routed evidence on top as a translucent heatmap."""
    fig = go.Figure(
        [
            go.Heatmap(z=np.asarray(image, float), zmin=0, zmax=1, colorscale=GREYS, showscale=False,
                       hoverinfo="skip"),
            go.Heatmap(z=np.asarray(evidence, float), zmin=0, zmax=max(float(vmax), 1e-9),
                       colorscale=OVERLAY_SCALE, showscale=False,
                       hovertemplate="pixel (%{y}, %{x}): %{z:.3f}<extra></extra>"),
        ]
    )  # fmt: skip
    _image_axes(fig)
    return _layout(fig, 230, margin=dict(l=5, r=5, t=5, b=5))


def _type_index(shape: tuple[int, int], cols: int, panel: int = 6, gap: int = 1) -> np.ndarray:
    rows_idx = np.arange(shape[0]) // (panel + gap)
    cols_idx = np.arange(shape[1]) // (panel + gap)
    return rows_idx[:, None] * cols + cols_idx[None, :]


def digit_image(image: np.ndarray, height: int = 260) -> go.Figure:
    """A 28x28 grey image (white ink on black) with pixel hover."""
    fig = go.Figure(
        go.Heatmap(z=np.asarray(image, float), zmin=0, zmax=1, colorscale=GREYS, showscale=False,
                   hovertemplate="(%{y}, %{x}): %{z:.2f}<extra></extra>")
    )  # fmt: skip
    _image_axes(fig)
    return _layout(fig, height, margin=dict(l=5, r=5, t=5, b=5))


# ---------------------------------------------------------------- routing by agreement, made visible
# Signed quantities (delta c = c - 0.1, logits b) on a diverging scale centred on 0 whose range
# -L..L is printed on the colour bar: c moves by hundredths in the trained model, so a fixed 0..1
# scale shows nothing. Colours match analysis.diverging_rgb: blue below 0, white at 0, red above.
DIVERGING = [[0.0, "rgb(33,77,191)"], [0.5, "rgb(255,255,255)"], [1.0, "rgb(204,26,38)"]]
DIVERGING_OVERLAY = [[0.0, "rgba(33,77,191,0.9)"], [0.5, "rgba(255,255,255,0)"], [1.0, "rgba(204,26,38,0.9)"]]
NO_ROUTING = "#b8c2d1"
ROUTED = "#2e4057"
SERIES = [ROUTED, OTHER]  # the paper's series in the accuracy chart

# Sabour, Frosst & Hinton (2017), Table 1: MNIST test error (%), mean ± std over 3 trials.
# Quoted from memory of the paper and cross-checked only for 0.25 (3 iterations, reconstruction)
# and the 0.39 baseline: verify the ± values against the paper before citing them.
PAPER_TABLE1_MNIST = {
    "paper, with reconstruction": {1: (0.29, 0.011), 3: (0.25, 0.005)},
    "paper, no reconstruction": {1: (0.34, 0.032), 3: (0.35, 0.036)},
}
PAPER_BASELINE_MNIST = 0.39  # the paper's CNN baseline, test error (%)


def nice_limit(limit: float) -> float:
    """`limit` rounded up to two significant digits (0.01234 -> 0.013), so the colour range
    -L..L and the number printed on the colour bar are the same number."""
    limit = float(limit)
    if not np.isfinite(limit) or limit <= 0:
        return 1e-6
    step = 10.0 ** (np.floor(np.log10(limit)) - 1)
    return float(f"{np.ceil(limit / step - 1e-9) * step:.2g}")


def _signed_range(values: np.ndarray, limit: float | None) -> tuple[float, int, float]:
    """(L, how many |values| exceed L, the largest |value|); L = max |value| unless given."""
    a = np.abs(np.asarray(values, dtype=float))
    a = a[np.isfinite(a)]
    top = float(a.max()) if a.size else 0.0
    L = nice_limit(top if limit is None else limit)
    return L, int(np.count_nonzero(a > L)), top


def _signed_colorbar(name: str, L: float, beyond: int, top: float, **kw) -> dict:
    """Colour bar whose title prints the range ±L (and how many values it clips)."""
    title = f"{name} ±{L:g}"
    if beyond:
        title += f"<br>{beyond} beyond<br>(max ±{top:.2g})"
    return dict(
        title=dict(text=title),
        tickvals=[-L, 0.0, L],
        ticktext=[f"−{L:g}", "0", f"+{L:g}"],
        thickness=10,
        **kw,
    )


def votes_animation(
    x: np.ndarray,
    y: np.ndarray,
    contribution: np.ndarray,
    delta_c: np.ndarray,
    path: np.ndarray,
    primary_len: np.ndarray,
    digit: int,
    limit: float | None = None,
    path_name: str | None = None,
    max_px: float = 24.0,
    min_px: float = 2.0,
) -> go.Figure:
    """The 1152 votes for one digit j, one point each, animated over the routing iterations.

    x, y (1152,): the votes u_hat_j|i in the plane of analysis.vote_projection.
    contribution (T, 1152): c_ij |u_hat_j|i| in each iteration -> marker area (one scale for all
        frames: the largest contribution gets `max_px` diameter; none is drawn below `min_px`).
    delta_c (T, 1152): c_ij - 0.1 -> colour on a diverging scale, -L..L with L = max |delta c|
        (or `limit`, rounded up to 2 significant digits and printed on the colour bar).
    path (T, 2): s_j (or v_j) of every iteration projected on the same axes, drawn as a path.
    primary_len (1152,): |u_i|, for the hover, with i, type, grid position and c_ij per iteration.
    Frame t (named "1".."T") shows iteration t; the figure opens on the last one. Points are
    go.Scattergl (WebGL: 1152 markers stay quick); its frames need redraw=True (Plotly.js only
    interpolates SVG scatter), so a frame replaces the previous one rather than morphing into it.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    contribution = np.asarray(contribution, dtype=float)
    delta_c = np.asarray(delta_c, dtype=float)
    path = np.asarray(path, dtype=float).reshape(-1, 2)
    T, n = delta_c.shape
    L, beyond, top = _signed_range(delta_c, limit)
    px = np.maximum(max_px * np.sqrt(np.clip(contribution, 0, None) / max(contribution.max(), 1e-12)), min_px)
    idx = np.arange(n)
    kind, rest = np.divmod(idx, 36)
    custom = np.column_stack([idx, kind, rest // 6, rest % 6, primary_len, delta_c.T + 0.1]).astype(
        np.float32
    )
    trail = " → ".join(f"%{{customdata[{5 + t}]:.4f}}" for t in range(T))
    hover = (
        "primary capsule i = %{customdata[0]}: type %{customdata[1]}, position (%{customdata[2]}, "
        f"%{{customdata[3]}})<br>|u_i| = %{{customdata[4]:.3f}}<br>"
        f"c_i{digit} by iteration: {trail}<extra></extra>"
    )
    name = path_name or f"s_{digit}"
    colorbar = _signed_colorbar("Δc = c − 0.1", L, beyond, top, len=0.75)

    def marker(t: int) -> dict:  # what changes between frames: float32 keeps the JSON small
        return dict(
            size=px[t].astype(np.float32), color=delta_c[t].astype(np.float32), cmin=-L, cmax=L, cmid=0.0
        )

    def trail_of(t: int) -> go.Scatter:
        return go.Scatter(
            x=path[: t + 1, 0], y=path[: t + 1, 1], mode="lines+markers+text", name=name,
            text=[str(k + 1) for k in range(t + 1)], textposition="top center",
            line=dict(color=WINNER, width=2), marker=dict(color=WINNER, size=9, symbol="x"),
            hovertemplate=f"{name} after iteration %{{text}}: (%{{x:.3f}}, %{{y:.3f}})<extra></extra>",
        )  # fmt: skip

    last = T - 1
    votes = go.Scattergl(
        x=x.astype(np.float32), y=y.astype(np.float32), mode="markers", name="votes û", customdata=custom,
        hovertemplate=hover, marker=dict(**marker(last), colorscale=DIVERGING, colorbar=colorbar,
                                         line=dict(width=0.5, color="#9aa3ad")),
    )  # fmt: skip
    # A frame holds only what changes (Plotly.js merges it into the traces): markers and the path.
    frames = [go.Frame(name=str(t + 1), data=[go.Scattergl(marker=marker(t)), trail_of(t)], traces=[0, 1])
              for t in range(T)]  # fmt: skip
    fig = go.Figure(data=[votes, trail_of(last)], frames=frames)
    xs, ys = np.concatenate([x, path[:, 0]]), np.concatenate([y, path[:, 1]])
    fig.update_xaxes(
        range=_padded(xs), autorange=False, title=f"along v_{digit} (last iteration)", zeroline=True
    )
    fig.update_yaxes(
        range=_padded(ys), autorange=False, title=f"across v_{digit}: widest spread", zeroline=True
    )
    play = dict(frame=dict(duration=900, redraw=True), transition=dict(duration=0), mode="immediate")
    jump = dict(frame=dict(duration=0, redraw=True), transition=dict(duration=0), mode="immediate")
    fig.update_layout(
        updatemenus=[dict(
            type="buttons", direction="left", x=0.0, y=-0.12, xanchor="left", yanchor="top", showactive=False,
            buttons=[dict(label="▶ play", method="animate", args=[None, {**play, "fromcurrent": False}]),
                     dict(label="❚❚ pause", method="animate",
                          args=[[None], dict(frame=dict(duration=0, redraw=False), mode="immediate")])],
        )],
        sliders=[dict(
            active=last, x=0.2, len=0.8, y=-0.12, yanchor="top", currentvalue=dict(prefix="iteration "),
            steps=[dict(label=str(t + 1), method="animate", args=[[str(t + 1)], jump]) for t in range(T)],
        )],
        legend=dict(orientation="h", x=0.0, y=1.02, yanchor="bottom"),
    )  # fmt: skip
    return _layout(fig, 520, margin=dict(l=10, r=10, t=40, b=90))


def _padded(values: np.ndarray, pad: float = 0.06) -> list[float]:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    margin = max(pad * (hi - lo), 1e-6)
    return [lo - margin, hi + margin]


def _signed_heatmap(z: np.ndarray, name: str, limit: float | None, hovertemplate: str, **kw) -> go.Heatmap:
    L, beyond, top = _signed_range(z, limit)
    kw.setdefault("colorscale", DIVERGING)
    return go.Heatmap(
        z=np.asarray(z, dtype=np.float32), zmin=-L, zmax=L, zmid=0.0,  # float32: half the JSON
        colorbar=_signed_colorbar(name, L, beyond, top), hovertemplate=hovertemplate, hoverongaps=False, **kw,
    )  # fmt: skip


def change_type_grid_figure(grid: np.ndarray, limit: float | None = None, cols: int = 8, name: str = "Δc"):
    """A signed per-capsule value (e.g. delta c to one digit) as the 4x8 grid of 6x6 type panels
    (analysis.type_grid of analysis.type_maps), diverging ±L scale, NaN gaps."""
    g = np.asarray(grid, dtype=float)
    fig = go.Figure(
        _signed_heatmap(g, name, limit, f"type %{{customdata}}: {name} = %{{z:.4f}}<extra></extra>",
                        customdata=_type_index(g.shape, cols))
    )  # fmt: skip
    _image_axes(fig)
    return _layout(fig, 330, margin=dict(l=5, r=5, t=5, b=5))


def signed_field_overlay(
    image: np.ndarray, values: np.ndarray, limit: float | None = None, name: str = "Δc"
) -> go.Figure:
    """The 28x28 input in grey with a signed map (analysis.field_map) over it: transparent at 0,
    blue below, red above, on a ±L scale printed on the colour bar."""
    grey = go.Heatmap(
        z=np.asarray(image, float), zmin=0, zmax=1, colorscale=GREYS, showscale=False, hoverinfo="skip"
    )
    hover = f"pixel (%{{y}}, %{{x}}): {name} = %{{z:.4f}}<extra></extra>"
    fig = go.Figure([grey, _signed_heatmap(values, name, limit, hover, colorscale=DIVERGING_OVERLAY)])
    _image_axes(fig)
    return _layout(fig, 260, margin=dict(l=5, r=5, t=5, b=5))


def _rgba(colour: str, alpha: float) -> str:
    r, g, b = (int(colour[k : k + 2], 16) for k in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def parse_tree_sankey(flows) -> go.Figure:
    """Sankey of analysis.parse_tree_flows: groups of primary capsules -> digit capsules.

    Links are positive contributions to |s_j| in one iteration; what goes against v_j is printed
    in the digit's label (a Sankey cannot draw negative flows)."""
    n_src = len(flows.sources)
    colours = [OTHER] * n_src + ["#c9d1dc"] + [DIGIT_COLORS[j] for j in flows.digits]
    target_digit = [flows.digits[t - n_src - 1] for t in flows.link_target]
    fig = go.Figure(
        go.Sankey(
            arrangement="snap", valueformat=".3f",
            node=dict(label=list(flows.labels), color=colours, pad=10, thickness=14,
                      hovertemplate="%{label}: %{value:.3f}<extra></extra>"),
            link=dict(source=flows.link_source, target=flows.link_target, value=flows.link_value,
                      color=[_rgba(DIGIT_COLORS[j], 0.35) for j in target_digit],
                      hovertemplate="%{source.label} → %{target.label}: %{value:.3f}<extra></extra>"),
        )
    )  # fmt: skip
    return _layout(fig, 440, margin=dict(l=10, r=10, t=10, b=10))


def ablation_bars(
    lengths_no_routing: np.ndarray, lengths_routed: np.ndarray, iterations: int, routing_gain: float = 1.0
) -> go.Figure:
    """|v_j| of the 10 digit capsules without routing (1 iteration, c = 0.1) and with it, side by
    side, each trace naming the digit it predicts; margin-loss thresholds as dashed lines."""
    off, on = np.asarray(lengths_no_routing, dtype=float), np.asarray(lengths_routed, dtype=float)
    gain = "" if routing_gain == 1.0 else f", gain {routing_gain:g}"
    fig = go.Figure()
    for values, colour, name in (
        (off, NO_ROUTING, f"no routing (1 iteration) → {int(np.argmax(off))}"),
        (on, ROUTED, f"{iterations} iterations{gain} → {int(np.argmax(on))}"),
    ):
        fig.add_trace(go.Bar(
            x=[str(j) for j in range(len(values))], y=values, name=name, marker_color=colour,
            text=[f"{v:.2f}" for v in values], textposition="outside", textfont=dict(size=9),
            hovertemplate=f"{name}<br>digit %{{x}}: |v| = %{{y:.3f}}<extra></extra>",
        ))  # fmt: skip
    for y, label in ((M_PLUS, "m⁺ = 0.9"), (M_MINUS, "m⁻ = 0.1")):
        fig.add_hline(y=y, line=dict(color=THRESHOLD, dash="dash", width=1), annotation_text=label,
                      annotation_position="top left", annotation_font_color=THRESHOLD)  # fmt: skip
    fig.update_yaxes(range=[0, 1.1], title="length |v_j|")
    fig.update_xaxes(title="digit capsule j (legend: → the predicted digit)", type="category")
    return _layout(fig, 320, barmode="group", legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom"))


def iteration_accuracy_chart(
    model_acc: dict, paper: dict = PAPER_TABLE1_MNIST, baseline: float | None = PAPER_BASELINE_MNIST
) -> go.Figure:
    """MNIST test error (%) against routing iterations: this checkpoint beside the paper's Table 1.

    model_acc: {iterations: test accuracy as a fraction in 0..1}, e.g. from
    `python -m capsnet.evaluate --iterations 1 2 3 4 5 --json`. paper: {series name:
    {iterations: (error %, std %)}}; baseline: the paper's CNN error (%), a dotted line."""
    accs = {int(k): float(v) for k, v in model_acc.items()}
    if any(not 0.0 <= a <= 1.0 for a in accs.values()):
        raise ValueError(f"model_acc holds accuracies as fractions in 0..1, got {model_acc}")
    iters = sorted(accs)
    ours = [100.0 * (1.0 - accs[k]) for k in iters]
    fig = go.Figure(go.Scatter(
        x=iters, y=ours, mode="lines+markers+text", name="this checkpoint", line=dict(color=WINNER, width=3),
        text=[f"{e:.2f}%" for e in ours], textposition="top center",
        hovertemplate="this checkpoint, %{x} iterations: %{y:.2f}% error<extra></extra>",
    ))  # fmt: skip
    errors = list(ours)
    for k, (name, series) in enumerate(paper.items()):
        xs = sorted(series)
        ys = [series[i][0] for i in xs]
        sd = [series[i][1] for i in xs]
        errors += [e + s for e, s in zip(ys, sd)]
        hover = f"{name}, %{{customdata[0]}} iterations: %{{y:.2f}}% ± %{{customdata[1]:.3f}}<extra></extra>"
        fig.add_trace(go.Scatter(
            x=[i + 0.06 * (k + 1) for i in xs], y=ys, mode="markers", name=name,
            error_y=dict(type="data", array=sd, visible=True), marker=dict(size=9, color=SERIES[k % 2]),
            customdata=np.column_stack([xs, sd]), hovertemplate=hover,
        ))  # fmt: skip
    if baseline is not None:
        errors.append(baseline)
        fig.add_hline(
            y=baseline, line=dict(color=THRESHOLD, dash="dot", width=1),
            annotation_text=f"paper's CNN baseline {baseline:.2f}%", annotation_position="top right",
        )  # fmt: skip
    fig.update_xaxes(title="routing iterations", tickmode="array", tickvals=sorted(set(iters) | {1, 3}))
    fig.update_yaxes(range=[0, 1.15 * max(errors)], title="MNIST test error (%)")
    return _layout(fig, 320, legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom"))


def sweep_lines(
    values: np.ndarray,
    series: np.ndarray,
    followed: int,
    xlabel: str,
    ylabel: str,
    marker: float | None = None,
) -> go.Figure:
    """The hover version of images.sweep_lines_image: series (S, 10) in 0..1 against the swept
    values, one line per digit, the followed digit thick; a dashed line at the sliders' value."""
    series = np.asarray(series, dtype=float)
    fig = go.Figure()
    for j in sorted(range(series.shape[1]), key=lambda j: j == followed):
        fig.add_trace(go.Scatter(
            x=np.asarray(values, dtype=float), y=series[:, j], mode="lines", name=str(j),
            line=dict(color=WINNER if j == followed else DIGIT_COLORS[j], width=3.5 if j == followed else 1.2),
            hovertemplate=f"digit {j}: %{{y:.3f}} at %{{x:.3g}}<extra></extra>",
        ))  # fmt: skip
    if marker is not None:
        fig.add_vline(x=marker, line=dict(color=THRESHOLD, dash="dash", width=1), annotation_text="now")
    fig.update_yaxes(range=[0, 1.02], title=ylabel)
    fig.update_xaxes(title=xlabel)
    return _layout(fig, 300, legend=dict(title="digit"))
