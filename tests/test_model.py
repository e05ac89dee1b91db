import copy
import math
from pathlib import Path

import pytest
import torch

from capsnet import (
    CapsNet,
    CapsOutput,
    count_parameters,
    dynamic_routing,
    margin_loss,
    primary_position,
    receptive_field,
    reconstruction_loss,
    squash,
    training_loss,
)


def test_squash_keeps_direction_and_bounds_length():
    s = torch.randn(1000, 16, dtype=torch.float64) * torch.logspace(-3, 3, 1000, dtype=torch.float64)[:, None]
    v = squash(s)
    cos = torch.nn.functional.cosine_similarity(s, v, dim=-1)
    assert torch.allclose(cos, torch.ones_like(cos))
    n_s, n_v = s.norm(dim=-1), v.norm(dim=-1)
    assert (n_v < 1).all()
    assert torch.allclose(n_v, n_s**2 / (1 + n_s**2), rtol=1e-6)


def test_squash_is_finite_at_zero_forward_and_backward():
    s = torch.zeros(3, 16, requires_grad=True)
    v = squash(s)
    assert torch.equal(v, torch.zeros_like(v))
    v.sum().backward()
    assert torch.isfinite(s.grad).all()


def test_parameter_count_matches_paper_architecture():
    net = CapsNet()
    assert count_parameters(net) == 8_215_568
    assert count_parameters(net) - count_parameters(net.decoder) == 6_804_224
    assert net.digit_caps.W.shape == (1152, 10, 16, 8)
    # The routing logits are not parameters or buffers: only the listed tensors are learned.
    names = {n for n, _ in net.named_parameters()} | {n for n, _ in net.named_buffers()}
    assert not any("b" == n.split(".")[-1] or "logit" in n for n in names)


def reference_routing(u_hat: torch.Tensor, iterations: int, gain: float = 1.0) -> torch.Tensor:
    """Procedure 1, one example and one digit at a time, with no vectorisation
    (b_ij += gain * u_hat_j|i . v_j; gain 1 is the paper)."""
    B, I, J, H = u_hat.shape
    out = torch.zeros(B, J, H, dtype=u_hat.dtype)
    for n in range(B):
        b = [[0.0] * J for _ in range(I)]
        for r in range(iterations):
            c = []
            for i in range(I):
                e = [math.exp(b[i][j]) for j in range(J)]
                c.append([x / sum(e) for x in e])
            v = []
            for j in range(J):
                s = sum(c[i][j] * u_hat[n, i, j] for i in range(I))
                norm2 = float((s * s).sum())
                v.append(s * norm2 / (1 + norm2) / math.sqrt(norm2))
            for i in range(I):
                for j in range(J):
                    b[i][j] += gain * float(u_hat[n, i, j] @ v[j])
        out[n] = torch.stack(v)
    return out


@pytest.mark.parametrize("iterations", [1, 2, 3, 5])
def test_routing_matches_slow_reference(iterations):
    torch.manual_seed(iterations)
    u_hat = torch.randn(2, 12, 10, 16, dtype=torch.float64) * 0.3
    v, _ = dynamic_routing(u_hat, iterations)
    assert torch.allclose(v, reference_routing(u_hat, iterations), atol=1e-10)


@pytest.mark.parametrize("gain", [0.0, 0.5, 2.5, 10.0])
def test_routing_gain_matches_slow_reference(gain):
    torch.manual_seed(7)
    u_hat = torch.randn(2, 12, 10, 16, dtype=torch.float64) * 0.3
    v, _ = dynamic_routing(u_hat, 3, routing_gain=gain)
    assert torch.allclose(v, reference_routing(u_hat, 3, gain), atol=1e-10)


def _fields(out: CapsOutput) -> dict:
    return {k: getattr(out, k) for k in out.__dataclass_fields__}


def test_routing_gain_one_is_bit_for_bit_the_default(model):
    torch.manual_seed(8)
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        default = _fields(model(x, iterations=4, trace=True))
        explicit = _fields(model(x, iterations=4, trace=True, routing_gain=1.0))
        as_int = _fields(model(x, iterations=4, trace=True, routing_gain=1))
    for name, value in default.items():
        assert torch.equal(value, explicit[name]), name
        assert torch.equal(value, as_int[name]), name
    u_hat = torch.randn(2, 12, 10, 16, dtype=torch.float64) * 0.3
    assert torch.equal(dynamic_routing(u_hat, 3)[0], dynamic_routing(u_hat, 3, routing_gain=1.0)[0])
    assert torch.allclose(dynamic_routing(u_hat, 3)[0], reference_routing(u_hat, 3), atol=1e-10)


@pytest.mark.parametrize(
    "gain, error",
    [(float("nan"), ValueError), (float("inf"), ValueError), (-float("inf"), ValueError), (-0.01, ValueError),
     (1000.5, ValueError), (1e9, ValueError), (True, TypeError), (False, TypeError), ("1", TypeError),
     (None, TypeError), (torch.tensor(1.0), TypeError), (1 + 0j, TypeError)],
)  # fmt: skip
def test_routing_gain_rejects_bad_values_saying_the_range(model, gain, error):
    x = torch.rand(1, 1, 28, 28)
    with pytest.raises(error, match="0 <= gain <= 1000" if error is ValueError else "0..1000"):
        model(x, routing_gain=gain)
    with pytest.raises(error):
        dynamic_routing(torch.zeros(1, 4, 10, 16), 2, routing_gain=gain)


def test_routing_gain_accepts_the_ends_of_its_range(model):
    x = torch.rand(1, 1, 28, 28)
    with torch.no_grad():
        zero = model(x, iterations=3, trace=True, routing_gain=0)
        top = model(x, iterations=3, trace=True, routing_gain=1000.0)
    assert torch.equal(zero.coupling, torch.full_like(zero.coupling, 0.1))  # gain 0: c stays uniform
    assert torch.isfinite(top.poses).all()


def _mean_entropy(c: torch.Tensor) -> float:
    """Mean entropy (bits) of c over the digit axis."""
    c = c.double()
    return float(-(c * torch.log2(c)).sum(-1).mean())


def test_routing_gain_above_one_moves_c_further_on_the_shipped_model():
    """The trained weights on a shipped MNIST test digit: c barely leaves 0.1 with the paper's
    update, more with gain 3, and the mean entropy of the last iteration's c falls with the gain."""
    import numpy as np

    from capsnet import DEFAULT_CHECKPOINT, load_model

    net = load_model(DEFAULT_CHECKPOINT)
    samples = np.load(Path(__file__).resolve().parents[1] / "app" / "samples.npz")
    x = torch.from_numpy(samples["images"][:2].astype(np.float32) / 255).reshape(2, 1, 28, 28)
    with torch.no_grad():
        traced = {g: net(x, iterations=3, trace=True, routing_gain=g).coupling for g in (0, 1, 3, 10)}
    assert torch.equal(traced[0], torch.full_like(traced[0], 0.1))
    assert torch.equal(traced[1][0], traced[3][0])  # iteration 1 is uniform whatever the gain
    moved_paper = (traced[1][-1] - 0.1).abs().max()
    moved_strong = (traced[3][-1] - 0.1).abs().max()
    assert moved_strong > 1.2 * moved_paper > 0
    entropy = [_mean_entropy(traced[g][-1]) for g in (0, 1, 3, 10)]
    assert entropy[0] == pytest.approx(math.log2(10))
    assert entropy[0] > entropy[1] > entropy[2] > entropy[3]


def test_routing_gain_lowers_entropy_on_a_random_model(model):
    """Float64 copy of the random model: its c moves by ~1e-6, below float32's resolution of entropy."""
    net = copy.deepcopy(model).double()
    torch.manual_seed(9)
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        c = {g: net(x, iterations=3, trace=True, routing_gain=g).coupling for g in (0, 1, 10, 100)}
    assert (c[100][-1] - 0.1).abs().max() > 50 * (c[1][-1] - 0.1).abs().max() > 0
    for t in (1, 2):  # the iterations after the first, uniform one
        h = [_mean_entropy(c[g][t]) for g in (0, 1, 10, 100)]
        assert h[0] > h[1] > h[2] > h[3], (t, h)


@pytest.mark.parametrize("gain", [0.0, 1.0, 10.0, 200.0])
def test_routing_gain_known_answer(gain):
    """Capsule i votes a along e_0 for its own digit i % 10 and 0 for every other digit.

    Iteration 1: c = 0.1, s_j = 0.1 * (2 votes) * a e_0, so |s| = 0.2 a and |v| = |s|^2 / (1 + |s|^2).
    The agreement is a |v| for the own digit and 0 elsewhere, so in iteration 2 every capsule has
    c_own = e^g' / (e^g' + 9) with g' = gain * a |v|, and the other nine share the rest equally.
    """
    a = 0.8
    u_hat = torch.zeros(1, 20, 10, 16, dtype=torch.float64)
    for i in range(20):
        u_hat[0, i, i % 10, 0] = a
    _, (_, coupling, _) = dynamic_routing(u_hat, 2, trace=True, routing_gain=gain)
    s = 0.2 * a
    b_own = gain * a * s**2 / (1 + s**2)
    c_own = math.exp(b_own) / (math.exp(b_own) + 9)
    expected = torch.full((20, 10), (1 - c_own) / 9, dtype=torch.float64)
    expected[torch.arange(20), torch.arange(20) % 10] = c_own
    assert torch.allclose(coupling[1, 0], expected, atol=1e-12)


def test_routing_trace_coupling_is_a_distribution_and_uniform_first():
    torch.manual_seed(0)
    u_hat = torch.randn(3, 1152, 10, 16) * 0.05
    v, (logits, coupling, vs) = dynamic_routing(u_hat, 3, trace=True)
    assert coupling.shape == (3, 3, 1152, 10) and logits.shape == coupling.shape
    assert torch.allclose(coupling.sum(-1), torch.ones(3, 3, 1152))
    assert torch.allclose(coupling[0], torch.full_like(coupling[0], 0.1))
    assert torch.equal(logits[0], torch.zeros_like(logits[0]))
    assert not torch.allclose(coupling[2], coupling[0])  # routing moved something
    assert torch.equal(vs[-1], v)


def test_forward_shapes_trace_and_no_trace(model):
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        plain = model(x)
        traced = model(x, iterations=4, trace=True)
        traced3 = model(x, iterations=3, trace=True)
    assert plain.poses.shape == (4, 10, 16) and plain.lengths.shape == (4, 10)
    assert plain.coupling is None and plain.u_hat is None and plain.primary is None
    assert traced.coupling.shape == (4, 4, 1152, 10)
    assert traced.logits.shape == (4, 4, 1152, 10)
    assert traced.poses_per_iter.shape == (4, 4, 10, 16)
    assert traced.lengths_per_iter.shape == (4, 4, 10)
    assert traced.primary.shape == (4, 1152, 8)
    assert traced.u_hat.shape == (4, 1152, 10, 16)
    assert torch.allclose(traced3.poses, plain.poses, atol=1e-6)
    assert torch.allclose(plain.lengths, plain.poses.norm(dim=-1), atol=1e-6)
    assert ((plain.lengths >= 0) & (plain.lengths < 1)).all()
    assert (traced.primary.norm(dim=-1) < 1).all()  # primary capsules are squashed


@pytest.mark.parametrize("iterations", [1, 2, 3, 4, 5])
def test_every_iteration_count_works(model, iterations):
    with torch.no_grad():
        out = model(torch.rand(2, 1, 28, 28), iterations=iterations, trace=True)
    assert out.coupling.shape[0] == iterations
    assert torch.isfinite(out.poses).all()


def test_routing_is_per_example_not_shared_across_batch(model):
    torch.manual_seed(1)
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        batch = model(x, trace=True)
        single = model(x[2:3], trace=True)
    assert torch.allclose(batch.coupling[:, 2:3], single.coupling, atol=1e-6)
    assert torch.allclose(batch.poses[2:3], single.poses, atol=1e-6)


def test_primary_index_maps_to_type_row_col_and_receptive_field(model):
    """Changing pixels outside a grid cell's receptive field leaves its 32 capsules unchanged."""
    assert primary_position(0) == (0, 0, 0)
    assert primary_position(1151) == (31, 5, 5)
    assert primary_position(36 * 7 + 6 * 2 + 3) == (7, 2, 3)
    rows, cols = receptive_field(2, 3)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (4, 21, 6, 23)
    torch.manual_seed(2)
    x = torch.rand(1, 1, 28, 28)
    y = torch.rand(1, 1, 28, 28)
    y[..., rows, cols] = x[..., rows, cols]  # same inside the field, different outside
    with torch.no_grad():
        ux = model(x, trace=True).primary[0]
        uy = model(y, trace=True).primary[0]
    inside = [t * 36 + 2 * 6 + 3 for t in range(32)]
    assert torch.allclose(ux[inside], uy[inside], atol=1e-6)
    others = [i for i in range(1152) if i not in inside]
    assert not torch.allclose(ux[others], uy[others], atol=1e-3)


def test_margin_loss_by_hand():
    lengths = torch.tensor([[0.95, 0.30, 0.05, 0, 0, 0, 0, 0, 0, 0], [0.5, 0.2, 0, 0, 0, 0, 0, 0, 0, 0.85]])
    target = torch.tensor([0, 9])
    # example 0: present 0 (0.95 > 0.9); absent 0.5*(0.3-0.1)^2 = 0.02
    # example 1: present (0.9-0.85)^2 = 0.0025; absent 0.5*((0.5-0.1)^2 + (0.2-0.1)^2) = 0.085
    expected = (0.02 + 0.0025 + 0.085) / 2
    assert margin_loss(lengths, target).item() == pytest.approx(expected, abs=1e-7)


def test_reconstruction_loss_by_hand():
    x = torch.zeros(2, 1, 28, 28)
    recon = torch.zeros(2, 1, 28, 28)
    recon[0, 0, 0, :4] = 0.5  # SSE 4 * 0.25 = 1
    recon[1, 0, 5, 5] = 1.0  # SSE 1
    assert reconstruction_loss(recon, x).item() == pytest.approx(0.0005 * (1 + 1) / 2)


def test_reconstruct_masks_other_capsules(model):
    torch.manual_seed(3)
    poses = torch.randn(2, 10, 16) * 0.2
    digit = torch.tensor([7, 7])
    with torch.no_grad():
        a = model.reconstruct(poses, digit)
        changed = poses.clone()
        changed[:, 3] += 1.0  # not the decoded capsule
        b = model.reconstruct(changed, digit)
        changed[:, 7, 0] += 0.5  # the decoded capsule
        c = model.reconstruct(changed, digit)
    assert a.shape == (2, 1, 28, 28) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_forward_rejects_bad_input(model):
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(1, 28, 28))
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(2, 3, 28, 28))
    bad = torch.rand(1, 1, 28, 28)
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(bad)
    bad[0, 0, 3, 3] = float("inf")
    with pytest.raises(ValueError, match="Inf"):
        model(bad)
    with pytest.raises(ValueError, match="iterations"):
        model(torch.rand(1, 1, 28, 28), iterations=0)
    with pytest.raises(TypeError):
        model(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))


def test_training_step_has_finite_gradients_even_for_blank_images():
    torch.manual_seed(4)
    net = CapsNet().train()
    x = torch.zeros(2, 1, 28, 28)
    x[1, 0, 10:18, 12:15] = 1.0
    y = torch.tensor([1, 4])
    loss, _ = training_loss(net, x, y)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    assert net.digit_caps.W.grad.abs().sum() > 0


def test_a_callers_bf16_autocast_reaches_the_convolutions_but_not_routing():
    """bf16 runs the two convolutions (95% of the arithmetic); u_hat, c and v stay fp32, so the
    small differences routing works with are not rounded to bf16's 8 bits."""
    torch.manual_seed(0)
    net = CapsNet()
    seen = []
    net.primary_caps.conv.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    x = torch.rand(2, 1, 28, 28)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, trace=True)
    assert seen == [torch.bfloat16]
    assert out.primary.dtype == out.u_hat.dtype == out.coupling.dtype == out.poses.dtype == torch.float32
    fp32 = net(x, trace=True)
    torch.testing.assert_close(out.coupling, fp32.coupling, rtol=0, atol=5e-3)  # bf16 convs: close, not equal
