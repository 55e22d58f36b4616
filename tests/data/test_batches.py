"""dartsfast.data: on-device batching (DeviceBatches) and batched augmentation."""
import io

import pytest
import torch

from dartsfast.data import Augment, DeviceBatches, cutout, default_augment, random_crop_flip

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


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
