"""The lab view: the equivariance lab. Rotate, scale, shear and move the 28x28 image the network sees
and compare CapsNet (lengths, pose, reconstruction) with the baseline CNN of capsnet.baseline;
then sweep one transform across its range in one batched forward per model.

The transform acts after to_mnist, which would otherwise undo scale and position. The sliders
live in a fragment: moving one reruns this section only. Their values are in the share link
(?rot=&scale=&shear=&tx=&ty=&sweep=), clamped to the ranges shown.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import streamlit as st

import capsnet
from app import cache, pixel_arrays, sentences, sweep_measures
from app import figures as F
from app.cache import picture
from app.capsule_map import capsule_map, digit_bars
from app.sentences import fmt2
from app.view_context import ViewContext
from capsnet.transforms import DEFAULTS, FAMILIES, RANGES, clamp_params

# parameter -> (URL name, slider label, step, format)
SLIDERS = {
    "rotate": ("rot", "Rotation (degrees, + is counter-clockwise)", 1.0, "%.0f°"),
    "scale": ("scale", "Scale", 0.05, "%.2f×"),
    "shear": ("shear", "Shear (degrees, + leans like italics)", 1.0, "%.0f°"),
    "tx": ("tx", "Move right (pixels)", 0.5, "%.1f px"),
    "ty": ("ty", "Move down (pixels)", 0.5, "%.1f px"),
}
SWEEP_URL = "sweep"
STEPS = 31
UNITS = {"rotation": "°", "scale": "×", "shear": "°", "translation": " px"}
AXIS_TITLES = {
    "rotation": "rotation, degrees",
    "scale": "scale",
    "shear": "shear, degrees",
    "translation": "move right, pixels",
}
ROOT = Path(__file__).resolve().parents[2]
# Sabour et al. 2017, section 5.2: (expanded MNIST test accuracy, affNIST test accuracy).
PAPER_AFFNIST = {"capsnet": (0.9923, 0.79), "cnn": (0.9922, 0.66)}
TRAIN_CNN = (
    "python -m capsnet.train --data-root DIR --arch cnn --epochs 4 --batch-size 64 --lr-decay 0.9 "
    "--out checkpoints/cnn_mnist.pt"
)


def _key(name: str) -> str:
    return f"lab_{name}"


def _snap(name: str, value: float) -> float:
    """A value on its slider's grid (a share link may hold any number)."""
    step = SLIDERS[name][2]
    return round(round(value / step) * step, 4)


def init_state() -> None:
    """Defaults, and on a session's first run the share link's values, clamped to the ranges."""
    if "lab_started" not in st.session_state:
        st.session_state.lab_started = True
        qp = st.query_params
        given = {name: qp.get(url) for name, (url, *_) in SLIDERS.items()}
        for name, value in clamp_params(**given).items():
            st.session_state[_key(name)] = _snap(name, value)
        if qp.get(SWEEP_URL) in FAMILIES:
            st.session_state[_key("family")] = qp[SWEEP_URL]
    for name in SLIDERS:
        st.session_state.setdefault(_key(name), DEFAULTS[name])
    st.session_state.setdefault(_key("family"), "rotation")


def params() -> dict[str, float]:
    """The sliders' values, clamped (session state can be written by anything)."""
    return clamp_params(**{name: st.session_state.get(_key(name)) for name in SLIDERS})


def query_params() -> dict[str, str]:
    """The lab's part of the share link: only what differs from the defaults."""
    out = {SLIDERS[name][0]: f"{v:g}" for name, v in params().items() if v != DEFAULTS[name]}
    family = st.session_state.get(_key("family"), "rotation")
    if family != "rotation":
        out[SWEEP_URL] = family
    return out


def _sync_url() -> None:
    """Inside the fragment (the page's own writer runs only on full reruns): set the lab's keys."""
    want = query_params()
    for url in [s[0] for s in SLIDERS.values()] + [SWEEP_URL]:
        if url in want and st.query_params.get(url) != want[url]:
            st.query_params[url] = want[url]
        elif url not in want and url in st.query_params:
            del st.query_params[url]


def _reset() -> None:
    for name in SLIDERS:
        st.session_state[_key(name)] = DEFAULTS[name]


def _load_cnn():
    """(model, None) or (None, why it is missing)."""
    path = cache.cnn_checkpoint_path()
    if not path.exists():
        return None, (
            f"No baseline CNN at `{path}`: the lab shows CapsNet alone. Train one (the shipped "
            f"CNN's 4 epochs):\n\n```\n{TRAIN_CNN}\n```"
        )
    try:
        return cache.load_cnn(str(path)), None
    except capsnet.CheckpointError as e:
        return None, f"The baseline CNN could not be loaded, so the lab shows CapsNet alone.\n\n{e}"


def _answer(name: str, scores: np.ndarray, what: str) -> str:
    j = int(np.argmax(scores))
    return f"{name} reads **{j}** ({what} {scores[j]:.2f})"


@st.fragment
def _lab(model, cnn, version: str, pixel_bytes: bytes, iterations: int) -> None:
    """Reruns alone when a slider or the sweep family changes (the page above is not redone)."""
    col_ctl, col_img, col_caps, col_cnn = st.columns([1.1, 0.7, 1.1, 1.1], gap="medium")
    with col_ctl:
        for name, (_, label, step, fmt) in SLIDERS.items():
            lo, hi = RANGES[name]
            st.slider(label, lo, hi, step=step, format=fmt, key=_key(name))
        st.button("Reset the transform", on_click=_reset, key="lab_reset")
    p = params()
    res = cache.lab_transform(model, cnn, version, pixel_bytes, iterations, tuple(sorted(p.items())))
    winner = int(res["prediction"][0])
    with col_img:
        st.image(
            [picture("digit_image", res["images"][0], 6), picture("digit_image", res["recon"], 6)],
            caption=["what both networks see", f"decoded from capsule {winner}"],
            output_format="PNG",
        )
    with col_caps:
        st.markdown(_answer("CapsNet", res["lengths"][0], "length"))
        capsule_map("lab_capsnet_bars", digit_bars(res["lengths"][0], winner), max_width=460)
    with col_cnn:
        if res["cnn_probs"] is None:
            st.info("No CNN loaded (see above).")
        else:
            probs = res["cnn_probs"][0]
            st.markdown(_answer("The CNN", probs, "probability"))
            best = int(np.argmax(probs))
            capsule_map("lab_cnn_bars", digit_bars(probs, best, thresholds=False, what="probability",
                                                   label=f"The CNN's 10 probabilities: {best} is the largest"),
                        max_width=460)  # fmt: skip

    st.subheader("Sweep one transform across its range")
    family = st.radio(
        "Transform to sweep", list(FAMILIES), horizontal=True, key=_key("family"),
        format_func=lambda f: f"{f} ({RANGES[FAMILIES[f]][0]:g} to {RANGES[FAMILIES[f]][1]:g}{UNITS[f]})",
    )  # fmt: skip
    _sync_url()  # the sliders' and the family's values, now that both are read
    sw = cache.lab_sweep(model, cnn, version, pixel_bytes, iterations, family, STEPS)
    values, followed = sw["values"], sw["followed"]
    lo, hi = RANGES[FAMILIES[family]]
    summary = sweep_measures.sweep_summary(values, sw["lengths"], sw["poses"], followed, sw["cnn_probs"])
    st.markdown(
        f"The untransformed digit, {family} alone moved over {STEPS} steps (the other sliders are "
        f"not applied here; the dashed line marks the {family} slider). "
        + sentences.sweep_sentence(summary, family, f"{lo:g}{UNITS[family]} to {hi:g}{UNITS[family]}")
    )
    poses = sw["poses"][:, followed]  # (S, 16)
    change = poses - poses[STEPS // 2]  # 0 at the identity
    limit = pixel_arrays.symmetric_limit(change)
    with st.container(key="lab_sweep"):
        st.plotly_chart(
            F.sweep_figure(values, sw["lengths"], sw["cnn_probs"], change, limit, followed, AXIS_TITLES[family],
                           marker=p[FAMILIES[family]]),
            key="lab_sweep_chart", alt=f"The {family} sweep: lengths, probabilities and pose changes",
        )  # fmt: skip
        st.caption(
            f"Top: CapsNet's 10 capsule lengths along the sweep (capsule {followed} thick)"
            + (
                ""
                if sw["cnn_probs"] is None
                else f"; then the CNN's 10 probabilities (digit {followed} thick)"
            )
            + f". Bottom: the 16 pose dimensions of capsule {followed} as the change from the untransformed "
            f"digit's pose (white = unchanged, red = larger, blue = smaller, ±{fmt2(limit)}); equivariance "
            "would show as smooth colour gradients across a row."
        )
    with st.container(key="lab_strip"):
        st.image(
            picture("image_strip", [sw["images"], sw["recon"]]),
            output_format="PNG",
            caption=f"Every step of the sweep, {family} {values[0]:g}{UNITS[family]} (left) to "
            f"{values[-1]:g}{UNITS[family]} (right) in {STEPS} steps: top, what the networks see; bottom, "
            f"the decoder's redrawing from capsule {followed}.",
        )


def _measured_robustness(cnn_loaded: bool) -> dict | None:
    """checkpoints/robustness.json when it was measured on the very checkpoints this page uses."""
    path = capsnet.DEFAULT_CHECKPOINT.with_name("robustness.json")
    try:
        result = json.loads(path.read_text())
        recorded = {m: (ROOT / result["models"][m]["checkpoint"]).resolve() for m in ("capsnet", "cnn")}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    used = {"capsnet": cache.checkpoint_path().resolve(), "cnn": cache.cnn_checkpoint_path().resolve()}
    return result if cnn_loaded and recorded == used else None


def _robustness(result: dict) -> None:
    """The measured accuracies beside the paper's, and the per-family curves, as pictures."""
    m = result["models"]
    ranges = ", ".join(
        f"{name} {lo:g} to {hi:g}" for name, (lo, hi) in result["random_affine_ranges"].items()
    )
    st.markdown(
        "**Measured on the whole test set, not just this digit.** "
        + sentences.robustness_sentence(result)
        + f" The transforms: {ranges} (seed {result['seed']}); the paper's affNIST digits are 40×40 "
        "with larger shifts, so the numbers are not the same test."
    )
    st.markdown(
        "| | CapsNet | CNN |\n| --- | --- | --- |\n"
        f"| clean MNIST test, here | {m['capsnet']['clean']['accuracy']:.2%} | {m['cnn']['clean']['accuracy']:.2%} |\n"
        f"| random affine, here | **{m['capsnet']['random_affine']['accuracy']:.2%}** | **{m['cnn']['random_affine']['accuracy']:.2%}** |\n"
        f"| paper: expanded MNIST test | {PAPER_AFFNIST['capsnet'][0]:.2%} | {PAPER_AFFNIST['cnn'][0]:.2%} |\n"
        f"| paper: affNIST test | {PAPER_AFFNIST['capsnet'][1]:.0%} | {PAPER_AFFNIST['cnn'][1]:.0%} |"
    )
    curves = {
        family: (info["values"], [q["accuracy"] for q in m["capsnet"]["curves"][family]],
                 [q["accuracy"] for q in m["cnn"]["curves"][family]])
        for family, info in result["families"].items()
    }  # fmt: skip
    st.plotly_chart(F.accuracy_curves_figure(curves, AXIS_TITLES), key="lab_accuracy_chart",
                    alt="Test accuracy along each transform, CapsNet and the CNN")  # fmt: skip
    st.caption(
        f"Accuracy along each transform alone, on the first {result['curve_images']:,} test digits. "
        f"Measured with `{result.get('command', 'python -m capsnet.robustness')}`, stored in "
        "`checkpoints/robustness.json`."
    )


def show(ctx: ViewContext) -> None:
    with st.container(key="lab"):
        st.subheader("Transform the digit: does the capsule follow?")
        st.markdown(
            "Capsules were built for **equivariance**: a transformed digit should keep its capsule "
            "*long* (it is still there) while its *pose* follows the change. The paper's evidence "
            "is affNIST: trained with small shifts only, CapsNet scored 79% on affinely transformed "
            "digits against 66% for a CNN (later work, Gu & Tresp 2020, finds routing contributes "
            "little to that). Test it on this digit, beside the paper's baseline CNN trained "
            "on the same data (their training budgets are stated below). The transform is applied to the 28×28 image the "
            "networks see, with bilinear resampling."
        )
        cnn, why = _load_cnn()
        if why:
            st.warning(why)
        cnn_meta = capsnet.checkpoint_meta(cache.cnn_checkpoint_path()) if cnn is not None else {}
        if cnn_meta.get("test_accuracy") is not None:
            st.caption(
                f"Baseline CNN `{cache.cnn_checkpoint_path().name}`: {int(cnn_meta.get('parameters', 0)):,} "
                f"parameters, test accuracy {float(cnn_meta['test_accuracy']):.2%} on MNIST after "
                f"{cnn_meta.get('epochs')} epochs. " + sentences.budget_sentence(ctx.meta, cnn_meta)
            )
        cnn_version = str(cache.cnn_checkpoint_path()) if cnn is not None else "no CNN"
        _lab(ctx.model, cnn, f"{ctx.version}|{cnn_version}", ctx.pixel_bytes, ctx.iterations)
        measured = _measured_robustness(cnn is not None)
        if measured is not None:
            with st.container(key="lab_measured"):
                st.subheader("CapsNet against the CNN on every test digit")
                _robustness(measured)
