"""What the page hands the overview and every detailed view: one frozen ViewContext, so each view's
`show(ctx)` has the same signature (the registry in app/views.py relies on it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from capsnet.model import CapsNet


@dataclass(frozen=True)
class Controls:
    """The controls every stage and view follows (the overview's left column)."""

    iterations: int  # routing iterations, 1..MAX_ITERATIONS
    capsule: str | int  # "auto" (the prediction) or a digit 0..9


@dataclass(frozen=True)
class ViewContext:
    """This run's model, input and forward pass: everything a view draws from."""

    model: CapsNet  # the cached model: read it, never change it
    version: str  # the weights' cache key (their path): part of every per-input cache key
    pixels: np.ndarray  # (28, 28) the network's input
    pixel_bytes: bytes  # the same pixels, as the cache key of every per-input result
    res: dict  # cache.forward(model, version, pixel_bytes, controls.iterations): the traced pass
    controls: Controls
    meta: dict  # the checkpoint's metadata (capsnet.checkpoint_meta)
    checkpoint: Path  # the weights' file (its pose atlas is looked up beside it)
    digit: int  # the inspected digit capsule: the prediction, or the one chosen

    @property
    def iterations(self) -> int:
        return self.controls.iterations
