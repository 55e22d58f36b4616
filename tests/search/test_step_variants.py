"""Ways of running the same search step (issue 14): batched vs per-edge cells, torch.compile,
and the second order's auxiliary passes leaving BatchNorm's running statistics alone."""
import pytest
import torch

from dartsfast.data import make_synthetic
from dartsfast.nn import MBConv
from dartsfast.search import distributed
from dartsfast.search.bilevel import running_stats_frozen
from dartsfast.search.checkpoint import CheckpointError
from dartsfast.search.config import SearchConfig
from dartsfast.search.loop import SearchRun, search
from dartsfast.testing import assert_close_to_reference, make_generator, random_tensor

MBCONV_OPS = ("dsconv_3x3", "mbconv_3x3", "fused_mbconv_3x3", "skip_connect", "none")


def tiny(**overrides):
    settings = dict(dataset="synthetic", synthetic_size=64, image_size=8, epochs=1, batch_size=8, layers=3,
                    channels=4, ops=MBCONV_OPS, progress=False, plots=False, device="cpu", alpha_lr=0.05)
    settings.update(overrides)
    return SearchConfig(**settings)


def _alphas(result):
    return torch.cat([a.detach().flatten() for a in result.model.alphas()])


@pytest.mark.parametrize("order", [1, 2])
def test_batched_and_per_edge_searches_take_the_same_steps(order):
    batched = search(tiny(order=order, edge_batching=True))
    per_edge = search(tiny(order=order, edge_batching=False))
    assert_close_to_reference(_alphas(batched) - _alphas(per_edge).mean(), _alphas(per_edge) - _alphas(per_edge).mean(),
                              torch.float32, "alphas after an epoch")
    assert batched.history[-1]["train_loss"] == pytest.approx(per_edge.history[-1]["train_loss"], rel=1e-4)


def test_compiled_supernet_takes_the_eager_steps():
    eager = search(tiny(edge_batching=True))
    compiled = search(tiny(edge_batching=True, compile="aot_eager"))
    assert_close_to_reference(_alphas(compiled) - _alphas(eager).mean(), _alphas(eager) - _alphas(eager).mean(),
                              torch.float32, "alphas after an epoch")


@pytest.mark.parametrize("field, value", [("compile", "nope"), ("compile", True), ("edge_batching", "yes")])
def test_bad_step_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        tiny(**{field: value})


def test_a_checkpoint_of_the_other_cell_layout_is_refused(tmp_path):
    search(tiny(out=str(tmp_path), edge_batching=True))
    with pytest.raises(CheckpointError, match="edge_batching"):
        search(tiny(out=str(tmp_path), epochs=2, resume=True, edge_batching=False))


def test_the_device_default_layout_is_checked_on_resume():
    """edge_batching=None is per-edge on a CPU and batched on CUDA: a checkpoint carries the
    layout it was made with, and a run that would build the other one says how to match it."""
    data = make_synthetic(64, num_classes=10, in_channels=1, image_size=8, seed=0)
    run = SearchRun(tiny(), torch.device("cpu"), distributed.DistContext(), data)
    assert run.edge_batching is False  # the default on a CPU
    state = run.state_dict()
    state["edge_batching"] = True
    with pytest.raises(CheckpointError, match=r"batched supernet.*--edge-batching"):
        run.load_state_dict(state)


@pytest.mark.parametrize("fused", [True, False])
def test_frozen_running_stats_normalise_by_the_batch_and_keep_the_statistics(fused):
    torch.manual_seed(0)
    block = MBConv(4, 4, se_ratio=0.25, noskip=True, fused=fused).train()
    x = random_tensor((4, 4, 6, 6), generator=make_generator(1))
    before = {k: v.clone() for k, v in block.state_dict().items()}
    with running_stats_frozen(block):
        frozen_out = block(x)
    assert all(torch.equal(before[k], v) for k, v in block.state_dict().items())  # nothing moved
    assert all(m.track_running_stats for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d))
    tracked_out = block(x)  # the same batch statistics, now also tracked
    assert_close_to_reference(frozen_out, tracked_out, torch.float32)
    assert not torch.equal(before["bn1.running_mean"], block.bn1.running_mean)
    assert not torch.equal(before["dw_se.bn2.running_var"], block.dw_se.bn2.running_var)
