"""Upload decoding (app/inputs.py) with real files written in the test."""

import io

import numpy as np
import pytest
from PIL import Image

from app import inputs
from app.inputs import InputError, decode_upload
from capsnet.preprocess import to_mnist


def digit_on_paper(size=(120, 100)) -> Image.Image:
    """Dark '1'-like bar on light paper, as a photo of a handwritten digit would be."""
    w, h = size
    arr = np.full((h, w), 235, np.uint8)
    arr[15 : h - 15, w // 2 - 6 : w // 2 + 6] = 20
    return Image.fromarray(arr, "L")


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "WEBP"])
def test_common_formats_decode_and_reach_to_mnist(fmt):
    arr = decode_upload(encode(digit_on_paper().convert("RGB"), fmt))
    assert arr.dtype == np.uint8 and arr.shape[:2] == (100, 120)
    x = to_mnist(arr)
    assert x is not None and x.shape == (28, 28) and x.max() == pytest.approx(1.0)


def transparent_drawing(ink: int):
    """100 x 100 RGBA: an opaque 'L' (a 10 px stem at columns 20..29, rows 10..89, and a foot along
    rows 80..89 to column 59), a half-transparent bar over it (rows 10..19, columns 30..59), and a
    bar in the ink's own colour at columns 75..94 that is fully transparent: invisible."""
    rgba = np.zeros((100, 100, 4), np.uint8)
    rgba[..., :3] = 255 - ink  # the colour under the transparent background: paper of the other shade
    rgba[10:90, 20:30] = (ink, ink, ink, 255)
    rgba[80:90, 20:60] = (ink, ink, ink, 255)
    rgba[10:20, 30:60] = (ink, ink, ink, 128)
    rgba[5:95, 75:95, :3] = ink  # hidden: alpha stays 0
    return rgba


@pytest.mark.parametrize("ink", [255, 0], ids=["white ink (the canvas)", "black ink"])
@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_png_keeps_its_alpha_and_only_opaque_ink_counts(ink, mode):
    rgba = transparent_drawing(ink)
    img = Image.fromarray(rgba, "RGBA")
    arr = decode_upload(encode(img if mode == "RGBA" else img.convert("LA"), "PNG"))
    assert arr.shape == (100, 100, 4) and arr.dtype == np.uint8
    np.testing.assert_array_equal(arr[..., 3], rgba[..., 3])  # alpha kept exactly
    opaque = rgba[..., 3] > 0
    np.testing.assert_array_equal(arr[opaque, 0], rgba[opaque, 0])

    x = to_mnist(arr)
    assert x is not None
    rows, cols = np.nonzero(x)
    r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
    # The drawing's visible ink spans 80 x 40 px: 20 x 10 in the digit. With the hidden bar it
    # would span 85 columns: 20 wide.
    assert r1 - r0 + 1 == 20 and 9 <= c1 - c0 + 1 <= 11
    # 80 px -> 20: 4 px of the drawing per pixel of the digit. Stem: the 2 left columns, full height.
    assert (x[r0 : r1 + 1, c0 : c0 + 2] > 0.9).mean() > 0.9
    assert (x[r1 - 1 : r1 + 1, c0 : c1 + 1] > 0.9).mean() > 0.9  # foot: the 2 bottom rows, full width
    # The half-transparent bar is there along the top, fainter than the opaque strokes.
    top_bar = x[r0 : r0 + 2, c0 + 3 : c1 + 1]
    assert 0.1 < top_bar.mean() and top_bar.max() < 0.8
    # Inside the 'L' (transparent in the file) and everywhere outside the digit: background.
    assert x[r0 + 3 : r1 - 2, c0 + 3 : c1 + 1].max() == 0
    outside = np.ones_like(x, bool)
    outside[r0 : r1 + 1, c0 : c1 + 1] = False
    assert x[outside].max() == 0


def test_palette_png_with_a_transparent_colour():
    """A palette image whose index 0 is transparent (tRNS): decoded as RGBA with that alpha."""
    idx = np.zeros((60, 60), np.uint8)
    idx[10:50, 25:32] = 1  # a '1' in palette colour 1 (white)
    idx[5:55, 45:55] = 2  # a bar in colour 2 (also white) that the tRNS chunk makes invisible
    img = Image.fromarray(idx, "P")
    img.putpalette([0, 0, 0, 255, 255, 255, 255, 255, 255] + [0] * (256 - 3) * 3)
    arr = decode_upload(encode(img, "PNG", transparency=bytes([0, 255, 0])))
    assert arr.shape == (60, 60, 4)
    np.testing.assert_array_equal(arr[..., 3], np.where(idx == 1, 255, 0))
    x = to_mnist(arr)
    rows, cols = np.nonzero(x)
    assert rows.max() - rows.min() + 1 == 20 and cols.max() - cols.min() + 1 <= 5  # the '1' alone


def test_not_an_image():
    with pytest.raises(InputError, match="not an image"):
        decode_upload(b"%PDF-1.4 this is not a picture at all" * 10)


def test_empty_file():
    with pytest.raises(InputError, match="empty"):
        decode_upload(b"")


def test_truncated_png():
    data = encode(digit_on_paper(), "PNG")
    with pytest.raises(InputError, match="truncated|damaged"):
        decode_upload(data[: len(data) // 2])


def test_truncated_jpeg():
    data = encode(digit_on_paper().convert("RGB"), "JPEG")
    with pytest.raises(InputError):
        decode_upload(data[: len(data) // 3])


def test_animated_gif_uses_first_frame():
    first = digit_on_paper()
    second = Image.new("L", first.size, 255)  # blank page
    buf = io.BytesIO()
    first.save(buf, format="GIF", save_all=True, append_images=[second], duration=100, loop=0)
    arr = decode_upload(buf.getvalue())
    assert to_mnist(arr) is not None  # the blank second frame would give None


def test_16_bit_png_is_scaled_to_8_bit():
    arr16 = (np.asarray(digit_on_paper(), dtype=np.uint16) * 257).astype(np.uint16)
    img = Image.fromarray(arr16)  # uint16 -> mode I;16
    data = encode(img, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    arr = decode_upload(data)
    assert arr.dtype == np.uint8 and arr.max() == 235 and arr.min() == 20
    assert to_mnist(arr) is not None


def test_cmyk_jpeg():
    data = encode(digit_on_paper().convert("CMYK"), "JPEG")
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    arr = decode_upload(data)
    assert arr.shape == (100, 120, 3)
    assert to_mnist(arr) is not None


def corner_mark(height=80, width=120) -> np.ndarray:
    """Light paper with a dark bar in the top-left corner, wider than tall: every turn and mirror
    of it is a different picture."""
    arr = np.full((height, width), 235, np.uint8)
    arr[5:15, 5:45] = 20
    return arr


# EXIF Orientation (TIFF/EXIF spec, tag 0x0112): where the stored picture's row 0 and column 0 are
# when displayed, and so the upright picture as numpy of the stored array `a`.
UPRIGHT = {
    1: lambda a: a,  # row 0 top, column 0 left
    2: lambda a: a[:, ::-1],  # row 0 top, column 0 right
    3: lambda a: a[::-1, ::-1],  # row 0 bottom, column 0 right
    4: lambda a: a[::-1],  # row 0 bottom, column 0 left
    5: lambda a: a.T,  # row 0 left, column 0 top
    6: lambda a: a.T[:, ::-1],  # row 0 right, column 0 top: turn 90 degrees clockwise
    7: lambda a: a.T[::-1, ::-1],  # row 0 right, column 0 bottom
    8: lambda a: a.T[::-1],  # row 0 left, column 0 bottom: turn 90 degrees counter-clockwise
}


def with_orientation(arr: np.ndarray, orientation: int, fmt: str) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(Image.fromarray(arr), fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_puts_the_picture_upright(orientation):
    stored = corner_mark()
    arr = decode_upload(with_orientation(stored, orientation, "PNG"))  # lossless: exact pixels
    np.testing.assert_array_equal(arr, UPRIGHT[orientation](stored))


@pytest.mark.parametrize("orientation, corner", [(6, "top right"), (8, "bottom left"), (3, "bottom right")])
def test_exif_rotated_photo_has_its_ink_where_the_viewer_sees_it(orientation, corner):
    """A phone photo (JPEG) stored sideways: after decoding, the mark is in the corner it is shown in."""
    arr = decode_upload(with_orientation(corner_mark(), orientation, "JPEG"))
    assert arr.shape == ((120, 80) if orientation in (6, 8) else (80, 120))
    h, w = arr.shape
    # The bar is 10 x 40 px; turned by 90 degrees it is 40 x 10. Find it and its corner.
    ink = np.argwhere(arr < 128)
    (r0, c0), (r1, c1) = ink.min(axis=0), ink.max(axis=0)
    tall = orientation in (6, 8)
    assert (r1 - r0 + 1, c1 - c0 + 1) == ((40, 10) if tall else (10, 40))
    vertical = "top" if r1 < h / 2 else "bottom" if r0 > h / 2 else "middle"
    horizontal = "left" if c1 < w / 2 else "right" if c0 > w / 2 else "middle"
    assert f"{vertical} {horizontal}" == corner
    assert arr[r0 : r1 + 1, c0 : c1 + 1].mean() < 40 and np.delete(arr, range(r0, r1 + 1), axis=0).min() > 200


def test_decompression_bomb_is_refused():
    data = encode(Image.new("L", (3000, 3000), 255), "PNG")  # small file, 9 Mpx
    with pytest.raises(InputError, match="too large"):
        decode_upload(data, max_pixels=1_000_000)
    with pytest.raises(InputError, match="too large"):
        decode_upload(data, max_pixels=2_000_000)
    assert Image.MAX_IMAGE_PIXELS != 1_000_000  # no global state is changed


def png_header_only(width: int, height: int) -> bytes:
    """A 100-byte PNG that claims width x height pixels: a decompression bomb's header."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [6_000, 100_000])  # over our limit; over PIL's own error limit too
def test_huge_dimensions_in_a_tiny_file_are_refused_before_decoding(side):
    data = png_header_only(side, side)
    assert len(data) < 200
    with pytest.raises(InputError, match="too large"):
        decode_upload(data)


def test_file_over_size_limit():
    with pytest.raises(InputError, match="limit is 1 MB"):
        decode_upload(b"\x89PNG" + bytes(2 * 1024 * 1024), max_bytes=1024 * 1024)


def test_palette_and_bilevel_images():
    assert decode_upload(encode(digit_on_paper().convert("P"), "PNG")).ndim == 3
    assert decode_upload(encode(digit_on_paper().convert("1"), "PNG")).ndim == 2


def photo_of_paper(digit: np.ndarray, seed: int, fmt: str) -> bytes:
    """An MNIST digit as a photo of a handwritten page would show it: blue-black ink on warm paper,
    8x larger, off-centre on the sheet, lit unevenly, with sensor noise, saved as PNG or JPEG."""
    rng = np.random.default_rng(seed)
    big = np.asarray(Image.fromarray(digit).resize((224, 224), Image.Resampling.BICUBIC), np.float64) / 255
    h, w = 300, 260
    ink = np.zeros((h, w))
    top, left = 30 + seed % 20, 10 + (7 * seed) % 25
    ink[top : top + 224, left : left + 224] = np.clip(big, 0.0, 1.0)
    light = np.linspace(238, 212, w)[None, :] + np.linspace(0, -8, h)[:, None]  # brighter at the top left
    paper = np.stack([light, light - 6, light - 16], axis=2)  # (h, w, 3) RGB
    pen = np.array([35.0, 38.0, 60.0])
    rgb = paper + ink[..., None] * (pen - paper) + rng.normal(0, 4, (h, w, 1))
    img = Image.fromarray(np.clip(rgb, 0, 255).round().astype(np.uint8), "RGB")
    return encode(img, fmt, **({"quality": 85} if fmt == "JPEG" else {}))


@pytest.fixture(scope="module")
def shipped_model():
    import capsnet

    return capsnet.load_model()  # checkpoints/capsnet_mnist.pt


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_photographed_mnist_digits_are_recognised_by_the_shipped_model(fmt, shipped_model):
    """Upload -> decode_upload -> to_mnist -> the trained network: all 40 shipped test digits,
    photographed dark on light, come out as the digit MNIST labels them (the label stored with the
    sample, not anything the model said)."""
    import torch

    images, labels = inputs.load_samples()
    uploads = [decode_upload(photo_of_paper(digit, i, fmt)) for i, digit in enumerate(images)]
    assert all(u.shape == (300, 260, 3) for u in uploads)
    x = np.stack([to_mnist(u) for u in uploads])  # (40, 28, 28)
    with torch.no_grad():
        predicted = shipped_model(torch.from_numpy(x).unsqueeze(1)).lengths.argmax(dim=1).numpy()
    wrong = {i: (int(labels[i]), int(predicted[i])) for i in np.nonzero(predicted != labels)[0]}
    assert not wrong, f"sample: (label, predicted) {wrong}"


def test_shipped_samples():
    images, labels = inputs.load_samples()
    assert images.shape == (40, 28, 28) and images.dtype == np.uint8
    assert sorted(np.bincount(labels, minlength=10)) == [4] * 10
    assert inputs.sample_label(0, labels) == f"#0: a {labels[0]}"  # the number ?sample= takes
    assert inputs.sample_label(13, labels) == f"#13: a {labels[13]}"
    with np.load(inputs.SAMPLES_PATH) as f:
        where = f["test_index"]
    for k in (0, 11, 39):  # the caption names the sample's place in MNIST's test set
        assert (
            inputs.sample_caption(k, labels)
            == f"Sample #{k} (MNIST test image {where[k]}), labelled {labels[k]}"
        )
