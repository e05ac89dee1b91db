import torch

from capsnet.data import load_mnist, random_shift, to_float


def test_random_shift_moves_each_image_by_at_most_two_pixels_with_zero_fill():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 28, 28) + 0.1  # strictly positive so zero fill is visible
    gen = torch.Generator().manual_seed(0)
    out = random_shift(x, 2, gen)
    assert out.shape == x.shape
    seen = set()
    for k in range(len(x)):
        padded = torch.nn.functional.pad(x[k], (2, 2, 2, 2))
        matches = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(padded[:, dy : dy + 28, dx : dx + 28], out[k])
        ]
        assert len(matches) == 1, "each output is exactly one shifted, zero-padded copy"
        seen.add(matches[0])
    assert len(seen) > 10  # shifts are drawn per image, not one for the whole batch


def test_random_shift_zero_is_identity():
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(random_shift(x, 0), x)


def test_load_mnist_through_torchvision_on_tiny_idx_files(tiny_mnist):
    from mnist_files import synthetic_digits

    images, labels = load_mnist(str(tiny_mnist), train=True)
    want_images, want_labels = synthetic_digits(64, 0)
    assert images.dtype == torch.uint8 and images.shape == (64, 28, 28)
    assert torch.equal(images, torch.from_numpy(want_images))
    assert torch.equal(labels, torch.from_numpy(want_labels).long())
    test_images, _ = load_mnist(str(tiny_mnist), train=False)
    assert test_images.shape == (32, 28, 28)
    x = to_float(images[:2])
    assert x.shape == (2, 1, 28, 28) and x.max() == 1.0 and x.dtype == torch.float32


def test_load_mnist_unpacks_gz_only_raw_files_without_downloading(tmp_path):
    import gzip

    from mnist_files import make_mnist_root, synthetic_digits

    root = make_mnist_root(tmp_path / "data")
    raw = root / "MNIST" / "raw"
    for f in list(raw.iterdir()):  # keep only the .gz archives, as MNIST's own site ships them
        (raw / f"{f.name}.gz").write_bytes(gzip.compress(f.read_bytes()))
        f.unlink()
    images, labels = load_mnist(str(root), train=True, download=False)
    want_images, want_labels = synthetic_digits(64, 0)
    assert torch.equal(images, torch.from_numpy(want_images))
    assert torch.equal(labels, torch.from_numpy(want_labels).long())
    assert load_mnist(str(root), train=False, download=False)[0].shape == (32, 28, 28)
