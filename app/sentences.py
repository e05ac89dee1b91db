"""The page's sentences: each states what one measure found for this input, every number from
that measure, and the number formats the text (and the colour bars printing a range) use.
"""

from __future__ import annotations

import numpy as np

from app.routing_measures import Ablation, CouplingMove, VoteGrowth
from app.sweep_measures import SweepSummary
from capsnet.model import NUM_PRIMARY


def fmt2(x: float) -> str:
    """Two significant digits, trailing zeros kept (0.40, 0.012), scientific below 1e-4."""
    x = float(x)
    if x == 0 or not np.isfinite(x):
        return f"{x:g}"
    if abs(x) < 1e-4:
        return f"{x:.1e}"
    return f"{x:.{max(0, 1 - int(np.floor(np.log10(abs(x)))))}f}"


def fmt_signed(x: float) -> str:
    """fmt2 with its sign: +0.031, −0.012 (a true minus sign); 0 as "0"."""
    if x == 0:
        return "0"
    return ("+" if x > 0 else "−") + fmt2(abs(x))


def _by_more_than(counts: tuple[int, ...], steps: tuple[float, ...]) -> str:
    """The counts of each step of change in words: 26 by more than 0.01, 2 by more than 0.05."""
    return ", ".join(f"{k} by more than {s:g}" for k, s in zip(counts, steps))


def move_sentence(m: CouplingMove) -> str:
    """CouplingMove in words, e.g. "In iteration 3, c_i2 lies within ±0.016 of 0.1 for 99% of the
    1152 primary capsules (the colour range of the per-capsule Δc views; 12 lie beyond it). Since
    iteration 1 it rose for 529 of them (26 by more than 0.01, 2 by more than 0.05) and fell for
    622 (2 by more than 0.01, 0 by more than 0.05); the largest rise is +0.086, the largest fall
    −0.011." Plain text, no TeX: the sentence changes with every stroke, and typesetting it anew each
    time cost the browser more than the rest of the routing view together."""
    if m.iteration == 1:
        return f"With 1 iteration there is no routing: c_i{m.digit} = 0.1 for all {m.n} primary capsules."
    if m.largest_rise == 0 and m.largest_fall == 0:
        return f"In iteration {m.iteration}, c_i{m.digit} is still 0.1 for all {m.n} primary capsules: routing moved none."
    return (
        f"In iteration {m.iteration}, c_i{m.digit} lies within ±{fmt2(m.limit)} of 0.1 for 99% of the "
        f"{m.n} primary capsules (the colour range of the per-capsule Δc views; {m.beyond} lie beyond it). "
        f"Since iteration 1 it rose for {m.rose} of them ({_by_more_than(m.rose_by, m.steps)}) and fell for "
        f"{m.fell} ({_by_more_than(m.fell_by, m.steps)}); the largest rise is {fmt_signed(m.largest_rise)}, "
        f"the largest fall {fmt_signed(m.largest_fall)}."
    )


def _length_change(result: Ablation, j: int) -> str | None:
    """How routing changed |v_j| when it kept the answer j: "it made |v_7| 0.02 longer", or None when
    the change is under 0.005 (|v_j| stays about the same)."""
    diff = result.lengths_routed[j] - result.lengths_no_routing[j]
    if abs(diff) < 0.005:
        return None
    return f"it made |v_{j}| {abs(diff):.2f} {'longer' if diff > 0 else 'shorter'}"


def outcome_sentence(result: Ablation) -> str:
    """Whether routing changed the answer for this input: the routed forward against no routing
    (1 iteration, c = 0.1 everywhere), both predictions with their lengths, from `result`."""
    on, off = result.prediction_routed, result.prediction_no_routing
    len_on, len_off = result.lengths_routed[on], result.lengths_no_routing[off]
    n = result.iterations
    if n == 1:
        return f"With 1 iteration there is no routing (c = 0.1 everywhere): the network reads {on} (|v_{on}| = {len_on:.2f})."
    gain = "" if result.routing_gain == 1.0 else f" with gain {result.routing_gain:g}"
    head = (
        f"With {n} iterations of routing{gain} the network reads {on} (|v_{on}| = {len_on:.2f}); without "
        f"routing (1 iteration, c = 0.1 everywhere) it reads {off} (|v_{off}| = {len_off:.2f})"
    )
    if result.changed:
        return head + f": **routing changed the answer** from {off} to {on}."
    effect = _length_change(result, on)
    if effect is None:
        return head + f": routing did not change the answer, and |v_{on}| stays about the same."
    return head + f": routing did not change the answer; {effect}."


def confidence(length: float) -> str:
    """A capsule length in words, by the margin loss's targets m+ = 0.9 and m- = 0.1."""
    if length >= 0.9:
        return "above m⁺ = 0.9: confident"
    if length > 0.5:
        return "between 0.5 and m⁺ = 0.9: fairly sure"
    return "below 0.5: unsure"


def overview_sentence(result: Ablation) -> str:
    """What the network thinks and why, from the numbers: the prediction, its length, the runner-up,
    and whether routing changed the outcome (against 1 iteration, c = 0.1 everywhere)."""
    lengths, off_lengths = result.lengths_routed, result.lengths_no_routing
    pred, runner_up = (int(j) for j in np.argsort(-lengths, kind="stable")[:2])
    head = (
        f"The network reads **{pred}**: its digit capsule is the longest, |v_{pred}| = {lengths[pred]:.2f} "
        f"({confidence(lengths[pred])}); the runner-up is {runner_up} (|v_{runner_up}| = "
        f"{lengths[runner_up]:.2f}). "
    )
    if result.iterations == 1:
        return head + "With 1 iteration there is no routing: c = 0.1 everywhere."
    off = result.prediction_no_routing
    without = "Without routing (1 iteration, c = 0.1 everywhere) it would"
    if result.changed:
        return (
            head
            + f"{without} read {off} (|v_{off}| = {off_lengths[off]:.2f}): **routing changed the answer**."
        )
    effect = _length_change(result, pred) or f"|v_{pred}| stays about the same"
    return (
        head
        + f"{without} also read {off} (|v_{off}| = {off_lengths[off]:.2f}): routing did not change the answer; "
        f"{effect}."
    )


def growth_sentence(g: VoteGrowth) -> str:
    """E.g. "|s_7| grows 1.97 → 4.02 (+2.05); the 20 primary capsules with the longest votes give
    91% of it, and half of it comes from 6 of the 1152." """
    j, n = g.digit, len(g.top)
    text = f"|s_{j}| {'grows' if g.s_last >= g.s_first else 'shrinks'} {g.s_first:.2f} → {g.s_last:.2f}"
    if g.along <= 0 or not np.isfinite(g.top_share):
        return text + f": routing gave no capsule more weight towards v_{j}."
    text += f" (+{g.along:.2f} along v_{j}); the {n} primary capsules with the longest votes give "
    return text + f"{g.top_share:.0%} of it, and half of it comes from {g.half_from} of the {NUM_PRIMARY}."


def sweep_sentence(s: SweepSummary, family: str, span: str, top: int = 3) -> str:
    """The sweep in words, every number from `s`; `span` names the range, e.g. "-60° to 60°"."""
    cnn = "" if s.cnn_kept is None else f"; the CNN for {s.cnn_kept}"
    dims = ", ".join(f"{d.dim} (spread {d.spread:.2f}, r = {d.r:+.2f})" for d in s.dims[:top])
    lo, hi = s.length_range
    return (
        f"Across {family} from {span}, CapsNet reads {s.digit} for {s.capsnet_kept} of {s.steps} steps{cnn}. "
        f"The length of capsule {s.digit} ranges from {lo:.2f} to {hi:.2f}. Its pose moves most in "
        f"dimensions {dims}; r is the correlation of a dimension with the {family} parameter."
    )


def robustness_sentence(result: dict) -> str:
    """What `python -m capsnet.robustness --json` measured for "capsnet" and "cnn", in words:
    which model kept more digits under the random affine transforms, and by how much."""
    caps = result["models"]["capsnet"]["random_affine"]["accuracy"]
    cnn = result["models"]["cnn"]["random_affine"]["accuracy"]
    gap = 100 * (caps - cnn)
    if abs(gap) < 1:
        verdict = f"the two are within {abs(gap):.2f} points of each other, no advantage for capsules in this set-up"
    elif gap > 0:
        verdict = f"CapsNet keeps {gap:.1f} points more"
    else:
        verdict = f"the CNN keeps {-gap:.1f} points more"
    return (
        f"On {result['images']:,} MNIST test digits under random affine transforms, CapsNet reads "
        f"{caps:.2%} and the CNN {cnn:.2%}; {verdict}."
    )


def training_budget(meta: dict) -> tuple[float | None, float | None]:
    """(epochs, hours) a checkpoint's weights were trained for, over every run of its lineage
    (a run that fine-tuned another's weights adds to them); None where the metadata is silent."""
    runs = meta.get("lineage") or [
        {
            "epochs": meta.get("epochs"),
            "hours": meta["train_seconds"] / 3600 if "train_seconds" in meta else None,
        }
    ]
    epochs = [r.get("epochs") for r in runs]
    hours = [r.get("hours") for r in runs]
    total_epochs = sum(epochs) if all(isinstance(e, int | float) for e in epochs) else None
    total_hours = sum(hours) if all(isinstance(h, int | float) for h in hours) else None
    return total_epochs, total_hours


def budget_sentence(capsnet_meta: dict, cnn_meta: dict) -> str:
    """Whether the two networks the lab compares had the same training, in their files' numbers."""
    (ce, ch), (ne, nh) = training_budget(capsnet_meta), training_budget(cnn_meta)
    if None in (ce, ch, ne, nh):
        return "The checkpoints do not record both training budgets, so they cannot be compared."
    runs = len(capsnet_meta.get("lineage") or [None])
    caps = f"CapsNet {ce:g} epochs in {ch:.1f} h" + (f" over {runs} runs" if runs > 1 else "")
    cnn = f"the CNN {ne:g} epochs in {nh:.1f} h"
    if abs(ce - ne) < 0.05:
        return f"Both networks trained for the same {ce:g} epochs on the same data ({caps}, {cnn})."
    return (
        f"**The training budgets differ**: {caps}, {cnn} ({ch / nh:.1f}× the CNN's hours, "
        f"{ce / ne:.1f}× its epochs). Differences between the two below are partly that."
    )
