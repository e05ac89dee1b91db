import math

import numpy as np
import pytest
import torch

from capsnet.transforms import RANGES, affine, clamp_params, family_values, sweep

YS, XS = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")  # row, column of each pixel


def blob(x0: float, y0: float, sigma: float = 1.2) -> torch.Tensor:
    """A Gaussian spot centred at column x0, row y0: (28, 28)."""
    return torch.exp(-((XS - x0) ** 2 + (YS - y0) ** 2) / (2 * sigma**2))


def centre_of_mass(img: torch.Tensor) -> tuple[float, float]:
    img = img.double().reshape(28, 28)
    return float((img * XS).sum() / img.sum()), float((img * YS).sum() / img.sum())


def spread(img: torch.Tensor) -> tuple[float, float]:
    """Standard deviation of the intensity along x and along y, about the centre of mass."""
    img = img.double().reshape(28, 28)
    cx, cy = centre_of_mass(img)
    m = img.sum()
    return float(((img * (XS - cx) ** 2).sum() / m).sqrt()), float(((img * (YS - cy) ** 2).sum() / m).sqrt())


def asymmetric_image() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.rand(28, 28, generator=g)  # no symmetry at all: any wrong rotation shows


def test_neutral_parameters_are_the_identity():
    x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for out in (
        affine(x),
        affine(x, rotate=0.0, scale=1.0, shear=0.0, tx=0.0, ty=0.0, scale_x=1.0, scale_y=1.0),
        affine(x, rotate=torch.zeros(5), scale=torch.ones(5), tx=torch.zeros(5)),
    ):
        assert out.shape == x.shape and out.dtype == x.dtype
        torch.testing.assert_close(out, x, atol=1e-7, rtol=0)  # exact in practice


@pytest.mark.parametrize("degrees, k", [(90, 1), (-90, -1), (180, 2), (270, 3)])
def test_rotation_by_quarter_turns_matches_np_rot90(degrees, k):
    # Positive = counter-clockwise on screen (row 0 at the top), which is np.rot90's direction.
    img = asymmetric_image()
    expected = torch.from_numpy(np.rot90(img.numpy(), k).copy())
    torch.testing.assert_close(affine(img, rotate=degrees), expected, atol=1e-7, rtol=0)


def test_positive_rotation_moves_the_right_edge_to_the_top():
    out = affine(blob(22.5, 13.5), rotate=90)  # 9 px right of the centre (13.5, 13.5)
    x, y = centre_of_mass(out)
    assert abs(x - 13.5) < 0.05 and abs(y - 4.5) < 0.05  # 9 px above the centre


@pytest.mark.parametrize("tx, ty", [(2.0, 0.0), (0.0, -3.0), (2.5, -1.75), (-4.3, 3.6)])
def test_translation_moves_the_centre_of_mass_by_the_requested_pixels(tx, ty):
    img = blob(12.7, 14.2)
    x0, y0 = centre_of_mass(img)
    x1, y1 = centre_of_mass(affine(img, tx=tx, ty=ty))
    assert abs((x1 - x0) - tx) < 0.05 and abs((y1 - y0) - ty) < 0.05  # +tx right, +ty down


def test_scale_two_about_the_centre_doubles_the_spread_and_keeps_the_centre():
    img = blob(13.5, 13.5, sigma=1.5)
    sx0, sy0 = spread(img)
    out = affine(img, scale=2.0)
    sx1, sy1 = spread(out)
    # Bilinear resampling adds its own 1/6 px^2 of variance: 2.07, not 2.00, for this blob.
    assert abs(sx1 / sx0 - 2) < 0.1 and abs(sy1 / sy0 - 2) < 0.1
    x, y = centre_of_mass(out)
    assert abs(x - 13.5) < 0.01 and abs(y - 13.5) < 0.01
    # Per axis: only x is stretched.
    sx2, sy2 = spread(affine(img, scale_x=2.0))
    assert abs(sx2 / sx0 - 2) < 0.1 and abs(sy2 / sy0 - 1) < 0.01
    # Exactly about the centre: two spots 3 px either side of it end 6 px either side.
    for scale, dx in ((2.0, 6.0), (0.5, 1.5), (1.5, 4.5)):
        for sign in (-1, 1):
            x, y = centre_of_mass(affine(blob(13.5 + sign * 3, 13.5), scale=scale))
            assert abs(x - (13.5 + sign * dx)) < 0.05 and abs(y - 13.5) < 0.05


def test_positive_shear_leans_the_top_to_the_right_like_italics():
    # A spot 6 px above the centre moves tan(45 deg) * 6 = 6 px right; one below moves left.
    x, y = centre_of_mass(affine(blob(13.5, 7.5), shear=45))
    assert abs(x - 19.5) < 0.05 and abs(y - 7.5) < 0.05
    x, y = centre_of_mass(affine(blob(13.5, 17.5), shear=30))
    assert abs(x - (13.5 - 4 * math.tan(math.radians(30)))) < 0.05 and abs(y - 17.5) < 0.05


def test_order_is_scale_shear_rotation_then_translation_in_screen_axes():
    # Spot 4 px right of centre: scale 1.5 -> 6 px right; rotate +90 -> 6 px up; then tx = 3 px
    # right on screen (the translation is not rotated).
    x, y = centre_of_mass(affine(blob(17.5, 13.5), scale=1.5, rotate=90, tx=3.0))
    assert abs(x - 16.5) < 0.05 and abs(y - 7.5) < 0.05
    # Stretch x before turning: 3 px right -> 6 px right -> 6 px up (turning first would give 3 px up).
    x, y = centre_of_mass(affine(blob(16.5, 13.5), scale_x=2.0, rotate=90))
    assert abs(x - 13.5) < 0.05 and abs(y - 7.5) < 0.05
    # Shear before turning: 4 px up -> 4 right and 4 up -> 4 left and 4 up (turning first: 4 left, level).
    x, y = centre_of_mass(affine(blob(13.5, 9.5), shear=45, rotate=90))
    assert abs(x - 9.5) < 0.05 and abs(y - 9.5) < 0.05


def test_per_image_parameters_equal_one_call_per_image():
    x = torch.stack([asymmetric_image(), blob(10, 12), blob(16, 9)])[:, None]  # (3, 1, 28, 28)
    rotate = torch.tensor([0.0, 33.0, -71.0])
    scale = torch.tensor([1.0, 0.7, 1.3])
    tx = torch.tensor([0.0, 1.5, -2.0])
    out = affine(x, rotate=rotate, scale=scale, shear=10.0, tx=tx)
    for i in range(3):
        one = affine(x[i, 0], rotate=float(rotate[i]), scale=float(scale[i]), shear=10.0, tx=float(tx[i]))
        torch.testing.assert_close(out[i, 0], one, atol=1e-6, rtol=0)


def test_zero_padding_outside_the_image():
    out = affine(torch.ones(28, 28), tx=5.0)
    assert torch.all(out[:, :5] == 0) and torch.allclose(out[:, 5:], torch.ones(28, 23))


def test_bad_inputs_are_refused_with_a_clear_error():
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(TypeError, match="floating-point"):
        affine((x * 255).to(torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) or \(H, W\)"):
        affine(torch.rand(1, 28, 28))
    with pytest.raises(ValueError, match="3 values for a batch of 2"):
        affine(x, rotate=torch.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        affine(x, tx=float("nan"))
    with pytest.raises(ValueError, match="scale must be > 0"):
        affine(x, scale=0.0)
    with pytest.raises(ValueError, match="shear"):
        affine(x, shear=90.0)


@pytest.mark.parametrize(
    "family, lo, hi, identity",
    [
        ("rotation", -60, 60, 0.0),
        ("scale", 0.5, 1.5, 1.0),
        ("shear", -45, 45, 0.0),
        ("translation", -6, 6, 0.0),
    ],
)
def test_sweep_covers_the_family_range_with_the_identity_in_the_middle(family, lo, hi, identity):
    img = asymmetric_image()
    images, values = sweep(img, family)
    assert images.shape == (31, 1, 28, 28) and values.shape == (31,)
    assert values[0] == lo and values[-1] == hi and values[15] == identity
    assert torch.all(values[1:] > values[:-1])
    torch.testing.assert_close(images[15, 0], img, atol=1e-6, rtol=0)
    assert (images[0, 0] - img).abs().max() > 0.1  # the ends really are transformed


def test_sweep_images_are_the_transform_with_the_listed_values():
    img = blob(13.0, 15.0)
    images, values = sweep(img, "rotation")
    for k in (0, 7, 30):
        torch.testing.assert_close(images[k, 0], affine(img, rotate=float(values[k])), atol=1e-6, rtol=0)
    images, values = sweep(img[None, None], "translation", steps=5)  # (1, 1, 28, 28) accepted too
    assert values.tolist() == [-6.0, -3.0, 0.0, 3.0, 6.0]
    x0, y0 = centre_of_mass(img)
    for k in range(5):  # translation moves along x only
        x, y = centre_of_mass(images[k])
        assert abs(x - x0 - values[k].item()) < 0.05 and abs(y - y0) < 0.05


def test_sweep_rejects_unknown_families():
    with pytest.raises(ValueError, match="unknown family"):
        sweep(asymmetric_image(), "perspective")
    with pytest.raises(ValueError, match="steps"):
        family_values("rotation", 1)


def test_clamp_params_keeps_values_in_range_and_defaults_the_rest():
    assert clamp_params() == {"rotate": 0.0, "scale": 1.0, "shear": 0.0, "tx": 0.0, "ty": 0.0}
    assert clamp_params(rotate=25.5, scale=0.8, shear=-10, tx=3, ty=-2.5) == {
        "rotate": 25.5, "scale": 0.8, "shear": -10.0, "tx": 3.0, "ty": -2.5,
    }  # fmt: skip
    assert clamp_params(rotate=400, scale=9, shear=-91, tx=-100, ty=7) == {
        "rotate": 60.0, "scale": 1.5, "shear": -45.0, "tx": -6.0, "ty": 6.0,
    }  # fmt: skip
    assert clamp_params(scale=0.0)["scale"] == 0.5 and clamp_params(scale=-2)["scale"] == 0.5
    nan = float("nan")
    assert clamp_params(rotate=nan, scale=nan, shear=nan, tx=nan, ty=nan) == clamp_params()
    assert clamp_params(rotate=float("inf"), tx=float("-inf")) == {
        **clamp_params(),
        "rotate": 60.0,
        "tx": -6.0,
    }


def test_clamp_params_reads_url_strings_and_ignores_junk():
    out = clamp_params(rotate=" -15.5 ", scale="1.25", shear="abc", tx="", ty="nan")
    assert out == {"rotate": -15.5, "scale": 1.25, "shear": 0.0, "tx": 0.0, "ty": 0.0}
    assert clamp_params(rotate="1e999", scale=None, shear=True, tx=[1, 2], ty="-inf") == {
        "rotate": 60.0, "scale": 1.0, "shear": 0.0, "tx": 0.0, "ty": -6.0,
    }  # fmt: skip
    assert all(type(v) is float for v in clamp_params(rotate=np.float32(3), tx=torch.tensor(2)).values())
    assert set(RANGES) == set(clamp_params())
