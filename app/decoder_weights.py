"""The decoder's weights as one static file, so the browser can redraw a reconstruction while a pose
slider is dragged (app/components/pose_sliders/main.js reads it and runs the decoder in JavaScript).

The file, little-endian:

    bytes 0-7    b"CAPSDEC1"
    bytes 8-11   uint32 n: length of the JSON header that follows (space-padded, so the arrays
                 start on an 8-byte boundary)
    12 .. 12+n   {"dtype": "float16", "digits": 10, "dim": 16, "layers": [[512, 160], [1024, 512], [784, 1024]]}
    then         per layer (rows, cols): its weight as torch stores it (rows x cols, row-major), then
                 its bias (rows). ReLU after the first two layers, a sigmoid after the last.

float16 halves the download (2.8 MB instead of 5.6 MB for the shipped decoder); over every shipped
sample, capsule and slider setting tried, the reconstruction it gives differs from the float32
model's by under 7e-4 per pixel, a sixth of one grey level (tests/app/test_live_weights.py).

Streamlit serves app/static/ at /app/static/ (server.enableStaticServing, .streamlit/config.toml).
The file is written there gzipped (2.6 MB), as decoder-<hash>.bin.gz: Streamlit then sends it as
it is (application/gzip is not compressed again, where a plain file costs its gzip middleware about
0.1 s of CPU per download) and the page inflates it with DecompressionStream. The hash is the
SHA-256 of the uncompressed bytes: another checkpoint gives another name, so a browser never
decodes with a stale copy, and one name always means the same bytes. The folder is in .gitignore:
the file is derived from the checkpoint and written at the first run that needs it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import threading
import weakref
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from capsnet.model import DIGIT_DIM, NUM_DIGITS

MAGIC = b"CAPSDEC1"
STATIC_DIR = Path(__file__).resolve().parent / "static"  # served at app/static/ (server.enableStaticServing)
# The file never changes under its name. Streamlit's static route sends no Cache-Control, only
# Last-Modified and an ETag; a browser then keeps a file for a tenth of its age without asking again
# (RFC 9111 heuristic freshness), so an old date lets it reuse the copy for months.
MTIME = 946684800  # 2000-01-01

_lock = threading.Lock()
_published: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> relative URL


def pack(model, dtype=np.float16) -> bytes:
    """The decoder of `model` (three Linear layers) in the format above."""
    linears = [m for m in model.decoder if isinstance(m, torch.nn.Linear)]
    header = {
        "dtype": np.dtype(dtype).name,
        "digits": NUM_DIGITS,
        "dim": DIGIT_DIM,
        "layers": [[m.out_features, m.in_features] for m in linears],
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(12 + len(text)) % 8)
    little = np.dtype(dtype).newbyteorder("<")
    body = b"".join(
        np.ascontiguousarray(p.detach().cpu().numpy(), dtype=little).tobytes()
        for m in linears
        for p in (m.weight, m.bias)
    )
    return MAGIC + len(text).to_bytes(4, "little") + text + body


def unpack(blob: bytes) -> tuple[dict, list[tuple[np.ndarray, np.ndarray]]]:
    """(header, [(weight (rows, cols), bias (rows,)) per layer] as float32): what the page reads."""
    if blob[:8] != MAGIC:
        raise ValueError("not a CapsNet decoder file")
    n = int.from_bytes(blob[8:12], "little")
    header = json.loads(blob[12 : 12 + n])
    dtype = np.dtype(header["dtype"]).newbyteorder("<")
    offset, layers = 12 + n, []
    for rows, cols in header["layers"]:
        w = np.frombuffer(blob, dtype, rows * cols, offset).reshape(rows, cols)
        offset += w.nbytes
        b = np.frombuffer(blob, dtype, rows, offset)
        offset += b.nbytes
        layers.append((w.astype(np.float32), b.astype(np.float32)))
    if offset != len(blob):
        raise ValueError(f"{len(blob) - offset} bytes left after the last layer")
    return header, layers


def publish(model, static_dir: Path = STATIC_DIR) -> str:
    """Write the decoder of `model` to static_dir as decoder-<hash>.bin.gz (once: the name says
    what is in it) and return the file's name. Raises OSError when the folder cannot be written."""
    blob = pack(model)
    name = f"decoder-{hashlib.sha256(blob).hexdigest()[:16]}.bin.gz"
    path = static_dir / name
    if not path.is_file():
        static_dir.mkdir(parents=True, exist_ok=True)
        tmp = static_dir / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_bytes(gzip.compress(blob, 9, mtime=0))
        os.utime(tmp, (MTIME, MTIME))
        os.replace(tmp, path)  # atomic: a browser never gets half a file
    return name


def browser_copy(model) -> tuple[str | None, str]:
    """(URL of the decoder file relative to the app's address, "") once it is published, or
    (None, why not). Packed once per loaded model and process."""
    if not st.get_option("server.enableStaticServing"):
        return None, "the server does not serve static files (server.enableStaticServing is off)"
    with _lock:
        name = _published.get(model)
        if name is None or not (STATIC_DIR / name).is_file():  # a stat per run: put back if removed
            try:
                name = _published[model] = publish(model, STATIC_DIR)
            except OSError as e:
                return None, f"the decoder file could not be written ({e.strerror or e})"
    return f"app/static/{name}", ""
