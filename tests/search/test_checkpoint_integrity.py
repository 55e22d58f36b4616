"""Checkpoint integrity (issue 15, item 1): content digests checked on loading, a new file read
back and checked before it replaces the last good one, a full disk reported as such."""
import collections
import errno
import os
import tempfile

import pytest
import torch

from dartsfast.search import checkpoint
from dartsfast.search.checkpoint import CHECKPOINT_FILE, CheckpointError, load_checkpoint, save_checkpoint
from dartsfast.search.config import SearchConfig

CONFIG = SearchConfig(dataset="synthetic", device="cpu", epochs=2, channels=4, layers=3, progress=False, plots=False)


def make_state(seed=0, epoch=1):
    """A checkpoint-shaped state: a state_dict with module versions, optimiser state under int
    keys, tensors of several dtypes (a 0-d one, a non-contiguous one) and plain metadata."""
    g = torch.Generator().manual_seed(seed)
    model = collections.OrderedDict([
        ("stem.0.weight", torch.randn(8, 3, 3, 3, generator=g)),
        ("stem.1.running_mean", torch.randn(64, generator=g).to(torch.float16)),
        ("alphas", torch.randn(14, 4, generator=g).to(torch.bfloat16)),
        ("head.weight", torch.randn(10, 16, generator=g).t()),  # non-contiguous
        ("stem.1.num_batches_tracked", torch.tensor(7)),
    ])
    model._metadata = collections.OrderedDict([("", {"version": 1}), ("stem.1", {"version": 2})])
    opt = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.randn(8, 3, 3, 3, generator=g),
                         "exp_avg_sq": torch.rand(8, 3, 3, 3, generator=g, dtype=torch.float64)}},
           "param_groups": [{"lr": 0.025, "betas": (0.5, 0.999), "fused": None, "params": [0, 1]}]}
    history = [{"epoch": 1, "val_loss": 2.3, "genotype": {"normal": [["skip_connect", 0]]}, "ok": True}]
    return {"config": CONFIG.to_dict(), "edge_batching": False, "epoch": epoch, "history": history,
            "model": model, "a_opt": opt, "rng_cpu": torch.randint(0, 256, (32,), dtype=torch.uint8, generator=g),
            "mask": torch.rand(5, generator=g) > 0.5}


def assert_same(a, b, where="state"):
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}/{i}")
    else:
        assert a == b, where


def no_temp_files(directory):
    return not [p for p in os.listdir(directory) if p.endswith(".tmp")]


def test_round_trip_keeps_every_tensor_and_value(tmp_path):
    path = str(tmp_path / CHECKPOINT_FILE)
    state = make_state()
    save_checkpoint(path, state)
    loaded = load_checkpoint(path, CONFIG)
    assert loaded["format_version"] == checkpoint.FORMAT_VERSION == 3
    assert "model/stem.0.weight" in loaded["digests"]["tensors"]
    assert "a_opt/state/0/exp_avg_sq" in loaded["digests"]["tensors"]
    for key in state:
        assert_same(state[key], loaded[key], key)
    assert loaded["model"]._metadata == state["model"]._metadata
    assert no_temp_files(tmp_path)


def flip_bytes_of(path, tensor):
    """Flip 16 bytes in the middle of ``tensor``'s storage in the zip on disk (torch.save
    stores the data records uncompressed, so the raw bytes are in the file as they are)."""
    data = bytearray(open(path, "rb").read())
    raw = tensor.contiguous().view(torch.uint8).numpy().tobytes()
    start = data.find(raw)
    assert start >= 0 and data.find(raw, start + 1) < 0
    middle = start + len(raw) // 2 - 8
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    open(path, "wb").write(bytes(data))
    return bytes(data)


def test_flipped_bytes_in_a_tensor_are_refused_naming_it(tmp_path):
    path = str(tmp_path / CHECKPOINT_FILE)
    state = make_state()
    save_checkpoint(path, state)
    corrupt = flip_bytes_of(path, state["model"]["stem.0.weight"])
    with pytest.raises(CheckpointError, match=r"tensor model/stem\.0\.weight does not match.*left as it is"):
        load_checkpoint(path, CONFIG)
    assert open(path, "rb").read() == corrupt


def test_flipped_bytes_in_optimiser_state_are_refused_naming_it(tmp_path):
    path = str(tmp_path / CHECKPOINT_FILE)
    state = make_state()
    save_checkpoint(path, state)
    flip_bytes_of(path, state["a_opt"]["state"][0]["exp_avg"])
    with pytest.raises(CheckpointError, match=r"tensor a_opt/state/0/exp_avg does not match"):
        load_checkpoint(path, CONFIG)


def test_changed_metadata_is_refused(tmp_path):
    path = str(tmp_path / CHECKPOINT_FILE)
    save_checkpoint(path, make_state(epoch=1))
    payload = torch.load(path, weights_only=True)
    payload["epoch"] = 2  # the old digests kept
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="metadata"):
        load_checkpoint(path, CONFIG)
    payload["epoch"] = 1
    payload["model"]._metadata["stem.1"]["version"] = 1  # the module versions are covered too
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="metadata"):
        load_checkpoint(path, CONFIG)


def test_missing_digests_and_the_old_format_are_refused(tmp_path):
    path = str(tmp_path / CHECKPOINT_FILE)
    payload = {"format": checkpoint.FORMAT, "format_version": 2, **make_state()}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="format version 2, this dartsfast reads 3"):
        load_checkpoint(path, CONFIG)
    torch.save({**payload, "format_version": 3}, path)
    with pytest.raises(CheckpointError, match="no content digests"):
        load_checkpoint(path, CONFIG)


def test_a_file_that_reads_back_different_does_not_replace_the_last_good_one(tmp_path, monkeypatch):
    path = str(tmp_path / CHECKPOINT_FILE)
    save_checkpoint(path, make_state(seed=0))
    good = open(path, "rb").read()
    real_fsync = os.fsync

    def fsync_then_rot(fd):  # the bytes change on their way to the disk
        real_fsync(fd)
        size = os.fstat(fd).st_size
        os.pwrite(fd, b"\x00" * 16, size // 2)

    monkeypatch.setattr(os, "fsync", fsync_then_rot)
    with pytest.raises(OSError, match="reads back different.*previous checkpoint was kept") as info:
        save_checkpoint(path, make_state(seed=1, epoch=2))
    assert info.value.errno == errno.EIO
    assert open(path, "rb").read() == good
    assert no_temp_files(tmp_path)


def test_a_written_file_that_does_not_load_does_not_replace_the_last_good_one(tmp_path, monkeypatch):
    path = str(tmp_path / CHECKPOINT_FILE)
    save_checkpoint(path, make_state(seed=0))
    good = open(path, "rb").read()
    real_digests = checkpoint._digests
    calls = []

    def digests_that_disagree(payload):  # the save's digests right, the read-back's not
        calls.append(1)
        result = real_digests(payload)
        return result if len(calls) == 1 else {**result, "meta": "0" * 64}

    monkeypatch.setattr(checkpoint, "_digests", digests_that_disagree)
    with pytest.raises(CheckpointError, match=r"just written.*metadata.*previous checkpoint was kept"):
        save_checkpoint(path, make_state(seed=1, epoch=2))
    assert open(path, "rb").read() == good
    assert no_temp_files(tmp_path)


class DiskFullAfter:
    """The file object of a disk with ``room`` bytes left: a write that does not fit writes
    what fits and raises ENOSPC, as the kernel does."""

    def __init__(self, f, room):
        self._f, self.room = f, room

    def write(self, data):
        data = memoryview(data).cast("B")
        if len(data) > self.room:
            self._f.write(data[:self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.mark.parametrize("room", [0, 1000])
def test_a_full_disk_raises_enospc_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, room):
    """torch's zip writer used to turn a disk that fills mid-file into ``RuntimeError: [enforce
    fail at inline_container.cc:672] . unexpected pos``; the checkpoint is now serialised in
    memory and written with one plain write."""
    path = str(tmp_path / CHECKPOINT_FILE)
    save_checkpoint(path, make_state(seed=0))
    good = open(path, "rb").read()
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda *args, **kwargs: DiskFullAfter(real_fdopen(*args, **kwargs), room))
    with pytest.raises(OSError) as info:
        save_checkpoint(path, make_state(seed=1, epoch=2))
    assert info.value.errno == errno.ENOSPC and not isinstance(info.value, RuntimeError)
    assert open(path, "rb").read() == good
    assert no_temp_files(tmp_path)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_real_enospc_from_the_kernel_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / CHECKPOINT_FILE)
    save_checkpoint(path, make_state(seed=0))
    good = open(path, "rb").read()
    real_mkstemp = tempfile.mkstemp

    def mkstemp_on_a_full_disk(*args, **kwargs):  # the temp file exists; its writes go to /dev/full
        fd, name = real_mkstemp(*args, **kwargs)
        full = os.open("/dev/full", os.O_WRONLY)
        os.dup2(full, fd)
        os.close(full)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_on_a_full_disk)
    with pytest.raises(OSError) as info:
        save_checkpoint(path, make_state(seed=1, epoch=2))
    assert info.value.errno == errno.ENOSPC
    assert open(path, "rb").read() == good
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("content", [b"not a checkpoint", b"\x80\x02}q\x00.", b"cos\nsystem\n(S'echo hi'\ntR."])
def test_an_unreadable_file_is_refused_without_advice_to_load_it_unsafely(tmp_path, content):
    path = tmp_path / CHECKPOINT_FILE
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="corrupt or unreadable") as info:
        load_checkpoint(str(path), CONFIG)
    message = str(info.value)
    assert "weights_only" not in message and "arbitrary code" not in message.lower()
    assert "not a checkpoint this dartsfast wrote" in message
    assert path.read_bytes() == content
