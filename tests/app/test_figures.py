"""Figure builders (app/figures.py): data, colour ranges and annotations, without a browser."""

import numpy as np
import pytest

from app import analysis as A
from app import figures as F


# ---------------------------------------------------------------- routing views (issue 10)
def _title_limit(title: str) -> float:
    """The number printed after '±' in a colour bar title."""
    return float(title.split("±")[1].split("<br>")[0])


def _votes_inputs(T: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=1152) * 0.05, rng.normal(size=1152) * 0.03
    x[3] = 1.4  # one long vote
    delta = rng.normal(size=(T, 1152)) * 0.004
    delta[0] = 0.0
    delta[-1, 3] = 0.3
    contribution = (0.1 + delta) * np.hypot(x, y)
    path = np.column_stack([np.linspace(1.0, 2.6, T), np.linspace(-0.2, 0.0, T)])  # beyond every vote
    return x, y, contribution, delta, path, rng.random(1152)


def test_votes_animation_frames_colours_and_scale():
    T = 3
    x, y, contribution, delta, path, u_len = _votes_inputs(T)
    fig = F.votes_animation(x, y, contribution, delta, path, u_len, digit=7)
    votes, trail = fig.data
    assert votes.type == "scattergl" and len(votes.x) == 1152
    assert [f.name for f in fig.frames] == ["1", "2", "3"]
    L = 0.3  # the largest |delta c| (the default range): nothing beyond it
    for t, frame in enumerate(fig.frames):
        marker = frame.data[0].marker
        np.testing.assert_allclose(np.asarray(marker.color), delta[t], atol=1e-7)  # colour is delta c
        assert marker.cmin == -L and marker.cmax == L and marker.cmid == 0  # symmetric, centred
        np.testing.assert_allclose(frame.data[1].x, path[: t + 1, 0])  # the path so far
        np.testing.assert_allclose(frame.data[1].y, path[: t + 1, 1])
    np.testing.assert_allclose(np.asarray(votes.marker.color), delta[-1], atol=1e-7)  # opens on the last
    assert _title_limit(votes.marker.colorbar.title.text) == votes.marker.cmax == L
    assert "beyond" not in votes.marker.colorbar.title.text
    assert list(votes.marker.colorbar.tickvals) == [-L, 0.0, L]


def test_votes_animation_marker_area_is_proportional_to_the_contribution():
    T = 3
    x, y, contribution, delta, path, u_len = _votes_inputs(T)
    fig = F.votes_animation(x, y, contribution, delta, path, u_len, digit=7, max_px=30.0, min_px=2.0)
    sizes = np.array([np.asarray(f.data[0].marker.size, dtype=float) for f in fig.frames])  # (T, 1152)
    assert sizes.max() == pytest.approx(30.0, rel=1e-6)  # one scale over all frames
    above = sizes > 2.0 + 1e-6
    ratio = sizes[above] ** 2 / contribution[above]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)
    assert sizes.min() >= 2.0 - 1e-6
    assert sizes[-1, 3] > 1.5 * sizes[0, 3]  # the long vote grows as its c does (0.1 -> 0.4)


def test_votes_animation_controls_axes_and_hover():
    T = 5
    x, y, contribution, delta, path, u_len = _votes_inputs(T, seed=1)
    fig = F.votes_animation(x, y, contribution, delta, path, u_len, digit=2, limit=0.01)
    (menu,) = fig.layout.updatemenus
    play = menu.buttons[0]
    assert play.method == "animate" and play.args[0] is None and play.args[1]["frame"]["redraw"] is True
    (slider,) = fig.layout.sliders
    assert [list(s.args[0]) for s in slider.steps] == [
        [str(t + 1)] for t in range(T)
    ] and slider.active == T - 1
    for axis, values in ((fig.layout.xaxis, np.r_[x, path[:, 0]]), (fig.layout.yaxis, np.r_[y, path[:, 1]])):
        lo, hi = axis.range
        assert axis.autorange is False and lo < values.min() and hi > values.max()
    # a limit below the largest change: the colour bar says how many points it clips, in the
    # last iteration (whose colours the figure opens on), with the limit printed as the text prints it
    bar = fig.data[0].marker.colorbar.title.text
    assert _title_limit(bar) == 0.01 == fig.data[0].marker.cmax
    assert f"{int((np.abs(delta[-1]) > 0.01).sum())} beyond<br>in iteration {T}" in bar
    given = F.votes_animation(x, y, contribution, delta, path, u_len, digit=2, limit=0.0123, beyond=7)
    assert "±0.012<br>7 beyond" in given.data[0].marker.colorbar.title.text  # a count given is printed as is
    custom = np.asarray(fig.data[0].customdata)
    assert custom.shape == (1152, 5 + T)
    np.testing.assert_allclose(custom[179, :4], [179, 4, 5, 5])  # i, type, row, col
    np.testing.assert_allclose(custom[:, 4], u_len, rtol=1e-6)
    np.testing.assert_allclose(custom[:, 5:], (delta + 0.1).T, atol=1e-7)  # c per iteration
    assert all(f"customdata[{5 + t}]" in fig.data[0].hovertemplate for t in range(T))
    assert len(fig.to_json()) < 200_000  # typed float32 arrays, frames hold only what changes


def test_parse_tree_sankey_draws_the_flows():
    u_hat = np.zeros((1152, 10, 16))
    u_hat[0 * 36 + 3, 2, 0], u_hat[4 * 36 + 20, 2, 0], u_hat[0 * 36 + 7, 2, 0] = 1.0, 0.3, -0.5
    u_hat[1 * 36 + 9, 5, 0] = 0.8
    v = np.zeros((10, 16))
    v[2, 0] = v[5, 0] = 0.5
    flows = A.parse_tree_flows(np.full((1152, 10), 0.1), u_hat, v, "position", top_k=1, digits=[2, 5])
    (sankey,) = F.parse_tree_sankey(flows).data
    assert sankey.type == "sankey"
    assert list(sankey.node.label) == flows.labels and len(sankey.node.color) == len(flows.labels)
    np.testing.assert_allclose(sankey.link.value, flows.link_value)
    np.testing.assert_array_equal(sankey.link.source, flows.link_source)
    np.testing.assert_array_equal(sankey.link.target, flows.link_target)
    assert sankey.node.color[-1] == F.DIGIT_COLORS[5] and sankey.node.color[-2] == F.DIGIT_COLORS[2]
    assert "0.05 sent against v" in flows.labels[-2]  # the negative vote is printed, not drawn


def test_ablation_bars():
    off = np.full(10, 0.05)
    off[4], off[9] = 0.6, 0.55
    on = off.copy()
    on[9] = 0.8
    fig = F.ablation_bars(off, on, iterations=3, routing_gain=2.0)
    no_routing, routed = fig.data
    np.testing.assert_allclose(no_routing.y, off)
    np.testing.assert_allclose(routed.y, on)
    assert no_routing.name == "no routing (1 iteration) → 4" and routed.name == "3 iterations, gain 2 → 9"
    assert sorted(s.y0 for s in fig.layout.shapes) == [0.1, 0.9]
    assert fig.layout.barmode == "group" and fig.layout.yaxis.range[1] >= 1


def test_iteration_accuracy_chart_sets_ours_beside_the_paper():
    fig = F.iteration_accuracy_chart({1: 0.9910, 3: 0.9917, 5: 0.9915})
    ours, *paper = fig.data
    assert list(ours.x) == [1, 3, 5]
    np.testing.assert_allclose(ours.y, [0.90, 0.83, 0.85], atol=1e-9)  # error (%) = 100 (1 - accuracy)
    assert len(paper) == len(F.PAPER_TABLE1_MNIST)
    for trace, (name, series) in zip(paper, F.PAPER_TABLE1_MNIST.items()):
        assert trace.name == name
        np.testing.assert_allclose(trace.y, [series[k][0] for k in sorted(series)])
        np.testing.assert_allclose(trace.error_y.array, [series[k][1] for k in sorted(series)])
    assert F.PAPER_TABLE1_MNIST["paper, with reconstruction"][3][0] == 0.25  # the paper's headline result
    assert [s.y0 for s in fig.layout.shapes] == [F.PAPER_BASELINE_MNIST]
    assert fig.layout.yaxis.range[0] == 0 and fig.layout.yaxis.range[1] > 0.90
    with pytest.raises(ValueError, match="fractions"):
        F.iteration_accuracy_chart({3: 99.17})


def test_primary_capsules_figure_places_every_capsule_on_its_type_panel():
    u = np.linspace(0.2, 1.0, 1152)
    fig = F.primary_capsules_figure(u, inspected=737)
    heat, cells = fig.data
    grid = np.asarray(heat.z, dtype=float)
    assert grid.shape == (27, 55) and heat.zmin == pytest.approx(0.2) and heat.zmax == pytest.approx(1.0)
    custom = np.asarray(cells.customdata, dtype=float)
    x, y = np.asarray(cells.x), np.asarray(cells.y)
    # i = 737: type 20 (panel row 2, column 4), grid row 2, column 5 -> cell (y, x) = (2*7 + 2, 4*7 + 5)
    np.testing.assert_allclose(custom[737, :4], [737, 20, 2, 5])
    assert (y[737], x[737]) == (16, 33)
    assert grid[16, 33] == pytest.approx(u[737], rel=1e-6)  # the marker sits on its own colour
    for i in (0, 35, 36, 1151):  # every marker on the heatmap cell holding its |u_i|
        assert grid[y[i], x[i]] == pytest.approx(u[i], rel=1e-6)
    assert np.isnan(grid[6, :]).all() and np.isnan(grid[:, 6]).all()  # gaps between panels
    (box,) = fig.layout.shapes
    assert box.x0 < 33 < box.x1 and box.y0 < 16 < box.y1  # the inspected capsule outlined
    assert "click" in cells.hovertemplate


def test_digit_capsules_figure_marks_prediction_and_inspected():
    lengths = np.linspace(0.05, 0.5, 10)
    lengths[7] = 0.95
    fig = F.digit_capsules_figure(lengths, prediction=7, inspected=3)
    (bar,) = fig.data
    np.testing.assert_allclose(bar.y, lengths)
    assert list(bar.x) == [str(j) for j in range(10)]
    assert bar.marker.color[7] == F.WINNER and all(
        c == F.OTHER for j, c in enumerate(bar.marker.color) if j != 7
    )
    widths = [c != "rgba(0,0,0,0)" for c in bar.marker.line.color]
    assert widths == [j == 3 for j in range(10)]  # only the inspected capsule is outlined
    assert sorted(s.y0 for s in fig.layout.shapes) == [0.1, 0.9]  # the margin-loss targets


def _atlas_cell(label: str, strength: float) -> dict:
    effects = dict(ink=1.0, x=0.5, y=0.0, width=0.0, height=0.0, slant=0.0, local=0.1)
    return {"label": label, "strength": strength, "effects": effects, "agreement": 0.9}


def test_pose_atlas_figure_colours_cells_by_family_and_strength():
    digits = [[_atlas_cell("no visible change", 0.0) for _ in range(16)] for _ in range(10)]
    digits[3][12] = _atlas_cell("wider", 6.0)  # the strongest geometric cell: darkest of its band
    digits[3][2] = _atlas_cell("wider", 3.0)
    digits[7][5] = _atlas_cell("local part", 0.6)
    digits[0][0] = _atlas_cell("moves left", 1.5)
    fig = F.pose_atlas_figure({"digits": digits}, digit=3, dim=12)
    heat, marks = fig.data
    z = np.asarray(heat.z, dtype=float)
    bands = {name: k for k, name in enumerate(F.ATLAS_FAMILIES)}
    assert z.shape == (10, 16)
    assert bands["size"] + 0.99 <= z[3, 12] < bands["size"] + 1  # strongest: the band's dark end
    assert z[3, 2] == pytest.approx(bands["size"] + 0.999 * 0.5)  # half as strong: half way
    assert z[7, 5] == pytest.approx(bands["local part"] + 0.999 * 0.6)  # a local part: its share
    assert z[0, 0] == pytest.approx(bands["position"] + 0.999 * 0.25)
    assert z[9, 15] == bands["no visible change"]
    assert (
        heat.text[3][12] == "wider<br>6.0"
        and heat.text[7][5] == "local<br>60%"
        and heat.text[0][0] == "←<br>1.5"
    )
    # The click: marker k is digit k // 16, dimension k % 16, drawn on its cell.
    assert (marks.x[3 * 16 + 12], marks.y[3 * 16 + 12]) == (12, 3)
    assert marks.hovertext[3 * 16 + 12].startswith("digit 3, dim 12: <b>wider</b>")
    (box,) = fig.layout.shapes
    assert (box.x0, box.x1, box.y0, box.y1) == (11.5, 12.5, 2.5, 3.5)
