"""The training path of capsnet.train on CPU, on tiny IDX files read through torchvision: it learns,
each speed feature does what its flag says, the shift reaches the model, --val holds digits out,
the lr decays per epoch."""

import json

import numpy as np
import pytest
import torch

import capsnet.train as train
from capsnet import CapsNet, load_model
from capsnet.data import to_float
from capsnet.model import margin_loss

pytestmark = pytest.mark.usefixtures("one_thread")


class Recorder:
    """What the training loop handed to the CapsNet it built: inputs of training forwards, the dtype
    PrimaryCaps computed in, the initial weights."""

    def __init__(self):
        self.models, self.inputs, self.conv_dtypes, self.initial = [], [], [], None


@pytest.fixture
def recorder(monkeypatch):
    rec = Recorder()

    class RecordingCapsNet(CapsNet):
        def __init__(self):
            super().__init__()
            rec.models.append(self)
            rec.initial = {k: v.clone() for k, v in self.state_dict().items()}
            self.primary_caps.conv.register_forward_hook(
                lambda m, args, out: rec.conv_dtypes.append(out.dtype) if m.training else None
            )

        def forward(self, x, *args, **kwargs):
            if self.training:
                rec.inputs.append(x.detach().clone())
            return super().forward(x, *args, **kwargs)

    monkeypatch.setattr(train, "CapsNet", RecordingCapsNet)
    return rec


def run(root, out, *extra) -> dict:
    assert train.main(["--data-root", str(root), "--out", str(out), "--device", "cpu", *map(str, extra)]) == 0
    return json.loads(out.with_suffix(".json").read_text())


def train_images(root):
    from torchvision.datasets import MNIST

    ds = MNIST(str(root), train=True, download=False)
    return ds.data, ds.targets


def test_fast_path_learns_the_bar_digits(tiny_mnist, tmp_path):
    meta = run(tiny_mnist, tmp_path / "net.pt", "--epochs", 2, "--batch-size", 8)  # 2 x 8 steps
    first, second = meta["history"]
    assert second["train_loss"] < 0.8 * first["train_loss"]
    assert second["train_accuracy"] > first["train_accuracy"] + 0.1
    assert meta["test_accuracy"] >= 0.4  # 10 classes: chance is 0.1
    # The recorded accuracy is that of the weights written.
    from torchvision.datasets import MNIST

    test = MNIST(str(tiny_mnist), train=False)
    with torch.no_grad():
        preds = load_model(tmp_path / "net.pt")(to_float(test.data)).prediction
    assert meta["test_errors"] == int((preds != test.targets).sum())
    assert meta["test_accuracy"] == pytest.approx(float((preds == test.targets).float().mean()), abs=1e-6)


SPEED_OFF = [
    "--no-compile",
    "--no-amp",
    "--no-tf32",
    "--no-channels-last",
    "--no-fused",
    "--no-cudnn-benchmark",
]


@pytest.mark.parametrize("flag", ["amp", "channels_last", "fused", "all_off"])
def test_each_speed_flag_is_honoured_and_still_trains(flag, tiny_mnist, tmp_path, recorder, monkeypatch):
    adams = []

    class RecordingAdam(torch.optim.Adam):
        def __init__(self, params, **kwargs):
            adams.append(kwargs)
            super().__init__(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    extra = SPEED_OFF if flag == "all_off" else [f"--{flag.replace('_', '-')}"]
    out = tmp_path / "net.pt"
    meta = run(tiny_mnist, out, "--epochs", 1, "--batch-size", 8, "--max-steps", 2, *extra)
    speed = meta["speed"]
    assert speed["compile"] is False and speed["tf32"] is False  # never on on a CPU unless asked
    assert (speed["amp"] == "bf16") == (flag == "amp")
    assert speed["channels_last"] == (flag == "channels_last")
    assert speed["fused"] == (flag == "fused")
    # ...and what the metadata says is what ran:
    assert set(recorder.conv_dtypes) == {torch.bfloat16 if flag == "amp" else torch.float32}
    model = recorder.models[0]
    assert model.primary_caps.conv.weight.is_contiguous(memory_format=torch.channels_last) == (
        flag == "channels_last"
    )
    assert all(
        x.is_contiguous(memory_format=torch.channels_last) for x in recorder.inputs
    )  # (B, 1, ...) is both
    assert bool(adams[0].get("fused")) == (flag == "fused")
    # It trained: finite losses, weights moved, and the file holds them in the usual layout.
    assert all(np.isfinite(e["train_loss"]) for e in meta["history"])
    saved = load_model(out).state_dict()
    assert not torch.equal(saved["primary_caps.conv.weight"], recorder.initial["primary_caps.conv.weight"])
    assert all(v.is_contiguous() for v in torch.load(out, weights_only=True)["state_dict"].values())


def test_compile_is_used_when_it_works(tiny_mnist, tmp_path, monkeypatch):
    calls = []

    def fake_compile(module, **kwargs):
        def compiled(*args):
            calls.append(len(args[0]))
            return module(*args)

        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    meta = run(
        tiny_mnist, tmp_path / "net.pt", "--epochs", 1, "--batch-size", 8, "--max-steps", 2, "--compile"
    )
    assert calls == [8, 8] and meta["speed"]["compile"] is True and meta["speed"]["notes"] == []


def test_a_step_that_cannot_compile_warns_saying_why_and_trains_eager(
    tiny_mnist, tmp_path, monkeypatch, capsys
):
    real_compile = torch.compile

    def no_compiler(gm, example_inputs):  # a backend that fails, as Inductor does without a C++ compiler
        raise RuntimeError("inductor: no C++ compiler found")

    monkeypatch.setattr(torch, "compile", lambda module, **kw: real_compile(module, backend=no_compiler))
    meta = run(
        tiny_mnist, tmp_path / "net.pt", "--epochs", 1, "--batch-size", 8, "--max-steps", 2, "--compile"
    )
    err = capsys.readouterr().err
    assert "warning: torch.compile failed to compile the training step (BackendCompilerFailed" in err
    assert "RuntimeError: inductor: no C++ compiler found); continuing eager" in err
    assert meta["speed"]["compile"] is False
    assert any("no C++ compiler" in note for note in meta["speed"]["notes"])
    assert np.isfinite(meta["history"][0]["train_loss"])


def test_errors_of_the_step_itself_are_raised_not_reported_as_a_compile_failure(monkeypatch, capsys):
    from capsnet.baseline import BaselineCNN

    torch.manual_seed(0)
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    real_compile = torch.compile

    def step_with(loss_module, compile_fn) -> train.TrainStep:
        monkeypatch.setattr(torch, "compile", compile_fn)
        opt = torch.optim.Adam(loss_module.parameters())
        return train.TrainStep(loss_module, opt, train.Speed(compile=True), say=print)

    def out_of_memory(module, **kw):  # what a compiled step that runs out of device memory raises
        def compiled(*args):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

        return compiled

    step = step_with(train.TrainingLoss(CapsNet(), 3, 0.0005, False), out_of_memory)
    with pytest.raises(torch.OutOfMemoryError, match="Tried to allocate"):
        step(x, y)
    assert step.speed.compile is True and step.speed.notes == []

    # A shape bug (one label too many) through the real torch.compile: Dynamo reports it as its own
    # error while tracing, the eager step raises it as itself, and nothing claims a compile failure.
    step = step_with(
        train.CrossEntropyLoss(BaselineCNN(), False), lambda m, **kw: real_compile(m, backend="eager")
    )
    with pytest.raises(ValueError, match=r"input batch_size \(4\) to match target batch_size \(5\)"):
        step(x, torch.tensor([0, 1, 2, 3, 4]))
    assert "torch.compile" not in capsys.readouterr().err and step.speed.notes == []


@pytest.mark.parametrize("amp", [False, True])
def test_the_training_step_is_one_graph_for_torch_compile(amp):
    """No graph breaks (fullgraph=True): a break on the GPU would cost a host round trip a step."""
    torch.manual_seed(0)
    step = train.TrainingLoss(CapsNet(), 3, 0.0005, amp)
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    loss, correct = torch.compile(step, backend="eager", fullgraph=True, dynamic=False)(x, y)
    want, want_correct = step(x, y)
    assert torch.allclose(loss, want) and int(correct) == int(want_correct)
    if not amp:  # the loss is the paper's: margin + 0.0005 x SSE of the reconstruction of the true digit
        out = step.capsnet(x)
        sse = ((step.capsnet.reconstruct(out.poses, y) - x) ** 2).sum() / 4
        assert torch.allclose(loss, margin_loss(out.lengths, y) + 0.0005 * sse)


def test_training_decodes_the_true_digit_not_the_predicted_one():
    """Sec. 4.1: during training every digit capsule but the label's is masked before decoding. On a
    batch the network gets wrong, only the labels' 16 decoder inputs receive gradient, and the loss
    is that of the labels' reconstructions."""
    torch.manual_seed(0)
    net = CapsNet()
    with torch.no_grad():  # lengths near 1 instead of ~7e-4, so decodes of different capsules differ
        net.digit_caps.W.mul_(100)
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = net(x)
    y = (out.prediction + 1) % 10  # every label differs from the prediction
    # What the training loop runs, with the reconstruction weighted 1 instead of 0.0005 so that its
    # value, not only its gradient, shows which capsule was decoded.
    loss, correct = train.TrainingLoss(net, 3, recon_weight=1.0, amp=False)(x, y)
    loss.backward()
    assert int(correct) == 0
    # Masked-out inputs are exactly zero, so their columns of the first decoder layer get no gradient.
    grad_per_capsule = net.decoder[0].weight.grad.abs().view(512, 10, 16).sum(dim=(0, 2))  # (10,)
    assert [d for d in range(10) if grad_per_capsule[d] > 0] == sorted(set(y.tolist()))

    def loss_decoding(digits):  # margin loss + SSE, the mask written out
        mask = torch.nn.functional.one_hot(digits, 10)[:, :, None]  # (B, 10, 1)
        recon = net.decoder((out.poses * mask).flatten(1)).view(-1, 1, 28, 28)
        sse = ((recon - x) ** 2).sum() / len(x)
        return float(margin_loss(out.lengths, y) + sse)

    with torch.no_grad():
        true, predicted = loss_decoding(y), loss_decoding(out.prediction)
    assert abs(true - predicted) > 0.01  # the check below can tell the two apart
    assert loss.item() == pytest.approx(true, abs=1e-3)


def test_a_resume_that_changes_the_memory_format_gives_adam_moments_the_new_layout(
    tiny_mnist, tmp_path, monkeypatch
):
    """The fused Adam walks a moment with its parameter's strides: a mismatch silently updates the
    wrong elements."""
    adams = []

    class RecordingAdam(torch.optim.Adam):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            adams.append(self)

    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    args = ["--batch-size", 8, "--max-steps", 1, "--fused"]
    run(tiny_mnist, tmp_path / "net.pt", "--epochs", 1, *args, "--channels-last")
    run(tiny_mnist, tmp_path / "net.pt", "--epochs", 2, *args, "--no-channels-last", "--resume")
    opt = adams[-1]
    params = opt.param_groups[0]["params"]
    assert all(p.is_contiguous() for p in params if p.dim() == 4)  # the conv weights, no longer channels-last
    for p in params:
        for k in ("exp_avg", "exp_avg_sq"):
            assert opt.state[p][k].stride() == p.stride()


def shifted_copies(images: torch.Tensor, m: int = 2) -> dict:
    """bytes of every zero-padded shift of every image -> (image index, (dy, dx))."""
    padded = torch.nn.functional.pad(images, (m, m, m, m))
    table = {}
    for k in range(len(images)):
        for dy in range(-m, m + 1):
            for dx in range(-m, m + 1):
                crop = padded[k, m - dy : m - dy + 28, m - dx : m - dx + 28]
                table[crop.numpy().tobytes()] = (k, (dy, dx))
    return table


def as_uint8(x: torch.Tensor) -> np.ndarray:
    return (x * 255).round().to(torch.uint8).numpy()


def test_the_model_sees_each_image_shifted_by_its_own_offset_with_zero_fill(tiny_mnist, tmp_path, recorder):
    run(tiny_mnist, tmp_path / "net.pt", "--epochs", 1, "--batch-size", 32, "--max-steps", 1)
    images, _ = train_images(tiny_mnist)
    table = shifted_copies(images)
    (batch,) = [as_uint8(x[:, 0]) for x in recorder.inputs]
    found = [table.get(img.tobytes()) for img in batch]
    assert len(found) == 32 and None not in found, "each input: a dataset image moved <= 2 px, border zero"
    shifts = [s for _, s in found]
    assert len(set(shifts)) >= 8  # drawn per image, not one offset for the whole batch
    assert sum(s != (0, 0) for s in shifts) > len(shifts) // 2
    assert len({k for k, _ in found}) == 32  # 32 different images


def test_val_holds_out_exactly_n_never_trained_on(tiny_mnist, tmp_path, recorder):
    meta = run(
        tiny_mnist, tmp_path / "a.pt", "--epochs", 2, "--batch-size", 16, "--val", 32, "--max-shift", 0
    )
    images, labels = train_images(tiny_mnist)
    index = {img.numpy().tobytes(): k for k, img in enumerate(images)}
    fed = [index[img.tobytes()] for x in recorder.inputs for img in as_uint8(x[:, 0])]
    epoch1, epoch2 = set(fed[:32]), set(fed[32:])
    assert len(fed) == 64 and len(epoch1) == len(epoch2) == 32 and epoch1 == epoch2
    assert fed[:32] != fed[32:]  # reshuffled, same digits
    val = sorted(set(range(64)) - epoch1)
    assert meta["val_images"] == 32 and meta["train_images"] == 32
    assert all(0 <= e["val_accuracy"] <= 1 for e in meta["history"])  # reported every epoch
    # The reported val accuracy is the accuracy of the written weights on the held-out digits.
    with torch.no_grad():
        preds = load_model(tmp_path / "a.pt")(to_float(images[val])).prediction
    assert meta["val_accuracy"] == pytest.approx(float((preds == labels[val]).float().mean()), abs=1e-6)

    # Another seed trains in another order, but holds out the same digits.
    recorder.inputs.clear()
    run(
        tiny_mnist,
        tmp_path / "b.pt",
        "--epochs",
        1,
        "--batch-size",
        16,
        "--val",
        32,
        "--max-shift",
        0,
        "--seed",
        1,
    )
    fed_b = [index[img.tobytes()] for x in recorder.inputs for img in as_uint8(x[:, 0])]
    assert fed_b != fed[:32] and sorted(set(range(64)) - set(fed_b)) == val


def test_val_must_leave_training_digits(tiny_mnist, tmp_path, capsys):
    assert train.main(["--data-root", str(tiny_mnist), "--out", str(tmp_path / "x.pt"), "--val", "64"]) == 2
    assert "--val 64" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_lr_decays_once_per_epoch_and_across_a_resume(tiny_mnist, tmp_path):
    lr, decay = 0.002, 0.5
    args = ["--epochs", 2, "--batch-size", 8, "--max-steps", 1, "--lr", lr, "--lr-decay", decay]
    run(tiny_mnist, tmp_path / "net.pt", *args)
    meta = run(tiny_mnist, tmp_path / "net.pt", *args[:1], 3, *args[2:], "--resume")
    assert [e["lr"] for e in meta["history"]] == pytest.approx([lr, lr * decay, lr * decay**2])
