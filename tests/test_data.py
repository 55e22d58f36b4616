"""dartsfast.data: datasets as device tensors, on-device batching and augmentation."""
import io
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from dartsfast import data
from dartsfast.data import (
    DATASETS,
    Augment,
    DeviceBatches,
    cutout,
    default_augment,
    load_dataset,
    make_synthetic,
    random_crop_flip,
    split_train_val,
)

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
    assert DATASETS == ("digits", "fashion-mnist", "cifar10", "synthetic")
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
    import torchvision.datasets.cifar as tv_cifar

    base = _write_fake_cifar(tmp_path)
    # torchvision md5-checks every batch file: a fake is rightly reported as corrupted ...
    with pytest.raises(RuntimeError, match="corrupted"):
        load_dataset("cifar10", data_dir=str(tmp_path))
    # ... so skip only the md5 check and run torchvision's real unpickling path.
    monkeypatch.setattr(tv_cifar, "check_integrity",
                        lambda fpath, md5=None: os.path.isfile(fpath))
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


# ----------------------------------------------------------------------------- batching

def _gen(device, seed):
    return torch.Generator(device=device).manual_seed(seed)


def _data(device, n=10):
    x = torch.arange(n, dtype=torch.float32, device=device).view(n, 1, 1, 1).expand(n, 1, 2, 2)
    return x.contiguous(), torch.arange(n, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_batches_cover_each_sample_once(device):
    x, y = _data(device)
    batches = DeviceBatches(x, y, 4, generator=_gen(device, 0), drop_last=False)
    assert len(batches) == 3 and len(DeviceBatches(x, y, 4, drop_last=True)) == 2
    epochs = []
    for _ in range(2):
        got = [(xb, yb) for xb, yb in batches]
        assert [yb.shape[0] for _, yb in got] == [4, 4, 2]
        assert all(xb.device.type == device and torch.equal(xb[:, 0, 0, 0].long(), yb) for xb, yb in got)
        order = torch.cat([yb for _, yb in got]).tolist()
        assert sorted(order) == list(range(10))
        epochs.append(order)
    assert epochs[0] != epochs[1]  # reshuffled each epoch
    replay = DeviceBatches(x, y, 4, generator=_gen(device, 0), drop_last=False)
    assert torch.cat([yb for _, yb in replay]).tolist() == epochs[0]
    plain = DeviceBatches(x, y, 5, shuffle=False)
    assert torch.cat([yb for _, yb in plain]).tolist() == list(range(10))


def test_persistent_iterator_crosses_epochs():
    x, y = _data("cpu")
    batches = DeviceBatches(x, y, 3, generator=_gen("cpu", 1))  # 3 batches, 1 sample dropped
    it = batches.forever()
    seen = [next(it)[1] for _ in range(7)]
    assert batches.epoch == 3
    for e in range(2):
        ep = torch.cat(seen[3 * e:3 * e + 3]).tolist()
        assert len(set(ep)) == 9  # no repeats within an epoch
    assert torch.cat(seen[:3]).tolist() != torch.cat(seen[3:6]).tolist()


def test_state_dict_round_trip():
    x, y = _data("cpu", 20)
    aug = Augment(padding=1, flip=True, cutout_size=1)
    first = DeviceBatches(x, y, 6, generator=_gen("cpu", 2), augment=aug)
    it = first.forever()
    for _ in range(4):  # stop mid-epoch 2
        next(it)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)  # as in a checkpoint
    expected = [next(it) for _ in range(7)]
    resumed = DeviceBatches(x, y, 6, generator=_gen("cpu", 99), augment=aug)
    buf.seek(0)
    resumed.load_state_dict(torch.load(buf))
    got = [resumed.next_batch() for _ in range(7)]
    for (xa, ya), (xb, yb) in zip(expected, got):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(ValueError, match="batch_size"):
        DeviceBatches(x, y, 5).load_state_dict(first.state_dict())


def test_batches_bad_arguments():
    x, y = _data("cpu")
    with pytest.raises(ValueError, match="batch_size.*10"):
        DeviceBatches(x, y, 11)
    with pytest.raises(ValueError, match="batch_size"):
        DeviceBatches(x, y, 0)
    with pytest.raises(ValueError, match="samples"):
        DeviceBatches(x, y[:5], 2)


# ----------------------------------------------------------------------------- augmentation

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_crop_flip_shapes_and_identity(device, dtype):
    x = torch.randn(16, 3, 9, 7, device=device, dtype=dtype)
    out = random_crop_flip(x, padding=3, generator=_gen(device, 0))
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert torch.equal(random_crop_flip(x, padding=0, flip=False), x)
    assert torch.equal(random_crop_flip(x, padding=0, flip=True, flip_prob=1.0), torch.flip(x, [3]))
    c = cutout(x, 3, generator=_gen(device, 0))
    assert c.shape == x.shape and c.dtype == dtype and c.device == x.device


def test_crop_and_flip_follow_drawn_parameters():
    n, h, w, p = 64, 6, 5, 2
    x = torch.randn(n, 2, h, w)
    out = random_crop_flip(x, padding=p, flip=True, generator=_gen("cpu", 5))
    g = _gen("cpu", 5)  # replay the documented draw order: rows, columns, flip mask
    dy = torch.randint(0, 2 * p + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * p + 1, (n,), generator=g)
    flipped = torch.rand(n, generator=g) < 0.5
    assert 0 < flipped.sum() < n and len(set(dy.tolist())) > 1
    xp = torch.nn.functional.pad(x, (p, p, p, p))
    for i in range(n):
        window = xp[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        assert torch.equal(out[i], torch.flip(window, [2]) if flipped[i] else window)


def test_flip_only_chosen_samples():
    x = torch.randn(32, 1, 4, 4)
    out = random_crop_flip(x, padding=0, flip=True, generator=_gen("cpu", 1))
    flipped = torch.rand(32, generator=_gen("cpu", 1)) < 0.5
    assert torch.equal(out[flipped], torch.flip(x[flipped], [3]))
    assert torch.equal(out[~flipped], x[~flipped])


def test_cutout_squares_and_seed():
    n, size, h = 64, 4, 12
    x = torch.randn(n, 3, h, h) + 10  # no zeros before cutout
    out = cutout(x, size, generator=_gen("cpu", 0))
    zero = out == 0
    assert torch.equal(zero, zero[:, :1].expand_as(zero))  # same square on every channel
    inside = 0
    for i in range(n):
        rows, cols = zero[i, 0].any(1), zero[i, 0].any(0)
        assert torch.equal(zero[i, 0], rows[:, None] & cols[None, :])  # a rectangle
        assert 0 < rows.sum() <= size and 0 < cols.sum() <= size
        if not (rows[0] or rows[-1] or cols[0] or cols[-1]):
            assert zero[i, 0].sum() == size * size
            inside += 1
    assert inside > n // 4
    assert torch.equal(out, cutout(x, size, generator=_gen("cpu", 0)))
    assert not torch.equal(out, cutout(x, size, generator=_gen("cpu", 1)))
    assert torch.equal(out[out != 0], x[out != 0])


def test_default_augment():
    assert default_augment("digits", 16) == Augment(padding=2, flip=False)
    assert default_augment("fashion-mnist", 28).flip is False
    assert default_augment("cifar10", 32, cutout_size=16) == Augment(4, True, 16)
    assert default_augment("synthetic", 16) is None
    with pytest.raises(ValueError):
        default_augment("imagenet", 224)
