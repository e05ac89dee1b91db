"""Affine transforms of digit images about their centre: rotation, scale, shear, translation.

Pure functions on torch tensors, batched, bilinear resampling, zero (black) outside the image.

Conventions, as seen on screen (row 0 at the top):
    x points right (columns), y points down (rows); the centre is ((W-1)/2, (H-1)/2) = (13.5, 13.5).
    rotate  degrees, positive = counter-clockwise (90 is np.rot90(image, 1)).
    scale   > 1 enlarges the digit about the centre; scale_x, scale_y multiply it per axis.
    shear   degrees, horizontal: positive leans the digit like italics (its top moves right),
            x' = x - tan(shear) * y.
    tx, ty  pixels, positive moves the digit right / down.
A point p (centred coordinates) of the input lands at  R(rotate) . Sh(shear) . S(sx, sy) . p + (tx, ty):
scale first, then shear, then rotation, then translation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# The ranges the lab's sliders and sweeps cover; clamp_params keeps user and URL values inside them.
RANGES = {
    "rotate": (-60.0, 60.0),  # degrees
    "scale": (0.5, 1.5),
    "shear": (-45.0, 45.0),  # degrees; tan(45) = 1: the top row moves one pixel per pixel of height
    "tx": (-6.0, 6.0),  # pixels
    "ty": (-6.0, 6.0),
}
DEFAULTS = {"rotate": 0.0, "scale": 1.0, "shear": 0.0, "tx": 0.0, "ty": 0.0}
# sweep families: which parameter each one moves (translation moves along x only).
FAMILIES = {"rotation": "rotate", "scale": "scale", "shear": "shear", "translation": "tx"}


def affine_matrix(rotate=0.0, scale=1.0, shear=0.0, scale_x=1.0, scale_y=1.0) -> Tensor:
    """A = R . Sh . S as float64 (B, 2, 2) acting on centred (x right, y down) coordinates.

    Arguments as in `affine`, each a number or a (B,) tensor; B is the longest of them (1 if all
    are numbers).
    """
    params = _batch(rotate=rotate, scale=scale, shear=shear, scale_x=scale_x, scale_y=scale_y)
    theta = torch.deg2rad(params["rotate"])
    cos, sin = torch.cos(theta), torch.sin(theta)
    zero, one = torch.zeros_like(theta), torch.ones_like(theta)
    # Counter-clockwise on screen with y pointing down: (x, y) -> (cos x + sin y, -sin x + cos y).
    R = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    Sh = torch.stack(
        [torch.stack([one, -torch.tan(torch.deg2rad(params["shear"]))], -1), torch.stack([zero, one], -1)], -2
    )
    S = torch.diag_embed(
        torch.stack([params["scale"] * params["scale_x"], params["scale"] * params["scale_y"]], -1)
    )
    return R @ Sh @ S  # (B, 2, 2)


def affine(
    images: Tensor, rotate=0.0, scale=1.0, shear=0.0, tx=0.0, ty=0.0, scale_x=1.0, scale_y=1.0
) -> Tensor:
    """Transform images (B, C, H, W) or one image (H, W) about the image centre.

    Each parameter is a number (same for every image) or a tensor of shape (B,) (one per image):
    rotate and shear in degrees (|shear| < 90), scale, scale_x, scale_y > 0, tx and ty in pixels.
    See the module docstring for directions. Returns a floating tensor of the input's shape;
    pixels that come from outside the input are 0.
    """
    if not isinstance(images, Tensor):
        raise TypeError(
            f"expected a torch.Tensor of shape (B, C, H, W) or (H, W), got {type(images).__name__}"
        )
    if not images.is_floating_point():
        raise TypeError(f"expected a floating-point tensor, got {images.dtype} (convert with .float() first)")
    single = images.dim() == 2
    x = images[None, None] if single else images
    if x.dim() != 4:
        raise ValueError(f"expected images of shape (B, C, H, W) or (H, W), got {tuple(images.shape)}")
    B, _, H, W = x.shape
    params = _batch(
        B, rotate=rotate, scale=scale, shear=shear, scale_x=scale_x, scale_y=scale_y, tx=tx, ty=ty
    )
    A = affine_matrix(
        params["rotate"], params["scale"], params["shear"], params["scale_x"], params["scale_y"]
    )
    a, b, c, d = A[:, 0, 0], A[:, 0, 1], A[:, 1, 0], A[:, 1, 1]
    A_inv = (
        torch.stack([d, -b, -c, a], -1).reshape(B, 2, 2) / (a * d - b * c)[:, None, None]
    )  # input <- output
    cx, cy = (W - 1) / 2, (H - 1) / 2
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=torch.float64) - cy, torch.arange(W, dtype=torch.float64) - cx, indexing="ij"
    )
    out_pts = (
        torch.stack([xs, ys], -1).reshape(1, H * W, 2)
        - torch.stack([params["tx"], params["ty"]], -1)[:, None]
    )
    in_pts = out_pts @ A_inv.transpose(1, 2)  # (B, H*W, 2) centred input coordinates
    # align_corners=True: -1 and +1 are the centres of the first and last pixels, so grid = p / c.
    grid = (in_pts / torch.tensor([cx, cy], dtype=torch.float64)).reshape(B, H, W, 2)
    # Sampled in float64 (MPS has none): neutral parameters and quarter turns then land on pixel
    # centres exactly, so they copy pixels instead of blurring them by float32 rounding.
    dtype = torch.float32 if x.device.type == "mps" else torch.float64
    out = F.grid_sample(
        x.to(dtype), grid.to(x.device, dtype), mode="bilinear", padding_mode="zeros", align_corners=True
    ).to(x.dtype)
    return out[0, 0] if single else out


def family_values(family: str, steps: int = 31) -> Tensor:
    """`steps` evenly spaced values (float64) across the family's range; the middle one (odd
    steps) is exactly the identity (0 degrees, scale 1, 0 px)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2, got {steps!r}")
    lo, hi = RANGES[FAMILIES[family]]
    return lo + (hi - lo) * (torch.arange(steps, dtype=torch.float64) / (steps - 1))


def sweep(image: Tensor, family: str, steps: int = 31) -> tuple[Tensor, Tensor]:
    """One image transformed across a family's range.

    image: (H, W), (1, H, W) or (1, 1, H, W). family: "rotation" (-60..60 degrees), "scale"
    (0.5..1.5, isotropic), "shear" (-45..45 degrees) or "translation" (-6..6 px along x).
    Returns (images (steps, 1, H, W), values (steps,) float64), values[k] being the parameter
    that made images[k].
    """
    values = family_values(family, steps)
    if not isinstance(image, Tensor):
        raise TypeError(f"expected a torch.Tensor image, got {type(image).__name__}")
    if image.dim() not in (2, 3, 4) or image.numel() != image.shape[-1] * image.shape[-2]:
        raise ValueError(f"expected one image (H, W), (1, H, W) or (1, 1, H, W), got {tuple(image.shape)}")
    x = image.reshape(1, 1, *image.shape[-2:]).expand(steps, 1, *image.shape[-2:])
    return affine(x, **{FAMILIES[family]: values}), values


def clamp_params(rotate=0.0, scale=1.0, shear=0.0, tx=0.0, ty=0.0) -> dict[str, float]:
    """Turn untrusted values (numbers, strings from a URL, None) into floats inside RANGES.

    None, NaN, booleans and text that is not a number give the default (0, or 1 for scale);
    everything else, infinities included, is clamped to its range.
    """
    given = {"rotate": rotate, "scale": scale, "shear": shear, "tx": tx, "ty": ty}
    out = {}
    for name, value in given.items():
        lo, hi = RANGES[name]
        number = _number(value)
        out[name] = DEFAULTS[name] if number is None else min(max(number, lo), hi)
    return out


def _number(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        return None
    return None if math.isnan(number) else number


def _batch(size: int | None = None, **params) -> dict[str, Tensor]:
    """Each parameter as a finite float64 (B,) tensor; numbers are repeated to the batch size."""
    out = {}
    for name, value in params.items():
        t = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
        if t.dim() > 1:
            raise ValueError(
                f"{name} must be a number or a 1-D tensor of one value per image, got {tuple(t.shape)}"
            )
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} must be finite, got {value!r}")
        out[name] = t
    if size is None:
        size = max([t.numel() for t in out.values() if t.dim() == 1], default=1)
    for name, t in out.items():
        if t.dim() == 1 and t.numel() != size:
            raise ValueError(f"{name} has {t.numel()} values for a batch of {size}")
        out[name] = t.expand(size) if t.dim() == 0 else t
    if "shear" in out and bool((out["shear"].abs() >= 90).any()):
        raise ValueError("shear must lie strictly between -90 and 90 degrees")
    for name in ("scale", "scale_x", "scale_y"):
        if name in out and bool((out[name] <= 0).any()):
            raise ValueError(f"{name} must be > 0")
    return out
