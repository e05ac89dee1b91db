"""Every number the routing view's text states is the measures' output for this input:
two shipped samples, each routing part, the forward pass redone here with the library.

The page quotes one definition of how far c moved (routing_measures.coupling_move: the 1152 primary
capsules, the inspected digit, the last iteration) wherever it appears; a part that computed its
own statistic, or rounded it another way, fails here.
"""

import re

import numpy as np
import pytest
import torch
from test_apptest import SAMPLES, change_bars, change_captions, change_texts, new_app, open_part

import capsnet
from app import pixel_arrays, routing_measures
from app.sentences import fmt2, fmt_signed
from capsnet.preprocess import to_mnist

NUMBER = r"([+−-]?\d+(?:\.\d+)?(?:e-?\d+)?)"


@pytest.fixture(scope="module")
def model():
    return capsnet.load_model(capsnet.DEFAULT_CHECKPOINT)


def traced(model, index: int) -> dict:
    x = torch.from_numpy(to_mnist(SAMPLES[index]).astype(np.float32))[None, None]
    with torch.no_grad():
        out = model(x, iterations=3, trace=True)
    return {
        "coupling": out.coupling[:, 0].numpy(),
        "u_hat": out.u_hat[0].numpy(),
        "v": out.poses_per_iter[:, 0].numpy(),
        "lengths_per_iter": out.lengths_per_iter[:, 0].double().numpy(),
        "prediction": int(out.prediction[0]),
    }


def move_numbers(text: str) -> dict:
    """The numbers of sentences.move_sentence, as the page printed them."""
    steps = rf"\((\d+) by more than {NUMBER}, (\d+) by more than {NUMBER}\)"
    m = re.search(
        rf"In iteration (\d+), c_i(\d) lies within ±{NUMBER} of 0\.1 for 99% of the (\d+) primary "
        rf"capsules \(the colour range of the per-capsule Δc views; (\d+) lie beyond it\)\. Since iteration 1 it "
        rf"rose for (\d+) of them {steps} and fell for (\d+) {steps}; the largest rise is {NUMBER}, the "
        rf"largest fall {NUMBER}\.",
        text,
    )  # fmt: skip
    assert m, f"no move sentence in: {text}"
    it, digit, limit, n, beyond, rose, r1, s1, r2, s2, fell, f1, t1, f2, t2, rise, fall = m.groups()
    assert s1 == t1 and s2 == t2, "the rises and the falls are counted against different steps"
    return dict(iteration=int(it), digit=int(digit), limit=limit, n=int(n), beyond=int(beyond), rose=int(rose),
                fell=int(fell), steps=(float(s1), float(s2)), rose_by=(int(r1), int(r2)), fell_by=(int(f1), int(f2)),
                rise=rise, fall=fall)  # fmt: skip


def expected_move(move: routing_measures.CouplingMove) -> dict:
    return dict(iteration=move.iteration, digit=move.digit, limit=fmt2(move.limit), n=move.n, beyond=move.beyond,
                rose=move.rose, fell=move.fell, steps=move.steps, rose_by=move.rose_by, fell_by=move.fell_by,
                rise=fmt_signed(move.largest_rise), fall=fmt_signed(move.largest_fall))  # fmt: skip


def counted_here(coupling: np.ndarray, digit: int) -> dict:
    """How c_i,digit of the 1152 primary capsules moved from the first iteration to the last, counted
    here with numpy on the library's trace (not with routing_measures). Float32 rounding (a change
    under 1e-6) is no move."""
    first, last = coupling[0, :, digit].astype(np.float64), coupling[-1, :, digit].astype(np.float64)
    d = last - first  # (1152,)
    d[np.abs(d) < 1e-6] = 0.0
    return dict(rose=int((d > 0).sum()), fell=int((d < 0).sum()), steps=(0.01, 0.05),
                rose_by=(int((d > 0.01).sum()), int((d > 0.05).sum())),
                fell_by=(int((d < -0.01).sum()), int((d < -0.05).sum())))  # fmt: skip


@pytest.mark.parametrize("index", [11, 4])
def test_every_number_in_the_routing_text_is_the_measures_output(shipped, model, index):
    r = traced(model, index)
    digit = r["prediction"]
    move = routing_measures.coupling_move(r["coupling"], digit)
    assert move.rose + move.fell > 0 and move.beyond > 0  # a case where the numbers say something
    want = expected_move(move)
    at = new_app()
    at.query_params.update({"sample": str(index), "iters": "3"})
    at.run()
    assert not at.exception and at.metric[0].value == str(digit)

    # How c changed: the sentence, the colour range of the per-type pictures and its clipping count.
    text = change_texts(at)
    assert move_numbers(text) == want
    assert f"on the 6×6 grid, on ±{fmt2(move.limit)}" in text
    bars = change_bars(at)  # the three colour bars, over the columns they key
    assert (bars[0]["lo"], bars[0]["hi"], bars[0]["name"]) == (
        f"−{fmt2(move.limit)}",
        f"+{fmt2(move.limit)}",
        "Δc per type",
    )
    # the type panels' captions: the iterations' maps and pictures are one element
    captions = change_captions(at)
    assert f"Δc to {digit} per type; {move.beyond} beyond ±{fmt2(move.limit)}" in captions  # iteration 3
    on_ink = [
        routing_measures.field_map(
            routing_measures.coupling_change(r["coupling"][t, :, digit]), ink=to_mnist(SAMPLES[index])
        )
        for t in range(3)
    ]
    ink_limit = fmt2(pixel_arrays.symmetric_limit(np.stack(on_ink)))
    assert (bars[1]["hi"], bars[1]["name"]) == (f"+{ink_limit}", "Δc on the ink")

    # Votes and agreement: the same sentence and the same colour range, the growth of |s_j|.
    open_part(at, "votes")
    text = " ".join(m.value for m in at.container(key="votes").markdown)
    assert move_numbers(text) == want and f"red rose, blue fell, on ±{fmt2(move.limit)}" in text
    g = routing_measures.vote_growth(r["coupling"], r["u_hat"], r["v"], digit)
    assert f"|s_{digit}| grows {g.s_first:.2f} → {g.s_last:.2f} (+{g.along:.2f} along v_{digit})" in text
    assert f"give {g.top_share:.0%} of it, and half of it comes from {g.half_from} of the 1152" in text

    # Does routing matter: the outcome from the lengths with and without routing, and the same sentence.
    open_part(at, "ablation")
    text = " ".join(m.value for m in at.container(key="routing_ablation").markdown)
    assert move_numbers(text) == want
    lpi = r["lengths_per_iter"]
    off = int(np.argmax(lpi[0]))
    assert f"the network reads {digit} (|v_{digit}| = {lpi[-1, digit]:.2f})" in text
    assert f"it reads {off} (|v_{off}| = {lpi[0, off]:.2f})" in text
    assert ("routing changed the answer" in text) == (off != digit)


@pytest.mark.parametrize("index", [11, 4])
def test_the_routing_text_counts_how_many_capsules_rose_and_fell(shipped, model, index):
    """How many primary capsules' c to the inspected digit rose by more than 0.05, by more than 0.01,
    and how many fell, between the first and the last iteration: the page's numbers against numpy's
    count on the library's own traced forward."""
    r = traced(model, index)
    digit = r["prediction"]
    want = counted_here(r["coupling"], digit)
    assert want["rose_by"][1] > 0 and want["rose_by"][0] > want["rose_by"][1] and want["fell"] > 0
    assert want["rose"] + want["fell"] <= 1152
    at = new_app()
    at.query_params.update({"sample": str(index), "iters": "3"})
    at.run()
    assert not at.exception and at.metric[0].value == str(digit)
    said = move_numbers(change_texts(at))
    assert {k: said[k] for k in want} == want


def test_the_margin_loss_the_overview_states(shipped, model):
    """Eq. 4 written out here, on the lengths the library gives for sample 11."""
    lengths = traced(model, 11)["lengths_per_iter"][-1]
    pred = int(np.argmax(lengths))
    by_hand = sum(
        max(0.0, 0.9 - v) ** 2 if k == pred else 0.5 * max(0.0, v - 0.1) ** 2 for k, v in enumerate(lengths)
    )
    want = f"If this input were labelled {pred}, its margin loss would be $\\sum_k L_k = {by_hand:.4f}$."
    at = new_app()
    at.query_params.update({"sample": "11", "iters": "3"})
    at.run()
    assert want not in " ".join(m.value for m in at.container(key="prediction").markdown)  # closed: not drawn
    at = new_app()
    at.query_params.update({"sample": "11", "iters": "3"})
    at.session_state["formulas"] = True  # the expander open
    at.run()
    assert want in " ".join(m.value for m in at.container(key="prediction").markdown)
