"""The clickable capsule maps' data (app/capsule_map.py), built from numbers whose answers are
known: where each capsule sits, its colour, the outline, the hover note and the atlas's colours."""

import numpy as np
import pytest
from test_images import hex_rgb as rgb

from app import capsule_map as M
from app import palette as P


def packed(colors: str, k: int) -> tuple[int, int, int]:
    """Cell k's colour in a packed "rrggbb..." string."""
    return rgb("#" + colors[6 * k : 6 * k + 6])


def test_primary_map_puts_each_capsule_on_its_type_panel():
    """The map's panels spec (the page places cell k from it: tests/app/test_browser.py reads the
    drawn pixels), one packed colour per capsule from the scale's first to its last colour, and the
    value the hover prints."""
    u = np.linspace(0.2, 1.0, 1152)
    data = M.primary_map(u, inspected=737)
    assert data["kind"] == "cells" and data["size"] == [55, 27]
    assert data["panels"] == {"n": 1152, "per_row": 8, "pitch": [7, 7], "head": 0}
    assert data["outline"] == 737 and len(data["colors"]) == 6 * 1152
    lut = P.lut(P.PRIMARY_SCALE)
    assert packed(data["colors"], 0) == tuple(np.round(lut[0, :3]).astype(int))
    assert packed(data["colors"], 1151) == tuple(np.round(lut[-1, :3]).astype(int))
    assert data["fields"]["u"][737] == 0.712 and data["formats"]["u"] == [3, False]  # 0.2 + 0.8 * 737 / 1151
    assert data["tip"].startswith("primary capsule i = {i}: type {t}, grid ({r}, {c})<br>|u_i| = {u}")


def test_digit_bars_mark_prediction_and_inspected():
    lengths = np.linspace(0.05, 0.5, 10)
    lengths[7] = 0.95
    data = M.digit_bars(lengths, prediction=7, inspected=3, hint="click: inspect it")
    assert data["kind"] == "bars" and data["values"] == pytest.approx(list(lengths))
    assert data["colors"][7] == P.WINNER and all(c == P.OTHER for j, c in enumerate(data["colors"]) if j != 7)
    assert data["outline"] == 3 and data["labels"] == [str(j) for j in range(10)]
    assert sorted(v for v, _ in data["lines"]) == [0.1, 0.9]  # the margin-loss targets
    assert (
        data["tip"].replace("{j}", "7").format(v=data["fields"]["v"][7])
        == "digit capsule 7: |v_7| = 0.950<br>click: inspect it"
    )
    # Without thresholds (the lab's CNN probabilities): the same bars, no margin lines.
    probs = M.digit_bars(lengths, prediction=7, thresholds=False, what="probability")
    assert probs["lines"] == [] and probs["outline"] is None and probs["values"] == data["values"]


def test_the_capsule_length_chart_draws_the_models_lengths(shipped):
    """Wherever the page shows the 10 lengths, the bars are the model's |v_j|: float32 lengths of a
    real forward pass, as floats, in digit order, the prediction in the winner colour."""
    import torch

    import capsnet
    from app import inputs

    model = capsnet.load_model(shipped)
    images, _ = inputs.load_samples()
    x = torch.from_numpy(images[11].astype(np.float32) / 255.0).reshape(1, 1, 28, 28)
    with torch.no_grad():
        out = model(x, iterations=3)
    lengths = out.lengths[0].numpy()
    data = M.digit_bars(lengths, int(out.prediction[0]), 2)
    assert data["values"] == [float(v) for v in lengths]
    assert [c == P.WINNER for c in data["colors"]] == [j == int(np.argmax(lengths)) for j in range(10)]


def test_type_panels_put_each_capsule_on_its_numbered_panel_on_the_diverging_scale():
    """Capsule i = 36 t + 6 r + c sits on panel t (row t // 8, column t % 8, 7 cells apart across
    and 9 down: 6 cells, a gap, a 2-cell heading with t above the panel); +limit is the scale's red
    end, -limit (or beyond) its blue end, 0 white; the hover gives the value as the model's."""
    v = np.zeros(1152)
    v[737] = 0.01  # type 20, grid (2, 5): panel row 2, column 4
    v[0] = -0.05  # beyond the range: the blue end
    v[1] = 0.004
    data = M.type_panels(v, 0.01, "Δc", 3)
    assert data["panels"] == {"n": 1152, "per_row": 8, "pitch": [7, 9], "head": 2}
    assert (
        packed(data["colors"], 737) == P.DIVERGING_RGB[2] and packed(data["colors"], 0) == P.DIVERGING_RGB[0]
    )
    assert min(packed(data["colors"], 5)) >= 254  # zero: white
    assert data["fields"]["v"][1] == 0.004 and data["fields"]["v"][737] == 0.01
    assert data["formats"]["v"] == [4, True]  # printed +0.0040
    labels = {text: (x, y) for x, y, text in data["labels"]}
    assert sorted(labels, key=int) == [str(t) for t in range(32)]
    assert labels["20"] == (4 * 7 + 3, 2 * 9 + 2 - 0.4)  # centred above its panel
    assert [4 * 7, 2 * 9 + 2, 6, 6] in data["frames"]


def _cell(label: str, strength: float) -> dict:
    effects = dict(ink=1.0, x=0.5, y=0.0, width=0.0, height=0.0, slant=0.0, local=0.1)
    return {"label": label, "strength": strength, "effects": effects, "agreement": 0.9}


def test_atlas_map_colours_cells_by_family_and_strength():
    digits = [[_cell("no visible change", 0.0) for _ in range(16)] for _ in range(10)]
    digits[3][12] = _cell("wider", 6.0)  # the atlas's strongest effect: the size family's dark end
    digits[3][2] = _cell("wider", 3.0)  # half as strong: half way from light to dark
    digits[7][5] = _cell("local part", 0.6)  # a local part: its share
    digits[0][0] = _cell("moves left", 1.5)
    data = M.atlas_map({"digits": digits}, digit=3, dim=12)
    k = lambda j, d: j * 16 + d  # noqa: E731
    assert (data["x"][k(3, 12)], data["y"][k(3, 12)]) == (12, 3)
    _, light, dark = M.ATLAS_FAMILIES["size"]
    assert data["colors"][k(3, 12)] == dark
    half = tuple(round((a + b) / 2) for a, b in zip(rgb(light), rgb(dark)))
    assert np.abs(np.subtract(rgb(data["colors"][k(3, 2)]), half)).max() <= 1
    _, light, dark = M.ATLAS_FAMILIES["local part"]
    want = tuple(round(a + 0.6 * (b - a)) for a, b in zip(rgb(light), rgb(dark)))
    assert rgb(data["colors"][k(7, 5)]) == want
    assert data["texts"][k(3, 12)] == "wider\n6.0" and data["texts"][k(7, 5)] == "local\n60%"
    assert data["texts"][k(0, 0)] == "←\n1.5" and data["texts"][k(9, 15)] == "–"
    assert data["outline"] == k(3, 12)
    assert data["fields"]["text"][k(3, 12)].startswith("digit 3, dim 12: <b>wider</b>")
