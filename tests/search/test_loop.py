"""The search loop: files, history, resume bit for bit, checkpoint safety, AMP/channels_last, DDP."""
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from dartsfast.search import Genotype
from dartsfast.search.checkpoint import CHECKPOINT_FILE, CheckpointError
from dartsfast.search.config import SearchConfig
from dartsfast.search.loop import search
from dartsfast.search.outputs import GENOTYPE_FILE, HISTORY_FILE

CHEAP_OPS = ("skip_connect", "avg_pool_3x3", "dsconv_3x3", "none")
# Measured, not computed: they differ between runs (and ranks) of the same search.
TIMING_KEYS = ("epoch_time_s", "train_time_s", "images_per_s", "peak_memory_bytes", "data_wait_s")


def tiny(out=None, **overrides):
    """A search that takes about a second per epoch on 2 CPU cores."""
    settings = dict(dataset="synthetic", synthetic_size=96, image_size=8, epochs=2, batch_size=16,
                    layers=3, channels=4, ops=CHEAP_OPS, out=None if out is None else str(out),
                    progress=False, plots=False, device="cpu", alpha_lr=0.05)
    settings.update(overrides)
    return SearchConfig(**settings)


def without_timing(history):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in history]


def test_search_moves_alphas_and_writes_every_file(tmp_path):
    config = tiny(tmp_path, plots=True, ops=("dsconv_3x3", "mbconv_3x3", "fused_mbconv_3x3", "none"))
    result = search(config)
    history = json.loads((tmp_path / HISTORY_FILE).read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "alphas_normal", "alphas_reduce",
                "genotype", "epoch_time_s", "images_per_s", "lr", "skipped_steps"):
        assert key in history[-1], key
    # Softmaxed alphas: rows on the simplex, and they moved between epochs.
    rows = torch.tensor(history[-1]["alphas_normal"])
    assert rows.shape == (14, 4)
    torch.testing.assert_close(rows.sum(1), torch.ones(14))
    assert not torch.equal(torch.tensor(history[0]["alphas_normal"]), rows)
    # The initial alphas are ~1e-3 * randn, i.e. the softmax is uniform to ~1e-3; the
    # architecture step (Adam, lr 0.05, 2 × 3 steps) must have moved them well beyond that.
    assert (rows - 0.25).abs().max() > 0.01
    genotype = Genotype.from_json((tmp_path / GENOTYPE_FILE).read_text())
    assert genotype == result.genotype
    assert Genotype.from_dict(history[-1]["genotype"]) == result.genotype
    assert (tmp_path / CHECKPOINT_FILE).stat().st_size > 0
    for png in ("alphas.png", "alphas_final.png", "curves.png"):
        data = (tmp_path / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_weights_and_alphas_live_in_separate_optimisers(tmp_path):
    result = search(tiny(tmp_path, epochs=1))
    weights, alphas = result.model.weights(), result.model.alphas()
    assert not {id(p) for p in weights} & {id(p) for p in alphas}
    ckpt = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert len(ckpt["w_opt"]["param_groups"][0]["params"]) == len(weights)
    assert len(ckpt["a_opt"]["param_groups"][0]["params"]) == len(alphas) == 2


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("order, guards", [(1, {}), (2, {}), (1, {"warmup_epochs": 1, "beta_decay": 5.0})])
def test_resume_equals_the_uninterrupted_run_bit_for_bit(tmp_path, order, guards):
    full = search(tiny(tmp_path / "full", epochs=3, order=order, **guards))

    def crash_after_first_epoch(epoch, record):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        search(tiny(tmp_path / "cut", epochs=3, order=order, **guards), on_epoch_end=crash_after_first_epoch)
    resumed = search(tiny(tmp_path / "cut", epochs=3, order=order, resume=True, **guards))
    assert resumed.start_epoch == 1
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"
    assert without_timing(full.history) == without_timing(resumed.history)
    assert (tmp_path / "full" / GENOTYPE_FILE).read_text() == (tmp_path / "cut" / GENOTYPE_FILE).read_text()


def test_corrupt_checkpoint_is_reported_and_left_untouched(tmp_path):
    search(tiny(tmp_path, epochs=1))
    path = tmp_path / CHECKPOINT_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a torn write from some other tool
    torn = path.read_bytes()
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        search(tiny(tmp_path, epochs=2, resume=True))
    assert path.read_bytes() == torn


def test_mismatched_checkpoint_names_the_differences(tmp_path):
    search(tiny(tmp_path, epochs=1))
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()
    with pytest.raises(CheckpointError, match=r"channels: 4 != 8"):
        search(tiny(tmp_path, epochs=1, channels=8, resume=True))
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before


def test_existing_checkpoint_is_not_clobbered_without_overwrite(tmp_path):
    search(tiny(tmp_path, epochs=1))
    before = (tmp_path / CHECKPOINT_FILE).read_bytes()
    with pytest.raises(CheckpointError, match="--resume"):
        search(tiny(tmp_path, epochs=1, seed=5))
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == before
    search(tiny(tmp_path, epochs=1, seed=5, overwrite=True))
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() != before


def test_resume_without_a_checkpoint_is_refused_and_creates_nothing(tmp_path):
    # It used to start afresh silently: a typo in --out restarted a long search from epoch 0.
    with pytest.raises(ValueError, match="no checkpoint at"):
        search(tiny(tmp_path / "new", epochs=1, resume=True))
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("amp, channels_last", [("bf16", True), ("bf16", False), ("off", True), ("fp16", False)])
def test_amp_and_channels_last_paths_run(amp, channels_last):
    result = search(tiny(None, epochs=1, amp=amp, channels_last=channels_last,
                         ops=("dsconv_3x3", "mbconv_3x3", "skip_connect", "none")))
    record = result.history[-1]
    assert torch.isfinite(torch.tensor([record["train_loss"], record["val_loss"]])).all()
    assert isinstance(record["skipped_steps"], int) and 0 <= record["skipped_steps"] <= 3


def test_channels_last_gives_the_same_first_step_as_nchw():
    a = search(tiny(None, epochs=1, channels_last=False))
    b = search(tiny(None, epochs=1, channels_last=True))
    wa, wb = torch.tensor(a.history[0]["alphas_normal"]), torch.tensor(b.history[0]["alphas_normal"])
    torch.testing.assert_close(wa, wb, rtol=1e-4, atol=1e-5)


def test_partial_channels_records_edge_weights():
    result = search(tiny(None, epochs=1, channels=8, partial_channels=2))
    record = result.history[-1]
    assert "edges_normal" in record and len(record["edges_normal"]) == 14


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="SearchConfig.layers"):
        tiny(None, layers=2)
    with pytest.raises(ValueError, match="unknown op"):
        tiny(None, ops=("dsconv_3x3", "conv_9x9"))
    with pytest.raises(ValueError, match="SearchConfig.order"):
        tiny(None, order=3)
    with pytest.raises(ValueError, match="batch_size 64 exceeds"):
        search(tiny(None, batch_size=64))
    with pytest.raises(ValueError, match="resume needs"):
        search(tiny(None, resume=True))


# ----------------------------------------------------------------------------- DDP (gloo, 2 processes)

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out, results, memory):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    result = search(tiny(out, epochs=2, synthetic_size=128, memory=memory))
    results[rank] = {"alphas": [a.detach().clone() for a in result.model.alphas()],
                     "weights": [w.detach().clone() for w in result.model.weights()],
                     "history": result.history}


@pytest.mark.parametrize("memory", ["fast", "lean"])
def test_ddp_two_processes_keep_alphas_and_weights_identical(tmp_path, memory):
    port = _free_port()
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_ddp_worker, args=(2, port, str(tmp_path), results, memory), nprocs=2, join=True)
        r0, r1 = results[0], results[1]
    for a, b in zip(r0["alphas"], r1["alphas"]):
        assert torch.equal(a, b), "ranks derived different alphas"
    for a, b in zip(r0["weights"], r1["weights"]):
        assert torch.equal(a, b), "DDP weights diverged"
    assert not torch.allclose(r0["alphas"][0], torch.zeros_like(r0["alphas"][0]), atol=1e-2)
    assert without_timing(r0["history"]) == without_timing(r1["history"])
    history = json.loads((tmp_path / HISTORY_FILE).read_text())
    assert len(history) == 2 and (tmp_path / GENOTYPE_FILE).exists()
