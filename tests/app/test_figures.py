"""Figure builders (app/figures.py): data, colour ranges and annotations, without a browser."""

import numpy as np
import pytest
from floats import assert_close_f32

from app import figures as F
from app import palette as P
from app import routing_measures


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
        assert_close_f32(marker.color, delta[t], 1)  # colour is delta c, sent as float32 (one rounding)
        assert marker.cmin == -L and marker.cmax == L and marker.cmid == 0  # symmetric, centred
        np.testing.assert_allclose(frame.data[1].x, path[: t + 1, 0])  # the path so far
        np.testing.assert_allclose(frame.data[1].y, path[: t + 1, 1])
    assert_close_f32(votes.marker.color, delta[-1], 1)  # opens on the last
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
    assert_close_f32(custom[:, 4], u_len, 1)  # float32, as every column: one rounding
    assert_close_f32(custom[:, 5:], (delta + 0.1).T, 1)  # c per iteration
    assert all(f"customdata[{5 + t}]" in fig.data[0].hovertemplate for t in range(T))
    assert len(fig.to_json()) < 200_000  # typed float32 arrays, frames hold only what changes


def test_parse_tree_sankey_draws_the_flows():
    u_hat = np.zeros((1152, 10, 16))
    u_hat[0 * 36 + 3, 2, 0], u_hat[4 * 36 + 20, 2, 0], u_hat[0 * 36 + 7, 2, 0] = 1.0, 0.3, -0.5
    u_hat[1 * 36 + 9, 5, 0] = 0.8
    v = np.zeros((10, 16))
    v[2, 0] = v[5, 0] = 0.5
    flows = routing_measures.parse_tree_flows(
        np.full((1152, 10), 0.1), u_hat, v, "position", top_k=1, digits=[2, 5]
    )
    (sankey,) = F.parse_tree_sankey(flows).data
    assert sankey.type == "sankey"
    assert list(sankey.node.label) == flows.labels and len(sankey.node.color) == len(flows.labels)
    np.testing.assert_allclose(sankey.link.value, flows.link_value)
    np.testing.assert_array_equal(sankey.link.source, flows.link_source)
    np.testing.assert_array_equal(sankey.link.target, flows.link_target)
    assert sankey.node.color[-1] == F.DIGIT_COLORS[5] and sankey.node.color[-2] == F.DIGIT_COLORS[2]
    assert "0.05 sent against v" in flows.labels[-2]  # the negative vote is printed, not drawn


def test_per_iteration_figure_plots_the_entropy_drop_and_every_length():
    """Left: 1000 (log2 10 - entropy) per iteration, in millibits; right: the 10 lengths per
    iteration, exactly the numbers given, the winner thick in the winner colour."""
    entropy = np.array([np.log2(10), 3.3215, 3.3210])
    lpi = np.random.default_rng(0).uniform(0, 1, (3, 10)).astype(np.float32)
    fig = F.per_iteration_figure(entropy, lpi, winner=4)
    drop, *lines = fig.data
    np.testing.assert_allclose(drop.y, 1000 * (np.log2(10) - entropy))
    assert list(drop.x) == [1, 2, 3] and drop.y[0] == 0
    by_digit = {int(t.name.split()[-1]): t for t in lines}
    assert sorted(by_digit) == list(range(10))
    for j, t in by_digit.items():
        np.testing.assert_array_equal(t.y, lpi[:, j])
    assert by_digit[4].line.color == P.WINNER and by_digit[4].line.width > by_digit[0].line.width
    assert lines[-1].name == "digit 4"  # drawn last, on top


def test_perturbation_grid_figure_names_rows_and_offsets_on_its_axes():
    """Figure 4: the picture carries no text; the 11 offsets and the 16 names are tick labels at the
    centres of the columns and rows of 56 px digits with 2 px between."""
    steps = np.round(np.linspace(-0.25, 0.25, 11), 2)
    names = [f"dim {d} · moves right (+5.4 px per unit)" for d in range(16)]
    fig = F.perturbation_grid_figure(np.zeros((16 * 28, 11 * 28)), steps, names)
    assert list(fig.layout.xaxis.ticktext) == [f"{s:+.2f}" for s in steps]
    assert list(fig.layout.yaxis.ticktext) == names
    assert list(fig.layout.xaxis.tickvals) == [k * 58 + 28 for k in range(11)]
    assert list(fig.layout.yaxis.tickvals) == [k * 58 + 28 for k in range(16)]
    assert fig.data[0].source.startswith("data:image/png;base64,")


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
