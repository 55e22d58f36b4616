"""The CUDA-graph search step: on the CPU, that the step is capture-ready (no host syncs, the
same op sequence whatever the data) and that capture falls back with a reason; on a GPU
(`gpu`), that the replayed step trains like the eager one."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dartsfast.bench.opcount import make_run
from dartsfast.search import bilevel
from dartsfast.search.config import SearchConfig
from dartsfast.search.graph_step import graph_unavailable_reason
from dartsfast.search.loop import search
from dartsfast.testing import assert_close_to_reference

OPS = ("dsconv_3x3", "mbconv_3x3", "fused_mbconv_3x3", "skip_connect", "none")


class OpTrace(TorchDispatchMode):
    """Every aten op with the shapes, dtypes and layouts of its tensor arguments."""

    def __init__(self):
        super().__init__()
        self.trace = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        def sig(a):
            return (tuple(a.shape), a.dtype, a.stride()) if isinstance(a, torch.Tensor) else None
        flat = [x for a in args for x in (a if isinstance(a, (list, tuple)) else [a])]
        self.trace.append((str(func), tuple(sig(a) for a in flat if isinstance(a, torch.Tensor))))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("order", [1, 2])
def test_the_step_is_capture_ready(order):
    """A captured graph replays the same kernels on the same shapes: the op sequence of a step
    must not depend on the batch's values, and nothing may be read back to the host."""
    run = make_run("tiny", order, batch_size=4, ops=OPS)
    sums = [torch.zeros(()) for _ in range(3)]
    run.step(*sums)
    traces = []
    for _ in range(2):  # two steps, two different batches
        with OpTrace() as t:
            run.step(*sums)
        traces.append(t.trace)
    assert traces[0] == traces[1]
    assert not [op for op, _ in traces[0] if "_local_scalar_dense" in op]


@pytest.mark.parametrize("device, amp, ddp, compiled, reason", [
    ("cpu", "off", False, False, "need a CUDA device"), ("cuda", "fp16", False, False, "GradScaler"),
    ("cuda", "off", True, False, "DDP"), ("cuda", "bf16", False, True, "torch.compile"),
    ("cuda", "bf16", False, False, "")])
def test_why_a_step_cannot_be_captured(device, amp, ddp, compiled, reason):
    got = graph_unavailable_reason(torch.device(device), amp, ddp, compiled)
    assert (reason in got and got) if reason else got == ""


def test_asking_for_a_graph_on_the_cpu_says_why_and_runs_eagerly(capsys):
    config = SearchConfig(dataset="synthetic", synthetic_size=32, image_size=8, epochs=1, batch_size=8, layers=3,
                          channels=4, ops=OPS, progress=False, plots=False, device="cpu", cuda_graph=True)
    result = search(config)
    assert "runs without a CUDA graph: CUDA graphs need a CUDA device" in capsys.readouterr().out
    assert len(result.history) == 1


def test_virtual_step_takes_the_rate_as_a_device_tensor():
    """The captured second order reads the learning rate from a tensor; same result as a float."""
    torch.manual_seed(0)
    weights = [torch.randn(3, 4), torch.randn(5)]
    grads = [torch.randn(3, 4), torch.randn(5)]
    by_float, by_tensor = [w.clone() for w in weights], [w.clone() for w in weights]
    bilevel._virtual_step(by_float, grads, 0.025, 0.0, 3e-4, None)
    bilevel._virtual_step(by_tensor, grads, torch.tensor(0.025), 0.0, 3e-4, None)
    for a, b in zip(by_float, by_tensor):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.gpu
@pytest.mark.parametrize("order", [1, 2])
def test_gpu_graph_step_trains_like_the_eager_step(order):
    def run(graph):
        config = SearchConfig(dataset="synthetic", synthetic_size=256, image_size=16, epochs=2, batch_size=16,
                              layers=3, channels=8, ops=OPS, order=order, progress=False, plots=False,
                              device="cuda", cuda_graph=graph)
        return search(config)
    eager, graphed = run(False), run(True)
    # 8 steps per epoch, capture after 3: epoch 2 replays with the scheduler's new rate.
    assert graphed.history[1]["lr"] == eager.history[1]["lr"] != graphed.history[0]["lr"]
    for a, b in zip(eager.model.alphas(), graphed.model.alphas()):
        assert_close_to_reference(b.detach(), a.detach(), torch.float32, "alphas")
    for a, b in zip(eager.model.weights()[:20], graphed.model.weights()[:20]):
        assert_close_to_reference(b.detach(), a.detach(), torch.float32, "weights")
