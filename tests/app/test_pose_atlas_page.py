"""The pose atlas on the page (AppTest, shipped weights): sliders and Figure 4 rows named from
checkpoints/pose_atlas.json for the inspected digit, this input's measures beside the atlas's,
and no names at all when the atlas is missing or was measured on other weights."""

import json
import shutil

import numpy as np
import pytest
import torch
from test_apptest import SAMPLES, new_app, open_view, pose_data, shown

import capsnet
from capsnet import atlas
from capsnet.preprocess import to_mnist

ATLAS = json.loads(atlas.DEFAULT_ATLAS.read_text())


def pose_page(query: dict):
    at = new_app()
    at.query_params.update({"view": "pose", **query})
    return at.run()


def test_sliders_are_named_by_the_atlas_for_the_inspected_digit(shipped):
    at = pose_page({"sample": "7", "capsule": "4"})
    assert not at.exception and not at.warning
    names = pose_data(at)[0]["names"]
    assert len(names) == 16
    for d, name in enumerate(names):
        cell = ATLAS["digits"][4][d]  # digit 4's own row of the file, never another digit's
        assert name.startswith(f"dim {d} · {cell['label']}")
    other = pose_data(pose_page({"sample": "7", "capsule": "5"}))[0]["names"]
    assert [n.split(" · ")[1].split(" (")[0] for n in other] == [c["label"] for c in ATLAS["digits"][5]]
    assert (
        shown(at, "pose_atlas")
        and f"{ATLAS['per_digit']} test digits of each class"
        in at.container(key="pose_atlas").markdown[0].value
    )


def test_this_inputs_measures_beside_the_atlas_average(shipped):
    at = pose_page({"sample": "12", "dim": "6"})
    assert not at.exception
    assert at.selectbox(key="pose_dim").value == 6 and at.query_params["dim"] == "6"
    digit = int(at.metric[0].value)  # the inspected capsule is the prediction
    model = capsnet.load_model(capsnet.DEFAULT_CHECKPOINT)
    x = torch.from_numpy(to_mnist(SAMPLES[12]).astype(np.float32))[None, None]
    with torch.no_grad():
        poses = model(x, iterations=3).poses[0]
        live = atlas.measure_dimension(model, poses, digit, 6)
    table = at.container(key="pose_measure").markdown[-1].value
    rows = {line.split("|")[1].strip().split(" ")[0]: line.split("|")[2:4] for line in table.splitlines()[2:]}
    # One definition with the atlas's map and the sliders' names: the standardised effects, px per unit.
    avg = ATLAS["digits"][digit][6]["standardised"]
    for m in ("ink", "x", "y", "width", "height", "slant"):
        assert float(rows[m][0]) == pytest.approx(live["standardised"][m], abs=0.006)
        assert float(rows[m][1]) == pytest.approx(avg[m], abs=0.006)
    text = at.container(key="pose_measure").markdown[-2].value
    assert live["label"] in text and ATLAS["digits"][digit][6]["label"] in text

    at.selectbox(key="pose_dim").select(2).run()  # another dimension: measured again, outlined
    assert not at.exception and pose_data(at)[0]["chosen"] == 2 and at.query_params["dim"] == "2"


def test_figure4_rows_carry_the_same_names(shipped):
    at = new_app()
    at.query_params.update({"sample": "7", "capsule": "4", "view": "figure4"})
    at.run()
    assert not at.exception
    assert (
        "Each row is named by what that dimension does to a 4" in at.container(key="grid").markdown[0].value
    )


@pytest.mark.parametrize("case", ["missing", "other weights"])
def test_no_atlas_for_these_weights_means_no_names(tmp_path, monkeypatch, random_checkpoint, case):
    """Weights without an atlas beside them, or beside an atlas of other weights: the page says so
    and how to make one, and never labels a slider."""
    weights = tmp_path / "capsnet_mnist.pt"
    if case == "missing":
        shutil.copy(capsnet.DEFAULT_CHECKPOINT, weights)
    else:  # the shipped atlas next to random weights
        shutil.copy(random_checkpoint, weights)
        shutil.copy(atlas.DEFAULT_ATLAS, tmp_path / "pose_atlas.json")
    monkeypatch.setenv("CAPSNET_CHECKPOINT", str(weights))
    at = pose_page({"sample": "7"})
    assert not at.exception
    warning = " ".join(w.value for w in at.warning)
    assert "The sliders are not named" in warning and "python -m capsnet.atlas" in warning
    assert ("No pose atlas" in warning) if case == "missing" else ("measured on other weights" in warning)
    assert pose_data(at)[0]["names"] == [f"dim {d}" for d in range(16)]
    assert not shown(at, "pose_atlas")
    open_view(at, "figure4")
    assert "The rows are not named" in at.container(key="grid").markdown[0].value


def test_an_atlas_for_the_file_is_not_used_for_other_weights_still_served(
    tmp_path, monkeypatch, random_checkpoint
):
    """The server keeps serving the weights it loaded; if the file is then replaced by the weights
    the atlas beside it describes, the atlas still does not describe what is served."""
    weights = tmp_path / "capsnet_mnist.pt"
    shutil.copy(random_checkpoint, weights)
    shutil.copy(atlas.DEFAULT_ATLAS, tmp_path / "pose_atlas.json")
    monkeypatch.setenv("CAPSNET_CHECKPOINT", str(weights))
    at = pose_page({"sample": "7"})
    assert "measured on other weights" in " ".join(w.value for w in at.warning)
    shutil.copy(capsnet.DEFAULT_CHECKPOINT, weights)  # now the file is the one the atlas was measured on
    at.run()
    assert not at.exception
    assert "was replaced since this server loaded its weights" in " ".join(w.value for w in at.warning)
    assert pose_data(at)[0]["names"] == [f"dim {d}" for d in range(16)]
