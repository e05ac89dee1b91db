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


def entropy_line(entropy: np.ndarray) -> go.Figure:
    """Mean entropy of the coupling coefficients per iteration (bits); log2(10) is uniform."""
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
    fig.update_yaxes(range=[0, 3.5], title="mean entropy of c_i (bits)")
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


def type_grid_figure(grid: np.ndarray, vmax: float, cols: int = 8) -> go.Figure:
    """The 32 capsule types as a 4x8 grid of 6x6 panels (NaN gaps between them)."""
    g = np.asarray(grid, dtype=float)
    fig = go.Figure(
        go.Heatmap(
            z=g, zmin=0.0, zmax=max(float(vmax), 1e-9), colorscale=HEAT_SCALE,
            colorbar=dict(title="c·|u|", thickness=10), hoverongaps=False,
            customdata=_type_index(g.shape, cols),
            hovertemplate="type %{customdata}: %{z:.3f}<extra></extra>",
        )
    )  # fmt: skip
    _image_axes(fig)
    return _layout(fig, 330, margin=dict(l=5, r=5, t=5, b=5))


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
