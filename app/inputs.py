"""Decode what a user uploads into a pixel array `capsnet.preprocess.to_mnist` accepts.

One exception type, `InputError`, whose message can be shown to the user as it is.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_UPLOAD_MB = 10  # same as server.maxUploadSize in .streamlit/config.toml
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
MAX_PIXELS = 25_000_000  # a 25-megapixel photo is plenty; more is refused before decoding
SAMPLES_PATH = Path(__file__).resolve().parent / "samples.npz"


class InputError(ValueError):
    """An upload that cannot be used; the message says why in words a user understands."""


def decode_upload(data: bytes, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Image file bytes -> (H, W) or (H, W, 3|4) uint8 array, upright (EXIF orientation applied).

    Animated images give their first frame; 16-bit greyscale is scaled to 8 bits; CMYK, palette
    and other modes are converted to RGB(A). Raises InputError for anything else.
    """
    if not data:
        raise InputError("The file is empty.")
    if len(data) > max_bytes:
        raise InputError(
            f"The file is {len(data) / 1024 / 1024:.1f} MB; the limit is {max_bytes / 1024 / 1024:.0f} MB."
        )
    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
        width, height = img.size
        if width * height > max_pixels:  # checked before any pixel is decoded: no global state
            raise Image.DecompressionBombError(f"{width}x{height}")
        img.seek(0)  # first frame of an animated GIF/PNG/WebP
        img.load()
        img = ImageOps.exif_transpose(img)
        return _to_array(img)
    except Image.DecompressionBombError:  # ours above, or PIL's own for absurd sizes
        raise InputError(
            f"The image is too large to open safely (more than {max_pixels:,} pixels). "
            "Scale it down or crop it to the digit."
        ) from None
    except UnidentifiedImageError:
        raise InputError("This file is not an image we can read. Upload a PNG or JPEG.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputError(f"The image could not be decoded (it may be truncated or damaged): {e}") from None


def _to_array(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = float(arr.max()) if arr.size else 0.0
        scale = 65535.0 if img.mode.startswith("I;16") or top > 255 else 255.0
        if img.mode == "F" and top <= 1.0:
            scale = 1.0
        return (np.clip(arr / scale, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    if img.mode in ("L", "RGB", "RGBA"):
        return np.asarray(img, dtype=np.uint8)
    if img.mode == "1":
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if img.mode in ("LA", "PA", "P", "RGBa", "La") or "transparency" in img.info:
        return np.asarray(img.convert("RGBA"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)  # CMYK, YCbCr, LAB, HSV


def load_samples(path: str | Path = SAMPLES_PATH) -> tuple[np.ndarray, np.ndarray]:
    """The shipped MNIST test digits: (N, 28, 28) uint8 images and (N,) labels."""
    with np.load(path) as f:
        return f["images"], f["labels"]


def sample_caption(index: int, labels: np.ndarray, path: str | Path = SAMPLES_PATH) -> str:
    """E.g. "Sample #11 (MNIST test image 9664), labelled 2"."""
    return (
        f"Sample #{index} (MNIST test image {_test_index(str(path))[index]}), labelled {int(labels[index])}"
    )


@lru_cache(maxsize=2)
def _test_index(path: str) -> tuple[int, ...]:
    """Where each shipped sample sits in MNIST's test set: read once, not on every run that shows one."""
    with np.load(path) as f:
        return tuple(int(i) for i in f["test_index"])


def sample_label(index: int, labels: np.ndarray) -> str:
    return f"#{index}: a {int(labels[index])}"  # the index of ?sample=
