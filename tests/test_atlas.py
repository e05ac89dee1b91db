"""capsnet.atlas: image measures by hand, labels of drawn changes whose answer is known, the
labelling rule, live measurement on a model, the CLI on a tiny model, the atlas file's checks and
the shipped atlas against the shipped weights."""

import hashlib
import json
import math

import numpy as np
import pytest
import torch
from mnist_files import make_mnist_root, write_idx

from capsnet import DEFAULT_CHECKPOINT, CapsNet, load_model, save_checkpoint
from capsnet import atlas as A
from capsnet.data import load_mnist

# ---------------------------------------------------------------------------------------------
# Measures on hand-made images


def test_measures_of_one_pixel_two_pixels_and_a_bar_by_hand():
    one = np.zeros((28, 28))
    one[5, 7] = 0.5  # row 5 (y), column 7 (x)
    m = A.image_measures(one)
    assert float(m["ink"]) == 0.5 and float(m["x"]) == 7 and float(m["y"]) == 5
    assert float(m["width"]) == 0 and float(m["height"]) == 0 and float(m["slant"]) == 0

    # A "/" diagonal: (x=10, y=2) above (x=6, y=6). Centroid (8, 4); x deviations +2, -2 and y
    # deviations -2, +2: var_x = var_y = 4, cov(x, y) = (-4 - 4) / 2 = -4, slant = -cov / var_y = +1.
    two = np.zeros((28, 28))
    two[2, 10] = two[6, 6] = 1.0
    m = A.image_measures(two)
    assert float(m["ink"]) == 2 and float(m["x"]) == 8 and float(m["y"]) == 4
    assert float(m["width"]) == pytest.approx(2) and float(m["height"]) == pytest.approx(2)
    assert float(m["slant"]) == pytest.approx(1.0)
    assert float(A.image_measures(two[:, ::-1].copy())["slant"]) == pytest.approx(-1.0)  # "\" leans left

    # A 4-row, 2-column bar: rows 4..7, columns 10..11. x: 10, 11 -> mean 10.5, variance 0.25;
    # y: 4..7 -> mean 5.5, variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25; upright: slant 0.
    bar = np.zeros((28, 28))
    bar[4:8, 10:12] = 1.0
    m = A.image_measures(bar)
    assert float(m["ink"]) == 8 and float(m["x"]) == 10.5 and float(m["y"]) == 5.5
    assert float(m["width"]) == pytest.approx(0.5) and float(m["height"]) == pytest.approx(math.sqrt(1.25))
    assert float(m["slant"]) == pytest.approx(0.0)


def test_measures_weight_each_pixel_by_its_ink_and_keep_batch_axes():
    img = np.zeros((2, 3, 28, 28))
    img[1, 2, 0, 0] = 1.0
    img[1, 2, 0, 3] = 0.5  # x = (0 * 1 + 3 * 0.5) / 1.5 = 1; var_x = (1 * 1 + 0.5 * 4) / 1.5 = 2
    img[0, :, 9, 9] = img[1, :2, 9, 9] = 1.0
    m = A.image_measures(img)
    assert m["x"].shape == (2, 3)
    assert float(m["x"][1, 2]) == pytest.approx(1.0) and float(m["width"][1, 2]) == pytest.approx(
        math.sqrt(2)
    )
    assert float(m["ink"][1, 2]) == 1.5 and float(m["x"][0, 1]) == 9


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((28, 28)), "no ink"),
        (np.full((28, 28), -0.1), r"\[0, 1\]"),
        (np.full((28, 28), 1.5), r"\[0, 1\]"),
        (np.full((28, 28), np.nan), "NaN"),
        (np.ones(28), "shape"),
    ],
)
def test_measures_refuse_images_they_cannot_measure(bad, message):
    with pytest.raises(ValueError, match=message):
        A.image_measures(bad)


def test_change_fields_of_a_ramp_by_hand():
    ramp = np.tile(np.arange(28) / 27, (28, 1))  # I = x / 27
    f = A.change_fields(torch.tensor(ramp))
    assert f.shape == (8, 28, 28) and len(A.FIELDS) == 8
    inner = (slice(1, -1), slice(1, -1))
    assert torch.allclose(f[0], torch.tensor(ramp, dtype=torch.float64))  # the image itself
    assert torch.allclose(f[1][inner], torch.full((26, 26), 1 / 27, dtype=torch.float64))  # dI/dx
    assert torch.allclose(f[2][inner], torch.zeros(26, 26, dtype=torch.float64))  # dI/dy
    assert float(f[1][5, 27]) == pytest.approx((0 - 26 / 27) / 2)  # black beyond the right edge
    assert float(f[3][5, 20]) == pytest.approx((20 - 13.5) / 27)  # x dI/dx, x from the centre
    assert float(f[4][20, 5]) == pytest.approx((20 - 13.5) / 27)  # y dI/dx
    assert torch.allclose(f[7][inner], f[1][inner].abs())  # |grad I|


def test_local_share_of_hand_made_changes():
    base = np.zeros((28, 28))
    base[10:18, 12:15] = 1.0  # a hard-edged bar: every field is 0 two pixels away from it
    blob = np.zeros((28, 28))
    blob[1:3, 24:26] = 0.5  # four pixels in a corner, energy 4 * 0.25 = 1
    changes = np.stack([0.3 * base, 0.3 * base + blob, blob, np.zeros((28, 28))])  # (K=4, 28, 28)
    share, energy = A.local_share(torch.tensor(base), torch.tensor(changes))
    # 0.3 * base is the "ink scale" field; the blob lies where every field is 0, so it is orthogonal
    # to all of them: its energy is the residual. |0.3 base|^2 = 0.09 * 24 pixels = 2.16.
    assert share.shape == (4,)
    assert float(share[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(share[1]) == pytest.approx(1.0 / (2.16 + 1.0), rel=1e-6)
    assert float(share[2]) == pytest.approx(1.0, rel=1e-6)
    assert float(share[3]) == 0.0  # no change at all
    assert energy.tolist() == pytest.approx([2.16, 3.16, 1.0, 0.0])


# ---------------------------------------------------------------------------------------------
# Drawn digits whose change is known: the label, the slope and almost no "local"

CENTRE = 13.5
RING = [
    (CENTRE + 5 * math.sin(a), CENTRE - 8 * math.cos(a)) for a in np.linspace(0, 2 * math.pi, 73)
]  # a "0"
SEVEN = [(8, 6), (20, 6), (12, 22)]
BAR = [(CENTRE, 6), (CENTRE, 21)]  # a "1"


def draw(points, thickness=2.5, dx=0.0, dy=0.0, shear=0.0, sx=0.0, sy=0.0):
    """A polyline with soft edges, I = sigmoid((thickness / 2 - distance) / 0.6): stretched by
    (1 + sx, 1 + sy) about the centre, then sheared (top to the right by `shear` px per px of
    height, about the centre row), then shifted by (dx, dy) px."""
    rows, cols = np.mgrid[0:28, 0:28].astype(float)
    y = rows - dy  # where each pixel's point was before the shift and the shear
    x = cols - dx - shear * (CENTRE - y)
    pts = [(CENTRE + (px - CENTRE) * (1 + sx), CENTRE + (py - CENTRE) * (1 + sy)) for px, py in points]
    dist = np.full((28, 28), np.inf)
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        ux, uy = x1 - x0, y1 - y0
        t = np.clip(((x - x0) * ux + (y - y0) * uy) / (ux * ux + uy * uy), 0, 1)
        dist = np.minimum(dist, np.hypot(x - x0 - t * ux, y - y0 - t * uy))
    return 1 / (1 + np.exp(-(thickness / 2 - dist) / 0.6))


def effects_of(make, offset=A.OFFSET) -> dict:
    """The cell of the change make(o): images at o = 0, -offset and +offset."""
    base, minus, plus = (torch.tensor(make(o)) for o in (0.0, -offset, offset))
    return A.cell(A.image_effects(base, minus[None], plus[None], offset), 0, (0,))


# (what the pose offset o does to the drawing, the label for +o, the label for -o)
KNOWN = {
    "thickness": (lambda shape, o: draw(shape, thickness=2.5 + 2 * o), "thicker strokes", "thinner strokes"),
    "shift x": (lambda shape, o: draw(shape, dx=2 * o), "moves right", "moves left"),
    "shift y": (lambda shape, o: draw(shape, dy=2 * o), "moves down", "moves up"),
    "shear": (lambda shape, o: draw(shape, shear=0.4 * o), "leans right", "leans left"),
    "stretch x": (lambda shape, o: draw(shape, sx=0.4 * o), "wider", "narrower"),
    "stretch y": (lambda shape, o: draw(shape, sy=0.4 * o), "taller", "shorter"),
}


SHAPES = {"ring": RING, "seven": SEVEN, "bar": BAR}
CASES = [(c, s) for c in KNOWN for s in SHAPES if (c, s) != ("stretch x", "bar")]  # a "1" has no width


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("change, shape", CASES)
def test_a_drawn_change_gets_its_label_and_little_local(change, shape, sign):
    points = SHAPES[shape]
    make, up, down = KNOWN[change]
    c = effects_of(lambda o: make(points, sign * o))
    assert c["label"] == (up if sign > 0 else down), c
    assert c["effects"]["local"] < 0.1, c  # the global fields explain it (measured: at most 0.08)
    assert c["strength"] > 0.5  # px per unit; every change here moves the ink by >= 1 px per unit


def test_slopes_of_a_drawn_shift_and_shear_are_the_drawn_rates():
    # dx = 2 o: the centroid moves 2 px per unit of pose offset; nothing else changes.
    c = effects_of(lambda o: draw(RING, dx=2 * o))
    assert c["effects"]["x"] == pytest.approx(2.0, abs=0.01)
    assert abs(c["effects"]["y"]) < 1e-6 and abs(c["effects"]["width"]) < 1e-6
    assert c["strength"] == pytest.approx(2.0, abs=0.01)
    # shear 0.4 o about the ring's own centre: slant 0.4 per unit; as pixels, 0.4 x the height.
    c = effects_of(lambda o: draw(RING, shear=0.4 * o))
    assert c["effects"]["slant"] == pytest.approx(0.4, abs=0.01)
    assert c["standardised"]["slant"] == pytest.approx(c["effects"]["slant"] * c["base_height"], rel=1e-5)
    assert abs(c["effects"]["x"]) < 1e-6
    # thickness 2.5 + 2 o: the outline moves out 1 px per unit (ink change / outline length).
    c = effects_of(lambda o: draw(RING, thickness=2.5 + 2 * o))
    assert c["standardised"]["ink"] == pytest.approx(1.0, abs=0.15)
    assert c["second_label"] == "wider" and c["second_strength"] < 0.2


def test_a_blob_added_in_a_corner_is_a_local_part():
    def with_blob(o, shape):
        rows, cols = np.mgrid[0:28, 0:28]
        blob = np.exp(-((rows - 3) ** 2 + (cols - 24) ** 2) / 2.0)
        return np.clip(draw(shape) + max(o, 0.0) * 4 * blob, 0, 1)

    for shape in (RING, SEVEN):
        c = effects_of(lambda o: with_blob(o, shape))
        assert c["label"] == "local part" and c["effects"]["local"] > 0.95
        assert c["strength"] == c["effects"]["local"]
        assert A.describe(c).startswith("local part (")


def test_an_unchanged_image_is_no_visible_change():
    c = effects_of(lambda o: draw(SEVEN))
    assert c["label"] == "no visible change" and c["strength"] == 0 and c["change"] == 0


# ---------------------------------------------------------------------------------------------
# The labelling rule on hand-made effects

ZERO = dict.fromkeys(A.GEOMETRIC, 0.0)


@pytest.mark.parametrize(
    "measure, plus, minus",
    [
        ("ink", "thicker strokes", "thinner strokes"),
        ("x", "moves right", "moves left"),
        ("y", "moves down", "moves up"),
        ("width", "wider", "narrower"),
        ("height", "taller", "shorter"),
        ("slant", "leans right", "leans left"),
    ],
)
def test_the_largest_standardised_effect_names_the_dimension_with_its_sign(measure, plus, minus):
    others = {m: (0.9 if k % 2 else -0.9) for k, m in enumerate(A.GEOMETRIC)}  # all smaller than 1.2
    assert A.label_for({**others, measure: 1.2}, local=0.2, change=50.0) == (plus, 1.2)
    assert A.label_for({**others, measure: -1.2}, local=0.2, change=50.0) == (minus, 1.2)


def test_the_rule_checks_visibility_then_locality_then_size():
    big_x = {**ZERO, "x": 3.0}
    assert A.label_for(big_x, local=0.2, change=1.9) == ("no visible change", 0.0)  # < 2 ink per unit
    assert A.label_for(big_x, local=0.2, change=math.nan) == ("no visible change", 0.0)
    assert A.label_for(big_x, local=0.51, change=2.0) == ("local part", 0.51)
    assert A.label_for(big_x, local=0.5, change=2.0) == ("moves right", 3.0)  # 0.5 is not "most"
    assert A.label_for({**big_x, "width": -3.0}, local=0.0, change=9.0) == (
        "moves right",
        3.0,
    )  # tie: x first
    assert A.label_for(big_x, local=0.9, change=1.0) == ("no visible change", 0.0)  # too small to be a part


def test_standardised_effects_are_pixels_by_hand():
    slopes = {"ink": 30.0, "x": -1.5, "y": 0.5, "width": 0.25, "height": -2.0, "slant": 0.1}
    std = A.standardise(slopes, outline=60.0, base_height=5.0)
    # ink: 30 ink over a 60 px outline = the outline moves 0.5 px; slant 0.1 x height 5 = 0.5 px.
    assert std == {"ink": 0.5, "x": -1.5, "y": 0.5, "width": 0.25, "height": -2.0, "slant": 0.5}


def hand_made_effects() -> A.Effects:
    """Three images, two moved dimensions each: shapes (3, 2)."""
    slopes = {m: torch.zeros(3, 2, dtype=torch.float64) for m in A.MEASURES}
    slopes["ink"][:, 1] = torch.tensor([10.0, 20.0, 60.0])
    slopes["x"][:, 1] = torch.tensor([0.1, -0.4, 0.0])
    slopes["local"][:, 1] = torch.tensor([1.0, 0.0, 0.0])
    return A.Effects(
        slopes=slopes,
        change=torch.full((3, 2), 50.0, dtype=torch.float64),
        energy=torch.tensor([[1.0, 3.0], [1.0, 1.0], [1.0, 0.0]], dtype=torch.float64),
        outline=torch.tensor([[20.0] * 2, [40.0] * 2, [60.0] * 2], dtype=torch.float64),
        base_height=torch.full((3, 2), 4.0, dtype=torch.float64),
    )


def test_a_cell_averages_its_images_and_pools_local_by_energy():
    c = A.cell(hand_made_effects(), 7, (slice(None), 1))
    assert c["dim"] == 7
    assert c["effects"]["ink"] == 30.0 and c["effects"]["x"] == pytest.approx(-0.1)
    # local: (1.0 * 3 + 0 * 1 + 0 * 0) / (3 + 1 + 0) = 0.75, not the plain mean 1/3.
    assert c["effects"]["local"] == 0.75 and c["label"] == "local part" and c["strength"] == 0.75
    # standardised from the means: ink 30 / mean outline 40 = 0.75 px.
    assert c["outline"] == 40.0 and c["standardised"]["ink"] == 0.75
    assert c["second_label"] == "thicker strokes" and c["second_strength"] == 0.75


def test_agreement_is_the_share_of_images_whose_own_label_is_the_cells():
    e = hand_made_effects()
    # Alone: image 0 is local (share 1.0); image 1 thicker (20/40 = 0.5 px > |x| 0.4);
    # image 2 thicker (60/60 = 1 px). So 2 of 3 say "thicker strokes", 1 of 3 "local part".
    assert A.agreement(e, 1, "thicker strokes") == pytest.approx(2 / 3, abs=1e-6)
    assert A.agreement(e, 1, "local part") == pytest.approx(1 / 3, abs=1e-6)
    assert A.agreement(e, 1, "moves left") == 0.0


def cell_with(label, standardised=None, **effects):
    return {"label": label, "effects": {**dict.fromkeys(A.MEASURES, 0.0), **effects},
            "standardised": {**dict.fromkeys(A.GEOMETRIC, 0.0), **(standardised or {})}}  # fmt: skip


def test_describe_gives_the_label_and_its_standardised_effect_in_px_per_unit():
    """One definition: the number is the standardised effect (px the ink moves per unit), the one
    the atlas's map shows as a cell's strength, not the raw slope (slant 0.314 px/px here)."""
    thick = cell_with("thicker strokes", ink=31.4, standardised={"ink": 0.62})
    assert A.describe(thick) == "thicker strokes (+0.6 px per unit)"
    assert (
        A.describe(cell_with("moves left", x=-2.14, standardised={"x": -2.14}))
        == "moves left (-2.1 px per unit)"
    )
    lean = cell_with("leans right", slant=0.314, standardised={"slant": 1.93})
    assert A.describe(lean) == "leans right (+1.9 px per unit)"
    assert A.describe(cell_with("local part", local=0.64)) == "local part (64% of the change is not global)"
    assert A.describe(cell_with("no visible change")) == "no visible change"


# ---------------------------------------------------------------------------------------------
# Live measurement on a model


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(1)
    return CapsNet().eval()


@pytest.fixture(scope="module")
def reacting():
    """A random CapsNet whose decoder visibly reacts to the pose (its last layer x 30)."""
    torch.manual_seed(5)
    model = CapsNet().eval()
    with torch.no_grad():
        model.decoder[-2].weight.mul_(30)
    return model


def test_decode_offsets_moves_one_dimension_of_one_capsule_in_one_decoder_call(net):
    torch.manual_seed(2)
    poses = 0.2 * torch.randn(2, 10, 16)
    digit = torch.tensor([3, 8])
    batches = []
    hook = net.decoder.register_forward_hook(lambda mod, inp, out: batches.append(inp[0].shape[0]))
    try:
        base, minus, plus = A.decode_offsets(net, poses, digit)
    finally:
        hook.remove()
    assert batches == [2 * 33]  # one call: the capsule as is and 16 dims x 2 offsets, per example
    assert base.shape == (2, 28, 28) and minus.shape == plus.shape == (2, 16, 28, 28)
    with torch.no_grad():
        assert torch.allclose(base, net.reconstruct(poses, digit)[:, 0], atol=1e-6)
        for d in (0, 11):
            moved = poses.clone()
            moved[0, 3, d] += 0.25
            moved[1, 8, d] += 0.25
            assert torch.allclose(plus[:, d], net.reconstruct(moved, digit)[:, 0], atol=1e-6)
            moved[0, 3, d] -= 0.5
            moved[1, 8, d] -= 0.5
            assert torch.allclose(minus[:, d], net.reconstruct(moved, digit)[:, 0], atol=1e-6)


def test_one_dimension_live_matches_the_whole_capsule_and_is_three_images(reacting):
    torch.manual_seed(6)
    with torch.no_grad():
        poses = reacting(torch.rand(1, 1, 28, 28)).poses[0]  # (10, 16)
    capsule = A.measure_capsule(reacting, poses, 4)
    calls = []
    hook = reacting.decoder.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    try:
        one = A.measure_dimension(reacting, poses, 4, 9)
    finally:
        hook.remove()
    assert calls == [3]
    assert [c["dim"] for c in capsule] == list(range(16)) and one["dim"] == 9
    for key in ("label", "second_label"):
        assert one[key] == capsule[9][key]
    for m in A.MEASURES:
        assert one["effects"][m] == pytest.approx(capsule[9]["effects"][m], rel=1e-4, abs=1e-7)
    assert {c["label"] for c in capsule} - {"no visible change"}, "the scaled decoder should change the image"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, p: A.measure_dimension(m, p, 4, 16), "dims"),
        (lambda m, p: A.measure_dimension(m, p, 10, 0), "digit"),
        (lambda m, p: A.measure_dimension(m, p[None], 4, 0), r"\(10, 16\)"),
        (lambda m, p: A.measure_dimension(m, p[:, :8], 4, 0), "shape"),
        (lambda m, p: A.measure_dimension(m, p, 4, 0, offset=0.0), "offset"),
    ],
)
def test_live_measurement_refuses_bad_arguments(net, call, message):
    with pytest.raises(ValueError, match=message):
        call(net, torch.zeros(10, 16))


def test_first_per_class_takes_the_first_n_of_each_class_in_order():
    labels = torch.tensor([3, 1, 3, 0, 3, 1, 9, 3])
    chosen = A.first_per_class(labels, 2)
    assert chosen[3].tolist() == [0, 2] and chosen[1].tolist() == [1, 5] and chosen[0].tolist() == [3]
    assert chosen[9].tolist() == [6] and chosen[5].tolist() == []


# ---------------------------------------------------------------------------------------------
# The CLI on a tiny model


def slopes_by_hand(model, images: np.ndarray, digit: int) -> dict[str, list[float]]:
    """Mean over uint8 images (n, 28, 28) of (m(+0.25) - m(-0.25)) / 0.5, m = ink and x centroid,
    per pose dimension of capsule `digit`: written out here, not through capsnet.atlas."""
    x = torch.from_numpy(images).float()[:, None] / 255
    cols = torch.arange(28, dtype=torch.float64)
    out = {"ink": [], "x": []}
    with torch.no_grad():
        poses = model(x, iterations=3).poses
        for d in range(16):
            lo, hi = poses.clone(), poses.clone()
            lo[:, digit, d] -= 0.25
            hi[:, digit, d] += 0.25
            which = torch.full((len(x),), digit)
            a = model.reconstruct(lo, which)[:, 0].double()
            b = model.reconstruct(hi, which)[:, 0].double()
            ink_a, ink_b = a.sum((1, 2)), b.sum((1, 2))
            x_a, x_b = (a.sum(1) * cols).sum(1) / ink_a, (b.sum(1) * cols).sum(1) / ink_b
            out["ink"].append(float(((ink_b - ink_a) / 0.5).mean()))
            out["x"].append(float(((x_b - x_a) / 0.5).mean()))
    return out


@pytest.fixture
def tiny_run(tmp_path):
    """A random-weight CapsNet with a decoder that reacts and votes large enough for routing to
    change the poses, and a test set of 3 digits per class but one of class 9; returns
    (checkpoint, data root, test images, test labels)."""
    torch.manual_seed(3)
    model = CapsNet()
    with torch.no_grad():
        model.decoder[-2].weight.mul_(30)
        model.digit_caps.W.mul_(100)
    ckpt = tmp_path / "ckpt" / "tiny.pt"
    save_checkpoint(ckpt, model)
    root = make_mnist_root(tmp_path / "data")
    labels = np.array([*range(9)] * 3 + [9], np.uint8)
    images = (np.random.default_rng(4).random((len(labels), 28, 28)) * 255).astype(np.uint8)
    write_idx(root / "MNIST" / "raw" / "t10k-images-idx3-ubyte", images)
    write_idx(root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", labels)
    return ckpt, root, images, labels


def test_cli_writes_the_atlas_beside_the_checkpoint_with_its_hash(tiny_run, capsys):
    ckpt, root, images, labels = tiny_run
    argv = ["--checkpoint", str(ckpt), "--data-root", str(root), "--per-digit", "2", "--json"]
    assert A.main([*argv, "--device", "cpu", "--batch-size", "1"]) == 0
    out = capsys.readouterr()
    written = json.loads((ckpt.parent / "pose_atlas.json").read_text())  # the default place
    assert json.loads(out.out) == written
    assert "atlas" in out.err and "digit" in out.err  # the progress bar
    assert written["checkpoint"] == "tiny.pt"
    assert written["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert written["offset"] == 0.25 and written["per_digit"] == 2 and written["iterations"] == 3
    assert written["per_digit_used"] == [2] * 9 + [1]  # class 9 has one test digit
    assert written["measures"] == ["ink", "x", "y", "width", "height", "slant", "local"]
    assert written["command"].startswith("python -m capsnet.atlas --checkpoint")
    assert written["torch_version"] == torch.__version__ and written["seconds"] >= 0
    assert len(written["digits"]) == 10 and all(len(row) == 16 for row in written["digits"])
    for row in written["digits"]:
        for d, c in enumerate(row):
            assert c["dim"] == d and c["label"] in A.LABELS and 0 <= c["agreement"] <= 1
            assert set(c["effects"]) == set(A.MEASURES)
    # The averages are the first two digits of class 4, measured independently of the module.
    model = load_model(ckpt)
    want = slopes_by_hand(model, images[labels == 4][:2], 4)
    for d in range(16):
        got = written["digits"][4][d]["effects"]
        assert got["ink"] == pytest.approx(want["ink"][d], rel=1e-4, abs=1e-4)
        assert got["x"] == pytest.approx(want["x"][d], rel=1e-4, abs=1e-5)
    assert {c["label"] for row in written["digits"] for c in row} - {"no visible change"}
    assert A.load_atlas(ckpt.parent / "pose_atlas.json", ckpt) == written


def test_cli_prints_a_table_and_writes_where_told(tiny_run, tmp_path, capsys):
    ckpt, root, _, _ = tiny_run
    out = tmp_path / "elsewhere" / "atlas.json"
    assert (
        A.main(["--checkpoint", str(ckpt), "--data-root", str(root), "--per-digit", "1", "--out", str(out)])
        == 0
    )
    table = capsys.readouterr().out.splitlines()
    atlas = json.loads(out.read_text())
    assert not (ckpt.parent / "pose_atlas.json").exists()
    assert table[1].split() == ["dim", *map(str, range(10))]
    assert [line.split()[0] for line in table[2:18]] == [str(d) for d in range(16)]
    for j in range(10):  # row of dim 0: 11 characters per digit, the short label then the strength
        entry = table[2][4 + 11 * j : 4 + 11 * (j + 1)]
        c = atlas["digits"][j][0]
        assert entry[:7].strip() == A.SHORT[c["label"]] and float(entry[7:]) == pytest.approx(
            c["strength"], abs=0.05
        )
    assert table[-1].startswith("labels: ")


def test_cli_refuses_bad_arguments_with_clear_errors(tiny_run, tmp_path, capsys):
    ckpt, root, _, _ = tiny_run
    with pytest.raises(SystemExit) as e:
        A.main(["--data-root", str(root), "--per-digit", "0"])
    assert e.value.code == 2 and "--per-digit must be >= 1" in capsys.readouterr().err
    assert A.main(["--checkpoint", str(tmp_path / "none.pt"), "--data-root", str(root)]) == 2
    assert "Checkpoint not found" in capsys.readouterr().err
    write_idx(root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.zeros(28, np.uint8))  # all zeros
    assert (
        A.main(["--checkpoint", str(ckpt), "--data-root", str(root), "--out", str(tmp_path / "a.json")]) == 2
    )
    assert "no images of class 1, 2, 3, 4, 5, 6, 7, 8, 9" in capsys.readouterr().err
    assert not (tmp_path / "a.json").exists()


def test_help_runs(capsys):
    with pytest.raises(SystemExit) as e:
        A.main(["--help"])
    assert e.value.code == 0 and "--per-digit" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# load_atlas: the page never labels sliders from a wrong file


@pytest.fixture
def atlas_file(tiny_run, capsys):
    ckpt, root, _, _ = tiny_run
    assert A.main(["--checkpoint", str(ckpt), "--data-root", str(root), "--per-digit", "1"]) == 0
    capsys.readouterr()
    return ckpt.parent / "pose_atlas.json", ckpt


def test_load_atlas_refuses_other_weights_even_under_the_same_name(atlas_file):
    path, ckpt = atlas_file
    assert A.load_atlas(path, ckpt)["checkpoint"] == "tiny.pt"
    save_checkpoint(ckpt, CapsNet())  # other weights, same file name
    with pytest.raises(A.AtlasError, match="measured on other weights") as e:
        A.load_atlas(path, ckpt)
    assert "python -m capsnet.atlas" in str(e.value) and isinstance(e.value, ValueError)


def test_load_atlas_and_the_cli_default_to_the_weights_load_model_uses(
    atlas_file, tiny_run, monkeypatch, capsys
):
    path, ckpt = atlas_file
    monkeypatch.setenv("CAPSNET_CHECKPOINT", str(ckpt))  # what load_model(None) then loads
    assert A.load_atlas()["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    _, root, _, _ = tiny_run
    out = path.with_name("again.json")  # named, so a CLI that ignored the variable writes no repo file
    assert A.main(["--data-root", str(root), "--per-digit", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert json.loads(out.read_text())["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    monkeypatch.setenv("CAPSNET_CHECKPOINT", str(ckpt.with_name("gone.pt")))
    with pytest.raises(A.AtlasError, match="No weights to check a pose atlas against"):
        A.load_atlas()


def test_load_atlas_refuses_a_missing_or_malformed_file(atlas_file):
    path, ckpt = atlas_file
    good = json.loads(path.read_text())
    with pytest.raises(A.AtlasError, match="No pose atlas at"):
        A.load_atlas(path.with_name("none.json"), ckpt)
    with pytest.raises(A.AtlasError, match="not found"):
        A.load_atlas(path, ckpt.with_name("gone.pt"))
    path.write_text(path.read_text()[:-20])
    with pytest.raises(A.AtlasError, match="not readable JSON"):
        A.load_atlas(path, ckpt)
    for damage, message in [
        (lambda a: a["digits"].pop(), "10 rows"),
        (lambda a: a["digits"][2].pop(), "digit 2 does not have 16 cells"),
        (lambda a: a["digits"][3][5].update(label="bigger"), r"cell \(digit 3, dim 5\) has label 'bigger'"),
        (lambda a: a["digits"][3][5].update(dim=6), "not a cell of dimension 5"),
        (lambda a: a["digits"][0][0]["effects"].pop("slant"), "lacks a finite strength, agreement or effect"),
        (lambda a: a["digits"][0][0].update(strength=float("nan")), "lacks a finite"),
        (lambda a: a["digits"][4][1].pop("agreement"), r"cell \(digit 4, dim 1\) lacks a finite"),
        (lambda a: a.update(per_digit_used=[5] * 9), "'per_digit_used' is not 10 counts"),
        (lambda a: a["per_digit_used"].__setitem__(3, 0), "'per_digit_used' is not 10 counts"),
        (lambda a: a.pop("checkpoint_sha256"), "no 'checkpoint_sha256'"),
        (lambda a: a.update(format="v0"), "format"),
    ]:
        bad = json.loads(json.dumps(good))
        damage(bad)
        path.write_text(json.dumps(bad))
        with pytest.raises(A.AtlasError, match=message):
            A.load_atlas(path, ckpt)
    path.write_text("[1, 2]")
    with pytest.raises(A.AtlasError, match="expected a JSON object"):
        A.load_atlas(path, ckpt)


# ---------------------------------------------------------------------------------------------
# The shipped atlas


def test_shipped_atlas_follows_the_schema_and_matches_the_shipped_weights():
    atlas = A.load_atlas()  # checkpoints/pose_atlas.json against checkpoints/capsnet_mnist.pt
    assert atlas["checkpoint"] == DEFAULT_CHECKPOINT.name
    assert atlas["checkpoint_sha256"] == hashlib.sha256(DEFAULT_CHECKPOINT.read_bytes()).hexdigest()
    assert atlas["offset"] == 0.25 and atlas["iterations"] == 3 and atlas["per_digit"] >= 100
    assert atlas["per_digit_used"] == [atlas["per_digit"]] * 10  # every class has >= 892 test digits
    for key in ("command", "date", "seconds", "torch_version"):
        assert atlas[key]
    for row in atlas["digits"]:
        for c in row:
            std, label = c["standardised"], c["label"]
            if label in ("local part", "no visible change"):
                continue
            # The label names the largest standardised effect, with the word of its sign.
            top = max(std, key=lambda m: abs(std[m]))
            assert label == A.WORDS[top][0 if std[top] > 0 else 1] and c["strength"] == abs(std[top])
            assert c["effects"]["local"] <= 0.5 and c["change"] >= 2


def test_shipped_atlas_averages_are_those_of_the_shipped_weights_on_real_digits(real_mnist):
    """Class 7's ink and x slopes, from its first per_digit real test digits, measured by hand."""
    atlas = json.loads(A.DEFAULT_ATLAS.read_text())
    images, labels = load_mnist(str(real_mnist), train=False, download=False)
    sevens = images[labels == 7][: atlas["per_digit"]].numpy()
    model = load_model()
    want = slopes_by_hand(model, sevens, 7)
    for d in range(16):
        got = atlas["digits"][7][d]["effects"]
        assert got["ink"] == pytest.approx(want["ink"][d], rel=1e-3, abs=1e-3)
        assert got["x"] == pytest.approx(want["x"][d], rel=1e-3, abs=1e-4)
