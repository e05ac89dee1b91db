"""Capsule Network, live: draw a digit and watch dynamic routing decide what it is.

Run from the repository root:  streamlit run app/streamlit_app.py
The weights come from $CAPSNET_CHECKPOINT, else checkpoints/capsnet_mnist.pt.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts app/ on the path, not the repository root
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import streamlit as st  # noqa: E402
import torch  # noqa: E402

import capsnet  # noqa: E402
from app import analysis as A  # noqa: E402
from app import figures as F  # noqa: E402
from app import images as I  # noqa: E402
from app import inputs  # noqa: E402
from app.canvas import drawing_canvas  # noqa: E402
from app.pose_sliders import pose_sliders  # noqa: E402
from capsnet.preprocess import to_mnist  # noqa: E402

MAX_ITERATIONS = 5
ITER_COUPLING_WIDTH = 760  # px: the coupling picture of an iteration, beside two 192 px ones
DRAW, SAMPLE, UPLOAD = "Draw", "MNIST sample", "Upload a photo"
SOURCES = [DRAW, SAMPLE, UPLOAD]
AUTO = "auto"
TRAIN_CMD = "python -m capsnet.train --data-root DIR --out checkpoints/capsnet_mnist.pt"

st.set_page_config(page_title="Capsule Network, live", page_icon=":material/neurology:", layout="wide")


# ---------------------------------------------------------------- model and cached computations
def checkpoint_path() -> Path:
    return Path(os.environ.get("CAPSNET_CHECKPOINT") or capsnet.DEFAULT_CHECKPOINT)


# One torch thread: a batch of one gains nothing from two (12 ms vs 120 ms when the cores are
# busy), and concurrent sessions then never oversubscribe the cores.
torch.set_num_threads(1)
# Every element a run emits wakes the server's event loop from the script's thread, and each wake-up
# hands the interpreter lock back and forth; with many sessions running at once a thread waits up
# to the switch interval (5 ms by default) for it every time. 1 ms: with 20 sessions on 2 cores the
# median server time of a pose-slider run fell from 0.31 s to 0.17 s (p95 2.5 s to 1.3 s).
sys.setswitchinterval(0.001)


@st.cache_resource(max_entries=2, show_spinner="Loading the CapsNet weights…")
def load_model(path: str) -> capsnet.CapsNet:
    """Once per process and path. The loaded weights keep serving every session even if the
    file is later replaced or removed; a failed load is not cached, so a fixed file is picked up."""
    return capsnet.load_model(path)


@st.cache_data(max_entries=64, show_spinner=False)
def forward(_model, version: str, pixels: bytes, iterations: int) -> dict:
    """One traced forward pass for a 28x28 float32 image (given as bytes): numpy arrays only."""
    x = torch.frombuffer(bytearray(pixels), dtype=torch.float32).reshape(1, 1, 28, 28)
    with torch.no_grad():
        out = _model(x, iterations=iterations, trace=True)
    return {
        "lengths": out.lengths[0].numpy(),  # (10,)
        "lengths_per_iter": out.lengths_per_iter[:, 0].numpy(),  # (T, 10)
        "coupling": out.coupling[:, 0].numpy(),  # (T, 1152, 10)
        "primary_len": torch.linalg.vector_norm(out.primary[0], dim=-1).numpy(),  # (1152,)
        # Each primary capsule's share of |s_j| in iteration t: c_ij (u_hat_j|i . v_j / |v_j|).
        # Summed over i it gives |s_j| exactly, so it says where the evidence for j comes from.
        "agreement": A.agreement_shares(
            out.coupling[:, 0].numpy(), out.u_hat[0].numpy(), out.poses_per_iter[:, 0].numpy()
        ),  # (T, 1152, 10)
        "poses": out.poses[0].numpy(),  # (10, 16)
        "prediction": int(out.prediction[0]),
    }


def decode(model, poses: np.ndarray, digits) -> np.ndarray:
    """Decoder on (B, 10, 16) poses masked to `digits` (B,): (B, 28, 28) in [0, 1]."""
    with torch.no_grad():
        recon = model.reconstruct(torch.from_numpy(np.ascontiguousarray(poses, np.float32)),
                                  torch.as_tensor(digits))  # fmt: skip
    return recon[:, 0].numpy()


@st.cache_data(max_entries=64, show_spinner=False)
def perturbation_grid(_model, version: str, pixels: bytes, iterations: int, digit: int) -> np.ndarray:
    """The paper's Fig. 4 for one capsule: 16 dims x 11 offsets, decoded in one batch of 176."""
    poses = forward(_model, version, pixels, iterations)["poses"]
    steps = A.perturbation_steps()
    batch = A.perturbed_poses(poses, digit, steps)  # (176, 10, 16)
    images = decode(_model, batch, np.full(len(batch), digit))  # (176, 28, 28)
    return A.stitch(images, A.DIGIT_DIM, len(steps))  # (16*28, 11*28)


@st.cache_data(max_entries=512, show_spinner=False)
def picture(builder: str, *args, shown_width: int | None = None, **kwargs) -> bytes:
    """PNG of images.<builder>(*args, **kwargs) (reduced to `shown_width`), drawn and encoded once
    per distinct input. A rerun that shows a chart again (another routing-iteration count, another
    session on the same sample) then costs the server a hash, not a drawing and an encoding; the
    page gets the same URL back and its browser the image from its cache. Show it with
    st.image(..., output_format="PNG"), or Streamlit re-encodes it as JPEG (see images.png)."""
    return I.png(getattr(I, builder)(*args, **kwargs), width=shown_width)


# ---------------------------------------------------------------- state shared through the URL
samples, sample_labels = st.cache_resource(inputs.load_samples)()  # read once per process, never mutated


def _read_query_params() -> None:
    """On a session's first run, let ?sample=&capsule=&iters= set the controls."""
    qp = st.query_params
    if qp.get("sample", "").isdigit() and int(qp["sample"]) < len(samples):
        st.session_state.source = SAMPLE
        st.session_state.sample = int(qp["sample"])
    if qp.get("iters", "").isdigit() and 1 <= int(qp["iters"]) <= MAX_ITERATIONS:
        st.session_state.iterations = int(qp["iters"])
    capsule = qp.get("capsule", "")
    if capsule == AUTO or (capsule.isdigit() and int(capsule) < 10):
        st.session_state.capsule = capsule if capsule == AUTO else int(capsule)


if "started" not in st.session_state:
    st.session_state.started = True
    _read_query_params()
for key, default in (("source", DRAW), ("sample", 0), ("iterations", 3), ("capsule", AUTO), ("canvas_n", 0)):
    st.session_state.setdefault(key, default)


def _clear_canvas() -> None:
    st.session_state.canvas_n += 1  # a new key mounts a fresh, empty canvas


def _write_query_params(source: str, sample: int, iterations: int, capsule) -> None:
    params = {"iters": str(iterations), "capsule": str(capsule)}
    if source == SAMPLE:
        params["sample"] = str(sample)
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)


# ---------------------------------------------------------------- page
st.title("Capsule Network, live")
st.markdown(
    "A CapsNet (Sabour, Frosst & Hinton, *Dynamic Routing Between Capsules*, 2017) reads a "
    "digit with **capsules**: groups of neurons whose output is a vector. Its **length** says "
    "how likely an entity is present; its **direction** (the *pose*) says how it looks. "
    "1152 primary capsules each vote for each of the 10 digit capsules, and *routing by "
    "agreement* decides whose votes count. Draw a digit and follow it through the network."
)

path = checkpoint_path()
version = str(path)  # cache key of every per-input result: the weights loaded from this path
try:
    model = load_model(version)
except capsnet.CheckpointError as e:
    st.error(
        f"**The CapsNet weights could not be loaded.**\n\n{e}\n\n"
        "Restore the shipped weights, or train your own (about an hour on a GPU):\n\n"
        f"```\ngit checkout -- checkpoints/\n{TRAIN_CMD}\n```\n\n"
        "To use another file, start the app with `CAPSNET_CHECKPOINT=/path/to/file.pt`."
    )
    st.stop()

meta = capsnet.checkpoint_meta(path)
if meta.get("test_accuracy") is not None:
    st.caption(f"Checkpoint `{path.name}`: test accuracy {float(meta['test_accuracy']):.2%} on MNIST.")

st.header("1 · Input", divider="gray")
col_in, col_seen, col_len = st.columns([1.15, 0.85, 1.5], gap="medium")

raw, label = None, None
with col_in:
    source = st.radio("Input", SOURCES, horizontal=True, key="source", label_visibility="collapsed")
    if source == DRAW:
        st.caption("Draw one digit, 0 to 9, as large as the black square. Strokes can start anywhere.")
        n = st.session_state.canvas_n
        result = drawing_canvas(key="canvas" if n == 0 else f"canvas-{n}")
        st.button("Clear the canvas", on_click=_clear_canvas)
        raw = result.image_data
    elif source == SAMPLE:
        idx = st.selectbox(
            "MNIST test digit", range(len(samples)), key="sample",
            format_func=lambda i: inputs.sample_label(i, sample_labels),
        )  # fmt: skip
        raw, label = samples[idx], int(sample_labels[idx])
        st.image(A.upscale(samples[idx], 8), caption=f"Test-set digit, labelled {label}")
    else:
        upload = st.file_uploader(
            "A photo or scan of one digit: dark ink on light paper works",
            type=["png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff"], key="upload",
        )  # fmt: skip
        if upload is not None:
            try:
                raw = inputs.decode_upload(upload.getvalue())
            except inputs.InputError as e:
                st.error(f"**{upload.name}**: {e}")
            else:
                st.image(raw, caption="Your upload", width=260)

with st.container(horizontal=True, gap="large", vertical_alignment="bottom"):
    iterations = st.slider("Routing iterations (the paper uses 3)", 1, MAX_ITERATIONS, key="iterations",
                           width=320)  # fmt: skip
    capsule = st.selectbox(
        "Digit capsule to inspect below", [AUTO, *range(10)], key="capsule", width=260,
        format_func=lambda c: "the predicted digit" if c == AUTO else f"digit {c}",
    )  # fmt: skip
    interactive = st.toggle(
        "Interactive charts", key="interactive",
        help="Off: the charts are pictures, quick for any browser. On: Plotly charts with hover for "
        "exact values (slower to draw).",
    )
_write_query_params(source, st.session_state.sample, iterations, capsule)

pixels = None
if raw is not None:
    try:
        pixels = to_mnist(raw)
    except (ValueError, TypeError) as e:
        with col_in:
            st.error(f"This image cannot be used: {e}")

if pixels is None:
    with col_seen:
        if source == DRAW:
            st.info("Draw a digit in the black square: the network's answer appears here.")
        elif source == UPLOAD:
            st.info("Upload a PNG or JPEG of a handwritten digit, or draw one instead.")
        else:
            st.info("This image holds no digit the network could read.")
    st.stop()

# ---------------------------------------------------------------- forward pass (cached)
pixel_bytes = np.ascontiguousarray(pixels, dtype=np.float32).tobytes()
res = forward(model, version, pixel_bytes, iterations)
lengths, pred = res["lengths"], res["prediction"]
digit = pred if capsule == AUTO else int(capsule)
order = np.argsort(lengths)[::-1]
runner_up = int(order[1])

with col_seen:
    st.image(picture("digit_image", pixels, 8), caption="What the network sees: 28×28, MNIST-style",
             output_format="PNG")
    with st.container(key="prediction"):
        st.metric("Prediction", str(pred), delta=f"|v{pred}| = {lengths[pred]:.2f}", delta_color="off",
                  delta_arrow="off", border=True)  # fmt: skip
        note = f"Runner-up: {runner_up} (|v| = {lengths[runner_up]:.2f})."
        if label is not None:
            note += f" MNIST label: {label} {'(correct)' if label == pred else '(wrong)'}."
        st.caption(note)

with col_len:
    if interactive:
        st.plotly_chart(F.lengths_bar(lengths, pred), alt=f"Capsule lengths: digit {pred} is longest")
    else:
        st.image(picture("bar_chart_image", lengths, pred, shown_width=460), width=460, output_format="PNG")
    st.markdown(
        f"Each digit capsule outputs a 16-D vector $v_j$, squashed so its length lies in 0..1. "
        f"Here $|v_{{{pred}}}| = {lengths[pred]:.2f}$: the network is "
        f"{'confident' if lengths[pred] >= 0.9 else 'fairly sure' if lengths[pred] >= 0.5 else 'unsure'} "
        f"a {pred} is present. Training pushes the true digit above $m^+ = 0.9$ and all others "
        f"below $m^- = 0.1$ (dashed lines)."
    )

with st.expander("The formulas: squash and margin loss", expanded=False):
    st.latex(r"v_j = \frac{\|s_j\|^2}{1 + \|s_j\|^2}\,\frac{s_j}{\|s_j\|}")
    st.latex(r"L_k = T_k \max(0,\, 0.9 - \|v_k\|)^2 + 0.5\,(1 - T_k)\max(0,\, \|v_k\| - 0.1)^2")
    loss = sum(
        (max(0.0, 0.9 - v) ** 2 if k == pred else 0.5 * max(0.0, v - 0.1) ** 2) for k, v in enumerate(lengths)
    )
    st.markdown(f"If this input were labelled {pred}, its margin loss would be $\\sum_k L_k = {loss:.4f}$.")

# ---------------------------------------------------------------- routing
coupling, primary_len = res["coupling"], res["primary_len"]  # (T, 1152, 10), (1152,)
T = coupling.shape[0]
entropy = A.coupling_entropy(coupling)
strong_i, strong_c = A.strongest_primary(coupling, primary_len, digit)
s_type, s_row, s_col = capsnet.primary_position(strong_i)
maps = [A.type_position_map(coupling[t, :, digit], primary_len) for t in range(T)]  # (32, 6, 6) each
pos_maps = [m.sum(axis=0) for m in maps]
# c barely differs between positions when routing stays near uniform: colour from the smallest to
# the largest value over all iterations, so the differences show and iterations still compare.
pos_min, pos_max = min(float(m.min()) for m in pos_maps), max(float(m.max()) for m in pos_maps)
agreement = res["agreement"][:, :, digit]  # (T, 1152)
evidence = [np.clip(A.evidence_map(agreement[t]), 0.0, None) for t in range(T)]  # support only
ev_max = max(float(e.max()) for e in evidence)
s_len = agreement.sum(axis=1)  # = |s_j| per iteration
share_pos = agreement[-1].reshape(A.NUM_TYPES, A.GRID * A.GRID).sum(axis=0)  # (36,) per grid position
top_pos = int(np.argmax(share_pos))

with st.container(key="routing"):
    st.header(f"2 · Routing by agreement, shown for digit {digit}", divider="gray")
    left, right = st.columns([1, 1], gap="large")
    with left:
        st.markdown(
            "Each primary capsule $i$ predicts every digit capsule: $\\hat u_{j|i} = W_{ij} u_i$. "
            "The coupling coefficients $c_{ij}$ decide how much of capsule $i$'s vote goes to digit "
            "$j$. They start uniform and move towards the digits whose output agrees with the vote:"
        )
        st.latex(
            r"c_{ij} = \frac{e^{b_{ij}}}{\sum_k e^{b_{ik}}},\quad s_j = \sum_i c_{ij}\,\hat u_{j|i},"
            r"\quad v_j = \mathrm{squash}(s_j),\quad b_{ij} \mathrel{+}= \hat u_{j|i}\cdot v_j"
        )
        trail = " → ".join(f"{c:.2f}" for c in strong_c)
        st.markdown(
            f"**Live:** the primary capsule sending most to digit {digit} is $i = {strong_i}$ "
            f"(type {s_type}, grid position ({s_row}, {s_col}), $|u_i| = {primary_len[strong_i]:.2f}$). "
            f"Its $c_{{i,{digit}}}$ over the iterations: **{trail}**. "
            + (
                f"The mean entropy of $c_i$ falls from {entropy[0]:.2f} bits (uniform, $\\log_2 10$) "
                f"to {entropy[-1]:.2f} bits: routing sharpens."
                if entropy[0] - entropy[-1] >= 0.05 else
                f"The mean entropy of $c_i$ stays at {entropy[-1]:.2f} bits (uniform is "
                f"$\\log_2 10 = 3.32$): for most primary capsules the agreement $\\hat u_{{j|i}}\\cdot v_j$ "
                f"is small, so c moves only a little from 0.1. Trained CapsNets often route like this; "
                f"the decision then rests mostly on the votes $\\hat u_{{j|i}}$ themselves."
            )
        )
        if interactive:
            st.plotly_chart(F.entropy_line(entropy), alt="Mean entropy of the coupling coefficients per iteration")
        else:
            st.image(picture("entropy_image", entropy, shown_width=460), width=460, output_format="PNG")
    with right:
        st.markdown(
            f"How each digit capsule's length $|v_j|$ changes as routing proceeds; "
            f"digit {pred} ends at {lengths[pred]:.2f}."
        )
        if interactive:
            st.plotly_chart(F.lengths_over_iterations(res["lengths_per_iter"], pred),
                            alt="Capsule lengths after each routing iteration")  # fmt: skip
        else:
            st.image(picture("lengths_over_iterations_image", res["lengths_per_iter"], pred, shown_width=460),
                     width=460, output_format="PNG")

    st.markdown(
        f"Below, for each iteration: **left**, all $c_{{ij}}$ (10 digits × 1152 primary capsules, "
        f"colour fixed to 0..1, row {digit} outlined); **middle**, $\\sum_{{\\text{{types}}}} c_{{i{digit}}}\\,|u_i|$ "
        f"on the 6×6 PrimaryCaps grid (light = least, dark = most, one scale for all iterations); "
        f"**right**, where in the drawing the evidence for digit {digit} comes from: each primary "
        f"capsule's share of $|s_{{{digit}}}|$, $c_{{i{digit}}}\\,\\hat u_{{{digit}|i}}\\cdot v_{{{digit}}}/|v_{{{digit}}}|$, "
        f"spread over its 17×17 receptive field. These shares add up to $|s_{{{digit}}}|$: "
        + " → ".join(f"{v:.2f}" for v in s_len)
        + f" over the iterations; the grid position giving most is ({top_pos // 6}, {top_pos % 6})."
    )
    if not interactive:
        st.image(picture("colorbar_image"), caption="colour of c, the same 0..1 scale in every iteration",
                 output_format="PNG")
    for t in range(T):
        st.subheader(f"Iteration {t + 1}")
        if interactive:
            c1, c2, c3 = st.columns([2.6, 1, 1])
            c1.plotly_chart(F.coupling_heatmap(coupling[t], highlight=digit),
                            alt=f"Coupling coefficients in iteration {t + 1}")  # fmt: skip
            c2.plotly_chart(F.position_map(pos_maps[t], pos_max, pos_min), alt=f"c·|u| to {digit} per grid position")
            c3.plotly_chart(F.evidence_overlay(pixels, evidence[t], ev_max),
                            alt=f"Evidence for {digit} on the input")  # fmt: skip
        else:
            # One element for the three pictures (they sit side by side and wrap on a narrow
            # screen): a run sends, and the page draws, one element instead of a row of columns.
            st.image(
                [picture("coupling_image", coupling[t], highlight=digit, shown_width=ITER_COUPLING_WIDTH),
                 picture("position_image", pos_maps[t], pos_max, pos_min),
                 picture("evidence_image", pixels, evidence[t], ev_max)],
                caption=["c_ij: rows are digits j, columns the 1152 primary capsules i = type·36 + row·6 + col",
                         f"Σ c·|u| to {digit}: {pos_min:.2f} (light) to {pos_max:.2f} (dark)",
                         f"share of |s_{digit}| on the input"],
                output_format="PNG",
            )  # fmt: skip
    with st.expander(f"All 32 capsule types after the last iteration (c·|u| to digit {digit})"):
        st.caption("32 panels (types 0–31, row by row), each the 6×6 grid of one capsule type.")
        if interactive:
            st.plotly_chart(F.type_grid_figure(A.type_grid(maps[-1]), float(maps[-1].max())),
                            alt="Per-type routed evidence")  # fmt: skip
        else:
            st.image(picture("type_grid_image", A.type_grid(maps[-1]), float(maps[-1].max())), output_format="PNG")


# ---------------------------------------------------------------- pose explorer
@st.fragment
def pose_explorer(model, poses: np.ndarray, d: int) -> None:
    """16 sliders nudging v_d; reruns alone when a slider moves (the forward pass is not redone)."""
    offsets = pose_sliders(f"pose_{d}", A.DIGIT_DIM)
    moved = poses.copy()
    moved[d] += offsets
    base, new = decode(model, np.stack([poses, moved]), [d, d])
    diff = new - base
    with st.container(key="reconstruction"):
        st.image(
            [picture("digit_image", base, 7), I.png(I.digit_image(new, 7)), I.png(I.difference_image(diff, 0.5, 7))],
            caption=[f"decoded from v{d} as it is", f"with the offsets ({np.count_nonzero(offsets)} moved)",
                     f"difference (max {np.abs(diff).max():.2f})"],
            output_format="PNG",
        )  # fmt: skip


with st.container(key="pose"):
    st.header(f"3 · Pose: what the 16 numbers of capsule {digit} encode", divider="gray")
    as_if = "" if digit == pred else f" The network says {pred}; decoding capsule {digit} shows the input *as if* it were a {digit}."
    st.markdown(
        f"The decoder (three fully connected layers) redraws the input from $v_{{{digit}}}$ alone, "
        f"all other capsules masked to zero. Nudge one of its 16 dimensions and watch what it "
        f"controls: stroke width, slant, scale, a local part. |v{digit}| = {lengths[digit]:.2f}.{as_if} "
        "Right: the change, red where the new image is brighter, blue where it is darker."
    )
    pose_explorer(model, res["poses"], digit)

with st.container(key="grid"):
    st.header(f"4 · Every dimension at once (the paper's Fig. 4), capsule {digit}", divider="gray")
    st.markdown(
        f"Row $d$ decodes $v_{{{digit}}}$ with its dimension $d$ shifted by −0.25, −0.20, …, +0.25 "
        "(11 columns). All 176 images come from one batched call of the decoder."
    )
    grid = perturbation_grid(model, version, pixel_bytes, iterations, digit)
    st.image(picture("perturbation_grid_image", grid, A.perturbation_steps()), output_format="PNG",
             caption=f"16 by 11 reconstructions of digit {digit}: rows are pose dimensions, columns offsets")
