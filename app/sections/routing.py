"""The routing view: routing by agreement for the inspected digit capsule j, in five parts of
which only the chosen one is computed.

In a trained paper model the coupling coefficients c move only a little from 0.1 (the votes
u_hat are short, so u_hat . v moves the logits b by hundredths), yet a few capsules with long votes
can more than double |s_j|. How far c moved is defined once (routing_measures.coupling_move: the 1152
primary capsules, digit j, the last iteration) and every part quotes it the same way; every Δc
picture uses its colour range.

Parts, each in its own keyed container: how c changed (`routing_change`), votes and agreement
(`votes`), the parse tree (`parse_tree`), does routing matter (`routing_ablation`), one primary
capsule (`inspector`). An expander above them runs the same parts with a routing gain (not the paper).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

import capsnet
from app import figures as F
from app import pixel_arrays, routing_measures, sentences
from app.cache import agreement, forward, picture
from app.capsule_map import bar_item, capsule_map, digit_bars, image_item, payload, picked, type_panels
from app.palette import COUPLING_SCALE, DIVERGING
from app.sentences import fmt2
from app.view_context import ViewContext
from capsnet.model import NUM_PRIMARY

ITER_COUPLING_WIDTH = 760  # px: the absolute coupling picture of an iteration
MAX_GAIN = 20.0
PAPER_GAIN = 1.0  # the routing gain of the paper's Procedure 1
GAIN_KEY = "routing_gain"  # the experiment's slider: session state holds the chosen gain
# The parts: share-link name (?part=) -> label. Only the chosen part is computed.
PARTS = {"change": "How c changed", "votes": "Votes and agreement", "tree": "Parse tree",
         "ablation": "Does routing matter?", "inspector": "One primary capsule"}  # fmt: skip
DEFAULT_PART = "change"
PART_KEY = "routing_part"  # the parts' control: session state holds the chosen part's label
ITERATION_ROWS = "iteration_rows"  # the key of how c changed's text, colour bars, maps and pictures
ABSOLUTE_ROWS = "absolute_rows"  # the same on the absolute 0..1 scale (text, colour bar, pictures)


def part() -> str:
    """The chosen part, by share-link name."""
    label = st.session_state.get(PART_KEY)
    return next((name for name, text in PARTS.items() if text == label), DEFAULT_PART)


def show(ctx: ViewContext) -> None:
    with st.container(key="routing"):
        _intro()
        gain = _gain_control()
        res = ctx.res
        if gain != PAPER_GAIN:  # the experiment: the same views, with b += gain * (u_hat . v)
            res = forward(ctx.model, ctx.version, ctx.pixel_bytes, ctx.iterations, gain)
            st.warning(
                f"**Experiment, not the paper:** this view routes with gain λ = {gain:g} "
                f"($b_{{ij}} \\mathrel{{+}}= {gain:g}\\,\\hat u_{{j|i}}\\cdot v_j$). The overview and the other "
                f"views keep the paper's routing (λ = 1). Here the prediction is **{res['prediction']}**, "
                f"|v{ctx.digit}| = {res['lengths'][ctx.digit]:.2f}. Set λ back to 1 in the experiment's box to leave it."
            )
        st.segmented_control("Part", list(PARTS.values()), key=PART_KEY, required=True,
                             label_visibility="collapsed")  # fmt: skip
        _show_part(ctx, gain, res)


def _show_part(ctx: ViewContext, gain: float, res: dict) -> None:
    """The chosen part for this input, routed with `gain` (res: its traced forward pass)."""
    model, version, pixel_bytes, pixels = ctx.model, ctx.version, ctx.pixel_bytes, ctx.pixels
    digit, iterations = ctx.digit, ctx.iterations
    st.markdown(
        f"Shown for digit capsule **{digit}** (choose another in the overview). Routing decides how much of "
        "each primary capsule's vote goes to each digit capsule: the coupling coefficients c_ij start "
        "at 0.1 and move towards the digits whose output agrees with the vote."
    )
    move = routing_measures.coupling_move(res["coupling"], digit)
    chosen = part()
    if chosen == "change":
        _how_c_changed(ctx, gain, res)
    elif chosen == "votes":
        _votes(res, digit, move)
    elif chosen == "tree":
        _parse_tree(res, digit)
    elif chosen == "ablation":
        _ablation(res, digit, gain, ctx.meta, move)
    elif chosen == "inspector":
        _inspector(pixels, res, digit, _last_shares(model, version, pixel_bytes, iterations, gain, digit))
    else:  # a part added to PARTS without its branch here
        raise ValueError(f"the routing view draws no part named {chosen!r}")


def _intro() -> None:
    """Routing by agreement in formulas, drawn only while its box is open (on_change="rerun"): KaTeX
    typesets them again whenever the page redraws them, which cost the browser ~20 ms a stroke and,
    drawn while the canvas was blank, delayed the next prediction by ~70 ms (tools/bench_stroke.py)."""
    box = st.expander("How routing works: Procedure 1 in formulas", key="routing_formulas", on_change="rerun")
    if not box.open:
        return
    with box:
        st.markdown(
            "Each primary capsule $i$ predicts every digit capsule, $\\hat u_{j|i} = W_{ij} u_i$ (its "
            "*vote*); the coupling coefficients $c_{ij}$ decide how much of that vote goes to digit $j$. "
            "They start uniform (0.1) and move towards the digits whose output agrees with the vote:"
        )
        st.latex(
            r"c_{ij} = \frac{\exp b_{ij}}{\sum_k \exp b_{ik}},\quad s_j = \sum_i c_{ij}\,\hat u_{j|i},"
            r"\quad v_j = \mathrm{squash}(s_j),\quad b_{ij} \mathrel{+}= \hat u_{j|i}\cdot v_j"
        )


def chosen_gain() -> float:
    """The routing gain λ the reader chose (PAPER_GAIN until they touch the experiment's slider),
    whether or not its box is drawn in this run."""
    return float(st.session_state.get(GAIN_KEY, PAPER_GAIN))


def _gain_control() -> float:
    """The routing gain λ: its slider and text are drawn only while the box is open (on_change="rerun":
    drawn closed, they cost the browser every stroke). Closed, the gain chosen stays in effect (its
    warning says so) until it is set back to 1."""
    box = st.expander(
        "Experiment: stronger routing (not the paper)", key="routing_gain_box", on_change="rerun"
    )
    if not box.open:
        return chosen_gain()
    with box:
        st.markdown(
            "Multiply the agreement added to the routing logits by a gain λ: "
            "$b_{ij} \\mathrel{+}= \\lambda\\,\\hat u_{j|i}\\cdot v_j$. λ = 1 is the paper's Procedure 1, "
            "λ = 0 keeps $c$ uniform. A researcher can see what sharper routing would do to this "
            "input's $c$, lengths and prediction; the network was trained with λ = 1."
        )
        st.session_state.setdefault(GAIN_KEY, PAPER_GAIN)
        gain = st.slider("Routing gain λ", 0.0, MAX_GAIN, step=0.5, key=GAIN_KEY, width=320)
    return float(gain)


# ---------------------------------------------------------------- votes and agreement
def _votes(res: dict, digit: int, move: routing_measures.CouplingMove) -> None:
    c, u_hat, v = res["coupling"], res["u_hat"], res["poses_per_iter"]  # (T,1152,10), (1152,10,16), (T,10,16)
    T = c.shape[0]
    u_j = u_hat[:, digit]  # (1152, 16)
    x, y, axes = routing_measures.vote_projection(u_j, v[-1, digit])
    s = np.einsum("ti,ih->th", c[:, :, digit], u_j)  # (T, 16) s_j per iteration
    path = routing_measures.project(s, axes)  # (T, 2)
    vote_len = np.linalg.norm(u_j, axis=-1)  # (1152,)
    contribution = c[:, :, digit] * vote_len  # (T, 1152)
    delta = routing_measures.coupling_change(c)[:, :, digit]  # (T, 1152)
    growth = routing_measures.vote_growth(c, u_hat, v, digit)
    with st.container(key="votes"):
        st.markdown(
            f"Each point is one of the 1152 votes $\\hat u_{{{digit}|i}}$, drawn in a plane whose "
            f"horizontal axis is the direction of $v_{{{digit}}}$ (so a vote's x is how much it agrees). "
            f"Its **area** is what it adds to $s_{{{digit}}}$ ($c_{{i{digit}}}|\\hat u_{{{digit}|i}}|$), its "
            f"**colour** how $c_{{i{digit}}}$ moved from 0.1: red rose, blue fell, on ±{fmt2(move.limit)}. "
            f"The orange-red path is $s_{{{digit}}}$ after each iteration. Press ▶ to step through the "
            f"iterations.\n\n**This input:** "
            + sentences.growth_sentence(growth)
            + f" The typical vote is short (median $|\\hat u| = {np.median(vote_len):.3f}$), so "
            f"$\\hat u\\cdot v$ moves $b$ by little. " + sentences.move_sentence(move)
        )
        fig = F.votes_animation(x, y, contribution, delta, path, res["primary_len"], digit, limit=move.limit,
                                beyond=move.beyond, path_name=f"s{digit}")  # fmt: skip
        st.plotly_chart(fig, key="votes_chart", alt=f"The 1152 votes for digit {digit} over {T} iterations")


def _last_shares(
    model, version: str, pixel_bytes: bytes, iterations: int, gain: float, digit: int
) -> np.ndarray:
    """Each primary capsule's share of |s_digit| after the last iteration: (1152,) (cached)."""
    return agreement(model, version, pixel_bytes, iterations, gain)[-1, :, digit]


# ---------------------------------------------------------------- how c changed
def _how_c_changed(ctx: ViewContext, gain: float, res: dict) -> None:
    c, pixels, digit = res["coupling"], ctx.pixels, ctx.digit
    with st.container(key="routing_change"):
        absolute = st.toggle(
            "Absolute scale (c on 0..1)", key="absolute_c",
            help="The honest absolute picture: on a 0..1 scale c looks uniform, because it barely moves.",
        )  # fmt: skip
        if absolute:
            shares = _last_shares(ctx.model, ctx.version, ctx.pixel_bytes, ctx.iterations, gain, digit)
            rows = [*_absolute_rows(c, res["primary_len"], digit), _evidence(shares, pixels, digit)]
            capsule_map(ABSOLUTE_ROWS, {"kind": "rows", "rows": rows, "widths": [3, 1]})
        else:  # the sentence, colour bars, iterations and evidence: one element, made by prepare
            rows = change_rows(ctx.model, ctx.version, ctx.pixel_bytes, ctx.iterations, gain, digit)
            capsule_map(ITERATION_ROWS, rows, _open_primary(ITERATION_ROWS))


def _evidence(shares: np.ndarray, pixels: np.ndarray, digit: int) -> dict:
    """Where the evidence for `digit` comes from, on the ink: a row of a "rows" element."""
    ink = routing_measures.ink_weighted_evidence(shares, pixels)
    ev = np.clip(ink.map, 0.0, None)
    return {
        "note": (  # plain text, no TeX: see sentences.move_sentence
            f"**Where the evidence for {digit} comes from** after the last iteration: each primary "
            f"capsule's share of |s_{digit}| (c_i{digit} û_{digit}|i · v_{digit} / |v_{digit}|, "
            f"adding up to |s_{digit}| = {shares.sum():.2f}), summed per grid position and spread over "
            f"the **ink** in its receptive field, so empty background gets nothing. Fields with no ink "
            f"hold {ink.no_ink:+.2f} of it, drawn nowhere."
        ),
        "widths": [1],
        "items": [
            image_item(
                picture("evidence_image", pixels, ev, float(ev.max())), f"support for {digit} on the ink"
            )
        ],
    }


@st.cache_resource(max_entries=32, show_spinner=False)
def change_rows(_model, version: str, pixel_bytes: bytes, iterations: int, gain: float, digit: int) -> bytes:
    """How c changed for one input and digit, as one "rows" element (its payload: made and encoded
    once, cached shared and read-only, so that `prepare` makes it while the browser draws the
    prediction): the sentence, the three colour bars over the columns they key, per iteration delta
    c per type, delta c on the ink and the logits b (delta c on the colour range of coupling_move,
    the others on their own printed ranges), and where the evidence comes from. One element: each
    costs the browser a pass of its React on every stroke."""
    res = forward(_model, version, pixel_bytes, iterations, gain)
    pixels = np.frombuffer(pixel_bytes, dtype=np.float32).reshape(28, 28)
    move = routing_measures.coupling_move(res["coupling"], digit)
    delta = routing_measures.coupling_change(res["coupling"])[:, :, digit]  # (T, 1152)
    b_j = res["logits"][:, :, digit]
    T = delta.shape[0]
    b_lim = pixel_arrays.symmetric_limit(b_j, 0.99)
    # (28, 28) each, 0 off the ink
    on_ink = [routing_measures.field_map(delta[t], ink=pixels) for t in range(T)]
    f_lim = pixel_arrays.symmetric_limit(np.stack(on_ink))
    sentence = (  # plain text, no TeX: see sentences.move_sentence
        sentences.move_sentence(move)
        + f" Below, per iteration: **left**, Δc = c_i{digit} − 0.1 for the 32 capsule types "
        f"(numbered panels) on the 6×6 grid, on ±{fmt2(move.limit)}; **middle**, Δc summed over the "
        f"32 types at each grid position and spread over the ink of its 17×17 receptive field, on "
        f"±{fmt2(f_lim)} (the largest value, nothing clipped); **right**, the routing logits b_i{digit} "
        f"that gave this iteration's c, on ±{fmt2(b_lim)} (99th percentile of |b| over all iterations). "
        "Red is up, blue down, white unchanged."
    )
    bars = [
        bar_item(DIVERGING, f"−{fmt2(limit)}", f"+{fmt2(limit)}", name, mid="0")
        for limit, name in zip((move.limit, f_lim, b_lim), ("Δc per type", "Δc on the ink", "b per type"))
    ]
    rows = [{"note": sentence, "items": bars}, {"title": "Iteration 1", "note": (
        "In iteration 1 every c_ij is uniform, 1/10 = 0.1, by definition (b = 0 before any agreement "
        "is added), so Δc and b are 0 everywhere: there is nothing to draw. "
        + (f"Iterations 2 to {T} below show what routing changed." if T > 1 else
           "Choose 2 or more routing iterations in the overview to see c move.")
    )}]  # fmt: skip
    for t in range(1, T):
        beyond = pixel_arrays.saturated(delta[t], move.limit)
        rows.append({"title": f"Iteration {t + 1}", "items": [
            {"map": type_panels(delta[t], move.limit, "Δc", digit),
             "caption": f"Δc to {digit} per type; {beyond} beyond ±{fmt2(move.limit)}"},
            image_item(picture("signed_overlay_image", pixels, on_ink[t], f_lim), f"Δc to {digit} on the ink"),
            {"map": type_panels(b_j[t], b_lim, "b", digit),
             "caption": f"b to {digit} per type (that gave this iteration's c)"},
        ]})  # fmt: skip
    rows.append(_evidence(_last_shares(_model, version, pixel_bytes, iterations, gain, digit), pixels, digit))
    return payload({"kind": "rows", "rows": rows, "widths": [1.45, 1, 1.45]}, clickable=True)


def prepare(ctx: ViewContext) -> None:
    """Compute (into the caches) what the open part will draw for this input, so the page can do
    it while the browser draws the prediction."""
    gain = chosen_gain()
    chosen = part()
    if chosen in ("change", "inspector"):
        agreement(ctx.model, ctx.version, ctx.pixel_bytes, ctx.iterations, gain)
    if chosen == "change" and not st.session_state.get("absolute_c"):
        change_rows(ctx.model, ctx.version, ctx.pixel_bytes, ctx.iterations, gain, ctx.digit)


def _open_primary(key: str):
    """The click handler of a type-panel map: open the clicked primary capsule in the inspector."""

    def handler() -> None:
        from app import views  # views imports this module: imported when a click needs it

        i = picked(key)
        if i is not None and 0 <= i < NUM_PRIMARY:
            views.open_primary(i)

    return handler


def _absolute_rows(c: np.ndarray, primary_len: np.ndarray, digit: int) -> list[dict]:
    """Per iteration: all c on the fixed 0..1 scale, and sum over types of c|u| on the 6x6 grid (rows
    of a "rows" element)."""
    T = c.shape[0]
    rows = [{"note": (
        f"Per iteration: all c_ij on the fixed 0..1 scale (10 digits × 1152 capsules), and Σ over the 32 "
        f"types of c_i{digit} |u_i| on the 6×6 grid."
    ), "items": [bar_item(COUPLING_SCALE, "0", "1", "c, the same 0..1 scale in every iteration")]}]  # fmt: skip
    pos_maps = [routing_measures.type_position_map(c[t, :, digit], primary_len).sum(axis=0) for t in range(T)]
    pos_min, pos_max = min(float(m.min()) for m in pos_maps), max(float(m.max()) for m in pos_maps)
    for t in range(T):
        rows.append({"title": f"Iteration {t + 1}", "items": [
            image_item(picture("coupling_image", c[t], highlight=digit, shown_width=ITER_COUPLING_WIDTH),
                       f"c_ij: rows are digits j = 0 (top) to 9, {digit} outlined; columns the 1152 primary "
                       "capsules i = type·36 + row·6 + col; colour: c on 0..1"),
            image_item(picture("position_image", pos_maps[t], pos_max, pos_min),
                       f"Σ c·|u| to {digit}: {pos_min:.2f} (light) to {pos_max:.2f} (dark)"),
        ]})  # fmt: skip
    return rows


# ---------------------------------------------------------------- parse tree
def _parse_tree(res: dict, digit: int) -> None:
    T = res["coupling"].shape[0]
    with st.container(key="parse_tree"):
        cols = st.columns([1, 1, 2])
        t = cols[0].selectbox("Iteration", range(1, T + 1), index=T - 1, key="tree_iteration") - 1
        group = cols[1].radio(
            "Group primary capsules by", ["position", "type"], horizontal=True, key="tree_group"
        )
        flows = routing_measures.parse_tree_flows(
            res["coupling"][t], res["u_hat"], res["poses_per_iter"][t], group=group
        )
        top = flows.net[:, digit]
        st.markdown(
            f"Capsules are meant to carve a parse tree out of the network: each part sends its vote "
            f"mostly to one whole. Here the {len(flows.sources)} strongest {'grid positions' if group == 'position' else 'capsule types'} "
            f"(by $\\sum_i c_{{ij}}\\,\\hat u_{{j|i}}\\cdot v_j/|v_j|$) feed the 10 digit capsules in "
            f"iteration {t + 1}; link width is that contribution, and the links into digit $j$ add up "
            f"to $|s_j|$ (plus what was sent against $v_j$, printed in its label). The strongest "
            f"{group} for {digit} gives {top.max():.2f} of $|s_{{{digit}}}| = {flows.s_along_v[digit]:.2f}$."
        )
        st.plotly_chart(F.parse_tree_sankey(flows), key="parse_tree_chart",
                        alt=f"Parse tree: primary capsules to digit capsules in iteration {t + 1}")  # fmt: skip


# ---------------------------------------------------------------- does routing matter?
def _ablation(res: dict, digit: int, gain: float, meta: dict, move: routing_measures.CouplingMove) -> None:
    lpi, T = res["lengths_per_iter"], res["coupling"].shape[0]
    result = routing_measures.Ablation.from_trace(lpi, gain)
    with st.container(key="routing_ablation"):
        st.markdown(sentences.outcome_sentence(result) + " " + sentences.move_sentence(move))
        _per_iteration(res)
        left, right = st.columns(2, gap="large")
        with left:
            for values, name, key in ((lpi[0], "no routing (1 iteration, c = 0.1)", "ablation_none"),
                                      (lpi[-1], f"{T} iterations" + ("" if gain == PAPER_GAIN else f", gain {gain:g}"),
                                       "ablation_routed")):  # fmt: skip
                pred = int(np.argmax(values))
                st.markdown(f"**{name}** → reads {pred}")
                capsule_map(key, digit_bars(values, pred, digit, height=170,
                                            label=f"The 10 digit capsule lengths, {name}: {pred} is the longest"))  # fmt: skip
        with right:
            acc, stats = meta.get("iteration_accuracy"), meta.get("routing_stats")
            if acc and stats:
                st.plotly_chart(F.iteration_accuracy_chart(acc), key="iteration_accuracy_chart",
                                alt="Test error per routing-iteration count, ours and the paper's")  # fmt: skip
                st.markdown(_model_sentence(acc, stats))
            else:
                st.info(
                    "This checkpoint's metadata has no per-iteration accuracy. Measure it with "
                    "`python -m capsnet.evaluate --iterations 1 2 3 4 5 --routing-stats --json`."
                )


def _per_iteration(res: dict) -> None:
    """The entropy of c and the ten lengths after each iteration: how far routing got."""
    c = res["coupling"]
    T, entropy = c.shape[0], routing_measures.coupling_entropy(c)
    drop = 1000 * (np.log2(10) - entropy[-1])
    lpi, pred = res["lengths_per_iter"], res["prediction"]
    st.markdown(
        f"Mean entropy of $c_i$ over the 1152 primary capsules falls {drop:.2f} millibits below "
        f"uniform ($\\log_2 10 = 3.32$ bits) by iteration {T}: "
        + ("routing sharpens c noticeably." if drop > 50 else "c stays close to uniform.")
        + f" Each digit capsule's length $|v_j|$ after each iteration: digit {pred} ends at {lpi[-1, pred]:.2f}."
    )
    st.plotly_chart(F.per_iteration_figure(entropy, lpi, pred), key="per_iteration_chart",
                    alt="Entropy of c below uniform, and the ten lengths, after each routing iteration")  # fmt: skip


def _model_sentence(acc: dict, stats: dict) -> str:
    """One sentence from the checkpoint's measured numbers, never a canned claim."""
    acc = {int(k): float(v) for k, v in acc.items()}
    one, three = acc.get(1), acc.get(3)
    n = int(stats.get("test_images", 0))
    diff = (three - one) * n if one is not None and three is not None else None
    verdict = (
        "routing with 3 iterations makes no difference to the test accuracy"
        if diff is not None and abs(diff) < 0.5
        else f"3 iterations get {abs(diff):.0f} more test digits {'right' if diff > 0 else 'wrong'} than none"
        if diff is not None
        else "the test accuracy per iteration count is in the chart"
    )
    return (
        f"**For the model** (measured on {n:,} MNIST test digits, stored in the checkpoint's metadata): "
        f"{verdict} ({100 * one:.2f}% with 1 iteration, {100 * three:.2f}% with 3). After 3 iterations the "
        f"median $c$ to the predicted digit is {stats['median_c_pred']:.4f} (90th percentile "
        f"{stats['p90_c_pred']:.3f}; {100 * stats['frac_c_above_0_2']:.2f}% of primary capsules above 0.2), "
        f"and the mean entropy of $c$ goes "
        + " → ".join(f"{h:.3f}" for h in stats["mean_entropy_bits"])
        + " bits. "
        + _paper_comparison(one, three)
    )


def _paper_comparison(one: float | None, three: float | None) -> str:
    """Our 1-vs-3-iteration gap beside the paper's Table 1 (0.29% error with 1 iteration, 0.25% with 3)."""
    paper = "The paper's Table 1 (grey points) reports 0.29% error with 1 iteration and 0.25% with 3"
    if one is None or three is None:
        return paper + "."
    gap = 100 * (three - one)  # percentage points of accuracy that 3 iterations add
    ours = (
        "routing gains nothing measurable here" if abs(gap) < 0.005
        else f"here 3 iterations {'gain' if gap > 0 else 'lose'} {abs(gap):.2f} points"
    )  # fmt: skip
    return f"{paper} (3 iterations gain 0.04 points there); {ours}."


# ---------------------------------------------------------------- one primary capsule
def _inspector(pixels: np.ndarray, res: dict, digit: int, shares: np.ndarray) -> None:
    c, b, u_hat = res["coupling"], res["logits"], res["u_hat"]
    order = np.argsort(shares)[::-1]  # strongest support for the digit first
    with st.container(key="inspector"):
        st.subheader("One primary capsule")

        def label(i: int) -> str:
            kind, row, col = capsnet.primary_position(i)
            return f"i = {i} (type {kind}, grid ({row}, {col})): share of |s{digit}| {shares[i]:+.3f}"

        i = int(st.selectbox(f"Primary capsule, strongest for digit {digit} first", order.tolist(), key="primary_i",
                             format_func=label))  # fmt: skip
        kind, row, col = capsnet.primary_position(i)
        rows, cols = capsnet.receptive_field(row, col)
        vote_len = np.linalg.norm(u_hat[i], axis=-1)  # (10,)
        left, right = st.columns([1, 2], gap="large")
        with left:
            st.image(picture("field_image", pixels, rows, cols), output_format="PNG",
                     caption=f"its 17×17 receptive field: rows {rows.start}–{rows.stop - 1}, "
                     f"columns {cols.start}–{min(cols.stop, 28) - 1}")  # fmt: skip
        with right:
            T = c.shape[0]
            head = "| | " + " | ".join(str(j) for j in range(10)) + " |\n|---|" + "---|" * 10 + "\n"
            body = "| vote length | " + " | ".join(f"{v:.3f}" for v in vote_len) + " |\n"
            for t in range(T):
                body += f"| c, iteration {t + 1} | " + " | ".join(f"{v:.3f}" for v in c[t, i]) + " |\n"
            for t in range(T):
                body += f"| b, iteration {t + 1} | " + " | ".join(f"{v:+.3f}" for v in b[t, i]) + " |\n"
            st.markdown(
                f"$|u_i| = {res['primary_len'][i]:.3f}$. Its votes to each digit $j$, and the $c$ and "
                f"$b$ that routed them (column {digit} is the inspected digit):\n\n" + head + body
            )
