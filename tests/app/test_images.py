"""Raster views (app/images.py): colours on fixed scales, labels, outlines, sizes."""

import io

import numpy as np
from PIL import Image

from app import images as I
from app import palette as P
from app import pose_measures


def hex_rgb(h):
    return tuple(int(h[k : k + 2], 16) for k in (1, 3, 5))


def test_colorize_uses_the_fixed_range_and_the_scale_ends():
    z = np.array([[0.0, 1.0, 2.0, -1.0, np.nan]])
    rgba = I.colorize(z, 0.0, 1.0, P.HEAT_SCALE)
    assert tuple(rgba[0, 0, :3].round()) == hex_rgb(P.HEAT_SCALE[0][1])
    assert tuple(rgba[0, 1, :3].round()) == hex_rgb(P.HEAT_SCALE[-1][1])
    np.testing.assert_array_equal(rgba[0, 2], rgba[0, 1])  # clipped above
    np.testing.assert_array_equal(rgba[0, 3], rgba[0, 0])  # clipped below
    assert rgba[0, 4, 3] == 0  # NaN is transparent


def test_coupling_image_same_value_same_colour_in_every_iteration():
    """Fixed 0..1 scale: a c of 0.5 looks the same whatever else the iteration holds."""
    a = np.full((1152, 10), 0.1)
    b = np.zeros((1152, 10))
    b[:, 3] = 1.0
    a[0, 0] = b[0, 0] = 0.5
    img_a, img_b = I.coupling_image(a), I.coupling_image(b)
    assert img_a.shape == img_b.shape == (4 + 10 * 10 + 4, 22 + 1152 + 2, 3)
    px = (4 + 5, 22)  # row of digit 0, column of primary capsule 0
    np.testing.assert_array_equal(img_a[px], img_b[px])
    assert not np.array_equal(img_a[4 + 35, 500], img_b[4 + 35, 500])  # digit 3: 0.1 vs 1.0


def test_coupling_image_outlines_the_chosen_digit():
    img = I.coupling_image(np.full((1152, 10), 0.1), highlight=7)
    winner = np.array(hex_rgb(P.WINNER))
    outlined_rows = {
        y for y in range(img.shape[0]) if (np.abs(img[y, 30:1100].astype(int) - winner).sum(1) < 30).all()
    }
    assert outlined_rows and min(outlined_rows) >= 4 + 7 * 10 - 1 and max(outlined_rows) <= 4 + 8 * 10


def test_evidence_image_shows_the_digit_where_there_is_no_evidence():
    digit = np.zeros((28, 28))
    digit[5:20, 10:14] = 1.0
    evidence = np.zeros((28, 28))
    evidence[0:5, 0:5] = 1.0
    img = I.evidence_image(digit, evidence, vmax=1.0, px=1)
    assert img.shape == (28, 28, 3)
    np.testing.assert_array_equal(img[10, 12], [255, 255, 255])  # ink, no evidence
    np.testing.assert_array_equal(img[25, 25], [0, 0, 0])  # background, no evidence
    assert img[2, 2, 0] > 200 and img[2, 2, 2] < 100  # evidence: warm colour


def test_position_image():
    pos = I.position_image(np.arange(36.0).reshape(6, 6) + 10, vmax=45.0, vmin=10.0, px=32)
    assert pos.shape == (192, 192, 3)
    assert tuple(pos[0, 0]) == hex_rgb(P.HEAT_SCALE[0][1])  # the smallest value: the lightest colour
    assert tuple(pos[-1, -1]) == hex_rgb(P.HEAT_SCALE[-1][1])  # the largest: the darkest


def test_perturbation_grid_image_lays_out_16_by_11_labelled_digits():
    steps = pose_measures.perturbation_steps()
    grid = np.zeros((16 * 28, 11 * 28))
    grid[28 * 3 : 28 * 4, 28 * 5 : 28 * 6] = 1.0  # dim 3, offset 0.00
    img = I.perturbation_grid_image(grid, steps, scale=2)
    assert img.shape[0] == 22 + 16 * 56 + 4
    left = img.shape[1] - 4 - 11 * 56  # the name column, then the 11 columns of 56 px
    assert 30 < left < 80
    body = img[22 : 22 + 16 * 56, left : left + 11 * 56, 0]
    bright = np.argwhere(body == 255)
    assert (bright.min(0) == [3 * 56, 5 * 56]).all() and (bright.max(0) == [4 * 56 - 1, 6 * 56 - 1]).all()
    assert (img[:22, left:] < 128).any() and (img[22:, :left] < 128).any()  # offset and "dim d" labels drawn
    # Named rows (the pose atlas's names): the name column widens to the longest name.
    names = tuple(f"dim {d} · moves right (+5.4 px per unit)" for d in range(16))
    named = I.perturbation_grid_image(grid, steps, scale=2, names=names)
    assert named.shape[1] - img.shape[1] > 150
    assert (named[22 : 22 + 56, left : named.shape[1] - 4 - 11 * 56] < 128).any()  # the name reaches on


def colour_mask(img, hex_colour, tol=20):
    return np.abs(img.astype(int) - np.array(hex_rgb(hex_colour))).sum(-1) < tol


def test_bar_chart_highlights_the_winner_with_heights_on_the_0_to_1_axis():
    lengths = np.full(10, 0.05)
    lengths[7], lengths[3] = 0.95, 0.45
    img = I.bar_chart_image(lengths, winner=7)
    win = colour_mask(img, P.WINNER)
    cols = np.nonzero(win.any(0))[0]
    assert cols.min() > img.shape[1] * 0.6 and cols.max() < img.shape[1] * 0.8  # bar 7 of 0..9 only
    other = colour_mask(img, P.OTHER)
    h_win, h_3 = win.sum(0).max(), other.sum(0).max()
    assert abs(h_3 / h_win - 0.45 / 0.95) < 0.02  # bar heights proportional to the lengths
    threshold_rows = np.nonzero(colour_mask(img, P.THRESHOLD).sum(1) > img.shape[1] * 0.3)[0]
    assert len(threshold_rows) >= 2  # the dashed m+ and m- lines


def test_entropy_drop_and_length_charts_draw_their_series():
    ent = I.entropy_drop_image(np.array([3.32, 1.0, 0.2]))
    ys, xs = np.nonzero(colour_mask(ent, P.WINNER))
    assert ys[xs.argmin()] > ys[xs.argmax()]  # the drop below uniform grows from left to right
    lpi = np.array([[0.1] * 10, [0.1] * 10])
    lpi[:, 4] = [0.3, 0.9]
    img = I.lengths_over_iterations_image(lpi, winner=4)
    ys, xs = np.nonzero(colour_mask(img, P.WINNER))
    assert ys[xs.argmin()] > ys[xs.argmax()]  # the winner's line rises


def test_digit_and_difference_images():
    x = np.zeros((28, 28))
    x[10:18, 12:16] = 1.0
    d = I.digit_image(x, 7)
    assert d.shape == (196, 196) and d.dtype == np.uint8
    assert d[10 * 7 + 3, 12 * 7 + 3] == 255 and d[0, 0] == 0  # nearest neighbour: crisp pixels

    diff = np.zeros((28, 28))
    diff[5, 5], diff[20, 20] = 0.5, -0.5
    img = I.difference_image(diff, 0.5, 7)
    assert img.shape == (196, 196, 3)
    assert tuple(img[0, 50]) == I.FRAME and tuple(img[50, -1]) == I.FRAME  # framed, so 0 still shows
    assert tuple(img[14 * 7, 10 * 7]) == (255, 255, 255)  # no change: white
    red, blue = img[5 * 7 + 3, 5 * 7 + 3], img[20 * 7 + 3, 20 * 7 + 3]
    assert red[0] > 150 > red[2] and blue[2] > 150 > blue[0]


def test_png_is_lossless_and_reduced_only_when_wider():
    rgb = np.random.default_rng(0).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    back = np.asarray(Image.open(io.BytesIO(I.png(rgb))))
    np.testing.assert_array_equal(back, rgb)
    assert Image.open(io.BytesIO(I.png(rgb, width=60))).size == (60, 40)
    assert Image.open(io.BytesIO(I.png(rgb, width=30))).size == (30, 20)


def test_nice_ticks_reach_the_largest_value():
    for hi in (0.0023, 1.7, 3.4, 17.0, 0.5):
        ticks = I.nice_ticks(hi)
        assert ticks[0] == 0 and ticks[-1] >= hi and ticks[-2] < hi  # covers it, no spare tick beyond
        assert 3 <= len(ticks) <= 7


def test_signed_overlay_leaves_the_input_where_nothing_changed():
    image = np.zeros((28, 28))
    image[10:18, 12:15] = 1.0
    values = np.zeros((28, 28))
    values[0:3, 0:3] = 0.05  # at the limit: strongly red
    values[25:, 25:] = -0.05  # strongly blue
    out = I.signed_overlay_image(image, values, 0.05, px=1)
    np.testing.assert_array_equal(out[10:18, 12:15], 255)  # ink, untouched
    np.testing.assert_array_equal(out[5:9, 5:9], 0)  # background, untouched
    r, g, b = out[1, 1].astype(int)
    assert r > 60 and r > b + 40 and r > g + 40  # red over black (RdBu's dark-red end)
    r, g, b = out[26, 26].astype(int)
    assert b > 60 and b > r + 40  # blue


def test_diverging_colour_bar_runs_blue_white_red():
    bar = I.diverging_colorbar_image(0.012, width=200)
    row = bar[6, 56 : 56 + 200].astype(int)  # the bar between its two labels
    assert row[0, 2] > row[0, 0] + 60  # blue end
    assert row[-1, 0] > row[-1, 2] + 60  # red end
    assert row[100].min() > 220  # white in the middle


def test_field_image_outlines_the_receptive_field():
    image = np.full((28, 28), 1.0)
    out = I.field_image(image, slice(10, 27), slice(4, 21), px=1)
    winner = np.array(I.hex_to_rgb(I.WINNER))
    np.testing.assert_array_equal(out[10, 4], winner)
    np.testing.assert_array_equal(out[26, 20], winner)
    assert out[2, 2].max() < 120  # dimmed outside the field
    np.testing.assert_array_equal(out[15, 12], 255)  # inside, as it is


def test_type_grid_image_numbers_each_panel_and_colours_its_cells():
    """Panel t of the 32 sits at row t // 8, column t % 8 (6 px cells, 6 px gaps, a 13 px heading
    with its number); +limit is the diverging scale's red end, -limit its blue end."""
    maps = np.zeros((32, 6, 6))
    maps[20, 2, 5] = 0.01  # type 20, grid (2, 5): panel row 2, column 4
    maps[0, 0, 0] = -0.05  # beyond the range: clipped to the blue end
    img = I.type_grid_image(maps, limit=0.01, px=6)
    panel, gap, head = 36, 6, 13
    assert img.shape == (4 * (panel + head + gap) - gap, 8 * (panel + gap) - gap, 3)
    y0, x0 = 2 * (panel + head + gap) + head, 4 * (panel + gap)
    red, blue = (204, 26, 38), (33, 77, 191)
    assert tuple(img[y0 + 2 * 6 + 3, x0 + 5 * 6 + 3]) == red
    assert tuple(img[head + 3, 3]) == blue
    assert (img[y0 + 3, x0 + 3] >= 254).all()  # zero is white
    heading = img[y0 - head : y0 - 1, x0 : x0 + panel]
    assert (heading.sum(-1) < 400).any()  # the panel's number is written above it
    blank = img[y0 - head : y0 - 1, x0 + panel + 1 : x0 + panel + gap - 1]
    assert (blank == 255).all()  # nothing between the panels


def test_activation_mosaic_image_scales_zero_to_vmax():
    mosaic = np.array([[0.0, 2.0, 4.0, np.nan]])
    img = I.activation_mosaic_image(mosaic, vmax=2.0, px=2)
    assert img.shape == (2, 8, 3)
    assert tuple(img[0, 0]) == (0, 0, 4)  # Inferno's dark end: a silent unit
    np.testing.assert_array_equal(img[0, 2], img[0, 4])  # above vmax: clipped to the bright end
    assert img[0, 2].sum() > 500  # the bright end (near yellow)
    assert tuple(img[0, 6]) == (255, 255, 255)  # NaN gaps between maps: the page's background
