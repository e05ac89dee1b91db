"""The routing views' numbers (app/routing_measures.py, their sentences in app/sentences.py,
the runner in app/ablation.py; issue 10): hand-made inputs with known answers, and
real traced forward passes (a random CapsNet, and the shipped weights on a shipped MNIST digit)."""

from pathlib import Path

import numpy as np
import pytest
import torch

import capsnet
from app import ablation, pixel_arrays, routing_measures, sentences
from app.sentences import fmt_signed

ROOT = Path(__file__).resolve().parents[2]


def _trace(model, image: np.ndarray, iterations: int, gain: float = 1.0) -> dict:
    x = torch.from_numpy(np.asarray(image, dtype=np.float32)).reshape(1, 1, 28, 28)
    with torch.no_grad():
        out = model(x, iterations=iterations, trace=True, routing_gain=gain)
    return {
        "image": np.asarray(image, dtype=np.float32),
        "coupling": out.coupling[:, 0].numpy(),  # (T, 1152, 10)
        "logits": out.logits[:, 0].numpy(),
        "u_hat": out.u_hat[0].numpy(),  # (1152, 10, 16)
        "v": out.poses_per_iter[:, 0].numpy(),  # (T, 10, 16)
        "lengths_per_iter": out.lengths_per_iter[:, 0].numpy(),
        "primary_len": out.primary[0].norm(dim=-1).numpy(),
        "prediction": int(out.prediction[0]),
    }


@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(0)
    return capsnet.CapsNet().eval()


@pytest.fixture(scope="module")
def random_trace(random_model):
    rng = np.random.default_rng(0)
    return _trace(random_model, rng.random((28, 28)), iterations=3)


@pytest.fixture(scope="module")
def shipped_model():
    return capsnet.load_model(capsnet.DEFAULT_CHECKPOINT)


@pytest.fixture(scope="module")
def shipped_image():
    samples = np.load(ROOT / "app" / "samples.npz")
    return samples["images"][1].astype(np.float32) / 255  # a test-set 0 (label checked in a test)


@pytest.fixture(scope="module")
def shipped_trace(shipped_model, shipped_image):
    return _trace(shipped_model, shipped_image, iterations=3)


def _s(trace: dict) -> np.ndarray:
    """s_j of every iteration, straight from Procedure 1: sum_i c_ij u_hat_j|i. (T, 10, 16)."""
    return np.einsum("tij,ijh->tjh", trace["coupling"].astype(np.float64), trace["u_hat"].astype(np.float64))


# ---------------------------------------------------------------- vote_projection, project
def _votes(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(1152, 16)) * 0.05, rng.normal(size=16)


def test_vote_parallel_to_v_lands_on_the_x_axis_at_its_length():
    U, v = _votes()
    U[7] = 0.8 * v / np.linalg.norm(v)  # a vote of length 0.8 along v
    U[8] = -0.3 * v / np.linalg.norm(v)  # and one of length 0.3 against it
    x, y, axes = routing_measures.vote_projection(U, v * 0.37)  # |v| does not matter, only its direction
    assert x.shape == y.shape == (1152,) and axes.shape == (2, 16)
    assert x[7] == pytest.approx(0.8, abs=1e-12) and y[7] == pytest.approx(0.0, abs=1e-12)
    assert x[8] == pytest.approx(-0.3, abs=1e-12) and y[8] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(axes[0], v / np.linalg.norm(v), atol=1e-12)  # x axis is v's direction
    np.testing.assert_allclose(axes @ axes.T, np.eye(2), atol=1e-12)  # orthonormal
    assert abs(axes[1] @ v) < 1e-10  # y axis orthogonal to v
    np.testing.assert_allclose(np.column_stack([x, y]), routing_measures.project(U, axes), atol=1e-12)
    np.testing.assert_allclose(x, U @ (v / np.linalg.norm(v)), atol=1e-12)


def test_y_axis_is_the_widest_spread_across_v():
    """Votes spread mostly along e_3 across v = e_0 (and a little along e_5): y must be e_3."""
    rng = np.random.default_rng(1)
    U = np.zeros((1152, 16))
    U[:, 0] = rng.normal(size=1152)  # along v: large, but that is x
    U[:, 3] = 0.5 * rng.normal(size=1152)
    U[:, 5] = 0.1 * rng.normal(size=1152)
    v = np.zeros(16)
    v[0] = 0.9
    x, y, axes = routing_measures.vote_projection(U, v)
    assert abs(axes[1, 3]) > 0.999
    np.testing.assert_allclose(np.abs(y), np.abs(U[:, 3]), atol=0.01)
    for seed in range(8):  # sign convention: the vote furthest off the x axis lies above it
        votes, _ = _votes(seed)
        _, y, _ = routing_measures.vote_projection(votes, v)
        assert y[np.argmax(np.abs(y))] > 0
    # a common offset across v (every vote +2 along e_4) is not spread: y still follows e_3
    U[:, 4] = 2.0
    x, y, axes = routing_measures.vote_projection(U, v)
    assert abs(axes[1, 3]) > 0.999


def test_vote_projection_handles_a_zero_v():
    U = np.zeros((1152, 16))
    U[:, 2] = np.linspace(-1, 1, 1152)  # the votes lie along e_2
    U[:, 9] = 0.01 * np.cos(np.arange(1152))
    x, y, axes = routing_measures.vote_projection(U, np.zeros(16))
    assert np.isfinite(x).all() and np.isfinite(y).all()
    np.testing.assert_allclose(axes @ axes.T, np.eye(2), atol=1e-12)
    assert abs(axes[0, 2]) > 0.999  # x falls back to the votes' own leading direction
    # every vote the same (no spread at all) and v in no basis direction: y is a basis vector made orthogonal
    same = np.tile(np.linspace(0.1, 0.4, 16), (1152, 1))
    x, y, axes = routing_measures.vote_projection(same, np.arange(1.0, 17.0))
    np.testing.assert_allclose(axes @ axes.T, np.eye(2), atol=1e-12)
    # nothing at all: still two orthonormal axes and every vote at the origin
    x, y, axes = routing_measures.vote_projection(np.zeros((1152, 16)), np.zeros(16))
    np.testing.assert_allclose(axes @ axes.T, np.eye(2), atol=1e-12)
    assert not x.any() and not y.any()


def test_project_puts_s_on_the_same_axes_as_the_votes(shipped_trace):
    j = shipped_trace["prediction"]
    v = shipped_trace["v"]
    x, y, axes = routing_measures.vote_projection(shipped_trace["u_hat"][:, j], v[-1, j])
    s = _s(shipped_trace)[:, j]  # (T, 16)
    path = routing_measures.project(s, axes)
    assert path.shape == (3, 2)
    # the last s_j lies along the last v_j: on the x axis at |s_j|
    assert path[-1, 0] == pytest.approx(np.linalg.norm(s[-1]), rel=1e-5)
    assert abs(path[-1, 1]) < 1e-5 * np.linalg.norm(s[-1])
    # s_j is the c-weighted sum of the votes, so the projections add up the same way
    c = shipped_trace["coupling"][:, :, j].astype(np.float64)
    np.testing.assert_allclose(path[:, 0], c @ x, rtol=1e-9)
    np.testing.assert_allclose(path[:, 1], c @ y, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- coupling_change, symmetric_limit
def test_coupling_change_sums_to_zero_over_digits_on_a_traced_forward(random_trace):
    c = random_trace["coupling"]
    dc = routing_measures.coupling_change(c)
    assert dc.shape == (3, 1152, 10) and dc.dtype == np.float64
    np.testing.assert_allclose(dc.sum(axis=-1), 0.0, atol=1e-6)  # every capsule, every iteration
    np.testing.assert_allclose(dc + 0.1, c, atol=1e-12)
    np.testing.assert_allclose(dc[0], 0.0, atol=1e-8)  # iteration 1 is uniform
    assert np.abs(dc[-1]).max() > 0  # routing moved something


def test_symmetric_limit():
    assert pixel_arrays.symmetric_limit(np.array([-0.3, 0.2, 0.01])) == pytest.approx(0.3)
    assert pixel_arrays.symmetric_limit(np.array([[0.05, np.nan], [-0.07, 0.0]])) == pytest.approx(0.07)
    assert 0 < pixel_arrays.symmetric_limit(np.zeros((3, 4))) < 1e-3  # all zero: a tiny positive range
    assert pixel_arrays.symmetric_limit(np.array([])) > 0
    # 0..100: the 90th percentile is 90
    assert pixel_arrays.symmetric_limit(np.arange(101.0), quantile=0.9) == pytest.approx(90.0)
    assert pixel_arrays.symmetric_limit(-np.arange(101.0), quantile=0.5) == pytest.approx(50.0)
    assert pixel_arrays.saturated(np.array([-0.5, 0.1, 0.2, 0.3]), 0.2) == 2


# ---------------------------------------------------------------- per-position maps
def test_per_position_type_maps_and_field_map():
    w = np.zeros(1152)
    w[5 * 36 + 2 * 6 + 4] = 0.5  # type 5, row 2, col 4
    w[9 * 36 + 2 * 6 + 4] = -0.2  # type 9, same position
    w[0 * 36 + 0 * 6 + 1] = 0.1  # type 0, row 0, col 1
    maps = routing_measures.type_maps(w)
    assert maps.shape == (32, 6, 6) and maps[5, 2, 4] == 0.5 and maps[9, 2, 4] == -0.2
    pos = routing_measures.per_position(w)
    expected = np.zeros((6, 6))
    expected[2, 4], expected[0, 1] = 0.3, 0.1
    np.testing.assert_allclose(pos, expected, atol=1e-15)
    np.testing.assert_allclose(routing_measures.field_map(w), routing_measures.evidence_map(w))
    ink = np.zeros((28, 28))
    ink[10, 12] = 1.0
    np.testing.assert_allclose(
        routing_measures.field_map(w, ink=ink), routing_measures.ink_weighted_evidence(w, ink).map
    )


# ---------------------------------------------------------------- ink_weighted_evidence
def test_ink_weighted_evidence_by_hand():
    """One capsule at grid position (0, 0) (field rows 0-16, cols 0-16) with share 2.0 and two
    inked pixels in that field: the share splits 1:3 between them; nothing anywhere else."""
    shares = np.zeros(1152)
    shares[3 * 36 + 0] = 2.0
    image = np.zeros((28, 28))
    image[1, 1], image[15, 3] = 0.25, 0.75
    image[25, 25] = 1.0  # outside field (0, 0): no share of that capsule may land here
    ev = routing_measures.ink_weighted_evidence(shares, image)
    assert ev.map[1, 1] == pytest.approx(0.5) and ev.map[15, 3] == pytest.approx(1.5)
    assert np.count_nonzero(ev.map) == 2
    assert ev.painted == pytest.approx(2.0) and ev.no_ink == 0.0


def test_ink_weighted_evidence_is_zero_off_the_ink_and_adds_up(random_trace):
    """Real shares of a traced forward; ink only in the top-left corner, rows and cols 2..5,
    which only the fields of grid rows and cols 0..2 reach (field r covers rows 2r..2r+16)."""
    j = random_trace["prediction"]
    shares = routing_measures.agreement_shares(
        random_trace["coupling"], random_trace["u_hat"], random_trace["v"]
    )[-1, :, j]
    image = np.zeros((28, 28))
    image[2:6, 2:6] = np.linspace(0.1, 1.0, 16).reshape(4, 4)
    ev = routing_measures.ink_weighted_evidence(shares, image)
    assert (ev.map[image == 0] == 0).all()  # no evidence where there is no ink
    expected_empty = np.ones((6, 6), dtype=bool)
    expected_empty[:3, :3] = False
    np.testing.assert_array_equal(ev.empty_fields, expected_empty)
    per_pos = shares.astype(np.float64).reshape(32, 6, 6).sum(axis=0)
    assert ev.painted == pytest.approx(per_pos[:3, :3].sum(), rel=1e-9)
    assert ev.no_ink == pytest.approx(per_pos.sum() - per_pos[:3, :3].sum(), rel=1e-9)
    assert ev.map.sum() == pytest.approx(ev.painted, rel=1e-9)  # the total painted is what had ink to go to
    # the old map spreads the same shares over the background too
    assert np.count_nonzero(routing_measures.evidence_map(shares)[image == 0]) > 600


def test_ink_weighted_evidence_on_the_shipped_digit(shipped_trace):
    j = shipped_trace["prediction"]
    image = shipped_trace["image"]
    shares = routing_measures.agreement_shares(
        shipped_trace["coupling"], shipped_trace["u_hat"], shipped_trace["v"]
    )[-1, :, j]
    ev = routing_measures.ink_weighted_evidence(shares, image)
    assert (ev.map[image == 0] == 0).all()
    assert ev.painted + ev.no_ink == pytest.approx(float(shares.astype(np.float64).sum()), rel=1e-6)
    assert ev.map.sum() == pytest.approx(ev.painted, rel=1e-9)


# ---------------------------------------------------------------- parse_tree_flows
def _check_flows_add_up(flows, s_len: np.ndarray) -> None:
    for d, j in enumerate(flows.digits):
        into = flows.link_value[flows.link_target == flows.rest + 1 + d].sum()
        assert into == pytest.approx(flows.support[j], rel=1e-9)
        assert into - flows.against[j] == pytest.approx(s_len[j], rel=1e-5, abs=1e-9)
    assert (flows.link_value > 0).all()
    np.testing.assert_allclose(flows.s_along_v, s_len, rtol=1e-5)


@pytest.mark.parametrize("group", ["position", "type"])
@pytest.mark.parametrize("per_digit", [False, True])
def test_parse_tree_flows_add_up_to_the_length_of_s(random_trace, shipped_trace, group, per_digit):
    """Into every digit: the links minus what was sent against v_j = |s_j| (s from c and u_hat here)."""
    for trace in (random_trace, shipped_trace):
        s = _s(trace)
        for t in range(3):
            flows = routing_measures.parse_tree_flows(
                trace["coupling"][t], trace["u_hat"], trace["v"][t], group, 5, per_digit=per_digit
            )
            _check_flows_add_up(flows, np.linalg.norm(s[t], axis=-1))
            if not per_digit:
                assert len(flows.sources) <= 5
            assert len(flows.labels) == len(flows.sources) + 1 + 10
            assert flows.net.shape == ((36 if group == "position" else 32), 10)


def test_parse_tree_flows_of_the_shipped_model_match_its_lengths(shipped_trace):
    """|s_j| from the model's own |v_j| = |s|^2 / (1 + |s|^2), and only the digits asked for."""
    v = shipped_trace["lengths_per_iter"][-1].astype(np.float64)
    j = shipped_trace["prediction"]
    flows = routing_measures.parse_tree_flows(shipped_trace["coupling"][-1], shipped_trace["u_hat"], shipped_trace["v"][-1],
                               digits=[j, 3])  # fmt: skip
    assert flows.digits == [j, 3] and len(flows.labels) == len(flows.sources) + 3
    _check_flows_add_up(flows, np.sqrt(v / (1 - v)))
    assert f"digit {j}: |s| = {np.sqrt(v[j] / (1 - v[j])):.2f}" in flows.labels[-2]


def test_parse_tree_flows_by_hand():
    """Uniform c = 0.1 and v_2 = e_0. Position 3: type 0 votes +1.0 along e_0, type 1 votes -0.4
    (net 0.1 * 0.6 = 0.06); position 7: type 0 votes -0.5 (net -0.05, against); position 20:
    type 4 votes 0.3 (0.03); position 11: type 2 votes 0.2 off-axis (along e_1: contributes 0)."""
    u_hat = np.zeros((1152, 10, 16))
    u_hat[0 * 36 + 3, 2, 0] = 1.0
    u_hat[1 * 36 + 3, 2, 0] = -0.4
    u_hat[0 * 36 + 7, 2, 0] = -0.5
    u_hat[4 * 36 + 20, 2, 0] = 0.3
    u_hat[2 * 36 + 11, 2, 1] = 0.2
    v = np.zeros((10, 16))
    v[2, 0] = 0.5
    flows = routing_measures.parse_tree_flows(
        np.full((1152, 10), 0.1), u_hat, v, "position", top_k=1, digits=[2]
    )
    assert flows.sources == [3] and flows.labels[0] == "position (0, 3)"
    assert list(flows.link_source) == [0, 1] and list(flows.link_target) == [2, 2]
    np.testing.assert_allclose(flows.link_value, [0.06, 0.03])  # top group, then the rest
    assert flows.against[2] == pytest.approx(0.05) and flows.support[2] == pytest.approx(0.09)
    assert flows.s_along_v[2] == pytest.approx(0.04)
    by_type = routing_measures.parse_tree_flows(
        np.full((1152, 10), 0.1), u_hat, v, "type", top_k=3, digits=[2]
    )
    assert by_type.sources == [0, 4] and by_type.net[0, 2] == pytest.approx(
        0.05
    )  # type 0: 0.1 - 0.05, then 0.03
    assert by_type.net[1, 2] == pytest.approx(-0.04) and by_type.against[2] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="group"):
        routing_measures.parse_tree_flows(np.full((1152, 10), 0.1), u_hat, v, "row")
    with pytest.raises(ValueError, match="top_k"):
        routing_measures.parse_tree_flows(np.full((1152, 10), 0.1), u_hat, v, top_k=0)


# ---------------------------------------------------------------- ablation
def _squash_by_hand(s: np.ndarray) -> np.ndarray:
    n2 = (s * s).sum(-1, keepdims=True)
    return n2 / (1 + n2) * s / np.sqrt(n2)


@pytest.mark.parametrize("which", ["random", "shipped"])
def test_ablation_no_routing_is_the_uniform_squash(which, random_model, shipped_model, shipped_image):
    model = random_model if which == "random" else shipped_model
    image = np.random.default_rng(3).random((28, 28)) if which == "random" else shipped_image
    trace = _trace(model, image, iterations=3)
    u_hat = trace["u_hat"].astype(np.float64)
    expected = np.linalg.norm(_squash_by_hand(0.1 * u_hat.sum(axis=0)), axis=-1)  # (10,)
    result = ablation.ablation(model, image, iterations=3)
    np.testing.assert_allclose(result.lengths_no_routing, expected, rtol=1e-4)
    np.testing.assert_allclose(result.lengths_no_routing, trace["lengths_per_iter"][0], rtol=1e-6)
    np.testing.assert_allclose(result.lengths_routed, trace["lengths_per_iter"][-1], rtol=1e-6)
    assert result.prediction_routed == trace["prediction"]
    assert result.prediction_no_routing == int(np.argmax(expected))


def test_ablation_passes_iterations_and_gain_on(shipped_model, shipped_image):
    strong = ablation.ablation(shipped_model, shipped_image, iterations=4, routing_gain=5.0)
    trace = _trace(shipped_model, shipped_image, iterations=4, gain=5.0)
    np.testing.assert_allclose(strong.lengths_routed, trace["lengths_per_iter"][-1], rtol=1e-6)
    assert strong.iterations == 4 and strong.routing_gain == 5.0
    paper = ablation.ablation(
        shipped_model, torch.from_numpy(shipped_image).reshape(1, 1, 28, 28), iterations=4
    )
    assert not np.allclose(strong.lengths_routed, paper.lengths_routed, rtol=1e-3)
    np.testing.assert_array_equal(strong.lengths_no_routing, paper.lengths_no_routing)


# ---------------------------------------------------------------- sentences
def _ablation(off, on, iterations=3, gain=1.0) -> routing_measures.Ablation:
    return routing_measures.Ablation(
        np.asarray(off, dtype=float), np.asarray(on, dtype=float), iterations, gain
    )


def _coupling_moved() -> np.ndarray:
    """(3, 1152, 10): in iteration 3, c to digit 4 rises by 0.06 for capsules 0..4, by 0.02 for
    5..14, falls by 0.03 for 15..17 and by 0.005 for 18..1151; the other digits absorb it."""
    c = np.full((3, 1152, 10), 0.1)
    delta = np.full(1152, -0.005)
    delta[0:5], delta[5:15], delta[15:18] = 0.06, 0.02, -0.03
    c[2, :, 4] += delta
    c[2, :, 5] -= delta  # each capsule's c still sums to 1
    return c


def test_coupling_move_by_hand():
    m = routing_measures.coupling_move(_coupling_moved(), digit=4)
    assert (m.digit, m.iteration, m.n) == (4, 3, 1152)
    # |delta| sorted: 1134 x 0.005, 10 x 0.02, 3 x 0.03, 5 x 0.06. The 99th percentile (numpy's linear
    # interpolation at rank 0.99 * 1151 = 1139.49) lies among the 0.02s: 0.02.
    assert m.limit == pytest.approx(0.02)
    assert m.beyond == 8  # the three 0.03s and five 0.06s lie outside ±0.02
    assert (m.rose, m.fell) == (15, 1137)  # 5 + 10 rose; 3 + 1134 fell, the 0.005s too
    assert m.steps == (0.01, 0.05)
    assert m.rose_by == (15, 5)  # by more than 0.01: the 0.06s and 0.02s; by more than 0.05: the 0.06s
    assert m.fell_by == (3, 0)  # by more than 0.01: the 0.03s; none by more than 0.05
    assert m.largest_rise == pytest.approx(0.06) and m.largest_fall == pytest.approx(-0.03)
    other = routing_measures.coupling_move(_coupling_moved(), digit=5)  # the mirror image
    assert (other.rose, other.fell, other.rose_by, other.fell_by) == (1137, 15, (3, 0), (15, 5))
    assert other.largest_fall == pytest.approx(-0.06)
    none = routing_measures.coupling_move(np.full((1, 1152, 10), 0.1), digit=0)
    assert (none.rose, none.fell, none.beyond, none.largest_rise, none.largest_fall) == (0, 0, 0, 0.0, 0.0)
    assert none.rose_by == none.fell_by == (0, 0)


def test_move_sentence_states_the_numbers():
    text = sentences.move_sentence(routing_measures.coupling_move(_coupling_moved(), digit=4))
    assert text.startswith(
        "In iteration 3, c_i4 lies within ±0.020 of 0.1 for 99% of the 1152 primary capsules"
    )
    assert "8 lie beyond it" in text
    assert (
        "Since iteration 1 it rose for 15 of them (15 by more than 0.01, 5 by more than 0.05) and fell for "
        "1137 (3 by more than 0.01, 0 by more than 0.05)" in text
    )
    assert "the largest rise is +0.060, the largest fall −0.030." in text
    one = sentences.move_sentence(routing_measures.coupling_move(np.full((1, 1152, 10), 0.1), digit=2))
    assert one == "With 1 iteration there is no routing: c_i2 = 0.1 for all 1152 primary capsules."
    # Gain 0 keeps c uniform: what is left is float32's rounding of 0.1, not a move.
    still = np.full((3, 1152, 10), np.float32(0.1), dtype=np.float32)
    still[2, :5, 1] += np.float32(3e-8)
    m = routing_measures.coupling_move(still, digit=1)
    assert (m.rose, m.fell, m.beyond, m.largest_rise, m.largest_fall) == (0, 0, 0, 0.0, 0.0)
    assert m.rose_by == m.fell_by == (0, 0)
    assert (
        sentences.move_sentence(m)
        == "In iteration 3, c_i1 is still 0.1 for all 1152 primary capsules: routing moved none."
    )
    assert fmt_signed(0.0) == "0" and fmt_signed(-0.0123) == "−0.012"


def test_outcome_and_overview_sentences():
    off = np.full(10, 0.05)
    off[7] = 0.95
    on = off.copy()
    on[7], on[1] = 0.97, 0.30
    text = sentences.outcome_sentence(_ablation(off, on))
    assert text.startswith("With 3 iterations of routing the network reads 7 (|v_7| = 0.97); without routing")
    assert "it reads 7 (|v_7| = 0.95): routing did not change the answer; it made |v_7| 0.02 longer." in text
    assert sentences.outcome_sentence(_ablation(off, off)).endswith("and |v_7| stays about the same.")
    overview = sentences.overview_sentence(_ablation(off, on))
    assert overview.startswith(
        "The network reads **7**: its digit capsule is the longest, |v_7| = 0.97 (above m⁺"
    )
    assert "the runner-up is 1 (|v_1| = 0.30)" in overview
    assert overview.endswith(
        "Without routing (1 iteration, c = 0.1 everywhere) it would also read 7 (|v_7| = 0.95): routing did not "
        "change the answer; it made |v_7| 0.02 longer."
    )

    off[4], off[9] = 0.60, 0.55
    on = off.copy()
    on[4], on[9], on[7] = 0.50, 0.80, 0.05
    changed = sentences.outcome_sentence(_ablation(off, on, iterations=5, gain=3.0))
    assert "With 5 iterations of routing with gain 3 the network reads 9 (|v_9| = 0.80)" in changed
    assert "it reads 7 (|v_7| = 0.95): **routing changed the answer** from 7 to 9." in changed
    overview = sentences.overview_sentence(_ablation(off, on))
    assert "fairly sure" in overview and "runner-up is 4" in overview
    assert overview.endswith("it would read 7 (|v_7| = 0.95): **routing changed the answer**.")
    one = sentences.outcome_sentence(_ablation(off, off, iterations=1))
    assert (
        one
        == "With 1 iteration there is no routing (c = 0.1 everywhere): the network reads 7 (|v_7| = 0.95)."
    )


def test_vote_growth_by_hand():
    """Digit 0, v along e_0. Capsule 5 (vote 2.0 e_0) goes from c = 0.1 to 0.3, capsule 6 (vote 1.0 e_0)
    from 0.1 to 0.2, capsule 7 (vote -1.0 e_0) from 0.1 to 0.15: growth along v = 0.4 + 0.1 - 0.05.
    Capsules 8 and 9 vote ±1.5 e_1 (longer than capsule 6's vote) at a constant c: they cancel."""
    u_hat = np.zeros((1152, 10, 16))
    u_hat[5, 0, 0], u_hat[6, 0, 0], u_hat[7, 0, 0] = 2.0, 1.0, -1.0
    u_hat[8, 0, 1], u_hat[9, 0, 1] = 1.5, -1.5
    c = np.full((2, 1152, 10), 0.1)
    c[1, 5, 0], c[1, 6, 0], c[1, 7, 0] = 0.3, 0.2, 0.15
    v = np.zeros((2, 10, 16))
    v[:, 0, 0] = 0.5
    g = routing_measures.vote_growth(c, u_hat, v, digit=0, top_n=2)
    np.testing.assert_array_equal(g.top, [5, 8])  # the two longest votes, not the two largest gains
    assert g.along == pytest.approx(0.45)
    assert g.top_share == pytest.approx(0.4 / 0.45)
    assert g.half_from == 1  # capsule 5 alone gives 0.4 >= 0.225
    assert g.s_first == pytest.approx(0.1 * (2.0 + 1.0 - 1.0)) and g.s_last == pytest.approx(0.6 + 0.2 - 0.15)
    assert g.turn == pytest.approx(0.0, abs=1e-12)
    text = sentences.growth_sentence(g)
    assert text.startswith("|s_0| grows 0.20 → 0.65 (+0.45 along v_0)")
    assert "the 2 primary capsules with the longest votes give 89% of it" in text
    assert "half of it comes from 1 of the 1152" in text
    # the top 4: 5, 8, 9, then 6 or 7 (both 1.0): 6 by index
    top6 = routing_measures.vote_growth(c, u_hat, v, digit=0, top_n=4)
    assert top6.top_share == pytest.approx(0.5 / 0.45)  # more than all of it: capsule 7 took some back
    c[1, 9, 0] = 0.3  # the e_1 votes no longer cancel: s turns, and the turn is the difference
    turned = routing_measures.vote_growth(c, u_hat, v, digit=0)
    s_first, s_last = np.array([0.2, 0.0]), np.array([0.65, 0.15 - 0.45])
    assert turned.turn == pytest.approx(np.linalg.norm(s_first) - s_first[0])
    assert turned.s_last == pytest.approx(np.linalg.norm(s_last))


def test_vote_growth_without_growth_says_so():
    u_hat = np.zeros((1152, 10, 16))
    u_hat[:, 3, 0] = 0.1
    v = np.zeros((2, 10, 16))
    v[:, 3, 0] = 0.4
    g = routing_measures.vote_growth(np.full((2, 1152, 10), 0.1), u_hat, v, digit=3)
    assert g.along == 0 and np.isnan(g.top_share) and g.half_from == 0
    assert "routing gave no capsule more weight" in sentences.growth_sentence(g)


def test_vote_growth_on_the_shipped_model(shipped_trace):
    """The shipped weights on a test-set 0: |s_0| grows over the iterations, a handful of the
    1152 primary capsules give half of the growth, and the decomposition is exact."""
    j = shipped_trace["prediction"]
    assert j == 0
    g = routing_measures.vote_growth(
        shipped_trace["coupling"], shipped_trace["u_hat"], shipped_trace["v"], j, top_n=20
    )
    s = np.linalg.norm(_s(shipped_trace)[:, j], axis=-1)
    assert g.s_first == pytest.approx(s[0], rel=1e-9) and g.s_last == pytest.approx(s[-1], rel=1e-9)
    assert g.s_last - g.s_first == pytest.approx(g.along - g.turn, rel=1e-9)
    assert g.turn >= 0 and g.contribution.sum() == pytest.approx(g.along)
    assert g.s_last > 1.5 * g.s_first
    assert 0.5 < g.top_share <= 1.5 and 1 <= g.half_from <= 20


def test_ablation_from_a_trace_reads_its_first_and_last_iteration():
    lpi = np.array([[0.1] * 10, [0.2] * 10, [0.3] * 10])
    lpi[0, 4], lpi[2, 9] = 0.8, 0.9
    a = routing_measures.Ablation.from_trace(lpi, routing_gain=2.0)
    assert (a.prediction_no_routing, a.prediction_routed, a.iterations, a.routing_gain) == (4, 9, 3, 2.0)
    assert a.changed and a.lengths_no_routing[4] == 0.8 and a.lengths_routed[9] == 0.9
