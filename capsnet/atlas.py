"""Pose atlas: what each of the 16 pose dimensions of a digit capsule measurably does to its digit.

    python -m capsnet.atlas --data-root ../shared/data [--per-digit 100] [--checkpoint PATH] [--out FILE] [--json]

The paper's Figure 4 names what perturbing one dimension of a digit capsule does ("scale and
thickness", "localized part", "stroke thickness", "localized skew", "width and translation").
Here it is measured. For every test digit used, the capsule of its true class j (poses from a
normal forward, 3 routing iterations) is decoded three times, with dimension d at its value and
moved by -delta and +delta (delta = OFFSET = 0.25, the paper's range), the decoder fed class j.

Image measures of a reconstruction I (pixels in [0, 1]; x = column, to the right; y = row, down):
    ink     sum of I
    x, y    ink-weighted centroid, in pixels
    width   ink-weighted standard deviation of x, in pixels   (height: the same for y)
    slant   -cov(x, y) / var(y), ink-weighted: how many pixels the ink moves right per pixel it
            goes up (y points down, hence the minus), so positive leans like italics, as the "shear"
            of capsnet.transforms
Each effect is a slope per unit of pose offset, (m(+delta) - m(-delta)) / (2 delta).

    local   share of the pixel change D = I(+delta) - I(-delta) that no global change explains:
            D is fitted by least squares with the small-change fields of the base image I0
            (offset 0): I0 (brightness / ink scale), dI0/dx and dI0/dy (translation), x dI0/dx,
            y dI0/dx, x dI0/dy, y dI0/dy (the other four affine generators: scale per axis and the
            two shears, rotation being one of their sums) and |grad I0| (uniform thickening:
            dilating strokes by t pixels changes I by t |grad I|, the level-set speed law, so
            without this field every thickness dimension would read as "local"); local is the
            residual's energy over D's energy, 0..1. A central difference cancels the second-order
            terms, so a pure affine, brightness or thickness change leaves almost no residual.

The labelling rule (one rule for the atlas's class averages and for a single live capsule):
  1. "no visible change" when `change`, the summed absolute pixel change sum|D| / (2 delta), is
     below MIN_CHANGE = 2 ink per unit: under one pixel's worth of ink over the slider's +-0.25.
  2. "local part" when local > MAX_LOCAL = 0.5: most of the change is in no global measure.
  3. Otherwise the measure with the largest standardised effect, its sign picking the word
     (WORDS: "thicker strokes"/"thinner strokes", "wider"/"narrower", "taller"/"shorter",
     "moves right"/"moves left", "moves down"/"moves up", "leans right"/"leans left").
Standardised effects are all "pixels the ink moves per unit of pose offset", so they compare:
x, y, width and height are already in pixels (the centroid's move; the ink's root-mean-square
move under a stretch about the centroid); slant is multiplied by the base image's height (the
RMS move of the ink under that shear); ink is divided by the base image's outline length,
sum |grad I0| (the coarea formula: a stroke outline moving out by t pixels adds t x outline of
ink), giving how far the outline moves out.
`strength` is the winning standardised effect's size in pixels per unit (>= 0) for those six
labels, the local share (0..1) for "local part" and 0 for "no visible change".

The atlas averages over the first N test digits of each class: every slope, `change`, the outline
length and base height are means over the digits (the standardised effects are formed from those
means), `local` pools the energies (sum of residual energy / sum of change energy), and
`agreement` is the share of the class's digits whose own label (the same rule, one digit) is the
cell's label.

A cell (per digit class and dimension in the atlas; per dimension of one capsule, live):
    dim, label, strength
    second_label, second_strength   the largest global effect the label does not name (the
                                    "thickness" of a "scale and thickness" dimension)
    effects        {ink, x, y, width, height, slant: slopes per unit; local: share 0..1}
    standardised   {ink, x, y, width, height, slant: px per unit}, what the label compares
    change, outline, base_height    (and `agreement` in the atlas)
Dimension d of one digit's capsule and dimension d of another's are unrelated (the decoder reads
each capsule through its own weights), so every digit has its own row of names.

For a page: measure_capsule(model, poses (10, 16), digit) gives the 16 cells of one input's
capsule from one decoder call of 33 images, measure_dimension(...) one cell from 3 images;
load_atlas(path, checkpoint) reads the file and refuses (AtlasError, a ValueError) one that is
missing, malformed or measured on other weights (sha256 of the checkpoint file); describe(cell)
is a slider's name, e.g. "thicker strokes (+31 ink per unit)".
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .checkpoint import DEFAULT_CHECKPOINT, CheckpointError, atomic_write_json, load_model, resolve_checkpoint
from .data import load_mnist, to_float
from .evaluate import add_data_args, add_device_args, cli_command, use_device_args
from .model import DIGIT_DIM, NUM_DIGITS, CapsNet

FORMAT = "capsnet-pose-atlas-v1"
OFFSET = 0.25  # the paper's Figure 4 range: each dimension moved by -0.25 .. +0.25
ITERATIONS = 3  # routing iterations of the forward that gives the poses (the trained count)
DEFAULT_ATLAS = DEFAULT_CHECKPOINT.with_name("pose_atlas.json")

MEASURES = ("ink", "x", "y", "width", "height", "slant", "local")
GEOMETRIC = MEASURES[:-1]  # the six that get a standardised effect and a word
WORDS = {  # measure: (label when +offset increases it, label when it decreases it)
    "ink": ("thicker strokes", "thinner strokes"),
    "x": ("moves right", "moves left"),
    "y": ("moves down", "moves up"),
    "width": ("wider", "narrower"),
    "height": ("taller", "shorter"),
    "slant": ("leans right", "leans left"),
}
LOCAL = "local part"
NO_CHANGE = "no visible change"
LABELS = (*(w for pair in WORDS.values() for w in pair), LOCAL, NO_CHANGE)
_WORD_OF = {w: m for m, pair in WORDS.items() for w in pair}  # label -> its measure
UNITS = {"ink": "ink", "x": "px", "y": "px", "width": "px", "height": "px", "slant": "slant"}
MIN_CHANGE = 2.0  # ink per unit of pose offset: one pixel's worth over the +-0.25 range
MAX_LOCAL = 0.5
FIELDS = (
    "ink scale",
    "shift x",
    "shift y",
    "stretch x",
    "shear x by y",
    "shear y by x",
    "stretch y",
    "thicken",
)

HOW_TO_MAKE = "Make one with `python -m capsnet.atlas --data-root DIR --checkpoint {checkpoint}`."


class AtlasError(ValueError):
    """A pose atlas file is missing, malformed or was measured on other weights."""


# ---------------------------------------------------------------------------------------------
# Image measures


def _images(images) -> Tensor:
    """(..., H, W) float64 on the CPU, checked: finite, in [0, 1], some ink in every image."""
    images = torch.as_tensor(images).detach().cpu().to(torch.float64)  # MPS has no float64
    if images.dim() < 2 or min(images.shape[-2:]) < 1:
        raise ValueError(f"expected images of shape (..., H, W), got {tuple(images.shape)}")
    if not bool(torch.isfinite(images).all()):
        raise ValueError("images contain NaN or Inf values")
    if bool((images < 0).any()) or bool((images > 1).any()):
        raise ValueError("pixel values must be in [0, 1]")
    if bool((images.sum((-2, -1)) <= 0).any()):
        raise ValueError("an image has no ink (all pixels 0): its centroid and spread are undefined")
    return images


def image_measures(images) -> dict[str, Tensor]:
    """{"ink", "x", "y", "width", "height", "slant"}, each (...,), of images (..., H, W) in [0, 1].

    Raises ValueError for values outside [0, 1], NaN/Inf, or an image without ink.
    """
    I = _images(images)
    H, W = I.shape[-2:]
    cols = torch.arange(W, dtype=I.dtype)  # x
    rows = torch.arange(H, dtype=I.dtype)  # y
    ink = I.sum((-2, -1))  # (...)
    px, py = I.sum(-2), I.sum(-1)  # (..., W) ink per column, (..., H) ink per row
    x = (px * cols).sum(-1) / ink
    y = (py * rows).sum(-1) / ink
    dx = cols - x[..., None]  # (..., W)
    dy = rows - y[..., None]  # (..., H)
    var_x = (px * dx**2).sum(-1) / ink
    var_y = (py * dy**2).sum(-1) / ink
    cov = (I * dy[..., :, None] * dx[..., None, :]).sum((-2, -1)) / ink
    slant = -cov / var_y.clamp_min(1e-12)  # y points down: minus makes "top to the right" positive
    return {"ink": ink, "x": x, "y": y, "width": var_x.sqrt(), "height": var_y.sqrt(), "slant": slant}


def change_fields(base: Tensor) -> Tensor:
    """The small-change fields of base images (..., H, W) -> (..., 8, H, W), in FIELDS order.

    Gradients are central differences with black (0) outside the image; x and y are measured
    from the image centre (the span, which is all the fit uses, does not depend on it).
    """
    I = torch.as_tensor(base, dtype=torch.float64)
    H, W = I.shape[-2:]
    padded = F.pad(I.reshape(-1, 1, H, W), (1, 1, 1, 1)).reshape(*I.shape[:-2], H + 2, W + 2)
    Ix = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2  # dI/dx, (..., H, W)
    Iy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2  # dI/dy
    x = torch.arange(W, dtype=I.dtype) - (W - 1) / 2  # (W,)
    y = (torch.arange(H, dtype=I.dtype) - (H - 1) / 2)[:, None]  # (H, 1)
    grad = torch.sqrt(Ix**2 + Iy**2)
    return torch.stack([I, Ix, Iy, x * Ix, y * Ix, x * Iy, y * Iy, grad], dim=-3)


def local_share(base: Tensor, change: Tensor) -> tuple[Tensor, Tensor]:
    """(share, energy): share of change's energy the fields of base leave unexplained, and the energy.

    base (..., H, W); change (..., K, H, W), K changes of each base image -> two (..., K) tensors.
    The share is 0 where the change is exactly 0.
    """
    A = change_fields(base).flatten(-2)  # (..., 8, P)
    A = A / A.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # unit columns: the ridge below is relative
    D = torch.as_tensor(change, dtype=torch.float64).flatten(-2)  # (..., K, P)
    gram = A @ A.transpose(-1, -2) + 1e-9 * torch.eye(A.shape[-2], dtype=A.dtype)  # (..., 8, 8)
    coef = torch.linalg.solve(gram, A @ D.transpose(-1, -2))  # (..., 8, K)
    residual = D - coef.transpose(-1, -2) @ A  # (..., K, P)
    energy = (D**2).sum(-1)
    share = (residual**2).sum(-1) / energy.clamp_min(1e-300)
    return share.clamp(0.0, 1.0), energy


# ---------------------------------------------------------------------------------------------
# Effects of moving pose dimensions


@dataclass
class Effects:
    """Per image and moved dimension, shapes (..., K). `slopes` maps MEASURES to slopes per unit
    of pose offset (local: the share 0..1); `energy` is sum D^2 (to pool `local`); `outline` and
    `base_height` are sum |grad I0| and I0's height, the scales of the standardised effects."""

    slopes: dict[str, Tensor]
    change: Tensor
    energy: Tensor
    outline: Tensor
    base_height: Tensor

    @staticmethod
    def cat(parts: list[Effects]) -> Effects:
        """Join effects of batches of images along axis 0."""
        return Effects(
            slopes={m: torch.cat([p.slopes[m] for p in parts]) for m in MEASURES},
            change=torch.cat([p.change for p in parts]),
            energy=torch.cat([p.energy for p in parts]),
            outline=torch.cat([p.outline for p in parts]),
            base_height=torch.cat([p.base_height for p in parts]),
        )


def image_effects(base, minus, plus, offset: float = OFFSET) -> Effects:
    """Effects of K moves per base image: base (..., H, W), minus and plus (..., K, H, W) are the
    images decoded at -offset and +offset."""
    offset = _check_offset(offset)
    base, minus, plus = _images(base), _images(minus), _images(plus)
    if minus.shape != plus.shape or minus.shape[:-3] + minus.shape[-2:] != base.shape:
        raise ValueError(
            f"expected base (..., H, W) and minus, plus (..., K, H, W), got {tuple(base.shape)}, "
            f"{tuple(minus.shape)}, {tuple(plus.shape)}"
        )
    lo, hi = image_measures(minus), image_measures(plus)
    slopes = {m: (hi[m] - lo[m]) / (2 * offset) for m in GEOMETRIC}
    D = plus - minus  # (..., K, H, W)
    slopes["local"], energy = local_share(base, D)
    K = minus.shape[-3]
    outline = change_fields(base)[..., -1, :, :].sum((-2, -1))  # sum |grad I0|, (...)
    return Effects(
        slopes=slopes,
        change=D.abs().sum((-2, -1)) / (2 * offset),
        energy=energy,
        outline=outline[..., None].expand(*outline.shape, K),
        base_height=image_measures(base)["height"][..., None].expand(*outline.shape, K),
    )


def standardise(effects: dict[str, float], outline: float, base_height: float) -> dict[str, float]:
    """The six GEOMETRIC slopes as pixels the ink moves per unit of pose offset (see the docstring)."""
    out = {m: float(effects[m]) for m in ("x", "y", "width", "height")}
    out["ink"] = float(effects["ink"]) / max(float(outline), 1e-12)
    out["slant"] = float(effects["slant"]) * float(base_height)
    return {m: out[m] for m in GEOMETRIC}


def label_for(standardised: dict[str, float], local: float, change: float) -> tuple[str, float]:
    """(label, strength) by the module's rule: NO_CHANGE below MIN_CHANGE, LOCAL above MAX_LOCAL,
    else the word of the largest |standardised| effect (first in GEOMETRIC order on a tie)."""
    if not change >= MIN_CHANGE:  # NaN too
        return NO_CHANGE, 0.0
    if local > MAX_LOCAL:
        return LOCAL, float(local)
    measure = max(GEOMETRIC, key=lambda m: abs(standardised[m]))
    value = standardised[measure]
    return WORDS[measure][0 if value >= 0 else 1], abs(float(value))


def cell(effects: Effects, dim: int, index=...) -> dict:
    """The JSON cell of dimension `dim` from effects over images (N, ...): means over axis 0 of
    effects[index] (an index that picks one column K), local pooled by energy, then labelled."""
    pick = {m: v[index].reshape(-1) for m, v in effects.slopes.items()}
    energy = effects.energy[index].reshape(-1)
    total = float(energy.sum())
    mean = {m: float(v.mean()) for m, v in pick.items() if m != "local"}
    mean["local"] = float((pick["local"] * energy).sum()) / total if total > 0 else 0.0
    outline = float(effects.outline[index].mean())
    base_height = float(effects.base_height[index].mean())
    change = float(effects.change[index].mean())
    std = standardise(mean, outline, base_height)
    label, strength = label_for(std, mean["local"], change)
    ranked = sorted(GEOMETRIC, key=lambda m: -abs(std[m]))
    second = ranked[1] if label in _WORD_OF else ranked[0]  # the largest global effect not named
    return {
        "dim": int(dim),
        "label": label,
        "strength": _round(strength),
        "second_label": WORDS[second][0 if std[second] >= 0 else 1],
        "second_strength": _round(abs(std[second])),
        "effects": {m: _round(mean[m]) for m in MEASURES},
        "standardised": {m: _round(v) for m, v in std.items()},
        "change": _round(change),
        "outline": _round(outline),
        "base_height": _round(base_height),
    }


def agreement(effects: Effects, dim: int, label: str) -> float:
    """Share of the images (axis 0 of effects) whose own cell of `dim` (column `dim`) has `label`."""
    n = effects.change.shape[0]
    return _round(sum(cell(effects, dim, (i, dim))["label"] == label for i in range(n)) / n)


def describe(cell: dict) -> str:
    """A cell in a few words for a slider's name, e.g. "leans right (+11.5 px per unit)": the
    label and its standardised effect, signed, in pixels the ink moves per unit of pose offset (the
    number the pose atlas's map shows for that cell, there unsigned as `strength`)."""
    label = cell["label"]
    if label == NO_CHANGE:
        return NO_CHANGE
    if label == LOCAL:
        return f"{LOCAL} ({cell['effects']['local']:.0%} of the change is not global)"
    value = float(cell["standardised"][_WORD_OF[label]])
    return f"{label} ({value:+.1f} px per unit)"


# ---------------------------------------------------------------------------------------------
# Decoding moved capsules


@torch.no_grad()
def decode_offsets(
    model: CapsNet, poses: Tensor, digit, dims=None, offset: float = OFFSET
) -> tuple[Tensor, Tensor, Tensor]:
    """Decode each example's `digit` capsule as it is and with each of `dims` moved by -offset and
    +offset, in one decoder call of B (1 + 2K) images.

    poses (B, 10, 16), digit (B,) -> base (B, 28, 28), minus (B, K, 28, 28), plus (B, K, 28, 28).
    """
    offset = _check_offset(offset)
    dims = list(range(DIGIT_DIM)) if dims is None else [int(d) for d in dims]
    if not dims or any(not 0 <= d < DIGIT_DIM for d in dims):
        raise ValueError(f"dims must be pose dimensions in 0..{DIGIT_DIM - 1}, got {dims}")
    if poses.dim() != 3 or poses.shape[1:] != (NUM_DIGITS, DIGIT_DIM):
        raise ValueError(f"poses must have shape (B, 10, 16), got {tuple(poses.shape)}")
    B, K = poses.shape[0], len(dims)
    digit = torch.as_tensor(digit, device=poses.device).reshape(-1).long()
    if digit.shape[0] != B or bool(((digit < 0) | (digit >= NUM_DIGITS)).any()):
        raise ValueError(f"need one digit class in 0..9 per pose, got {digit.tolist()} for {B} poses")
    steps = poses.new_zeros(1 + 2 * K, DIGIT_DIM)  # row 0: as is; then K at -offset, K at +offset
    k = torch.arange(K)
    steps[1 + k, dims] = -offset
    steps[1 + K + k, dims] = offset
    one_hot = F.one_hot(digit, NUM_DIGITS).to(poses.dtype)  # (B, 10)
    moved = poses[:, None] + one_hot[:, None, :, None] * steps[None, :, None, :]  # (B, 1+2K, 10, 16)
    images = model.reconstruct(moved.flatten(0, 1), digit.repeat_interleave(1 + 2 * K))
    images = images.view(B, 1 + 2 * K, 28, 28)
    return images[:, 0], images[:, 1 : 1 + K], images[:, 1 + K :]


def measure_capsule(
    model: CapsNet, poses: Tensor, digit: int, dims=None, offset: float = OFFSET
) -> list[dict]:
    """Cells (as in the atlas, without `agreement`) for `dims` (default all 16) of one capsule:
    poses (10, 16) of one input, `digit` the capsule decoded. One decoder call of 1 + 2K images."""
    if poses.dim() != 2:
        raise ValueError(f"poses must have shape (10, 16) for one input, got {tuple(poses.shape)}")
    dims = list(range(DIGIT_DIM)) if dims is None else [int(d) for d in dims]
    base, minus, plus = decode_offsets(model, poses[None], [int(digit)], dims, offset)
    effects = image_effects(base, minus, plus, offset)  # (1, K)
    return [cell(effects, d, (slice(None), k)) for k, d in enumerate(dims)]


def measure_dimension(model: CapsNet, poses: Tensor, digit: int, dim: int, offset: float = OFFSET) -> dict:
    """The cell of one dimension of one capsule, live: poses (10, 16). Three decoded images."""
    return measure_capsule(model, poses, digit, [dim], offset)[0]


# ---------------------------------------------------------------------------------------------
# The atlas


def first_per_class(labels: Tensor, n: int) -> list[Tensor]:
    """Indices of the first n examples of each class 0..9 (fewer where a class has fewer)."""
    labels = torch.as_tensor(labels).reshape(-1)
    return [torch.nonzero(labels == j).flatten()[:n] for j in range(NUM_DIGITS)]


@torch.no_grad()
def measure_atlas(
    model: CapsNet,
    images: Tensor,
    labels: Tensor,
    per_digit: int = 100,
    offset: float = OFFSET,
    batch_size: int = 100,
    progress=None,
) -> dict:
    """{"per_digit_used": [n_j x 10], "digits": [[cell x 16] x 10]} over the first `per_digit`
    images (uint8 (N, 28, 28) or float (N, 1, 28, 28) in [0, 1]) of each class in `labels` (N,).
    Each cell adds `agreement` to measure_capsule's. Raises ValueError when a class has no image."""
    if per_digit < 1:
        raise ValueError(f"per_digit must be >= 1, got {per_digit}")
    device = next(model.parameters()).device
    chosen = first_per_class(labels, per_digit)
    missing = [j for j, idx in enumerate(chosen) if len(idx) == 0]
    if missing:
        raise ValueError(f"no images of class {', '.join(map(str, missing))} to measure")
    digits = []
    for j, idx in enumerate(chosen):
        parts = []
        for start in range(0, len(idx), batch_size):
            x = images[idx[start : start + batch_size]]
            x = (to_float(x) if x.dtype == torch.uint8 else x.float()).to(device)  # (b, 1, 28, 28)
            poses = model(x, iterations=ITERATIONS).poses  # (b, 10, 16)
            base, minus, plus = decode_offsets(model, poses, torch.full((len(x),), j), offset=offset)
            parts.append(image_effects(base, minus, plus, offset))  # (b, 16)
            if progress is not None:
                progress.update(len(x))
        effects = Effects.cat(parts)  # (n_j, 16)
        row = []
        for d in range(DIGIT_DIM):
            c = cell(effects, d, (slice(None), d))
            c["agreement"] = agreement(effects, d, c["label"])
            row.append(c)
        digits.append(row)
    return {"per_digit_used": [len(idx) for idx in chosen], "digits": digits}


# ---------------------------------------------------------------------------------------------
# The atlas file


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_atlas(path: str | Path | None = None, checkpoint: str | Path | None = None) -> dict:
    """Read and check the atlas at `path` (default: pose_atlas.json beside `checkpoint`) and that it
    was measured on `checkpoint`'s weights; `checkpoint` None is the file load_model(None) loads
    (capsnet.resolve_checkpoint: $CAPSNET_CHECKPOINT, else the shipped weights).

    Raises AtlasError (a ValueError) saying what is wrong and how to make a good file when the
    atlas or the checkpoint is missing, the atlas is not valid JSON or not of this schema, or its
    recorded sha256 is not that of the checkpoint file.
    """
    try:
        checkpoint = resolve_checkpoint(checkpoint)
    except CheckpointError as e:
        raise AtlasError(f"No weights to check a pose atlas against: {e}") from e
    path = checkpoint.with_name(DEFAULT_ATLAS.name) if path is None else Path(path)
    how = HOW_TO_MAKE.format(checkpoint=checkpoint)
    if not path.is_file():
        raise AtlasError(f"No pose atlas at {path}. {how}")
    try:
        atlas = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise AtlasError(f"Pose atlas {path} is not readable JSON ({e}). {how}") from e
    problem = _schema_problem(atlas)
    if problem:
        raise AtlasError(f"Pose atlas {path} is malformed: {problem}. {how}")
    if not checkpoint.is_file():
        raise AtlasError(f"Checkpoint {checkpoint} not found: cannot check which weights {path} describes.")
    sha = file_sha256(checkpoint)
    if atlas["checkpoint_sha256"] != sha:
        raise AtlasError(
            f"Pose atlas {path} was measured on other weights ({atlas['checkpoint']}, sha256 "
            f"{atlas['checkpoint_sha256'][:12]}...) than {checkpoint} (sha256 {sha[:12]}...): its labels "
            f"do not describe this model. {how}"
        )
    return atlas


def _schema_problem(atlas) -> str | None:
    """What makes `atlas` not an atlas of this schema, or None."""
    if not isinstance(atlas, dict):
        return f"expected a JSON object, got {type(atlas).__name__}"
    if atlas.get("format") != FORMAT:
        return f"format is {atlas.get('format')!r}, expected {FORMAT!r}"
    for key, kind in (("checkpoint", str), ("checkpoint_sha256", str), ("offset", (int, float))):
        if not isinstance(atlas.get(key), kind):
            return f"no {key!r}"
    if list(atlas.get("measures", [])) != list(MEASURES):
        return f"measures are {atlas.get('measures')!r}, expected {list(MEASURES)}"
    used = atlas.get("per_digit_used")
    if (
        not isinstance(used, list)
        or len(used) != NUM_DIGITS
        or not all(type(n) is int and n >= 1 for n in used)
    ):
        return "'per_digit_used' is not 10 counts of digits"
    digits = atlas.get("digits")
    if not isinstance(digits, list) or len(digits) != NUM_DIGITS:
        return "'digits' is not a list of 10 rows"
    for j, row in enumerate(digits):
        if not isinstance(row, list) or len(row) != DIGIT_DIM:
            return f"digit {j} does not have 16 cells"
        for d, c in enumerate(row):
            where = f"cell (digit {j}, dim {d})"
            if not isinstance(c, dict) or c.get("dim") != d:
                return f"{where} is not a cell of dimension {d}"
            if c.get("label") not in LABELS:
                return f"{where} has label {c.get('label')!r}, not one of {list(LABELS)}"
            effects = c.get("effects")
            numbers = (
                [c.get("strength"), c.get("agreement")] + [effects.get(m) for m in MEASURES]
                if isinstance(effects, dict)
                else []
            )
            if not numbers or not all(_finite(v) for v in numbers):
                return f"{where} lacks a finite strength, agreement or effect ({', '.join(MEASURES)})"
    return None


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _round(v: float) -> float:
    return float(f"{float(v):.6g}")


def _check_offset(offset) -> float:
    if isinstance(offset, bool) or not isinstance(offset, (int, float)) or not 0 < offset < math.inf:
        raise ValueError(f"offset must be a positive finite number, got {offset!r}")
    return float(offset)


# ---------------------------------------------------------------------------------------------
# Command line

SHORT = {  # table abbreviations
    "thicker strokes": "thick",
    "thinner strokes": "thin",
    "wider": "wide",
    "narrower": "narrow",
    "taller": "tall",
    "shorter": "short",
    "moves right": "right",
    "moves left": "left",
    "moves down": "down",
    "moves up": "up",
    "leans right": "lean R",
    "leans left": "lean L",
    LOCAL: "local",
    NO_CHANGE: "-",
}


def format_table(atlas: dict) -> str:
    """16 rows (dimensions) by 10 columns (digits): each cell's label, short, and strength."""
    lines = [
        f"pose atlas of {atlas['checkpoint']}: first {atlas['per_digit']} test digits per class, offset "
        f"+-{atlas['offset']:g}. Rows: pose dimension; columns: digit class; label, then strength in "
        "px per unit of pose offset (local: the unexplained share)",
        "dim " + "".join(f"{j:>11}" for j in range(NUM_DIGITS)),
    ]
    for d in range(DIGIT_DIM):
        cells = [atlas["digits"][j][d] for j in range(NUM_DIGITS)]
        lines.append(f"{d:>3} " + "".join(f"{SHORT[c['label']]:>7}{c['strength']:4.1f}" for c in cells))
    counts = {}
    for row in atlas["digits"]:
        for c in row:
            counts[c["label"]] = counts.get(c["label"], 0) + 1
    lines.append("labels: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m capsnet.atlas",
        description="Measure what each of the 16 pose dimensions of each digit capsule does to the "
        "reconstruction (ink, position, size, slant, local change) and write the pose atlas.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="weights to measure (default: $CAPSNET_CHECKPOINT, else the shipped weights: "
        "checkpoints/capsnet_mnist.pt in a checkout, else the copy installed with the package)",
    )
    add_data_args(p)
    p.add_argument("--per-digit", type=int, default=100, help="first N test digits of each class")
    p.add_argument("--out", help="atlas file to write (default: pose_atlas.json beside the checkpoint)")
    p.add_argument("--batch-size", type=int, default=100)
    add_device_args(p)
    p.add_argument(
        "--json", action="store_true", help="print the atlas as one JSON object instead of the table"
    )
    args = p.parse_args(argv)
    if args.per_digit < 1:
        p.error("--per-digit must be >= 1")
    if args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = use_device_args(args)
    try:
        checkpoint = resolve_checkpoint(args.checkpoint)
        model = load_model(checkpoint, device=device)
        images, labels = load_mnist(args.data_root, train=False, download=not args.no_download)
    except (CheckpointError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    out = Path(args.out) if args.out else checkpoint.with_name(DEFAULT_ATLAS.name)

    from tqdm import tqdm

    total = sum(len(idx) for idx in first_per_class(labels, args.per_digit))
    start = time.perf_counter()
    try:
        with tqdm(total=total, unit="digit", desc="atlas", file=sys.stderr) as bar:
            measured = measure_atlas(model, images, labels, args.per_digit, OFFSET, args.batch_size, bar)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    atlas = {
        "format": FORMAT,
        "checkpoint": checkpoint.name,
        "checkpoint_sha256": file_sha256(checkpoint),
        "offset": OFFSET,
        "iterations": ITERATIONS,
        "per_digit": args.per_digit,
        "per_digit_used": measured["per_digit_used"],
        "measures": list(MEASURES),
        "labels": list(LABELS),
        "rule": (
            f"'{NO_CHANGE}' if change < {MIN_CHANGE:g} ink per unit; else '{LOCAL}' if local > "
            f"{MAX_LOCAL:g}; else the word of the largest |standardised| effect (pixels the ink moves "
            "per unit of pose offset). strength: that effect's size in px per unit, the local share "
            "for 'local part', 0 for no change"
        ),
        "command": cli_command("capsnet.atlas", argv),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - start, 1),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "digits": measured["digits"],
    }
    atomic_write_json(out, atlas)
    print(f"wrote {out}", file=sys.stderr)
    print(json.dumps(atlas) if args.json else format_table(atlas))
    return 0


if __name__ == "__main__":
    sys.exit(main())
