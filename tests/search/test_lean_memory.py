"""Lean memory mode (issue 16): each cell recomputed in backward gives the same search as
keeping its activations, updates BatchNorm's running statistics once, and keeps less."""
import contextlib

import pytest
import torch

from dartsfast.bench.live_memory import peak_live_bytes
from dartsfast.bench.opcount import OpCounter
from dartsfast.data import make_synthetic
from dartsfast.search import distributed
from dartsfast.search.config import SearchConfig
from dartsfast.search.loop import SearchRun, search
from dartsfast.search.memory import device_memory_bytes, minimum_bytes
from dartsfast.search.supernet import Supernet

OPS = ("dsconv_3x3", "mbconv_3x3", "fused_mbconv_3x3", "sep_conv_3x3", "max_pool_3x3", "skip_connect", "none")


def tiny(**overrides):
    settings = dict(dataset="synthetic", synthetic_size=64, image_size=8, epochs=1, batch_size=8, layers=3,
                    channels=4, ops=OPS, progress=False, plots=False, device="cpu", alpha_lr=0.05)
    settings.update(overrides)
    return SearchConfig(**settings)


def _run_steps(memory: str, steps: int = 3, **overrides) -> SearchRun:
    """``steps`` search steps in float64 (fresh data from a seed; both modes draw the same)."""
    data = make_synthetic(64, num_classes=10, in_channels=3, image_size=8, seed=3)
    run = SearchRun(tiny(memory=memory, **overrides), torch.device("cpu"), distributed.DistContext(), data)
    run.model.double()
    for batches in (run.train_batches, run.val_batches):
        batches.x = batches.x.double()
    run.val_iter = run.val_batches.forever()
    sums = [torch.zeros((), dtype=torch.float64) for _ in range(3)]
    for _ in range(steps):
        run.step(*sums)
    return run


@pytest.mark.parametrize("order, edge_batching, partial_channels", [
    (1, False, 1), (2, False, 1), (1, True, 1), (1, False, 2)])
def test_lean_and_fast_take_identical_steps_in_float64(order, edge_batching, partial_channels):
    fast = _run_steps("fast", order=order, edge_batching=edge_batching, partial_channels=partial_channels)
    lean = _run_steps("lean", order=order, edge_batching=edge_batching, partial_channels=partial_channels)
    for (name, a), (_, b) in zip(fast.model.state_dict().items(), lean.model.state_dict().items()):
        # weights, alphas and BatchNorm running statistics (updated once per forward, not twice)
        assert torch.equal(a, b), f"{name} differs between fast and lean after 3 steps"


def _net_and_inputs(channels: int, layers: int, batch: int, side: int, edge_batching: bool = False):
    """A seeded supernet in training mode, a random batch and random softmaxed alphas."""
    torch.manual_seed(0)
    net = Supernet(channels, 10, layers, OPS, in_channels=3, edge_batching=edge_batching).train()
    x = torch.randn(batch, 3, side, side)
    w = torch.softmax(torch.randn(14, len(OPS)), -1).requires_grad_()
    return net, x, w


def test_lean_gradients_match_fast_in_float32():
    net, x, w = _net_and_inputs(4, 3, 4, 8)
    grads = {}
    for memory in ("fast", "lean"):
        net.memory = memory
        net.zero_grad()
        w.grad = None
        net(x, w, w).square().mean().backward()
        grads[memory] = [w.grad.clone()] + [p.grad.clone() for p in net.parameters() if p.grad is not None]
    assert len(grads["fast"]) == len(grads["lean"]) > 10
    for a, b in zip(grads["fast"], grads["lean"]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


class Interrupt(Exception):
    pass


def _interrupt_after_first_epoch(epoch, record):
    raise Interrupt


def test_a_search_killed_in_fast_mode_resumes_in_lean_bit_for_bit(tmp_path):
    """The recomputation is the same computation: in fp32 too, so a checkpoint moves between modes."""
    full = search(tiny(epochs=2, memory="lean", out=str(tmp_path / "full")))
    with pytest.raises(Interrupt):
        search(tiny(epochs=2, memory="fast", out=str(tmp_path / "cut")), on_epoch_end=_interrupt_after_first_epoch)
    resumed = search(tiny(epochs=2, memory="lean", out=str(tmp_path / "cut"), resume=True))
    assert resumed.start_epoch == 1
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resume"


@pytest.mark.parametrize("edge_batching", [False, True])
def test_lean_keeps_less_for_backward(edge_batching):
    """What autograd holds after forward, counted exactly with saved-tensor hooks."""
    net, x, w = _net_and_inputs(8, 5, 8, 16, edge_batching)
    saved = {}
    for memory in ("fast", "lean"):
        net.memory = memory
        seen: dict = {}

        def pack(t, seen=seen):
            seen[(t.untyped_storage().data_ptr(), t.dtype)] = t.untyped_storage().nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net(x, w, w)
        saved[memory] = sum(seen.values())
    assert saved["lean"] * 2 <= saved["fast"], saved


def test_the_memory_bound_of_lean_mode_counts_one_cell():
    args = dict(batch_size=64, channels=16, layers=8, side=28, samples=0, in_channels=1, ops_per_edge=3,
                edges_per_cell=14)
    assert minimum_bytes(**args, lean=True)["activations"] < minimum_bytes(**args)["activations"] / 3


def test_memory_mode_is_checked():
    with pytest.raises(ValueError, match="SearchConfig.memory"):
        tiny(memory="small")
    with pytest.raises(ValueError, match="memory must be one of"):
        Supernet(4, 10, 3, OPS, memory="small")


def test_history_records_each_epochs_peak_memory():
    history = search(tiny(epochs=2, memory="lean")).history
    machine = device_memory_bytes(torch.device("cpu"))
    for record in history:  # the process's resident set: at least torch's libraries, at most the machine
        assert isinstance(record["peak_memory_bytes"], int) and 2**20 < record["peak_memory_bytes"] <= machine


@pytest.mark.parametrize("amp, channels_last, edge_batching", [("bf16", True, False), ("fp16", False, True),
                                                               ("off", True, True)])
def test_lean_runs_with_amp_and_channels_last(amp, channels_last, edge_batching):
    fast = search(tiny(amp=amp, channels_last=channels_last, edge_batching=edge_batching))
    lean = search(tiny(amp=amp, channels_last=channels_last, edge_batching=edge_batching, memory="lean"))
    assert lean.history[-1]["train_loss"] == pytest.approx(fast.history[-1]["train_loss"], rel=1e-3)
    for a, b in zip(fast.model.alphas(), lean.model.alphas()):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("edge_batching", [False, True])
def test_a_lean_step_peaks_at_less_than_half_the_live_bytes(edge_batching):
    """The whole forward + backward, the recomputation's transient included, counted from
    torch's allocations (not the process's RSS, which glibc's kept free blocks inflate)."""
    net, x, w = _net_and_inputs(4, 5, 8, 8, edge_batching)
    y = torch.randint(0, 10, (x.shape[0],))
    peak = {}
    for memory in ("fast", "lean"):
        net.memory = memory

        def step():
            torch.nn.functional.cross_entropy(net(x, w, w), y).backward()
        step()  # gradients exist from here on, as in a search
        peak[memory] = peak_live_bytes(step)
    assert 0 < peak["lean"] * 2 <= peak["fast"], peak


def _ops_of(fn) -> int:
    counter = OpCounter()
    with counter:
        fn()
    return counter.ops


def test_lean_adds_a_second_forward_and_next_to_no_bookkeeping():
    """Lean = fast + one more forward of the recomputed edges + at most a few ops per edge
    (the inputs' detach). torch.utils.checkpoint's hooks detached every saved tensor (19,880
    extra ops in a seed step, 1.05x fast's whole step), which this bound would catch."""
    net, x, w = _net_and_inputs(4, 3, 2, 8)
    net.memory = "fast"
    forward_ops = _ops_of(lambda: net(x, w, w))
    step_ops = {}
    for memory in ("fast", "lean"):
        net.memory = memory
        step_ops[memory] = _ops_of(lambda: net(x, w, w).sum().backward())
    edges = 3 * 14
    assert step_ops["fast"] < step_ops["lean"] <= step_ops["fast"] + forward_ops + 3 * edges, step_ops


def test_a_lean_graph_run_twice_gives_the_same_gradients():
    """retain_graph: each backward recomputes afresh (running statistics held both times)."""
    net, x, w = _net_and_inputs(4, 3, 4, 8)
    net.memory = "lean"
    out = net(x, w, w).square().mean()
    stats = [b.clone() for b in net.buffers()]
    first = torch.autograd.grad(out, w, retain_graph=True)[0]
    second = torch.autograd.grad(out, w)[0]
    assert torch.equal(first, second)
    assert all(torch.equal(a, b) for a, b in zip(stats, net.buffers()))


def test_a_gradient_of_a_lean_gradient_is_refused():
    """Lean backward differentiates a recomputation the outer graph does not see, so a
    second derivative through it would be silently wrong: it raises instead."""
    net, x, w = _net_and_inputs(4, 3, 4, 8)
    net.memory = "lean"
    (grad,) = torch.autograd.grad(net(x, w, w).square().mean(), w, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()


class _WeightGradients(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts convolution backwards by whether they compute the weight's gradient."""

    def __init__(self):
        super().__init__()
        self.with_weight = self.without_weight = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.convolution_backward.default:
            if args[-1][1]:  # output_mask: (input, weight, bias)
                self.with_weight += 1
            else:
                self.without_weight += 1
        return func(*args, **(kwargs or {}))


def test_an_alphas_only_backward_skips_the_recomputed_weight_gradients():
    """Inside alphas_only_backward (the architecture step) lean backward runs the convolution
    backwards fast mode's autograd.grad(loss, w) runs — none with a weight gradient, none
    for the stem's output — with the same gradients; outside it every parameter still gets
    its gradient."""
    from dartsfast.search.recompute import alphas_only_backward

    net, x, w = _net_and_inputs(4, 3, 4, 8)
    grads, counts = {}, {}
    for memory, unneeded in (("fast", False), ("lean", False), ("lean", True)):
        net.memory = memory
        mode = _WeightGradients()
        with mode, (alphas_only_backward() if unneeded else contextlib.nullcontext()):
            grads[memory, unneeded] = torch.autograd.grad(net(x, w, w).square().mean(), w)[0]
        counts[memory, unneeded] = (mode.with_weight, mode.without_weight)
    assert counts["fast", False][0] == 0 < counts["fast", False][1]  # the engine prunes them in fast mode
    assert counts["lean", False][0] > 0  # without the hint lean computes them (and throws them away)
    assert counts["lean", True] == counts["fast", False]
    assert torch.equal(grads["lean", True], grads["lean", False])
    torch.testing.assert_close(grads["lean", True], grads["fast", False], rtol=1e-5, atol=1e-7)
    net.memory = "lean"  # outside the context a full backward still reaches every parameter
    with alphas_only_backward():
        pass
    net.zero_grad(set_to_none=True)
    net(x, w, w).square().mean().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
