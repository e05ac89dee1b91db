"""The equivariance lab (app/sections/lab.py) through Streamlit's AppTest, on the shipped CapsNet
and the shipped baseline CNN: share-link clamping, sliders, reset, the sweep, a missing or broken CNN."""

import base64
import json

import numpy as np
import pytest
import torch
from test_apptest import LABELS, SAMPLES, image_urls, new_app

import capsnet
from capsnet.baseline import load_baseline
from capsnet.preprocess import to_mnist
from capsnet.transforms import affine

CNN = capsnet.DEFAULT_CHECKPOINT.with_name("cnn_mnist.pt")


@pytest.fixture
def shipped(monkeypatch):
    monkeypatch.setenv("CAPSNET_CHECKPOINT", str(capsnet.DEFAULT_CHECKPOINT))
    monkeypatch.setenv("CAPSNET_CNN_CHECKPOINT", str(CNN))


def lab_text(at) -> str:
    return "\n".join(m.value for m in at.container(key="lab").get("markdown"))


def lab_sliders(at) -> dict:
    return {name: at.slider(key=f"lab_{name}").value for name in ("rotate", "scale", "shear", "tx", "ty")}


def plotly_array(value) -> np.ndarray:
    """A Plotly JSON array: a list, or {"dtype", "bdata"} (base64 typed array, Plotly >= 6)."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    return np.asarray(value)


def test_share_link_values_are_clamped_to_the_sliders_and_written_back(shipped):
    at = new_app()
    at.query_params.update(
        {"sample": "11", "view": "lab", "rot": "1000", "scale": "abc", "shear": "-inf", "tx": "nan", "ty": "-2.26",
         "sweep": "<script>"}
    )  # fmt: skip
    at.run()
    assert not at.exception and not at.error
    assert lab_sliders(at) == {"rotate": 60.0, "scale": 1.0, "shear": -45.0, "tx": 0.0, "ty": -2.5}
    assert at.radio(key="lab_family").value == "rotation"
    lab_keys = {
        k: v for k, v in at.query_params.items() if k in ("rot", "scale", "shear", "tx", "ty", "sweep")
    }
    assert lab_keys == {"rot": "60", "shear": "-45", "ty": "-2.5"}  # defaults are left out of the link


def test_untransformed_digit_reads_its_label_in_both_networks_and_the_sliders_act(shipped):
    at = new_app()
    at.query_params.update({"sample": "12", "view": "lab"})
    at.run()
    assert not at.exception and not at.warning
    label = int(LABELS[12])
    text = lab_text(at)
    assert f"CapsNet reads **{label}**" in text and f"The CNN reads **{label}**" in text
    assert f"CapsNet reads {label} for " in text  # the sweep follows the predicted capsule
    seen, *_ = image_urls(at, "lab")
    strip_url = image_urls(at, "lab_strip")

    at.slider(key="lab_rotate").set_value(45.0).run()
    assert not at.exception
    assert at.query_params["rot"] == "45" and at.query_params["sample"] == "12"
    assert image_urls(at, "lab")[0] != seen  # the input the networks see has turned
    assert image_urls(at, "lab_strip") == strip_url  # the sweep starts from the untransformed digit

    at.button(key="lab_reset").click().run()
    assert lab_sliders(at) == {"rotate": 0.0, "scale": 1.0, "shear": 0.0, "tx": 0.0, "ty": 0.0}
    assert "rot" not in at.query_params and image_urls(at, "lab")[0] == seen


def test_the_lab_shows_what_the_library_computes_for_the_transformed_input(shipped):
    """Wiring: the slider values reach capsnet.transforms.affine on the image the page feeds the
    network, and both shipped models' answers are the ones shown."""
    at = new_app()
    at.query_params.update({"sample": "5", "view": "lab", "rot": "-35", "scale": "0.8", "tx": "2"})
    at.run()
    assert not at.exception
    x = torch.from_numpy(to_mnist(SAMPLES[5])).float().reshape(1, 1, 28, 28)
    xt = affine(x, rotate=-35.0, scale=0.8, tx=2.0)
    with torch.no_grad():
        lengths = capsnet.load_model(capsnet.DEFAULT_CHECKPOINT)(xt, iterations=3).lengths[0]
        probs = torch.softmax(load_baseline(CNN)(xt), dim=1)[0]
    j, k = int(lengths.argmax()), int(probs.argmax())
    text = lab_text(at)
    assert f"CapsNet reads **{j}** (length {lengths[j]:.2f})" in text
    assert f"The CNN reads **{k}** (probability {probs[k]:.2f})" in text


def test_the_sweep_family(shipped):
    at = new_app()
    at.query_params.update({"sample": "3", "view": "lab", "tx": "-3", "sweep": "translation"})
    at.run()
    assert not at.exception
    assert at.radio(key="lab_family").value == "translation"
    assert "Across translation from -6 px to 6 px" in lab_text(at)

    def sweep():  # the sweep chart's figure and the strip's picture
        (chart,) = at.container(key="lab_sweep").get("plotly_chart")
        return chart.proto.spec, image_urls(at, "lab_strip")

    before = sweep()
    at.radio(key="lab_family").set_value("scale").run()
    assert not at.exception
    assert at.query_params["sweep"] == "scale" and "Across scale from 0.5× to 1.5×" in lab_text(at)
    after = sweep()
    assert len(after[1]) == 1 and "scale" in after[0]  # one strip; the chart's axis is the scale
    assert after[0] != before[0] and after[1] != before[1]  # redrawn for the new family


@pytest.mark.parametrize("content", [None, b"not a checkpoint"])
def test_without_a_usable_cnn_the_lab_says_so_and_shows_capsnet(shipped, tmp_path, monkeypatch, content):
    path = tmp_path / "cnn.pt"
    if content is not None:
        path.write_bytes(content)
    monkeypatch.setenv("CAPSNET_CNN_CHECKPOINT", str(path))
    at = new_app()
    at.query_params.update({"sample": "12", "view": "lab"})
    at.run()
    assert not at.exception and not at.error
    (warning,) = at.container(key="lab").get("warning")
    expected = "--arch cnn" if content is None else "could not be loaded"
    assert expected in warning.value and str(path) in warning.value
    assert f"CapsNet reads **{int(LABELS[12])}**" in lab_text(at) and "CNN reads" not in lab_text(at)


ROBUSTNESS = capsnet.DEFAULT_CHECKPOINT.with_name("robustness.json")


def test_the_measured_comparison_is_shown_for_the_checkpoints_it_was_measured_on(
    shipped, tmp_path, monkeypatch
):
    result = json.loads(ROBUSTNESS.read_text())
    at = new_app()
    at.query_params.update({"sample": "12", "view": "lab"})
    at.run()
    assert not at.exception
    text = "\n".join(m.value for m in at.container(key="lab_measured").get("markdown"))
    for model in ("capsnet", "cnn"):
        for key in ("clean", "random_affine"):
            assert f"{result['models'][model][key]['accuracy']:.2%}" in text
    assert "79%" in text and "66%" in text  # the paper's affNIST figures beside ours
    (chart,) = at.container(key="lab_measured").get("plotly_chart")  # one chart, a panel per family
    assert chart.proto.spec.count('"name":"CapsNet"') == 4

    # Other CNN weights: the stored figures are not theirs, so they are not shown.
    other = tmp_path / "cnn_copy.pt"
    other.write_bytes(CNN.read_bytes())
    monkeypatch.setenv("CAPSNET_CNN_CHECKPOINT", str(other))
    at = new_app()
    at.query_params.update({"sample": "12", "view": "lab"})
    at.run()
    assert not at.exception
    assert "CNN reads" in lab_text(at)
    with pytest.raises(KeyError):
        at.container(key="lab_measured")


def test_the_lab_states_both_training_budgets_from_the_two_files(shipped):
    caps = json.loads(capsnet.DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
    cnn = json.loads(CNN.with_suffix(".json").read_text())
    runs = caps.get("lineage") or [{"epochs": caps["epochs"], "hours": caps["train_seconds"] / 3600}]
    caps_epochs, caps_hours = sum(r["epochs"] for r in runs), sum(r["hours"] for r in runs)
    at = new_app()
    at.query_params.update({"sample": "12", "view": "lab"})
    at.run()
    caption = "\n".join(c.value for c in at.container(key="lab").get("caption"))
    assert f"CapsNet {caps_epochs:g} epochs in {caps_hours:.1f} h" in caption
    assert f"the CNN {cnn['epochs']:g} epochs in {cnn['train_seconds'] / 3600:.1f} h" in caption
    same = abs(caps_epochs - cnn["epochs"]) < 0.05
    assert ("budgets differ" in caption) == (not same)
