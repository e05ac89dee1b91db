"""The overview's stages draw this input's numbers, each from the right tensor: the pictures the
page hands to st.image, caught on their way, against the library's own traced forward redone here.

A stage that read the wrong iteration, or drew a blank picture, passes the page-flow tests (they
look at headings and captions); it fails here.
"""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from test_apptest import SAMPLES, new_app, stage_captions

import capsnet
from app import routing_measures
from app.sections import overview
from app.sentences import fmt2
from capsnet.preprocess import to_mnist


@pytest.fixture(scope="module")
def model():
    return capsnet.load_model(capsnet.DEFAULT_CHECKPOINT)


@pytest.fixture
def pictures(monkeypatch) -> list:
    """Every picture the overview draws in a run: (builder, args, PNG bytes), in page order."""
    drawn = []
    real = overview.picture

    def spy(builder, *args, **kwargs):
        png = real(builder, *args, **kwargs)
        drawn.append((builder, args, png))
        return png

    monkeypatch.setattr(overview, "picture", spy)
    return drawn


def rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)  # (H, W, 3)


@pytest.mark.parametrize("index", [11, 4])
def test_the_routing_stage_shows_how_c_moved_by_the_last_iteration(shipped, model, pictures, index):
    pixels = to_mnist(SAMPLES[index])
    with torch.no_grad():
        out = model(torch.from_numpy(pixels.astype(np.float32))[None, None], iterations=3, trace=True)
    c = out.coupling[:, 0].double().numpy()  # (3, 1152, 10)
    digit = int(out.prediction[0])
    moved = c[-1, :, digit] - c[0, :, digit]  # (1152,): from uniform to the last iteration
    want = routing_measures.field_map(moved, ink=pixels)  # (28, 28), 0 off the ink
    assert np.abs(want).max() > 1e-3  # routing moved c visibly for this input

    at = new_app()
    at.query_params.update({"sample": str(index), "iters": "3"})
    at.run()
    assert not at.exception and at.metric[0].value == str(digit)

    (stage,) = [(args, png) for builder, args, png in pictures if builder == "signed_overlay_image"]
    (_, on_ink, limit), png = stage
    np.testing.assert_allclose(on_ink, want, atol=1e-7)  # the last iteration's c, no other
    for t in range(2):  # ... and not the c of an earlier iteration
        earlier = routing_measures.field_map(c[t, :, digit] - c[0, :, digit], ink=pixels)
        assert np.abs(on_ink - earlier).max() > 1e-3
    assert limit == pytest.approx(np.abs(want).max(), rel=1e-4)  # c - 0.1 there, c - c[0] here
    captions = stage_captions(at)
    assert (
        f"Δc to {digit}, summed over the 32 types, on the ink: red rose, blue fell (±{fmt2(np.abs(want).max())})"
        in captions
    )

    # Not blank: every input pixel whose change is at least 0.6 of the range is drawn in colour, 5 x 5
    # screen pixels each. At f = |value| / range the colour is f of the way from white to red (or
    # blue), at opacity 0.85 f, over the grey input: |R - B| = 141 f^2 >= 50 (blue: 134 f^2 >= 48).
    img = rgb(png)
    tinted = np.count_nonzero(np.abs(img[..., 0] - img[..., 2]) > 40)
    strong = np.count_nonzero(np.abs(want) >= 0.6 * np.abs(want).max())
    assert tinted >= strong * 5 * 5 > 0, (tinted, strong)


def test_no_stage_of_the_overview_is_blank(shipped, pictures):
    at = new_app()
    at.query_params.update({"sample": "11", "iters": "3"})
    at.run()
    assert not at.exception
    builders = [builder for builder, _, _ in pictures]
    assert builders == ["digit_image", "activation_mosaic_image", "signed_overlay_image", "digit_image"]
    for builder, _, png in pictures:
        img = rgb(png)
        assert img.std() > 20, f"{builder} is (nearly) uniform"
