"""Routing by agreement in numbers, from one traced forward pass: numpy in, numpy out, no Streamlit.

In the trained model c stays within ~0.1 +- 0.01 for almost every primary capsule, while |s_j|
can double: a few capsules with long votes gain weight. These measures give those small changes
(and who causes the growth) as numbers the page can draw at a visible, printed scale.

Shapes use the model's axis names: T = routing iterations, i = primary capsule (1152),
j = digit capsule (10). Primary index i = type * 36 + row * 6 + col.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.pixel_arrays import saturated, symmetric_limit
from capsnet.model import NUM_DIGITS, receptive_field
from capsnet.model import NUM_PRIMARY_TYPES as NUM_TYPES
from capsnet.model import PRIMARY_GRID as GRID


def coupling_change(coupling: np.ndarray) -> np.ndarray:
    """delta c = c - 1/10, the change from uniform coupling: (T, 1152, 10) -> same shape, float64.

    Sums to 0 over the digits of every primary capsule (both c and 1/10 sum to 1)."""
    return np.asarray(coupling, dtype=np.float64) - 1.0 / NUM_DIGITS


@dataclass(frozen=True)
class CouplingMove:
    """How far routing moved c from the uniform 0.1: the one definition the page quotes.

    Over the 1152 primary capsules i, for one digit capsule j, in the c of the last routing
    iteration (coupling[T - 1]: the c that produced the final v_j). delta_i = c_ij - 0.1, which is
    also the change since iteration 1 (whose c is 0.1 everywhere). Every view of delta c colours it
    on -limit..+limit and counts what lies beyond that range.
    """

    digit: int
    iteration: int  # T: whose c (1-based; iteration 1 is uniform by definition)
    n: int  # 1152 primary capsules
    limit: float  # 99th percentile of |delta|: the colour range of every delta-c view
    beyond: int  # capsules with |delta| > limit, drawn in the end colours
    rose: int  # delta > 0: capsules whose c rose at all (changes below NOISE are none)
    fell: int  # delta < 0
    steps: tuple[float, ...]  # sizes of change counted, smallest first: (0.01, 0.05)
    rose_by: tuple[int, ...]  # per step s: capsules with delta > s
    fell_by: tuple[int, ...]  # per step s: capsules with delta < -s
    largest_rise: float  # max delta (0 when none rose)
    largest_fall: float  # min delta (0 when none fell)


NOISE = 1e-6  # |delta c| below this is float32 rounding of 0.1, not routing


def coupling_move(
    coupling: np.ndarray, digit: int, quantile: float = 0.99, steps: tuple[float, ...] = (0.01, 0.05)
) -> CouplingMove:
    """coupling (T, 1152, 10) of one input -> CouplingMove of its last iteration for `digit`.
    Changes below NOISE (float32 rounding: 0.1 is not exact) count as none."""
    delta = coupling_change(np.asarray(coupling)[-1, :, digit])  # (1152,)
    delta[np.abs(delta) < NOISE] = 0.0
    limit = symmetric_limit(delta, quantile)
    steps = tuple(sorted(float(s) for s in steps))
    return CouplingMove(
        digit=int(digit), iteration=len(coupling), n=delta.size, limit=limit,
        beyond=saturated(delta, limit), rose=int(np.count_nonzero(delta > 0)),
        fell=int(np.count_nonzero(delta < 0)), steps=steps,
        rose_by=tuple(int(np.count_nonzero(delta > s)) for s in steps),
        fell_by=tuple(int(np.count_nonzero(delta < -s)) for s in steps),
        largest_rise=max(float(delta.max()), 0.0), largest_fall=min(float(delta.min()), 0.0),
    )  # fmt: skip


def coupling_entropy(coupling: np.ndarray) -> np.ndarray:
    """Mean entropy (bits) of c_i. over primary capsules, per iteration: (T, 1152, 10) -> (T,).

    Uniform c (iteration 1) gives log2(10) = 3.32 bits; a capsule routing everything to one
    digit gives 0.
    """
    c = np.clip(np.asarray(coupling, dtype=np.float64), 1e-12, 1.0)
    return -(c * np.log2(c)).sum(axis=-1).mean(axis=-1)


def type_position_map(c_j: np.ndarray, primary_len: np.ndarray) -> np.ndarray:
    """c_ij * |u_i| for one digit j, as (32 types, 6 rows, 6 cols). c_j, primary_len: (1152,)."""
    w = np.asarray(c_j, dtype=np.float64) * np.asarray(primary_len, dtype=np.float64)
    return w.reshape(NUM_TYPES, GRID, GRID)


def type_maps(per_capsule: np.ndarray) -> np.ndarray:
    """One number per primary capsule, (1152,), as (32 types, 6 rows, 6 cols), one panel per type."""
    return np.asarray(per_capsule, dtype=np.float64).reshape(NUM_TYPES, GRID, GRID)


def per_position(per_capsule: np.ndarray) -> np.ndarray:
    """One number per primary capsule, (1152,), summed over the 32 types: (6, 6) grid."""
    return type_maps(per_capsule).sum(axis=0)


def evidence_map(weights: np.ndarray) -> np.ndarray:
    """Spread one number per primary capsule, (1152,), over the 28x28 input.

    The 32 capsule types at each grid position are summed and the sum is added to every pixel of
    that position's 17x17 receptive field (rows 2r..2r+16, cols 2c..2c+16); the result is divided
    by the number of fields covering a pixel so the overlap in the middle does not dominate.
    Returns (28, 28).
    """
    per_pos = np.asarray(weights, dtype=np.float64).reshape(NUM_TYPES, GRID, GRID).sum(axis=0)  # (6, 6)
    total = np.zeros((28, 28))
    cover = np.zeros((28, 28))
    for r in range(GRID):
        for c in range(GRID):
            rs, cs = receptive_field(r, c)
            total[rs, cs] += per_pos[r, c]
            cover[rs, cs] += 1.0
    return total / np.maximum(cover, 1.0)  # row/col 27 lies in no field: stays 0


def field_map(per_capsule: np.ndarray, ink: np.ndarray | None = None) -> np.ndarray:
    """One number per primary capsule, (1152,), summed over types and drawn on the 28x28 input.

    Without `ink`: each pixel shows the mean over the grid positions whose 17x17 field covers it
    (`evidence_map`). With the input image as `ink`: each position's sum is spread over its field
    in proportion to the ink there (`ink_weighted_evidence`), so empty background stays 0."""
    if ink is None:
        return evidence_map(per_capsule)
    return ink_weighted_evidence(per_capsule, ink).map


@dataclass
class InkEvidence:
    """Per-capsule shares painted on the input where the ink is (see `ink_weighted_evidence`)."""

    map: np.ndarray  # (28, 28); map.sum() == painted
    painted: float  # sum of the shares of grid positions whose field holds ink
    no_ink: float  # sum of the shares of positions whose field holds no ink: drawn nowhere
    empty_fields: np.ndarray  # (6, 6) bool, True where the field holds no ink


def ink_weighted_evidence(shares: np.ndarray, image: np.ndarray) -> InkEvidence:
    """Spread each primary capsule's share over the ink in its receptive field.

    shares (1152,), e.g. one iteration's agreement shares for one digit; image (28, 28), ink > 0
    (negative pixels count as no ink). The 32 types at a grid position are summed; that sum goes
    to the pixels of the position's 17x17 field in proportion to their ink, so a pixel without
    ink gets nothing and the map adds up to the shares of the fields that hold ink. Unlike
    `evidence_map`, capsules whose field is mostly background no longer paint the background.
    """
    per_pos = per_position(shares)  # (6, 6)
    ink = np.clip(np.asarray(image, dtype=np.float64), 0.0, None)  # (28, 28)
    out = np.zeros_like(ink)
    empty = np.zeros((GRID, GRID), dtype=bool)
    for r in range(GRID):
        for c in range(GRID):
            rs, cs = receptive_field(r, c)
            total = ink[rs, cs].sum()
            if total > 0:
                out[rs, cs] += per_pos[r, c] * ink[rs, cs] / total
            else:
                empty[r, c] = True
    return InkEvidence(
        map=out, painted=float(per_pos[~empty].sum()), no_ink=float(per_pos[empty].sum()), empty_fields=empty
    )


def agreement_shares(coupling: np.ndarray, u_hat: np.ndarray, poses_per_iter: np.ndarray) -> np.ndarray:
    """Each primary capsule's share of |s_j| in every iteration: c_ij (u_hat_j|i . v_j) / |v_j|.

    coupling (T, 1152, 10), u_hat (1152, 10, 16), poses_per_iter (T, 10, 16) -> (T, 1152, 10).
    Because s_j = sum_i c_ij u_hat_j|i points the same way as v_j, the shares of digit j add up
    to |s_j| exactly: positive where a vote agrees with the output, negative where it disagrees.
    """
    return _shares(coupling, u_hat, poses_per_iter).astype(np.float32)


def _shares(coupling: np.ndarray, u_hat: np.ndarray, poses_per_iter: np.ndarray) -> np.ndarray:
    """`agreement_shares` in float64."""
    v = np.asarray(poses_per_iter, dtype=np.float64)
    v_dir = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)  # (T, 10, 16)
    along = np.einsum("ijh,tjh->tij", np.asarray(u_hat, dtype=np.float64), v_dir)  # u_hat . v/|v|
    return np.asarray(coupling, dtype=np.float64) * along


def _unit(v: np.ndarray) -> np.ndarray | None:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else None


def _leading_direction(points: np.ndarray) -> np.ndarray | None:
    """First right-singular vector of (N, H) points, or None when they are all (nearly) zero."""
    if not np.any(points):
        return None
    _, sv, vt = np.linalg.svd(points, full_matrices=False)
    return vt[0] if sv[0] > 1e-12 else None


def vote_projection(u_hat_j: np.ndarray, v_j: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D coordinates of the 1152 votes u_hat_j|i for one digit j, chosen for routing.

    u_hat_j (1152, 16), v_j (16,) -> x (1152,), y (1152,), axes (2, 16) with orthonormal rows.
    x is the component along v_j / |v_j| (what the agreement u_hat . v measures, up to |v_j|);
    y the component along the leading principal direction of what is left of the votes across
    v_j (centred), i.e. the widest spread the x axis does not show. The sign of y puts the vote
    furthest off the x axis above it. With v_j = 0 the x axis is the votes' own leading
    direction (uncentred); with no spread at all the axes fall back to basis vectors.
    Project s_j or v_j of every iteration with the same axes: `project(points, axes)`.
    """
    U = np.asarray(u_hat_j, dtype=np.float64)  # (1152, 16)
    H = U.shape[1]
    e1 = _unit(np.asarray(v_j, dtype=np.float64))
    if e1 is None:
        e1 = _leading_direction(U)
    if e1 is None:
        e1 = np.eye(H)[0]
    across = U - np.outer(U @ e1, e1)  # (1152, 16), each row orthogonal to e1
    e2 = _leading_direction(across - across.mean(axis=0))
    if e2 is None:  # no spread across e1: the basis vector least along e1, made orthogonal
        e2 = np.eye(H)[int(np.argmin(np.abs(e1)))]
    e2 = _unit(e2 - (e2 @ e1) * e1)  # exact orthogonality after the SVD's rounding
    y = U @ e2
    if y.size and y[np.argmax(np.abs(y))] < 0:
        e2, y = -e2, -y
    return U @ e1, y, np.stack([e1, e2])


def project(points: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Points (..., 16) onto the two axes of `vote_projection`: (..., 2) as (x, y)."""
    return np.asarray(points, dtype=np.float64) @ np.asarray(axes, dtype=np.float64).T


@dataclass
class ParseTreeFlows:
    """Links of a Sankey from groups of primary capsules to digit capsules (one iteration).

    Nodes: `labels[:n_sources]` the groups drawn on their own, `labels[n_sources]` everything
    else ("rest"), then one node per digit in `digits`. Links carry positive values only;
    what a group sends against v_j (a negative net contribution) is in `against` and printed
    in the digit's label. For every digit: support - against = s_along_v = |s_j|.
    """

    group: str  # "position" or "type"
    sources: list[int]  # group ids drawn as their own node, strongest first
    labels: list[str]  # node labels
    digits: list[int]  # the digits drawn, in node order
    link_source: np.ndarray  # (L,) int node index
    link_target: np.ndarray  # (L,) int node index
    link_value: np.ndarray  # (L,) > 0
    net: np.ndarray  # (G, 10) net contribution of every group to every digit (G = 36 or 32)
    support: np.ndarray  # (10,) sum of the positive net contributions: all the links into j
    against: np.ndarray  # (10,) minus the sum of the negative ones (>= 0)
    s_along_v: np.ndarray  # (10,) s_j . v_j / |v_j| = support - against

    @property
    def rest(self) -> int:
        """Node index of the "rest" node."""
        return len(self.sources)


def _group_names(group: str) -> list[str]:
    if group == "position":
        return [f"position ({r}, {c})" for r in range(GRID) for c in range(GRID)]
    return [f"type {t}" for t in range(NUM_TYPES)]


def parse_tree_flows(
    coupling_t: np.ndarray,
    u_hat: np.ndarray,
    v_t: np.ndarray,
    group: str = "position",
    top_k: int = 8,
    digits=None,
    per_digit: bool = False,
) -> ParseTreeFlows:
    """Who sends what to the digit capsules in one iteration, grouped for a Sankey diagram.

    coupling_t (1152, 10), u_hat (1152, 10, 16), v_t (10, 16): the c used in iteration t and
    the v it produced. Primary capsule i contributes c_ij (u_hat_j|i . v_j/|v_j|) to digit j
    (its agreement share; they sum to |s_j|); the capsules of a grid position ("position", 36
    groups) or of a capsule type ("type", 32 groups) are netted together.
    Source nodes: the `top_k` groups with the largest positive contribution summed over the
    digits drawn, plus one "rest" node for every other group. per_digit=True instead gives
    each digit its own top_k and draws their union (up to 30-odd nodes for 10 digits on the
    trained model: complete, but hard to read). `digits`: the digit capsules drawn (default
    all 10); `support`, `against` and `s_along_v` are computed for all 10 regardless.
    """
    if group not in ("position", "type"):
        raise ValueError(f"group must be 'position' or 'type', got {group!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    digits = list(range(NUM_DIGITS)) if digits is None else [int(j) for j in digits]
    shares = _shares(np.asarray(coupling_t)[None], u_hat, np.asarray(v_t)[None])[0]  # (1152, 10)
    by_type_pos = shares.reshape(NUM_TYPES, GRID * GRID, NUM_DIGITS)
    net = by_type_pos.sum(axis=0) if group == "position" else by_type_pos.sum(axis=1)  # (G, 10)
    support = np.clip(net, 0.0, None).sum(axis=0)
    against = 0.0 - np.clip(net, None, 0.0).sum(axis=0)  # 0.0 - : no "-0.00" in a label
    strength = np.clip(net[:, digits], 0.0, None).sum(axis=1)  # (G,)

    def strongest(score: np.ndarray) -> list[int]:
        order = np.argsort(-score, kind="stable")
        return [int(g) for g in order[:top_k] if score[g] > 0]

    if per_digit:
        shown = {j: strongest(net[:, j]) for j in digits}
        sources = sorted({g for gs in shown.values() for g in gs}, key=lambda g: (-strength[g], g))
    else:
        sources = strongest(strength)
        shown = {j: [g for g in sources if net[g, j] > 0] for j in digits}
    node = {g: k for k, g in enumerate(sources)}
    rest, first_digit = len(sources), len(sources) + 1
    src, tgt, val = [], [], []
    for d, j in enumerate(digits):
        for g in shown[j]:
            src.append(node[g]), tgt.append(first_digit + d), val.append(net[g, j])
        rest_value = float(np.clip(np.delete(net[:, j], shown[j]), 0.0, None).sum())
        if rest_value > 0:
            src.append(rest), tgt.append(first_digit + d), val.append(rest_value)
    names = _group_names(group)
    labels = [names[g] for g in sources] + [f"other {group}s"]
    for j in digits:
        labels.append(f"digit {j}: |s| = {support[j] - against[j]:.2f}" + (
            f" ({against[j]:.2f} sent against v)" if against[j] >= 0.005 else ""
        ))  # fmt: skip
    return ParseTreeFlows(
        group=group, sources=sources, labels=labels, digits=digits,
        link_source=np.array(src, dtype=int), link_target=np.array(tgt, dtype=int),
        link_value=np.array(val, dtype=np.float64), net=net, support=support, against=against,
        s_along_v=shares.sum(axis=0),
    )  # fmt: skip


@dataclass
class VoteGrowth:
    """How |s_j| grows from iteration 1 to the last, and which primary capsules make it grow.

    With e = v_j / |v_j| of the last iteration: |s_last| - s_first . e = sum_i contribution_i,
    where contribution_i = (c_ij,last - c_ij,first) u_hat_j|i . e. The part of |s_last| - |s_first|
    this misses is `turn` = |s_first| - s_first . e >= 0 (s_j changing direction, usually tiny).
    """

    digit: int
    s_first: float  # |s_j| in iteration 1 (uniform c)
    s_last: float  # |s_j| in the last iteration
    along: float  # s_last - s_first . e = contribution.sum()
    turn: float  # |s_first| - s_first . e
    contribution: np.ndarray  # (1152,) each capsule's part of `along`
    top: np.ndarray  # (top_n,) the capsules with the longest votes |u_hat_j|i|, longest first
    top_share: float  # contribution[top].sum() / along (NaN when along == 0); may exceed 1
    half_from: int  # fewest capsules (largest contributions first) giving half of `along`


def vote_growth(
    coupling: np.ndarray, u_hat: np.ndarray, poses_per_iter: np.ndarray, digit: int, top_n: int = 20
) -> VoteGrowth:
    """coupling (T, 1152, 10), u_hat (1152, 10, 16), poses_per_iter (T, 10, 16) -> VoteGrowth."""
    c = np.asarray(coupling, dtype=np.float64)[:, :, digit]  # (T, 1152)
    u = np.asarray(u_hat, dtype=np.float64)[:, digit]  # (1152, 16)
    s = c @ u  # (T, 16): s_j of every iteration
    e = _unit(np.asarray(poses_per_iter, dtype=np.float64)[-1, digit])
    if e is None:
        e = np.zeros(u.shape[1])
    contribution = (c[-1] - c[0]) * (u @ e)  # (1152,)
    along = float(contribution.sum())
    s_first, s_last = float(np.linalg.norm(s[0])), float(np.linalg.norm(s[-1]))
    top = np.argsort(-np.linalg.norm(u, axis=1), kind="stable")[:top_n]
    share = float(contribution[top].sum() / along) if along != 0 else float("nan")
    ranked = np.cumsum(np.sort(contribution)[::-1])
    half_from = int(np.searchsorted(ranked, 0.5 * along) + 1) if along > 0 else 0
    return VoteGrowth(
        digit=int(digit), s_first=s_first, s_last=s_last, along=along, turn=s_first - float(s[0] @ e),
        contribution=contribution, top=top, top_share=share, half_from=half_from,
    )  # fmt: skip


@dataclass
class Ablation:
    """Capsule lengths of one input with routing switched off (1 iteration: c = 1/10) and on."""

    lengths_no_routing: np.ndarray  # (10,) |v_j| with uniform coupling
    lengths_routed: np.ndarray  # (10,) |v_j| after `iterations` iterations with `routing_gain`
    iterations: int
    routing_gain: float

    @classmethod
    def from_trace(cls, lengths_per_iter: np.ndarray, routing_gain: float = 1.0) -> Ablation:
        """From one traced forward's lengths per iteration (T, 10): its iteration 1 is the
        no-routing answer (c = 1/10 in every first iteration), its last the routed one."""
        lpi = np.asarray(lengths_per_iter)
        return cls(lpi[0], lpi[-1], len(lpi), float(routing_gain))

    @property
    def prediction_no_routing(self) -> int:
        return int(np.argmax(self.lengths_no_routing))

    @property
    def prediction_routed(self) -> int:
        return int(np.argmax(self.lengths_routed))

    @property
    def changed(self) -> bool:
        """Whether routing changed the predicted digit."""
        return self.prediction_no_routing != self.prediction_routed
