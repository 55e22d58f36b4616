"""weighted_sum's registration: torch.library checks (opcheck), torch.compile, the backend
table choosing a kernel at run time, and the Triton kernels behind it (selected, counted,
fp64 sent to the reference, a tiny supernet). `interpreter` tests run on CPU tensors
(TRITON_INTERPRET=1, set by conftest); `gpu` tests need CUDA."""
import pytest
import torch
from weighted_sum_checks import (
    LOW_PRECISION,
    check_backward,
    check_forward,
    float64_sum,
    gpu,
    interpreter,
    plain_pytorch_sum,
)

from dartsfast import backend
from dartsfast.ops import weighted_sum, weighted_sum_ref
from dartsfast.ops.weighted_sum import BACKWARD_OP, OP, _weighted_sum_backward_triton, _weighted_sum_triton
from dartsfast.testing import (
    TOLERANCES,
    assert_close_to_reference,
    make_generator,
    poisoned_outputs,
    random_inputs,
    random_simplex,
    random_tensor,
)

# ----------------------------------------------------------------------------- torch reference

def test_opcheck():
    gen = make_generator(9)
    inputs = random_inputs(3, (2, 3, 4, 5), generator=gen, channels_last=True, requires_grad=True)
    weights = random_simplex(3, generator=gen).requires_grad_(True)
    torch.library.opcheck(torch.ops.dartsfast.weighted_sum.default, (inputs, weights))
    grad = random_inputs(1, (2, 3, 4, 5), generator=gen)[0]
    torch.library.opcheck(torch.ops.dartsfast.weighted_sum_backward.default,
                          (grad, [x.detach() for x in inputs], weights.detach()))


def check_compiled_matches_eager(seed, eager_backend, compiled_backend):
    """Loss and grads of a torch.compile'd (fullgraph) loss over weighted_sum, run on
    ``compiled_backend``, match the eager ones run on ``eager_backend``."""
    gen = make_generator(seed)
    inputs = random_inputs(4, (2, 8, 5, 5), generator=gen, channels_last=True)
    weights = random_simplex(4, generator=gen)

    def loss_fn(xs, w):
        return (weighted_sum(xs, torch.softmax(w, 0)) ** 2).sum()

    # aot_eager traces the op and its backward without inductor's C++ compiler.
    compiled = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    results = []
    for fn, name in ((loss_fn, eager_backend), (compiled, compiled_backend)):
        xs = [x.clone().requires_grad_(True) for x in inputs]
        w = weights.clone().requires_grad_(True)
        with backend.use_backend(name), poisoned_outputs():
            loss = fn(xs, w)
            loss.backward()
        results.append((loss.detach(), w.grad, xs[2].grad))
    for eager, comp in zip(*results):
        torch.testing.assert_close(comp, eager, rtol=TOLERANCES[torch.float32], atol=1e-6)


def test_torch_compile_fullgraph_matches_eager():
    check_compiled_matches_eager(11, backend.get_backend(), backend.get_backend())


def test_runs_through_the_backend_seam(monkeypatch):
    """The op asks the backend registry at run time, compiled or not: a kernel registered
    for 'triton' is what runs once 'triton' is chosen, without recompiling."""
    calls = []

    def fake_triton_kernel(inputs, weights):
        calls.append(len(inputs))
        return weighted_sum_ref(inputs, weights) + 1.0

    monkeypatch.setitem(backend._kernels, "weighted_sum", {**backend._kernels["weighted_sum"],
                                                           "triton": fake_triton_kernel})
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    gen = make_generator(13)
    inputs = random_inputs(2, (3, 3), generator=gen)
    weights = random_simplex(2, generator=gen)
    compiled = torch.compile(lambda xs, w: weighted_sum(xs, w) * 2, fullgraph=True, backend="aot_eager")
    with backend.use_backend("torch"):
        reference = compiled(inputs, weights)
    with backend.use_backend("triton"):
        shifted = compiled(inputs, weights)
    assert calls == [2]
    torch.testing.assert_close(shifted, reference + 2.0)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["auto", "cuda"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("k, shape", [(1, (7,)), (3, (1023,)), (9, (2, 123, 7, 7)), (20, (4, 64, 56, 56))])
def test_gpu_forward_matches_float64(name, dtype, k, shape):
    if backend.why_unavailable(name):
        pytest.skip(backend.why_unavailable(name))
    gen = make_generator(14)
    inputs = [x.cuda() for x in random_inputs(k, shape, dtype=dtype, generator=gen, channels_last=len(shape) == 4)]
    weights = random_simplex(k, generator=gen).cuda()
    with backend.use_backend(name), poisoned_outputs():
        out = weighted_sum(inputs, weights)
    assert out.stride() == inputs[0].stride()
    baseline = plain_pytorch_sum(inputs, weights) if dtype in LOW_PRECISION else None
    assert_close_to_reference(out, float64_sum(inputs, weights), dtype, "weighted_sum (cuda)", baseline)


# ----------------------------------------------------------------------------- Triton kernels

@pytest.fixture
def triton_calls(monkeypatch):
    """Counts calls into the Triton launchers, so a test cannot pass on a silent fallback."""
    calls = {OP: 0, BACKWARD_OP: 0}
    for op in calls:
        kernel = backend._kernels[op]["triton"]

        def counted(*args, _kernel=kernel, _op=op):
            calls[_op] += 1
            return _kernel(*args)

        monkeypatch.setitem(backend._kernels, op, {**backend._kernels[op], "triton": counted})
    return calls


@interpreter
def test_triton_backend_selects_the_triton_kernels():
    cpu = torch.device("cpu")
    with backend.use_backend("triton"):
        assert backend.select(OP, cpu) == ("triton", _weighted_sum_triton)
        assert backend.select(BACKWARD_OP, cpu) == ("triton", _weighted_sum_backward_triton)


@interpreter
def test_float64_runs_the_reference_under_triton(triton_calls):
    gen = make_generator(750)
    inputs = random_inputs(3, (5, 7), dtype=torch.float64, generator=gen)
    weights = random_simplex(3, dtype=torch.float64, generator=gen)
    grad_out = random_tensor((5, 7), dtype=torch.float64, generator=gen)
    out = check_forward(inputs, weights)
    grads, grad_w = check_backward(inputs, weights, grad_out)
    assert triton_calls == {OP: 2, BACKWARD_OP: 1}  # selected, then delegated to the reference
    assert out.dtype == grads[0].dtype == grad_w.dtype == torch.float64


@interpreter
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_triton_sums_channel_slices_of_a_wider_tensor(layout):
    """A batched supernet state hands each node channel slices of its wide outputs: strided
    inputs that must be read right, with the output (and input grads) in the slices' layout."""
    gen = make_generator(950)
    wide = [random_tensor((2, 9, 4, 5), generator=gen).contiguous(memory_format=layout) for _ in range(2)]
    inputs = [wide[0][:, 0:3], wide[0][:, 6:9], wide[1][:, 3:6]]
    weights = random_simplex(3, generator=gen)
    grad_out = random_tensor((2, 3, 4, 5), generator=gen)
    ref = float64_sum(inputs, weights)
    with backend.use_backend("triton"), poisoned_outputs():
        out = weighted_sum(inputs, weights)
        grads = torch.ops.dartsfast.weighted_sum_backward(grad_out, inputs, weights)
    assert_close_to_reference(out, ref, torch.float32)
    assert out.is_contiguous(memory_format=layout)
    for k, g in enumerate(grads[:-1]):
        assert_close_to_reference(g, grad_out.double() * weights.double()[k], torch.float32)
    expected_w = torch.stack([(grad_out.double() * x.double()).sum() for x in inputs])
    assert_close_to_reference(grads[-1], expected_w, torch.float32, "weight grads")


@interpreter
def test_opcheck_with_triton_backend(triton_calls):
    gen = make_generator(900)
    inputs = random_inputs(3, (2, 3, 4, 5), generator=gen, channels_last=True, requires_grad=True)
    weights = random_simplex(3, generator=gen).requires_grad_(True)
    grad = random_tensor((2, 3, 4, 5), generator=gen)
    with backend.use_backend("triton"):
        torch.library.opcheck(torch.ops.dartsfast.weighted_sum.default, (inputs, weights))
        torch.library.opcheck(torch.ops.dartsfast.weighted_sum_backward.default,
                              (grad, [x.detach() for x in inputs], weights.detach()))
    assert triton_calls[OP] > 0 and triton_calls[BACKWARD_OP] > 0


@interpreter
def test_torch_compile_fullgraph_with_triton_backend(triton_calls):
    check_compiled_matches_eager(1000, "torch", "triton")
    assert triton_calls == {OP: 1, BACKWARD_OP: 1}


@interpreter
def test_supernet_same_loss_and_grads_with_triton(triton_calls):
    from dartsfast.search.supernet import ArchParams, SearchModel, Supernet

    ops = ("skip_connect", "avg_pool_3x3", "none")
    torch.manual_seed(0)
    # 2 nodes per cell (5 edges, not 14): each interpreted launch costs ~50 ms here.
    net = Supernet(4, 10, 3, ops, in_channels=1, steps=2, multiplier=2)
    model = SearchModel(net, ArchParams(len(ops), steps=2, init_scale=1.0))
    x = torch.randn(2, 1, 8, 8, generator=make_generator(1100))
    target = torch.tensor([3, 7])
    results = {}
    for name in ("torch", "triton"):
        model.zero_grad(set_to_none=True)
        with backend.use_backend(name), poisoned_outputs():
            loss = torch.nn.functional.cross_entropy(model(x), target)
            loss.backward()
        results[name] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    # The batched cell sums each node's (edge, op) inputs at once: 2 nodes × 3 cells,
    # one forward and one backward launch each.
    assert triton_calls == {OP: 6, BACKWARD_OP: 6}
    (loss_t, grads_t), (loss_x, grads_x) = results["torch"], results["triton"]
    assert_close_to_reference(loss_x, loss_t, torch.float32, "loss")
    assert grads_t.keys() == grads_x.keys()
    for n in ("arch.alphas_normal", "arch.alphas_reduce", "net.stem.0.weight", "net.classifier.weight"):
        assert grads_t[n].abs().sum() > 0, n
    for n, g in grads_x.items():
        assert_close_to_reference(g, grads_t[n], torch.float32, f"grad {n}")


@gpu
def test_gpu_auto_backend_runs_triton_backward():
    with backend.use_backend("auto"):
        assert backend.select(BACKWARD_OP, torch.device("cuda"))[0] == "triton"
