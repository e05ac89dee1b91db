"""Two CPU processes with gloo run `capsnet.train.main` as torchrun would start them (WORLD_SIZE, RANK,
LOCAL_RANK, MASTER_ADDR/PORT in the environment). Each process records, from the outside, the CapsNet
it trained, the images it was fed and every file it wrote."""

import json
import os
import socket
import sys
import time
import traceback
import types
from pathlib import Path

import torch
import torch.multiprocessing as mp

from capsnet import CapsNet, load_model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, root: str, out: str, record_dir: str, port: int) -> None:
    try:
        _worker(rank, root, out, record_dir, port)
    except BaseException:
        # The parent only learns "exit code 1": leave the traceback where the test can show it.
        Path(record_dir, f"rank{rank}.err").write_text(traceback.format_exc())
        raise


def _worker(rank: int, root: str, out: str, record_dir: str, port: int) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    import capsnet.train as train

    models, fed, writes = [], [], []

    class RecordingCapsNet(CapsNet):
        def __init__(self):
            super().__init__()
            models.append(self)

        def forward(self, x, *args, **kwargs):
            if self.training:
                fed.append((x[:, 0] * 255).round().to(torch.uint8))
            return super().forward(x, *args, **kwargs)

    def recording(write):
        def wrapped(path, *args, **kwargs):
            writes.append(os.path.basename(path))
            return write(path, *args, **kwargs)

        return wrapped

    train.CapsNet = RecordingCapsNet
    train.save_checkpoint = recording(train.save_checkpoint)
    train.atomic_write_json = recording(train.atomic_write_json)
    rc = train.main(
        [
            "--data-root",
            root,
            "--out",
            out,
            "--device",
            "cpu",
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--max-steps",
            "2",
            "--max-shift",
            "0",
            "--log-every",
            "1",
        ]
    )
    torch.save(
        {"rc": rc, "state_dict": models[0].state_dict(), "fed": fed, "writes": writes},
        os.path.join(record_dir, f"rank{rank}.pt"),
    )


def _join(ctx, record_dir: Path) -> bool:
    try:
        return ctx.join(timeout=1)
    except mp.ProcessExitedException as e:
        errors = "\n".join(p.read_text() for p in sorted(record_dir.glob("rank*.err")))
        raise AssertionError(f"a training process failed:\n{errors}") from e


def test_two_gloo_processes_train_one_model_on_disjoint_shards(tiny_mnist, tmp_path, monkeypatch):
    # A spawned process re-runs the parent's __main__ from its file. After an AppTest in the same
    # session that is app/streamlit_app.py, which the children must not run: give them a bare one.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    out_dir = tmp_path / "run"
    out = out_dir / "net.pt"
    ctx = mp.start_processes(
        worker,
        args=(str(tiny_mnist), str(out), str(tmp_path), free_port()),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 120
    while not _join(ctx, tmp_path):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            raise AssertionError("the two training processes did not finish in 120 s")
    records = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["rc"] for r in records] == [0, 0]

    # One model: identical weights in both processes, equal to the file rank 0 wrote, and trained.
    first, second = (r["state_dict"] for r in records)
    assert all(torch.equal(first[k], second[k]) for k in first)
    written = load_model(out).state_dict()
    assert all(torch.equal(first[k], written[k]) for k in first)
    torch.manual_seed(0)
    assert not torch.equal(CapsNet().state_dict()["conv1.weight"], first["conv1.weight"])

    # Disjoint shards of each epoch's permutation: 2 steps x 8 images a process, no image twice.
    from torchvision.datasets import MNIST

    index = {img.numpy().tobytes(): k for k, img in enumerate(MNIST(str(tiny_mnist), train=True).data)}
    for epoch in range(2):
        shards = [
            {index[img.numpy().tobytes()] for x in r["fed"][2 * epoch : 2 * epoch + 2] for img in x}
            for r in records
        ]
        assert len(shards[0]) == len(shards[1]) == 16 and not shards[0] & shards[1]

    # Only rank 0 wrote, once per file per epoch.
    assert records[1]["writes"] == []
    assert sorted(records[0]["writes"]) == sorted(["net.pt", "net.json", "net.resume.pt"] * 2)
    assert sorted(p.name for p in out_dir.iterdir()) == ["net.json", "net.pt", "net.resume.pt"]
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["world_size"] == 2 and meta["global_batch_size"] == 16 and meta["images_per_epoch"] == 32
