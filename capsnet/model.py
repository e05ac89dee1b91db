"""CapsNet of "Dynamic Routing Between Capsules" (Sabour, Frosst, Hinton, 2017).

Axis legend used in the einsums below:
    b = batch, i = primary (input) capsule (1152), o = digit (output) capsule (10),
    h = digit pose dimension (16), d = primary pose dimension (8).

Index of a primary capsule: i = type * 36 + row * 6 + col, with type in 0..31 (the 32 capsule
channels of PrimaryCaps, each made of 8 consecutive conv channels) and (row, col) in the 6x6 grid.
`primary_position(i)` gives that mapping, `receptive_field(row, col)` the 17x17 block of the 28x28
input that capsule sees.
"""

from __future__ import annotations

import contextlib
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_PRIMARY_TYPES = 32
PRIMARY_GRID = 6
NUM_PRIMARY = NUM_PRIMARY_TYPES * PRIMARY_GRID * PRIMARY_GRID  # 1152
PRIMARY_DIM = 8
NUM_DIGITS = 10
DIGIT_DIM = 16
MAX_ITERATIONS = 10
MAX_ROUTING_GAIN = 1000.0  # far past any useful value: with |u_hat.v| ~ 0.05, gain 1000 gives b ~ 50


def squash(s: Tensor, dim: int = -1, eps: float = 1e-8) -> Tensor:
    """Eq. 1: v = |s|^2 / (1 + |s|^2) * s / |s|.

    The eps under the square root keeps forward and backward finite at s = 0 (where v = 0).
    """
    sq = (s * s).sum(dim=dim, keepdim=True)
    return s * (sq / (1.0 + sq)) / torch.sqrt(sq + eps)


def primary_position(i: int) -> tuple[int, int, int]:
    """Map a primary-capsule index (0..1151) to (capsule type, row, column)."""
    if not 0 <= i < NUM_PRIMARY:
        raise IndexError(f"primary capsule index {i} outside 0..{NUM_PRIMARY - 1}")
    kind, rest = divmod(i, PRIMARY_GRID * PRIMARY_GRID)
    row, col = divmod(rest, PRIMARY_GRID)
    return kind, row, col


def receptive_field(row: int, col: int) -> tuple[slice, slice]:
    """Input pixels (rows, cols of the 28x28 image) seen by the primary capsule at (row, col).

    Conv1 (9x9, stride 1) then PrimaryCaps (9x9, stride 2 over conv1): (9 - 1) + 9 = 17 px square,
    moving 2 px per grid step, so the 6x6 fields overlap and together cover the whole input.
    """
    if not (0 <= row < PRIMARY_GRID and 0 <= col < PRIMARY_GRID):
        raise IndexError(f"grid position ({row}, {col}) outside the 6x6 PrimaryCaps grid")
    r0, c0 = 2 * row, 2 * col
    return slice(r0, r0 + 17), slice(c0, c0 + 17)


@dataclass
class CapsOutput:
    """What one forward pass returns. T = routing iterations, B = batch."""

    poses: Tensor  # (B, 10, 16) digit capsules v_j after the last iteration
    lengths: Tensor  # (B, 10) |v_j|
    # Only with trace=True:
    coupling: Tensor | None = None  # (T, B, 1152, 10) c used in iteration t; coupling[0] == 0.1
    logits: Tensor | None = None  # (T, B, 1152, 10) routing logits b that gave coupling[t]
    poses_per_iter: Tensor | None = None  # (T, B, 10, 16) v_j at the end of iteration t
    lengths_per_iter: Tensor | None = None  # (T, B, 10)
    primary: Tensor | None = None  # (B, 1152, 8) squashed primary capsules u_i
    u_hat: Tensor | None = None  # (B, 1152, 10, 16) predictions u_hat_j|i = W_ij u_i

    @property
    def prediction(self) -> Tensor:  # (B,)
        return self.lengths.argmax(dim=-1)


def check_routing_gain(routing_gain) -> float:
    """The factor on the agreement in b += gain * (u_hat . v), as a float in 0..MAX_ROUTING_GAIN.

    1 is the paper's Procedure 1; 0 keeps c uniform (no routing); larger values make the same
    agreement move c further. Raises TypeError for a non-number (bool included), ValueError for
    NaN, infinities and values outside 0 <= gain <= 1000.
    """
    if isinstance(routing_gain, bool) or not isinstance(routing_gain, numbers.Real):
        kind = type(routing_gain).__name__
        raise TypeError(f"routing_gain must be a real number in 0..{MAX_ROUTING_GAIN:g}, got {kind}")
    gain = float(routing_gain)
    if not 0.0 <= gain <= MAX_ROUTING_GAIN:  # NaN fails both comparisons, inf the upper one
        raise ValueError(f"routing_gain must satisfy 0 <= gain <= {MAX_ROUTING_GAIN:g}, got {routing_gain!r}")
    return gain


def dynamic_routing(u_hat: Tensor, iterations: int, trace: bool = False, routing_gain: float = 1.0):
    """Procedure 1 of the paper. u_hat: (B, 1152, 10, 16).

    The logits b start at zero for every example on every call: they are not parameters and
    not shared across the batch. `routing_gain` scales the update, b += gain * (u_hat . v):
    1 (the default) is the paper, 0 keeps c uniform; see `check_routing_gain`. Returns v
    (B, 10, 16) and, with trace, the per-iteration (logits, coupling, v) stacked on a leading
    T axis.
    """
    gain = check_routing_gain(routing_gain)
    b = u_hat.new_zeros(u_hat.shape[:3])  # (B, i, o)
    logits, couplings, vs = [], [], []
    for r in range(iterations):
        c = torch.softmax(b, dim=2)  # over the digit axis o
        s = torch.einsum("bio,bioh->boh", c, u_hat)  # (B, 10, 16)
        v = squash(s)
        if trace:
            logits.append(b)
            couplings.append(c)
            vs.append(v)
        if r < iterations - 1:  # the last update would never be used
            b = b + gain * torch.einsum("bioh,boh->bio", u_hat, v)  # agreement u_hat . v (x 1.0 is exact)
    if trace:
        return v, (torch.stack(logits), torch.stack(couplings), torch.stack(vs))
    return v, None


class PrimaryCaps(nn.Module):
    """One 9x9 stride-2 convolution to 32 x 8 channels, regrouped into 1152 8-D capsules."""

    def __init__(self, in_channels: int = 256):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, NUM_PRIMARY_TYPES * PRIMARY_DIM, 9, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        out = self.convolve(x)  # (B, 256, 6, 6)
        B = out.shape[0]
        out = out.view(B, NUM_PRIMARY_TYPES, PRIMARY_DIM, PRIMARY_GRID, PRIMARY_GRID)
        out = out.permute(0, 1, 3, 4, 2).reshape(B, NUM_PRIMARY, PRIMARY_DIM)  # (B, 1152, 8)
        return squash(out.to(self.conv.weight.dtype))  # the weights' dtype (fp32) even after a bf16 conv

    def convolve(self, x: Tensor) -> Tensor:
        """(B, 256, 20, 20) -> (B, 256, 6, 6); capsnet.bench times other formulations of it."""
        return self.conv(x)


class DigitCaps(nn.Module):
    """10 digit capsules of 16-D, one 8x16 transformation W_ij per (primary i, digit j)."""

    def __init__(self):
        super().__init__()
        self.W = nn.Parameter(0.01 * torch.randn(NUM_PRIMARY, NUM_DIGITS, DIGIT_DIM, PRIMARY_DIM))

    def predictions(self, u: Tensor) -> Tensor:
        return torch.einsum("iohd,bid->bioh", self.W, u)  # (B, 1152, 10, 16)


class CapsNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 256, 9)
        self.primary_caps = PrimaryCaps(256)
        self.digit_caps = DigitCaps()
        self.decoder = nn.Sequential(
            nn.Linear(NUM_DIGITS * DIGIT_DIM, 512),
            nn.ReLU(inplace=True),
            nn.Linear(512, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, 784),
            nn.Sigmoid(),
        )

    def forward(
        self, x: Tensor, iterations: int = 3, trace: bool = False, routing_gain: float = 1.0
    ) -> CapsOutput:
        """x: (B, 1, 28, 28) in [0, 1]. routing_gain scales the routing update (1 = the paper)."""
        _check_input(x, finite=not self.training)
        if isinstance(iterations, bool) or not isinstance(iterations, int):
            raise TypeError(f"iterations must be an int, got {type(iterations).__name__}")
        if not 1 <= iterations <= MAX_ITERATIONS:
            raise ValueError(f"iterations must be in 1..{MAX_ITERATIONS}, got {iterations}")
        check_routing_gain(routing_gain)  # before the convolutions, not after
        h = F.relu(self.conv1(x))  # (B, 256, 20, 20)
        u = self.primary_caps(h)  # (B, 1152, 8), fp32
        # A caller's bf16 autocast reaches the two convolutions only (95% of the arithmetic):
        # u_hat, routing's softmax and agreement stay fp32, where the small differences decide c.
        with _no_autocast(x.device.type):
            u_hat = self.digit_caps.predictions(u)  # (B, 1152, 10, 16)
            v, per_iter = dynamic_routing(u_hat, iterations, trace, routing_gain)
        lengths = torch.linalg.vector_norm(v, dim=-1)  # (B, 10)
        if not trace:
            return CapsOutput(poses=v, lengths=lengths)
        logits, coupling, vs = per_iter
        return CapsOutput(
            poses=v,
            lengths=lengths,
            coupling=coupling,
            logits=logits,
            poses_per_iter=vs,
            lengths_per_iter=torch.linalg.vector_norm(vs, dim=-1),
            primary=u,
            u_hat=u_hat,
        )

    def reconstruct(self, poses: Tensor, digit: Tensor) -> Tensor:
        """Mask every digit capsule but `digit` (B,) and decode: (B, 10, 16) -> (B, 1, 28, 28)."""
        if poses.dim() != 3 or poses.shape[1:] != (NUM_DIGITS, DIGIT_DIM):
            raise ValueError(f"poses must have shape (B, 10, 16), got {tuple(poses.shape)}")
        digit = torch.as_tensor(digit, device=poses.device).reshape(-1).long()
        if digit.shape[0] != poses.shape[0]:
            raise ValueError(f"need one digit per pose, got {digit.shape[0]} for {poses.shape[0]}")
        mask = F.one_hot(digit, NUM_DIGITS).to(poses.dtype)  # (B, 10)
        masked = (poses * mask[:, :, None]).flatten(1)  # (B, 160)
        return self.decoder(masked).view(-1, 1, 28, 28)


def _no_autocast(device_type: str):
    """A context that turns a caller's autocast off on this device (a no-op where there is none,
    e.g. the meta device, which shape-only counts run on)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def _check_input(x: Tensor, finite: bool) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a torch.Tensor of shape (B, 1, 28, 28), got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1:] != (1, 28, 28):
        raise ValueError(
            f"expected input of shape (B, 1, 28, 28) with pixels in [0, 1], got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point tensor with pixels in [0, 1], got {x.dtype}")
    if finite and not bool(torch.isfinite(x).all()):
        raise ValueError("input contains NaN or Inf values")


def margin_loss(
    lengths: Tensor, target: Tensor, m_plus: float = 0.9, m_minus: float = 0.1, lam: float = 0.5
) -> Tensor:
    """Eq. 4, summed over the 10 digit capsules, averaged over the batch. target: (B,) labels."""
    T = F.one_hot(target, NUM_DIGITS).to(lengths.dtype)
    present = T * F.relu(m_plus - lengths) ** 2
    absent = lam * (1.0 - T) * F.relu(lengths - m_minus) ** 2
    return (present + absent).sum(dim=1).mean()


def reconstruction_loss(recon: Tensor, x: Tensor, scale: float = 0.0005) -> Tensor:
    """Sum of squared pixel errors per image, scaled by 0.0005, averaged over the batch."""
    return scale * ((recon - x) ** 2).flatten(1).sum(dim=1).mean()


def training_loss(
    model: CapsNet, x: Tensor, y: Tensor, iterations: int = 3, recon_weight: float = 0.0005, amp: bool = False
) -> tuple[Tensor, CapsOutput]:
    """The paper's loss of one batch: margin loss (Eq. 4) + recon_weight x the SSE of the decoder's
    reconstruction from the capsule of the TRUE digit y (every other capsule masked out, Sec. 4.1).

    x: (B, 1, 28, 28), y: (B,) labels. With amp the two convolutions run in bf16 autocast (the
    forward turns it off for routing); the decoder and the losses are fp32 either way. Returns the
    loss () and the forward's CapsOutput (e.g. for accuracy).
    """
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(x, iterations=iterations)  # no trace: no per-iteration copies
    recon = model.reconstruct(out.poses, y)  # masked by the label, never by out.prediction
    loss = margin_loss(out.lengths, y) + reconstruction_loss(recon, x, recon_weight)
    return loss, out


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
