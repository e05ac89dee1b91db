"""Property-based tests of to_mnist.

The contract (capsnet/preprocess.py, after MNIST's recipe): a drawing comes back as a (28, 28)
float32 image in [0, 1], white ink on black, the ink's bounding box scaled so its longest side is
exactly 20 px (aspect ratio kept), shifted by whole pixels so the centre of mass lies at the field's
centre, (13.5, 13.5) in pixel-centre coordinates 0..27 (integer shift: within 0.5 px), unless that
would push ink off the field, in which case the digit touches the field's edge instead. Blank,
constant or faint input gives None.

Note on "ink inside the central 20x20 box (rows/cols 4..23)": MNIST centres by mass, not by box, so
a lopsided digit sits off the box centre and may leave rows 4..23; only a mirror-symmetric drawing
(mass centre = box centre) lands exactly in 4..23, which `test_symmetric_drawings_fill_the_central_box`
checks.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from capsnet.preprocess import to_mnist

CENTRE = 13.5  # mean of the pixel indices 0..27
LAYOUTS = ["gray", "gray1", "rgb", "rgb_tinted", "rgba_opaque", "rgba_transparent", "la_transparent"]
DTYPES = ["uint8", "uint16", "int32", "float32", "float64_255", "bool"]


# ---------------------------------------------------------------- drawing inked inputs


@st.composite
def drawings(draw, symmetric=False):
    """A pen drawing as a boolean (H, W) mask: True where the ink is."""
    h, w = draw(st.integers(24, 700)), draw(st.integers(24, 700))
    side = min(h, w)
    # Pen: at least 3 px after a large canvas is averaged down by k (longest side > 512: k = 2), and
    # up to 1/8 of the canvas: a thin pen line or a fat marker.
    k = int(np.ceil(max(h, w) / 512))
    pen = draw(st.integers(max(3 * k, side // 50), max(3 * k, side // 8)))
    # The drawing lies in a region of at most 60% of each side, anywhere on the canvas: no row or
    # column of it can look like a frame line, and ink stays far below half the canvas (the
    # polarity rule counts the majority level as the background).
    rh = draw(st.integers(pen, max(pen, int(0.6 * h) - pen)))
    rw = draw(st.integers(pen, max(pen, int(0.6 * w) - pen)))
    top = draw(st.integers(pen, h - rh - pen))
    left = draw(st.integers(pen, w - rw - pen))
    if symmetric:
        # Shapes symmetric about both middle lines of their box, built from distances to its centre
        # (a mirror-symmetric formula), so the mass centre is the box centre.
        kind = draw(st.sampled_from(["box", "ellipse", "ring", "plus"]))
        if k > 1:  # on k x k block boundaries, so averaging the canvas down keeps the symmetry
            top, left, rh, rw = top - top % k, left - left % k, rh - rh % k, rw - rw % k
        ys, xs = np.mgrid[:h, :w]
        dy, dx = np.abs(ys - (top + (rh - 1) / 2)), np.abs(xs - (left + (rw - 1) / 2))  # 0, 0.5, 1, ...
        box = (dy <= (rh - 1) / 2) & (dx <= (rw - 1) / 2)
        if kind == "box":
            mask = box
        elif kind == "ellipse":
            mask = (dy / (rh / 2)) ** 2 + (dx / (rw / 2)) ** 2 <= 1.0
        elif kind == "ring":
            mask = box & ~((dy <= (rh - 1) / 2 - pen) & (dx <= (rw - 1) / 2 - pen))
        else:
            bar_h, bar_w = pen - (rh - pen) % 2, pen - (rw - pen) % 2  # bars exactly in the middle
            mask = box & ((dy <= (bar_h - 1) / 2) | (dx <= (bar_w - 1) / 2))
        return mask
    img = Image.new("L", (w, h), 0)
    pen_draw = ImageDraw.Draw(img)
    # One connected pen stroke (a polyline, like a handwritten digit), optionally with a filled blob
    # on one of its points: lopsided, off-centre, of any aspect ratio.
    n = draw(st.integers(2, 6))
    ys = draw(st.lists(st.integers(top, top + rh - 1), min_size=n, max_size=n))
    xs = draw(st.lists(st.integers(left, left + rw - 1), min_size=n, max_size=n))
    points = list(zip(xs, ys))
    pen_draw.line(points, fill=255, width=pen, joint="curve")
    for x, y in points:  # round pen tips and joints
        pen_draw.ellipse([x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2], fill=255)
    if draw(st.booleans()):
        x, y = points[draw(st.integers(0, n - 1))]
        r = draw(st.integers(pen, max(pen, min(3 * pen, side // 10))))  # region + blob < 80% of a row
        pen_draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
    mask = np.asarray(img) > 0
    assume(mask.mean() < 0.4)  # ink is the minority of pixels, as on any page
    return mask


@st.composite
def rendered(draw, mask):
    """Render a mask in a drawn layout, dtype and polarity: (image, description)."""
    layout = draw(st.sampled_from(LAYOUTS))
    dtype = draw(st.sampled_from(DTYPES))
    light_ink = draw(st.booleans())  # True: white ink on black (the canvas); False: dark on light paper
    if dtype == "bool":
        paper, ink = (0.0, 1.0) if light_ink else (1.0, 0.0)
    elif light_ink:
        paper = draw(st.floats(0.0, 0.3))
        ink = draw(st.floats(paper + 0.5, 1.0))
    else:
        paper = draw(st.floats(0.7, 1.0))
        ink = draw(st.floats(0.0, paper - 0.5))
    level = np.where(mask, ink, paper)  # (H, W) in [0, 1]
    h, w = mask.shape
    if layout == "gray":
        pixels = level
    elif layout == "gray1":
        pixels = level[:, :, None]
    elif layout in ("rgb", "rgba_opaque"):
        pixels = np.repeat(level[:, :, None], 3, axis=2)
    elif layout == "rgb_tinted":  # a colour cast of a few percent per channel
        tint = np.array(draw(st.tuples(*[st.floats(-0.04, 0.04)] * 3)))
        pixels = np.clip(level[:, :, None] + tint, 0.0, 1.0)
    elif layout in ("rgba_transparent", "la_transparent"):
        # The canvas: ink opaque, the rest fully transparent with arbitrary colour underneath.
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        hidden = rng.random((h, w))
        colour = np.where(mask, ink, hidden)
        alpha = mask.astype(np.float64)
        if dtype == "bool":
            colour = np.where(mask, ink, hidden > 0.5)
        channels = [colour] * (3 if layout == "rgba_transparent" else 1)
        pixels = np.stack([*channels, alpha], axis=2)
    if layout == "rgba_opaque":
        pixels = np.concatenate([pixels, np.ones((h, w, 1))], axis=2)
    if dtype == "uint8":
        arr = np.round(pixels * 255).astype(np.uint8)
    elif dtype == "uint16":
        arr = np.round(pixels * 65535).astype(np.uint16)
    elif dtype == "int32":
        arr = np.round(pixels * 255).astype(np.int32)  # 8-bit values in a wide integer type
    elif dtype == "float32":
        arr = pixels.astype(np.float32)
    elif dtype == "float64_255":
        arr = pixels * 255.0  # floats on a 0..255 scale
    else:
        arr = pixels > 0.5
    return arr, f"{layout} {dtype} {'light' if light_ink else 'dark'} ink {ink:.2f} on {paper:.2f}"


@st.composite
def inked_images(draw, symmetric=False):
    mask = draw(drawings(symmetric=symmetric))
    arr, description = draw(rendered(mask))
    return mask, arr, description


# ---------------------------------------------------------------- measuring the output


def bbox(a) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(a)
    return rows.min(), rows.max(), cols.min(), cols.max()


def centre_of_mass(img) -> tuple[float, float]:
    ys, xs = np.mgrid[: img.shape[0], : img.shape[1]]
    return float((ys * img).sum() / img.sum()), float((xs * img).sum() / img.sum())


def halves(a) -> tuple[float, float]:
    """(top - bottom, left - right) share of the ink mass inside its own bounding box."""
    r0, r1, c0, c1 = bbox(a > 0)
    a = a[r0 : r1 + 1, c0 : c1 + 1].astype(np.float64)
    h, w = a.shape
    total = a.sum()
    return (a[: h // 2].sum() - a[(h + 1) // 2 :].sum()) / total, (
        a[:, : w // 2].sum() - a[:, (w + 1) // 2 :].sum()
    ) / total


def assert_clean_digit(out, description=""):
    assert out is not None, f"clearly inked input gave None: {description}"
    assert out.shape == (28, 28) and out.dtype == np.float32, description
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0, description
    assert out.max() > 0.9, description  # strokes saturate, as in MNIST


def assert_centred(out, description=""):
    """Centre of mass at (13.5, 13.5) within the 0.5 px of a whole-pixel shift, unless the digit
    had to be held inside the field, in which case it touches the edge it was pushed against."""
    r0, r1, c0, c1 = bbox(out > 0)
    cy, cx = centre_of_mass(out)
    for com, first, last, axis in ((cy, r0, r1, "row"), (cx, c0, c1, "col")):
        if abs(com - CENTRE) <= 0.5 + 1e-4:
            continue
        # Mass too low: the digit wanted to move up but already starts at row 0 (and vice versa).
        touching = first == 0 if com > CENTRE else last == 27
        event("held inside the field")
        assert touching, f"{axis} centre of mass {com:.2f}, ink {first}..{last}: {description}"


# ---------------------------------------------------------------- properties


SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@SETTINGS
@given(inked_images())
def test_inked_drawings_become_centred_20px_digits(case):
    mask, arr, description = case
    out = to_mnist(arr)
    assert_clean_digit(out, description)
    r0, r1, c0, c1 = bbox(out > 0)
    height, width = r1 - r0 + 1, c1 - c0 + 1
    assert max(height, width) == 20, f"ink box {height}x{width}: {description}"
    assert_centred(out, description)
    # Aspect ratio of the drawn ink kept. Slack: one output pixel of rounding, plus what averaging
    # a large canvas down by an integer factor k (longest side > 512) can move an edge by.
    m0, m1, n0, n1 = bbox(mask)
    in_h, in_w = m1 - m0 + 1, n1 - n0 + 1
    k = int(np.ceil(max(mask.shape) / 512))
    scale = 20 / max(in_h, in_w)
    slack = 1.5 + 2 * k * scale
    assert abs(height - in_h * scale) <= slack and abs(width - in_w * scale) <= slack, (
        f"ink box {height}x{width} from a drawing of {in_h}x{in_w}: {description}"
    )
    # Not flipped or turned: along an axis where the drawing is clearly lopsided and the digit is
    # wide enough to tell (a stroke 1-5 px across has no halves to compare), it leans the same way.
    for drawn, got, extent in zip(halves(mask), halves(out), (height, width)):
        if abs(drawn) > 0.2 and extent >= 6:
            assert np.sign(got) == np.sign(drawn) and abs(got - drawn) < 0.2, (
                f"ink balance {got:.2f} vs drawn {drawn:.2f}: {description}"
            )


@SETTINGS
@given(inked_images(symmetric=True))
def test_symmetric_drawings_fill_the_central_box(case):
    """A drawing symmetric about its box's middle lines has its mass centre at the box centre, so the
    digit sits exactly in MNIST's central 20x20 box: rows and columns 4..23 along its longest side."""
    mask, arr, description = case
    out = to_mnist(arr)
    assert_clean_digit(out, description)
    r0, r1, c0, c1 = bbox(out > 0)
    assert 4 <= r0 and r1 <= 23 and 4 <= c0 and c1 <= 23, (
        f"ink rows {r0}..{r1}, cols {c0}..{c1}: {description}"
    )
    assert (r0, r1) == (4, 23) or (c0, c1) == (4, 23), f"ink rows {r0}..{r1}, cols {c0}..{c1}: {description}"
    cy, cx = centre_of_mass(out)
    assert abs(cy - CENTRE) <= 0.5 + 1e-4 and abs(cx - CENTRE) <= 0.5 + 1e-4, (
        f"centre of mass ({cy:.2f}, {cx:.2f}): {description}"
    )


@settings(max_examples=100, deadline=None)
@given(st.integers(21, 400), st.one_of(st.just(0.5), st.floats(0.0, 1.0)), st.floats(0.3, 1.0), st.booleans())
def test_one_pixel_strokes_are_never_lost(width, stem_at, stem_length, dark_on_light):
    """A 'T' drawn with a 1 px pen, any width, stem anywhere along the bar: scaled down to 20 px, the
    stem is still there below the bar, as bright as a thin line can be (half of the bar's value
    when it falls between two output columns), and where it was drawn."""
    stem_col = round(stem_at * (width - 1))
    length = max(10, round(stem_length * width))
    img = np.zeros((round(width / 0.6), round(width / 0.6)), np.uint8)  # the bar spans 60% of a row
    img[5, 5 : 5 + width] = 255
    img[5 : 5 + length, 5 + stem_col] = 255
    if dark_on_light:
        img = 255 - img
    out = to_mnist(img)
    assert_clean_digit(out, f"T {width} wide, stem at {stem_col}")
    r0, r1, c0, c1 = bbox(out > 0)
    below = out[r0 + 2 : r1 + 1]
    assert len(below) >= length * 20 / width - 3, (
        f"stem shortened: T {width} wide, stem {length} long"
    )  # >= 3
    assert (below.max(axis=1) >= 0.3).all(), f"stem lost: T {width} wide, stem at {stem_col}"
    expected = c0 + stem_col * (c1 - c0) / (width - 1)
    assert np.abs(np.argmax(below, axis=1) - expected).max() <= 1.5


@st.composite
def blank_images(draw):
    """Nothing drawn: a constant picture, faint noise (below the 0.15 contrast a stroke needs), a
    single stray pixel, or a fully transparent canvas whatever colour lies under it."""
    h, w = draw(st.integers(2, 700)), draw(st.integers(2, 700))
    kind = draw(st.sampled_from(["constant", "faint_noise", "one_pixel", "transparent"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = draw(st.floats(0.0, 1.0))
    if kind == "constant":
        level = np.full((h, w), base)
    elif kind == "faint_noise":
        amplitude = draw(st.floats(0.0, 0.12))
        level = np.clip(base + (rng.random((h, w)) - 0.5) * amplitude, 0.0, 1.0)
    elif kind == "one_pixel":
        level = np.full((h, w), base)
        level[draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))] = 1.0 - base
    else:
        rgba = np.concatenate([rng.random((h, w, 3)), np.zeros((h, w, 1))], axis=2)
        return (np.round(rgba * 255).astype(np.uint8), kind)
    layout = draw(st.sampled_from(["gray", "rgb", "rgba_opaque"]))
    if layout == "rgb":
        level = np.repeat(level[:, :, None], 3, axis=2)
    elif layout == "rgba_opaque":
        level = np.concatenate([np.repeat(level[:, :, None], 3, axis=2), np.ones((h, w, 1))], axis=2)
    dtype = draw(st.sampled_from(["uint8", "uint16", "float32"]))
    if dtype == "uint8":
        return np.round(level * 255).astype(np.uint8), f"{kind} {layout} {dtype}"
    if dtype == "uint16":
        arr = np.round(level * 65535).astype(np.uint16)
        # A wide integer image whose values all fit in 0..255 is read as 8-bit data (documented in
        # _as_float_image), so faint 16-bit noise just above black would be 8-bit ink: not blank.
        assume(not 0 < arr.max() <= 255)
        return arr, f"{kind} {layout} {dtype}"
    return level.astype(np.float32), f"{kind} {layout} {dtype}"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(blank_images())
def test_blank_and_near_blank_inputs_give_none(case):
    arr, description = case
    assert to_mnist(arr) is None, description


# ---------------------------------------------------------------- anything at all


DTYPES_ANY = [np.uint8, np.uint16, np.float32, np.float64, np.bool_, np.int32]
side = st.one_of(st.integers(0, 40), st.integers(41, 700), st.sampled_from([1, 2, 3999, 4000]))


@st.composite
def any_images(draw):
    """Arbitrary arrays of every valid shape and dtype: noise, NaN/Inf, huge and empty ones."""
    h, w = draw(side), draw(side)
    if h * w > 2_000_000:  # keep the huge ones thin in channels so a run stays fast
        channels = draw(st.sampled_from([None, 1]))
    else:
        channels = draw(st.sampled_from([None, 1, 2, 3, 4]))
    dtype = draw(st.sampled_from(DTYPES_ANY))
    shape = (h, w) if channels is None else (h, w, channels)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["constant", "noise", "strokes", "border", "extreme"]))
    top = {np.uint8: 255, np.uint16: 65535, np.int32: 1000, np.bool_: 1}.get(dtype, 1.0)
    a = np.full(shape, draw(st.sampled_from([0.0, 1.0, 0.5])) * top, dtype=np.float64)
    if kind == "noise":
        a = rng.random(shape) * top
    elif kind in ("strokes", "border") and h and w:
        if kind == "strokes":
            for _ in range(draw(st.integers(1, 4))):
                y, x = rng.integers(0, h), rng.integers(0, w)
                a[y : y + max(1, h // 5), x : x + max(1, w // 12)] = rng.random() * top
        else:
            a[0], a[-1], a[:, 0], a[:, -1] = top, top, top, top
    elif kind == "extreme" and a.size and np.dtype(dtype).kind == "f":
        flat = a.reshape(-1)
        idx = rng.integers(0, flat.size, size=min(flat.size, 50))
        flat[idx] = rng.choice([np.nan, np.inf, -np.inf, 1e30, -5.0], size=len(idx))
    if np.dtype(dtype).kind == "f":
        return a.astype(dtype)
    return np.clip(np.nan_to_num(a, nan=0), 0, top).astype(dtype)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(any_images())
def test_any_valid_array_gives_none_or_a_clean_centred_digit(img):
    """Robustness: no exception for any valid array, and whatever comes back keeps the contract."""
    out = to_mnist(img)
    if out is None:
        event("None")
        return
    event("digit")
    assert_clean_digit(out)
    r0, r1, c0, c1 = bbox(out > 0)
    assert max(r1 - r0, c1 - c0) + 1 == 20
    assert_centred(out)


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(
        st.lists(st.integers(0, 3), min_size=0, max_size=5).map(lambda dims: np.zeros([d + 5 for d in dims])),
        st.tuples(st.integers(1, 30), st.integers(1, 30), st.integers(5, 9)).map(np.zeros),
        st.text(max_size=20),
        st.none(),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
)
def test_bad_arrays_raise_readable_errors(bad):
    arr = np.asarray(bad) if isinstance(bad, np.ndarray) else None
    valid = arr is not None and (arr.ndim == 2 or (arr.ndim == 3 and 1 <= arr.shape[2] <= 4))
    if valid:
        assert to_mnist(bad) is None  # an all-zero picture: nothing drawn
        return
    with pytest.raises((ValueError, TypeError), match="image|pixels|shape") as e:
        to_mnist(bad)
    assert len(str(e.value)) > 10
