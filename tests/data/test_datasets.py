"""dartsfast.data.datasets: the datasets as tensors, and the DARTS train/val split."""
import hashlib
import pickle
import struct

import numpy as np
import pytest
import torch

from dartsfast import data
from dartsfast.data import DATASETS, files, load_dataset, make_synthetic, split_train_val

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def _rows(x):
    """Set of per-sample byte strings, to compare sets of images."""
    return {r.tobytes() for r in x.flatten(1).cpu().numpy()}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def synth():
    return make_synthetic(256, num_classes=4, in_channels=2, image_size=8, seed=3)


# ----------------------------------------------------------------------------- digits

def test_digits_shapes_classes_normalised(digits):
    assert DATASETS == ("digits", "fashion-mnist", "cifar10", "synthetic", "imagefolder")
    assert digits.train_x.shape == (1437, 1, 16, 16) and digits.test_x.shape == (360, 1, 16, 16)
    assert digits.train_x.dtype == torch.float32 and digits.train_y.dtype == torch.int64
    assert (digits.num_classes, digits.in_channels, digits.image_size) == (10, 1, 16)
    assert set(digits.train_y.tolist()) == set(range(10)) == set(digits.test_y.tolist())
    assert abs(digits.train_x.mean().item()) < 1e-4
    assert abs(digits.train_x.std().item() - 1) < 1e-4


def test_digits_train_test_disjoint_and_deterministic(digits):
    assert not _rows(digits.train_x) & _rows(digits.test_x)
    again = load_dataset("digits")
    for a, b in [(digits.train_x, again.train_x), (digits.train_y, again.train_y),
                 (digits.test_x, again.test_x), (digits.test_y, again.test_y)]:
        assert torch.equal(a, b)


def test_digits_image_size():
    ds = load_dataset("digits", image_size=24)
    assert ds.train_x.shape == (1437, 1, 24, 24) and ds.image_size == 24
    with pytest.raises(ValueError, match=">= 8"):
        load_dataset("digits", image_size=4)


def test_unknown_name():
    with pytest.raises(ValueError, match="digits, fashion-mnist, cifar10, synthetic"):
        load_dataset("mnist")


@pytest.mark.parametrize("device", DEVICES)
def test_to_device(synth, device):
    moved = synth.to(device)
    assert moved.device.type == device
    assert all(t.device.type == device for t in (moved.train_x, moved.train_y, moved.test_x, moved.test_y))
    assert torch.equal(moved.train_x.cpu(), synth.train_x)
    assert "synthetic" in repr(moved) and "tensor(" not in repr(moved)


# ----------------------------------------------------------------------------- torchvision sets

@pytest.mark.parametrize("name", ["fashion-mnist", "cifar10"])
def test_missing_directory_message(tmp_path, name):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(name, data_dir=str(missing))
    assert str(missing) in str(info.value) and "--download" in str(info.value)
    with pytest.raises(FileNotFoundError, match="--data-dir"):
        load_dataset(name)


def _write_idx(path, array, magic):
    with open(path, "wb") as f:
        f.write(struct.pack(">" + "i" * (array.ndim + 1), magic, *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def test_fashion_mnist_from_fake_idx_files(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in [("train", 30), ("t10k", 12)]:
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), 2051)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, 2049)
    ds = load_dataset("fashion-mnist", data_dir=str(tmp_path))
    assert ds.train_x.shape == (30, 1, 28, 28) and ds.test_x.shape == (12, 1, 28, 28)
    assert ds.train_y.tolist() == [i % 10 for i in range(30)] and ds.train_y.dtype == torch.int64
    # Uniform bytes have mean 127.5/255 = 0.5, std 0.289: check the standard normalisation.
    expected_mean = (0.5 - data.FASHION_MNIST_MEAN[0]) / data.FASHION_MNIST_STD[0]
    assert abs(ds.train_x.mean().item() - expected_mean) < 0.05
    assert ds.train_x.std().item() == pytest.approx(0.289 / data.FASHION_MNIST_STD[0], rel=0.05)
    small = load_dataset("fashion-mnist", data_dir=str(tmp_path), image_size=16)
    assert small.test_x.shape == (12, 1, 16, 16) and small.image_size == 16


def _write_fake_cifar(root, n=8):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
                 "labels": list(range(n))}
        (base / name).write_bytes(pickle.dumps(batch))
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    return base


def test_cifar10_from_fake_batches(tmp_path, monkeypatch):
    base = _write_fake_cifar(tmp_path)
    # Every file is md5-checked against the original: a fake is rightly refused, by name ...
    with pytest.raises(ValueError, match="data_batch_1 differs from the original CIFAR-10 file"):
        load_dataset("cifar10", data_dir=str(tmp_path))
    # ... so accept these fakes' md5s and run the real reading path.
    monkeypatch.setattr(files, "CIFAR10_MD5", {f: hashlib.md5((base / f).read_bytes()).hexdigest()
                                               for f in files.CIFAR10_FILES})
    ds = load_dataset("cifar10", data_dir=str(tmp_path))
    assert ds.train_x.shape == (40, 3, 32, 32) and ds.test_x.shape == (8, 3, 32, 32)
    assert ds.in_channels == 3 and ds.train_y.tolist() == list(range(8)) * 5
    # Channel c of image 0 is bytes [1024c, 1024(c+1)) of its row, normalised per channel.
    first = pickle.loads((base / "data_batch_1").read_bytes())["data"][0].reshape(3, 32, 32)
    for c in range(3):
        want = (torch.from_numpy(first[c]).float() / 255 - data.CIFAR10_MEAN[c]) / data.CIFAR10_STD[c]
        torch.testing.assert_close(ds.train_x[0, c], want)


# ----------------------------------------------------------------------------- synthetic

def test_synthetic_seeded(synth):
    same = make_synthetic(256, num_classes=4, in_channels=2, image_size=8, seed=3)
    other = make_synthetic(256, num_classes=4, in_channels=2, image_size=8, seed=4)
    assert torch.equal(synth.train_x, same.train_x) and torch.equal(synth.train_y, same.train_y)
    assert not torch.equal(synth.train_x, other.train_x)
    assert synth.train_x.shape[1:] == (2, 8, 8) and synth.num_classes == 4
    ds = load_dataset("synthetic", synthetic_size=100, synthetic_classes=5, synthetic_channels=1,
                      image_size=12, seed=1)
    assert ds.train_x.shape[0] + ds.test_x.shape[0] == 100 and ds.train_x.shape[1:] == (1, 12, 12)


def test_synthetic_learnable(synth):
    torch.manual_seed(0)
    model = torch.nn.Linear(2 * 8 * 8, 4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(synth.train_x.flatten(1)), synth.train_y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    acc = (model(synth.test_x.flatten(1)).argmax(1) == synth.test_y).float().mean().item()
    assert acc > 0.6  # chance is 0.25


# ----------------------------------------------------------------------------- split

def test_split_train_val(synth):
    n = synth.train_x.shape[0]
    tx, ty, vx, vy = split_train_val(synth)
    assert tx.shape[0] == n // 2 and vx.shape[0] == n - n // 2 and ty.shape[0] == tx.shape[0]
    assert not _rows(tx) & _rows(vx)
    assert _rows(tx) | _rows(vx) == _rows(synth.train_x)
    again = split_train_val(synth)
    assert all(torch.equal(a, b) for a, b in zip((tx, ty, vx, vy), again))
    assert not torch.equal(tx, split_train_val(synth, seed=1)[0])
    assert split_train_val(synth, fraction=0.25)[0].shape[0] == n // 4
    for bad in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            split_train_val(synth, fraction=bad)
