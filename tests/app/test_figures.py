"""Figure builders (app/figures.py): data, colour ranges and annotations, without a browser."""


import numpy as np

from app import analysis as A
from app import figures as F


def test_lengths_bar_highlights_winner_and_draws_margins():
    lengths = np.linspace(0.05, 0.5, 10)
    lengths[7] = 0.95
    fig = F.lengths_bar(lengths, winner=7)
    (bar,) = fig.data
    assert bar.type == "bar"
    np.testing.assert_allclose(bar.y, lengths)
    assert list(bar.x) == [str(j) for j in range(10)]
    assert bar.marker.color[7] == F.WINNER
    assert all(c == F.OTHER for j, c in enumerate(bar.marker.color) if j != 7)
    assert sorted(s.y0 for s in fig.layout.shapes) == [0.1, 0.9]
    assert all(s.y0 == s.y1 for s in fig.layout.shapes)  # horizontal lines
    assert fig.layout.yaxis.range[0] == 0 and fig.layout.yaxis.range[1] >= 1


def test_lengths_over_iterations_one_line_per_digit():
    lpi = np.random.default_rng(0).random((4, 10))
    fig = F.lengths_over_iterations(lpi, winner=2)
    assert len(fig.data) == 10
    for j, tr in enumerate(fig.data):
        assert list(tr.x) == [1, 2, 3, 4]
        np.testing.assert_allclose(tr.y, lpi[:, j])
    assert fig.data[2].line.width > fig.data[0].line.width


def test_entropy_line_one_point_per_iteration():
    fig = F.entropy_line(np.array([3.32, 2.0, 1.1]))
    (tr,) = fig.data
    assert list(tr.x) == [1, 2, 3]
    assert [s.y0 for s in fig.layout.shapes] == [np.log2(10)]


def test_coupling_heatmap_fixed_range_and_orientation():
    c = np.random.default_rng(1).random((1152, 10))
    fig = F.coupling_heatmap(c, highlight=3)
    (hm,) = fig.data
    assert hm.zmin == 0 and hm.zmax == 1
    assert np.asarray(hm.z).shape == (10, 1152)
    np.testing.assert_allclose(np.asarray(hm.z), c.T)
    assert hm.colorscale is not None
    (rect,) = fig.layout.shapes
    assert rect.y0 == 2.5 and rect.y1 == 3.5


def test_position_map_and_overlay_ranges():
    fig = F.position_map(np.ones((6, 6)), vmax=4.0)
    assert np.asarray(fig.data[0].z).shape == (6, 6) and fig.data[0].zmax == 4.0
    ov = F.evidence_overlay(np.zeros((28, 28)), np.ones((28, 28)), vmax=2.0)
    img, heat = ov.data
    assert np.asarray(img.z).shape == (28, 28) and img.zmin == 0 and img.zmax == 1
    assert heat.zmax == 2.0 and heat.colorscale[0][1].endswith(",0)")  # transparent at zero
    assert ov.layout.yaxis.autorange == "reversed"  # image rows go down


def test_type_grid_figure_shape():
    fig = F.type_grid_figure(A.type_grid(np.ones((32, 6, 6))), vmax=1.0)
    assert np.asarray(fig.data[0].z).shape == (27, 55)
    assert fig.data[0].customdata[0][0] == 0 and fig.data[0].customdata[26][54] == 31
