"""Pixel pictures (app/images.py): colours on fixed scales (app/palette.py), outlines, sizes, and
no text burned in."""

import io
import re

import numpy as np
from PIL import Image

from app import images as I
from app import palette as P
from app.capsule_map import bar_item


def hex_rgb(h):
    return tuple(int(h[k : k + 2], 16) for k in (1, 3, 5))


def test_colorize_uses_the_fixed_range_and_the_scale_ends():
    z = np.array([[0.0, 1.0, 2.0, -1.0, np.nan]])
    rgba = P.colorize(z, 0.0, 1.0, P.HEAT_SCALE)
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
    assert img_a.shape == img_b.shape == (2 + 10 * 10 + 2, 2 + 1152 + 2, 3)  # no text: rows are digits 0-9
    px = (2 + 5, 2)  # row of digit 0, column of primary capsule 0
    np.testing.assert_array_equal(img_a[px], img_b[px])
    assert not np.array_equal(img_a[2 + 35, 500], img_b[2 + 35, 500])  # digit 3: 0.1 vs 1.0


def test_coupling_image_outlines_the_chosen_digit():
    img = I.coupling_image(np.full((1152, 10), 0.1), highlight=7)
    winner = np.array(hex_rgb(P.WINNER))
    outlined_rows = {
        y for y in range(img.shape[0]) if (np.abs(img[y, 30:1100].astype(int) - winner).sum(1) < 30).all()
    }
    assert outlined_rows == {70, 71, 82, 83}  # around digit 7's rows 72-81


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


def test_perturbation_grid_image_lays_out_16_by_11_digits_and_nothing_else():
    """Fig. 4 as pixels only: 16 rows of 11 digits, each 56 px, 2 px of white between; the names and
    offsets are the chart's axes (figures.perturbation_grid_figure), not text in the picture."""
    grid = np.zeros((16 * 28, 11 * 28))
    grid[28 * 3 : 28 * 4, 28 * 5 : 28 * 6] = 1.0  # dim 3, offset 0.00
    img = I.perturbation_grid_image(grid, scale=2)
    assert img.shape == (16 * 58 - 2, 11 * 58 - 2, 3)
    bright = np.argwhere((img == 255).all(-1) & ~_gaps(img.shape, 58))
    assert (bright.min(0) == [3 * 58, 5 * 58]).all() and (bright.max(0) == [3 * 58 + 55, 5 * 58 + 55]).all()
    assert (img[_gaps(img.shape, 58)] == 255).all()  # white between the digits: no labels anywhere
    assert (img[~_gaps(img.shape, 58)][:, 0] == 0).sum() == img.shape[0] * img.shape[1] - len(bright) - _gaps(
        img.shape, 58
    ).sum()  # every other pixel of a digit is its black background


def _gaps(shape, pitch):
    rows, cols = np.arange(shape[0]) % pitch >= pitch - 2, np.arange(shape[1]) % pitch >= pitch - 2
    return rows[:, None] | cols[None, :]


def colour_mask(img, hex_colour, tol=20):
    return np.abs(img.astype(int) - np.array(hex_rgb(hex_colour))).sum(-1) < tol


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


def test_field_image_outlines_the_receptive_field():
    image = np.full((28, 28), 1.0)
    out = I.field_image(image, slice(10, 27), slice(4, 21), px=1)
    winner = np.array(hex_rgb(P.WINNER))
    np.testing.assert_array_equal(out[10, 4], winner)
    np.testing.assert_array_equal(out[26, 20], winner)
    assert out[2, 2].max() < 120  # dimmed outside the field
    np.testing.assert_array_equal(out[15, 12], 255)  # inside, as it is


def test_activation_mosaic_image_scales_zero_to_vmax():
    mosaic = np.array([[0.0, 2.0, 4.0, np.nan]])
    img = I.activation_mosaic_image(mosaic, vmax=2.0, px=2)
    assert img.shape == (2, 8, 3)
    assert tuple(img[0, 0]) == (0, 0, 4)  # Inferno's dark end: a silent unit
    np.testing.assert_array_equal(img[0, 2], img[0, 4])  # above vmax: clipped to the bright end
    assert img[0, 2].sum() > 500  # the bright end (near yellow)
    assert tuple(img[0, 6]) == (255, 255, 255)  # NaN gaps between maps: the page's background


def test_a_colour_bar_is_the_scale_as_a_css_gradient():
    """A colour bar (the capsule-map component sets its range as text beside a CSS gradient): the
    ends of the gradient are the scale's ends, the diverging scale's middle is white."""
    bar = bar_item(P.DIVERGING, "−0.016", "+0.016", "Δc per type", mid="0")["bar"]
    stops = re.findall(r"#[0-9a-f]{6}", bar["gradient"].split("linear-gradient")[1])
    assert hex_rgb(stops[0]) == P.DIVERGING_RGB[0] and hex_rgb(stops[-1]) == P.DIVERGING_RGB[2]
    assert hex_rgb(stops[len(stops) // 2]) == (255, 255, 255) or min(hex_rgb(stops[len(stops) // 2])) >= 254
    assert (bar["lo"], bar["hi"], bar["mid"], bar["name"]) == ("−0.016", "+0.016", "0", "Δc per type")
