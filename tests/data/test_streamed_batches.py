"""StreamedBatches: for the same seed, exactly the batches DeviceBatches draws over the decoded
tensors (augmentation included, across epochs), the same state dict (resume bit for bit,
either path), workers that change nothing but speed, and the search's splits and shards."""
import io
import multiprocessing

import pytest
import torch
from image_folders import make_image_folder

from dartsfast.data import default_augment, open_run_data
from dartsfast.search.config import SearchConfig
from dartsfast.search.data_setup import build_search_data
from dartsfast.search.distributed import DistContext

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("stream"), classes=3, per_class=30)  # 81 train, 9 test


def _open(folder, streamed: bool, workers: int = 0):
    return open_run_data("imagefolder", device=CPU, data_dir=folder, image_size=8, data_workers=workers,
                         data_memory_gb=0 if streamed else None, log=lambda line: None)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


AUGMENT = default_augment("imagefolder", 8, cutout_size=3)  # crop + flip + cutout: all draw from the generator


def _roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("drop_last", [True, False])
def test_streamed_batches_are_the_resident_batches(folder, drop_last):
    resident, streamed = _open(folder, False), _open(folder, True)
    assert not resident.streamed and streamed.streamed
    a = resident.train.batches(16, generator=_gen(5), augment=AUGMENT, drop_last=drop_last)
    b = streamed.train.batches(16, generator=_gen(5), augment=AUGMENT, drop_last=drop_last)
    assert len(a) == len(b) == (5 if drop_last else 6)
    seen = []
    for _ in range(3 * len(a) + 2):  # three epochs and into the fourth
        (xa, ya), (xb, yb) = a.next_batch(), b.next_batch()
        assert xb.dtype == torch.float32 and xb.shape == xa.shape and torch.equal(xa, xb) and torch.equal(ya, yb)
        seen.append(xa)
    assert not torch.equal(seen[0], seen[len(a)][:seen[0].shape[0]])  # reshuffled and re-augmented
    sa, sb = a.state_dict(), b.state_dict()
    assert torch.equal(sa.pop("generator"), sb.pop("generator")) and torch.equal(sa.pop("perm"), sb.pop("perm"))
    assert sa == sb
    # Evaluation order: the whole test set, in order, unaugmented.
    pairs = list(zip(resident.test.in_order(4), streamed.test.in_order(4)))
    assert len(pairs) == 3 and all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in pairs)
    assert b.wait_s > 0  # workers=0 decodes inside next_batch: the wait is the decoding
    streamed.close()


def test_streamed_resume_mid_epoch_is_bit_exact_on_either_path(folder):
    resident, streamed = _open(folder, False), _open(folder, True)
    a = streamed.train.batches(16, generator=_gen(7), augment=AUGMENT)
    for _ in range(len(a) + 2):  # into the second epoch
        a.next_batch()
    state = _roundtrip(a.state_dict())  # as a checkpoint stores it
    expected = [a.next_batch() for _ in range(len(a) + 1)]
    b = streamed.train.batches(16, generator=_gen(123), augment=AUGMENT)
    b.load_state_dict(state)
    c = resident.train.batches(16, generator=_gen(0), augment=AUGMENT)  # a checkpoint moves between paths
    c.load_state_dict(state)
    for x, y in expected:
        for other in (b, c):
            xo, yo = other.next_batch()
            assert torch.equal(x, xo) and torch.equal(y, yo)
    # Resumed exactly at an epoch's end (the state a search checkpoints after each epoch).
    d = streamed.train.batches(16, generator=_gen(1), augment=AUGMENT)
    for _ in range(len(d)):
        d.next_batch()
    e = streamed.train.batches(16, generator=_gen(2), augment=AUGMENT)
    e.load_state_dict(_roundtrip(d.state_dict()))
    for _ in range(len(d) + 1):
        assert torch.equal(d.next_batch()[0], e.next_batch()[0])
    with pytest.raises(ValueError, match="batch_size=16 over 81 samples"):
        streamed.train.batches(8, generator=_gen(0)).load_state_dict(state)
    streamed.close()


def test_two_workers_give_the_same_batches_and_stop_on_close(folder):
    before = len(multiprocessing.active_children())
    serial, parallel = _open(folder, True, workers=0), _open(folder, True, workers=2)
    a = serial.train.batches(16, generator=_gen(3), augment=AUGMENT)
    b = parallel.train.batches(16, generator=_gen(3), augment=AUGMENT)
    for _ in range(2 * len(a) + 1):
        (xa, ya), (xb, yb) = a.next_batch(), b.next_batch()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert len(multiprocessing.active_children()) >= before + 2
    parallel.close()
    assert len(multiprocessing.active_children()) == before


def test_search_splits_and_rank_shards_are_the_same_on_both_paths(folder):
    """Each DDP rank gets its [rank::2] shard of both halves; resident and streamed agree."""
    config = SearchConfig(dataset="imagefolder", data_dir=str(folder), image_size=8, batch_size=8, augment=True,
                          device="cpu", max_train_samples=72, data_workers=0)
    labels = {}
    for memory_gb in (None, 0):
        config.data_memory_gb = memory_gb
        for rank in (0, 1):
            data = build_search_data(config, CPU, DistContext(rank, 2), None)
            assert data.data.streamed == (memory_gb == 0)
            batches = [data.train_batches.next_batch() for _ in range(len(data.train_batches))]
            batches += [data.val_batches.next_batch() for _ in range(len(data.val_batches))]
            labels[memory_gb, rank] = batches
            assert len(data.train_batches) == 18 // 8 and len(data.val) == 18  # 72 / 2 halves / 2 ranks
            data.close()
    for rank in (0, 1):
        for (xa, ya), (xb, yb) in zip(labels[None, rank], labels[0, rank]):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(labels[None, 0][0][0], labels[None, 1][0][0])  # the ranks' shards differ


# ----------------------------------------------------------------------------- DDP (gloo, 2 processes)

def _ddp_worker(rank, port, folder, out, results):
    import os

    from dartsfast.search import search
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    config = SearchConfig(dataset="imagefolder", data_dir=folder, image_size=8, batch_size=8, epochs=1, layers=3,
                          channels=4, ops=("skip_connect", "dsconv_3x3", "none"), device="cpu", progress=False,
                          plots=False, out=out, data_memory_gb=0, data_workers=0, alpha_lr=0.05)
    result = search(config)
    results[rank] = [a.detach().clone() for a in result.model.alphas()] + [result.history[-1]["skipped_images"]]


def test_ddp_ranks_stream_their_shards_and_stay_identical(folder, tmp_path):
    import socket

    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_ddp_worker, args=(port, str(folder), str(tmp_path), results), nprocs=2, join=True)
        r0, r1 = list(results[0]), list(results[1])
    assert all(torch.equal(a, b) for a, b in zip(r0[:-1], r1[:-1])) and r0[-1] == r1[-1] == 0
    assert (tmp_path / "history.json").exists()
