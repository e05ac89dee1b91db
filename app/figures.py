"""The page's charts with axes as Plotly figures, built from numpy arrays. Pure: no Streamlit.

The votes animation, the parse tree's Sankey, the routing charts compared with the paper, the
entropy and lengths per iteration, the lab's sweep (lines and the pose heat strip on one x axis)
and its accuracy curves, and Figure 4's grid with its named rows. The capsule maps and the
capsule-length chart are the SVG component (app/capsule_map.py: cheap enough to redraw on every
stroke, and clickable); pixels are pictures (app/images.py). Each chart is drawn one way only.
"""

from __future__ import annotations

import base64

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.images import perturbation_grid_image, png
from app.palette import (
    DIGIT_COLORS,
    DIVERGING,
    GRIDLINES,
    LABEL,
    MARKER_EDGE,
    OTHER,
    REST_NODE,
    ROUTED,
    THRESHOLD,
    WINNER,
)
from app.sentences import fmt2

FONT = dict(size=12)


def _figure(data=None, **kw) -> go.Figure:
    """go.Figure with no template: a figure built with one (Plotly's default, or "plotly_white")
    spends 10-50 ms of the server's time validating the template's hundreds of properties. The
    few styles the charts need are set in _layout."""
    return go.Figure(data, layout=go.Layout(template="none"), **kw)


def _layout(fig: go.Figure, height: int, **kw) -> go.Figure:
    kw.setdefault("margin", dict(l=10, r=10, t=30, b=10))
    axis = dict(gridcolor=GRIDLINES, zerolinecolor=GRIDLINES, linecolor=GRIDLINES)
    fig.update_layout(height=height, font=FONT, plot_bgcolor="white", paper_bgcolor="white", xaxis=axis,
                      yaxis=axis, **kw)  # fmt: skip
    return fig


def _hlines(fig: go.Figure, lines: list[tuple[float, str]], dash: str = "dash", where: str = "right") -> None:
    """Labelled horizontal reference lines across the plot, set in one layout update (Plotly's
    add_hline costs ~9 ms each). where: "right" (label beside the line's right end), "left" or
    "top right" (label above the line, at that end)."""
    x, anchor, shift = {"right": (1.0, "left", 0), "left": (0.0, "left", 8), "top right": (1.0, "right", 8)}[
        where
    ]
    fig.update_layout(
        shapes=[dict(type="line", xref="paper", x0=0, x1=1, y0=y, y1=y, line=dict(color=THRESHOLD, dash=dash, width=1))
                for y, _ in lines],
        annotations=[dict(xref="paper", x=x, y=y, text=text, showarrow=False, xanchor=anchor, yshift=shift,
                          font=dict(color=THRESHOLD, size=12)) for y, text in lines],
    )  # fmt: skip


# ---------------------------------------------------------------- routing by agreement, made visible
SERIES = [ROUTED, OTHER]  # the paper's series in the accuracy chart

# Sabour, Frosst & Hinton (2017), Table 1: MNIST test error (%), mean ± std over 3 trials.
# Quoted from memory of the paper and cross-checked only for 0.25 (3 iterations, reconstruction)
# and the 0.39 baseline: verify the ± values against the paper before citing them.
PAPER_TABLE1_MNIST = {
    "paper, with reconstruction": {1: (0.29, 0.011), 3: (0.25, 0.005)},
    "paper, no reconstruction": {1: (0.34, 0.032), 3: (0.35, 0.036)},
}
PAPER_BASELINE_MNIST = 0.39  # the paper's CNN baseline, test error (%)


def votes_animation(
    x: np.ndarray,
    y: np.ndarray,
    contribution: np.ndarray,
    delta_c: np.ndarray,
    path: np.ndarray,
    primary_len: np.ndarray,
    digit: int,
    limit: float | None = None,
    beyond: int | None = None,
    path_name: str | None = None,
    max_px: float = 24.0,
    min_px: float = 2.0,
) -> go.Figure:
    """The 1152 votes for one digit j, one point each, animated over the routing iterations.

    x, y (1152,): the votes u_hat_j|i in the plane of routing_measures.vote_projection.
    contribution (T, 1152): c_ij |u_hat_j|i| in each iteration -> marker area (one scale for all
        frames: the largest contribution gets `max_px` diameter; none is drawn below `min_px`).
    delta_c (T, 1152): c_ij - 0.1 -> colour on a diverging scale -L..L, L = `limit` (default the
        largest |delta c|), printed on the colour bar to 2 significant digits with `beyond`, how
        many capsules lie outside it in the last iteration (default: counted here).
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
    L = float(limit) if limit is not None else max(float(np.abs(delta_c).max()), 1e-6)
    beyond = int(np.count_nonzero(np.abs(delta_c[-1]) > L)) if beyond is None else int(beyond)
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
    title = f"Δc = c − 0.1<br>±{fmt2(L)}" + (f"<br>{beyond} beyond<br>in iteration {T}" if beyond else "")
    colorbar = dict(
        title=dict(text=title),
        tickvals=[-L, 0.0, L],
        ticktext=[f"−{fmt2(L)}", "0", f"+{fmt2(L)}"],
        thickness=10,
        len=0.75,
    )

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
                                         line=dict(width=0.5, color=MARKER_EDGE)),
    )  # fmt: skip
    # A frame holds only what changes (Plotly.js merges it into the traces): markers and the path.
    frames = [go.Frame(name=str(t + 1), data=[go.Scattergl(marker=marker(t)), trail_of(t)], traces=[0, 1])
              for t in range(T)]  # fmt: skip
    fig = _figure([votes, trail_of(last)], frames=frames)
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


def _rgba(colour: str, alpha: float) -> str:
    r, g, b = (int(colour[k : k + 2], 16) for k in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def parse_tree_sankey(flows) -> go.Figure:
    """Sankey of routing_measures.parse_tree_flows: groups of primary capsules -> digit capsules.

    Links are positive contributions to |s_j| in one iteration; what goes against v_j is printed
    in the digit's label (a Sankey cannot draw negative flows)."""
    n_src = len(flows.sources)
    colours = [OTHER] * n_src + [REST_NODE] + [DIGIT_COLORS[j] for j in flows.digits]
    target_digit = [flows.digits[t - n_src - 1] for t in flows.link_target]
    fig = _figure(
        go.Sankey(
            arrangement="snap", valueformat=".3f",
            node=dict(label=list(flows.labels), color=colours, pad=10, thickness=14,
                      hovertemplate="%{label}: %{value:.3f}<extra></extra>"),
            textfont=dict(color=LABEL, size=13, shadow="none"),
            link=dict(source=flows.link_source, target=flows.link_target, value=flows.link_value,
                      color=[_rgba(DIGIT_COLORS[j], 0.35) for j in target_digit],
                      hovertemplate="%{source.label} → %{target.label}: %{value:.3f}<extra></extra>"),
        )
    )  # fmt: skip
    return _layout(fig, 440, margin=dict(l=10, r=10, t=10, b=10))


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
    fig = _figure(go.Scatter(
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
        _hlines(fig, [(baseline, f"paper's CNN baseline {baseline:.2f}%")], dash="dot", where="top right")
    fig.update_xaxes(title="routing iterations", tickmode="array", tickvals=sorted(set(iters) | {1, 3}))
    fig.update_yaxes(range=[0, 1.15 * max(errors)], title="MNIST test error (%)")
    return _layout(fig, 320, legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom"))


def _lines(fig: go.Figure, xs, series: np.ndarray, followed: int, name: str, row: int, col: int = 1,
           legend: bool = False) -> None:  # fmt: skip
    """One line per digit (columns of `series`), the followed digit thick, in the winner colour and
    drawn last; each hover names the digit."""
    series = np.asarray(series, dtype=float)
    for j in sorted(range(series.shape[1]), key=lambda j: j == followed):
        colour = WINNER if j == followed else DIGIT_COLORS[j]
        fig.add_trace(go.Scatter(
            x=xs, y=series[:, j], mode="lines+markers" if len(xs) < 8 else "lines", name=f"digit {j}",
            line=dict(color=colour, width=3.5 if j == followed else 1.2), marker=dict(size=5),
            legendgroup=str(j), showlegend=legend,
            hovertemplate=f"digit {j}: {name} %{{y:.3f}} at %{{x}}<extra></extra>",
        ), row=row, col=col)  # fmt: skip
        end = series[-1, j]
        if j == followed:
            fig.add_annotation(x=xs[-1], y=end, text=f"<b>{j}</b>", showarrow=False, xanchor="left", xshift=6,
                               font=dict(color=colour, size=14), row=row, col=col)  # fmt: skip


def per_iteration_figure(entropy: np.ndarray, lengths_per_iter: np.ndarray, winner: int) -> go.Figure:
    """Left: how far the mean entropy of c_i falls below uniform (log2 10 = 3.32 bits) after each
    iteration, in millibits, on an axis from 0 to the largest drop (a drop of 0.002 bits shows
    instead of a flat line at 3.32). Right: |v_j| after each iteration, one line per digit, the
    winner thick and labelled."""
    drop = 1000 * (np.log2(10) - np.asarray(entropy, dtype=float))  # millibits, >= 0
    lpi = np.asarray(lengths_per_iter, dtype=float)  # (T, 10)
    iters = np.arange(1, len(drop) + 1)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.14,
                        subplot_titles=("entropy of c below uniform", "length |v_j| per iteration"))  # fmt: skip
    fig.update_layout(template="none")
    fig.add_trace(go.Scatter(
        x=iters, y=drop, mode="lines+markers", line=dict(color=WINNER, width=2.5), showlegend=False,
        hovertemplate="iteration %{x}: %{y:.3f} millibits below uniform<extra></extra>",
    ), row=1, col=1)  # fmt: skip
    _lines(fig, iters, lpi, winner, "|v|", row=1, col=2)
    fig.update_xaxes(title="routing iteration", tickvals=list(iters), range=[0.8, len(iters) + 0.3])
    fig.update_yaxes(title="millibits", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title="length |v_j|", range=[0, 1.02], row=1, col=2)
    _layout(fig, 300, margin=dict(l=10, r=30, t=40, b=10))
    fig.update_annotations(font_size=13, selector=dict(text="entropy of c below uniform"))
    return fig


def sweep_figure(
    values: np.ndarray,
    lengths: np.ndarray,
    cnn_probs: np.ndarray | None,
    change: np.ndarray,
    limit: float,
    followed: int,
    xlabel: str,
    marker: float | None = None,
) -> go.Figure:
    """The lab's sweep on one x axis (the swept value): CapsNet's 10 lengths, the CNN's 10
    probabilities (when there is a CNN) and the followed capsule's 16 pose dimensions as a heat
    strip of their change from the identity (S, 16), on the diverging scale -limit..+limit with a
    colour bar; `marker`: a dashed vertical line at the sliders' value ("now")."""
    xs = np.asarray(values, dtype=float)
    rows = 3 if cnn_probs is not None else 2
    titles = ["CapsNet: length |v_j|"] + (["CNN: probability"] if cnn_probs is not None else [])
    titles.append(f"capsule {followed}'s 16 pose dimensions: change from the identity")
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.07, subplot_titles=titles,
                        row_heights=[1.0] * (rows - 1) + [1.3])  # fmt: skip
    fig.update_layout(template="none")
    _lines(fig, xs, lengths, followed, "length", row=1)
    if cnn_probs is not None:
        _lines(fig, xs, cnn_probs, followed, "probability", row=2)
    z = np.asarray(change, dtype=float).T  # (16, S)
    L = max(float(limit), 1e-12)
    fig.add_trace(go.Heatmap(
        x=xs, y=[f"dim {d}" for d in range(z.shape[0])], z=z.astype(np.float32), zmin=-L, zmax=L, zmid=0.0,
        colorscale=DIVERGING, showscale=True,
        colorbar=dict(title=dict(text="change"), tickvals=[-L, 0, L], ticktext=[f"−{fmt2(L)}", "0", f"+{fmt2(L)}"],
                      thickness=10, len=0.3, y=0.0, yanchor="bottom"),
        hovertemplate="%{y} at %{x}: %{z:+.4f}<extra></extra>",
    ), row=rows, col=1)  # fmt: skip
    for r in range(1, rows):
        fig.update_yaxes(range=[0, 1.02], row=r, col=1)
    fig.update_yaxes(autorange="reversed", row=rows, col=1)
    fig.update_xaxes(title=xlabel, row=rows, col=1)
    if marker is not None and xs[0] <= marker <= xs[-1]:
        fig.add_vline(x=marker, line=dict(color=THRESHOLD, dash="dash", width=1))
        fig.add_annotation(x=marker, y=1.0, yref="paper", text="now", showarrow=False, yanchor="bottom",
                           font=dict(color=THRESHOLD, size=12))  # fmt: skip
    return _layout(fig, 260 * rows + 80, margin=dict(l=10, r=40, t=40, b=10))


def accuracy_curves_figure(curves: dict[str, tuple], titles: dict[str, str]) -> go.Figure:
    """Test accuracy (0..1) along each transform alone, both models, one panel per family.
    curves: {family: (values, capsnet accuracies, cnn accuracies)}; titles: {family: x axis title}."""
    fams = list(curves)
    fig = make_subplots(rows=1, cols=len(fams), shared_yaxes=True, horizontal_spacing=0.04)
    fig.update_layout(template="none")
    for k, family in enumerate(fams, start=1):
        xs, caps, cnn = (np.asarray(v, dtype=float) for v in curves[family])
        for ys, colour, name, w in ((cnn, OTHER, "CNN", 1.5), (caps, WINNER, "CapsNet", 2.5)):
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines", name=name, line=dict(color=colour, width=w), legendgroup=name,
                showlegend=k == 1, hovertemplate=f"{name}, {titles[family]} %{{x:g}}: %{{y:.1%}}<extra></extra>",
            ), row=1, col=k)  # fmt: skip
        fig.update_xaxes(title=titles[family], row=1, col=k)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", title="accuracy", row=1, col=1)
    return _layout(fig, 280, legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom"))


def perturbation_grid_figure(
    grid: np.ndarray, steps: np.ndarray, names: list[str], scale: int = 2
) -> go.Figure:
    """The paper's Fig. 4: (16*28, S*28) reconstructions in [0, 1] as one picture (app/images.py,
    no text in it) on axes whose ticks are the offsets (columns) and the dimensions' names (rows)."""
    gap, size = 2, 28
    img = perturbation_grid_image(grid, scale=scale, gap=gap)
    pitch = size * scale + gap
    rows, cols = len(names), len(steps)
    source = "data:image/png;base64," + base64.b64encode(png(img)).decode()
    fig = _figure(go.Image(source=source, x0=0, dx=1, y0=0, dy=1, hoverinfo="skip"))
    centres = [k * pitch + size * scale / 2 for k in range(max(rows, cols))]
    fig.update_xaxes(side="top", tickvals=centres[:cols], ticktext=[f"{s:+.2f}" for s in steps],
                     showgrid=False, zeroline=False, title="offset added to the dimension")  # fmt: skip
    fig.update_yaxes(tickvals=centres[:rows], ticktext=list(names), showgrid=False, zeroline=False,
                     autorange="reversed", scaleanchor="x")  # fmt: skip
    return _layout(fig, rows * pitch + 70, margin=dict(l=10, r=10, t=60, b=10))
