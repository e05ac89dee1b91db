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


def test_rgba_png_with_transparency():
    img = digit_on_paper().convert("RGBA")
    arr = decode_upload(encode(img, "PNG"))
    assert arr.shape == (100, 120, 4)


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


def test_exif_rotated_photo_is_turned_upright():
    img = digit_on_paper((120, 100)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    arr = decode_upload(encode(img, "JPEG", exif=exif))
    assert arr.shape[:2] == (120, 100)  # width and height swapped


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
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


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


def test_shipped_samples():
    images, labels = inputs.load_samples()
    assert images.shape == (40, 28, 28) and images.dtype == np.uint8
    assert sorted(np.bincount(labels, minlength=10)) == [4] * 10
    assert inputs.sample_label(0, labels) == f"#1: a {labels[0]}"
