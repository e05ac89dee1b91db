import numpy as np
import pytest

from capsnet.preprocess import to_mnist


def centre_of_mass(img):
    ys, xs = np.mgrid[: img.shape[0], : img.shape[1]]
    m = img.sum()
    return (ys * img).sum() / m, (xs * img).sum() / m


def ink_box(img, level=0.05):
    rows, cols = np.nonzero(img > level)
    return rows.min(), rows.max(), cols.min(), cols.max()


def assert_mnist_like(img):
    assert img is not None
    assert img.shape == (28, 28) and img.dtype == np.float32
    assert np.isfinite(img).all() and img.min() >= 0 and img.max() <= 1
    assert img.max() > 0.9  # strokes saturate like MNIST's
    cy, cx = centre_of_mass(img)
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1
    r0, r1, c0, c1 = ink_box(img, level=0)
    assert r1 - r0 + 1 <= 20 and c1 - c0 + 1 <= 20  # inside the 20x20 box
    assert max(r1 - r0, c1 - c0) + 1 == 20  # and filling it along the longest side


def assert_seven(img):
    """Reads as the 7 that `seven` draws, upright: a bar along the top of the ink box, the stroke
    running from its right end down to the bottom left. A flip or a transpose fails this."""
    assert_mnist_like(img)
    r0, r1, c0, c1 = ink_box(img, level=0.5)
    width = c1 - c0 + 1
    bar = (img[r0 : r0 + 2, c0 : c1 + 1] > 0.5).all(axis=0)
    assert bar.mean() >= 0.75, "no bar across the top"
    foot = np.nonzero((img[r1 - 2 : r1 + 1, c0 : c1 + 1] > 0.5).any(axis=0))[0]
    assert foot.mean() < width / 2 and foot.max() < 0.6 * width, "the stroke does not end left of the middle"
    rows = np.arange(r0 + 3, r1 + 1)  # below the bar: one stroke, moving left as it goes down
    centres = [np.average(np.arange(28), weights=img[r]) for r in rows]
    assert np.corrcoef(rows, centres)[0, 1] < -0.95


def seven(size=280, ink=255, background=0, thickness=20, channels=None, offset=(0, 0)):
    """A '7' drawn as two thick strokes, in the canvas' layout."""
    img = np.full((size, size), background, np.uint8)
    s = size / 280
    t = max(1, int(thickness * s))
    y0, x0 = int(60 * s) + offset[0], int(70 * s) + offset[1]
    img[y0 : y0 + t, x0 : x0 + int(140 * s)] = ink  # top bar
    for k in range(int(160 * s)):  # diagonal down to the left
        y = y0 + k
        x = x0 + int(140 * s) - t - int(k * 0.45)
        img[y, x : x + t] = ink
    if channels == 4:
        rgba = np.zeros((size, size, 4), np.uint8)
        rgba[..., :3] = img[..., None]
        rgba[..., 3] = np.where(img != background, 255, 0)
        return rgba
    if channels == 3:
        return np.repeat(img[..., None], 3, axis=2)
    return img


def test_blank_inputs_give_none():
    assert to_mnist(np.zeros((280, 280, 4), np.uint8)) is None  # empty canvas, transparent
    assert to_mnist(np.zeros((280, 280), np.uint8)) is None
    assert to_mnist(np.full((100, 100, 3), 255, np.uint8)) is None  # white paper
    assert to_mnist(np.zeros((0, 0))) is None
    rng = np.random.default_rng(0)
    assert to_mnist((rng.random((280, 280)) * 20).astype(np.uint8)) is None  # faint noise only


def test_canvas_rgba_white_on_transparent():
    assert_seven(to_mnist(seven(channels=4)))


def test_grayscale_rgb_and_float_inputs_agree():
    a = to_mnist(seven())
    b = to_mnist(seven(channels=3))
    c = to_mnist(seven().astype(np.float32) / 255)
    assert_seven(a)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a, c, atol=1e-6)


def test_dark_ink_on_light_paper_is_inverted():
    light = seven(ink=30, background=235, channels=3)
    out = to_mnist(light)
    assert_seven(out)
    np.testing.assert_allclose(out, to_mnist(seven()), atol=0.15)


def test_dark_ink_on_transparent_background():
    rgba = seven(channels=4)
    rgba[..., :3] = 0  # black strokes, transparent elsewhere
    assert_seven(to_mnist(rgba))


def test_tiny_drawing_is_scaled_up():
    img = np.zeros((280, 280), np.uint8)
    img[100:112, 200:204] = 255  # a 12x4 px "1"
    out = to_mnist(img)
    assert_mnist_like(out)
    r0, r1, c0, c1 = ink_box(out, level=0)
    assert r1 - r0 + 1 == 20 and 6 <= c1 - c0 + 1 <= 8  # aspect ratio kept: 4 / 12 * 20 = 6.7


def test_huge_image():
    out = to_mnist(seven(size=3000))
    assert_seven(out)


def test_off_centre_drawing_is_centred():
    out = to_mnist(seven(offset=(-55, 55)))
    assert_seven(out)
    np.testing.assert_allclose(out, to_mnist(seven()), atol=1e-6)


def test_stray_pixels_and_thin_border_do_not_shrink_the_digit():
    clean = to_mnist(seven())
    img = seven()
    img[5, 270] = img[275, 3] = img[240, 260] = 255  # stray dots
    img[0, :] = img[-1, :] = img[:, 0] = img[:, -1] = 255  # a thin frame
    out = to_mnist(img)
    assert_seven(out)
    np.testing.assert_allclose(out, clean, atol=0.05)


def test_a_thick_bar_along_the_edge_is_part_of_the_digit():
    """The bar of a 7 drawn at the very top of the canvas is no frame line."""
    img = np.zeros((280, 280), np.uint8)
    img[0:22, 50:270] = 255  # top bar touching the edge, 79% of the width
    for k in range(250):
        x = 250 - int(k * 0.5)
        img[22 + k if 22 + k < 280 else 279, x : x + 20] = 255
    out = to_mnist(img)
    assert_mnist_like(out)
    r0, _, _, _ = ink_box(out)
    assert out[r0 : r0 + 2].max() > 0.9 and (out[r0 : r0 + 2] > 0.5).sum() >= 10  # the bar is there, bright


def test_faint_noise_over_a_digit_is_ignored():
    rng = np.random.default_rng(1)
    img = seven().astype(np.float64) + rng.random((280, 280)) * 40
    out = to_mnist(np.clip(img, 0, 255).astype(np.uint8))
    assert_seven(out)
    assert np.abs(out - to_mnist(seven())).mean() < 0.02


def test_sixteen_bit_and_bool_images():
    assert_seven(to_mnist(seven().astype(np.uint16) * 257))
    assert_seven(to_mnist(seven() > 0))


def test_nan_and_inf_do_not_leak():
    img = seven().astype(np.float64) / 255
    img[0:5, 0:5] = np.nan
    img[10, 10] = np.inf
    out = to_mnist(img)
    assert_seven(out)


def test_one_pixel_strokes_survive_scaling_down():
    """A 'T' of 1 px lines, 21 px wide: scaled to 20 px, its stem falls on the edge between two
    output columns and must still be there (PIL's BOX filter used to drop that column)."""
    for width in (21, 23, 31, 33, 45, 101):  # widths where BOX lost the middle column
        img = np.zeros((200, 200), np.uint8)
        img[50, 50 : 50 + width] = 255  # bar
        img[50 : 50 + width, 50 + width // 2] = 255  # stem down from its middle
        out = to_mnist(img)
        assert_mnist_like(out)
        r0, r1, c0, c1 = ink_box(out, level=0)
        stem = out[r0 + 3 : r1 + 1]  # below the bar
        assert (stem.max(axis=1) > 0.3).all(), f"stem lost at width {width}"
        assert np.abs(np.argmax(stem, axis=1) - (c0 + c1) / 2).max() <= 1  # in the middle
        assert out[r0 + 3 : r1 + 1].sum() > 0.3 * out.sum()  # about half the ink is the stem


@pytest.mark.parametrize(
    "bad, error",
    [
        (np.zeros((28, 28, 5)), ValueError),
        (np.zeros((2, 28, 28, 1)), ValueError),
        (np.zeros(10), ValueError),
        (np.array([["a", "b"]]), TypeError),
        ("not an image", TypeError),
        (None, TypeError),
    ],
)
def test_bad_inputs_raise_clear_errors(bad, error):
    with pytest.raises(error, match="image|pixels|shape"):
        to_mnist(bad)
