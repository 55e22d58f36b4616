"""The compiled extension dartsfast._C: registration, argument checks, and (on a GPU)
the CUDA weighted-sum kernel against a float64 reference."""
import pytest
import torch

from dartsfast import _ext

SCHEMA = "dartsfast::weighted_sum_cuda(Tensor[] inputs, Tensor weights, Tensor(a!) out) -> ()"
# ||out - ref|| / ||ref||, DESIGN.md section 6.
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}
CHUNK = 8  # kMaxInputs in csrc/weighted_sum.cuh: K = 9 and 20 go through the workspace

needs_ext = pytest.mark.skipif(not _ext.HAS_EXT, reason=_ext.WHY_NOT or "extension not built")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def op(inputs, weights, out):
    torch.ops.dartsfast.weighted_sum_cuda(inputs, weights, out)


def test_why_not_is_set_exactly_when_missing():
    assert isinstance(_ext.HAS_EXT, bool)
    if _ext.HAS_EXT:
        assert _ext.WHY_NOT == ""
    else:
        assert "dartsfast._C" in _ext.WHY_NOT and "DARTSFAST_BUILD_CUDA=1" in _ext.WHY_NOT
        assert not _ext.has_op("weighted_sum_cuda")


@needs_ext
def test_registers_weighted_sum_cuda():
    import dartsfast._C  # noqa: F401

    assert _ext.has_op("weighted_sum_cuda")
    assert not _ext.has_op("no_such_op")
    assert str(torch.ops.dartsfast.weighted_sum_cuda.default._schema) == SCHEMA


@needs_ext
def test_cpu_tensors_have_no_kernel():
    x = torch.randn(16)
    with pytest.raises((NotImplementedError, RuntimeError), match="CPU"):
        op([x, x], torch.ones(2), torch.empty(16))


# ---------------------------------------------------------------------------- GPU


def _inputs(K, n, dtype, seed, offset=0):
    """K inputs of n elements; with offset > 0 each is a slice starting `offset` elements
    into its own buffer, so its pointer is not 16-byte aligned."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    bufs = [torch.randn(n + offset, generator=g, device="cuda").to(dtype) for _ in range(K)]
    weights = torch.randn(K, generator=g, device="cuda")  # any sign: not only softmax outputs
    return [b[offset:] for b in bufs], weights


def _check(out, inputs, weights, dtype):
    terms = [w.double() * x.double() for w, x in zip(weights, inputs)]
    ref = sum(terms)
    err = (out.double() - ref).norm().item()
    # fp32 accumulation cannot beat ~K * 2^-24 * sum_k |w_k x_k| where terms cancel; the
    # floor only matters when ||ref|| is tiny by chance (n = 1).
    floor = len(inputs) * 2.0**-24 * sum(t.abs() for t in terms).norm().item()
    rel = err / max(ref.norm().item(), 1e-30)
    assert not out.isnan().any(), "unwritten (NaN-poisoned) elements in out"
    assert err <= TOL[dtype] * ref.norm().item() + floor, (
        f"K={len(inputs)} n={out.numel()} {dtype}: rel err {rel:.3g} > {TOL[dtype]:g}")


@needs_ext
@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("n", [1, 7, 1023, 4099, 2**20 + 3])
@pytest.mark.parametrize("K", [1, 3, 8, 9, 20])
def test_matches_float64_reference(K, n, dtype):
    inputs, weights = _inputs(K, n, dtype, seed=1000 * K + n)
    out = torch.full((n,), float("nan"), device="cuda", dtype=dtype)
    op(inputs, weights, out)
    _check(out, inputs, weights, dtype)


@needs_ext
@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("out_offset", [0, 1], ids=["out_aligned", "out_offset1"])
@pytest.mark.parametrize("K", [3, 9])
def test_unaligned_pointers(K, out_offset, dtype):
    n = 4099
    inputs, weights = _inputs(K, n, dtype, seed=7 + K, offset=1)
    out = torch.full((n + out_offset,), float("nan"), device="cuda", dtype=dtype)[out_offset:]
    op(inputs, weights, out)
    _check(out, inputs, weights, dtype)


@needs_ext
@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("K", [3, 9])
def test_channels_last_and_in_place(K):
    g = torch.Generator(device="cuda").manual_seed(K)
    shape = (2, 123, 7, 7)
    xs = [torch.randn(shape, generator=g, device="cuda").to(torch.bfloat16)
          .contiguous(memory_format=torch.channels_last) for _ in range(K)]
    w = torch.softmax(torch.randn(K, generator=g, device="cuda"), 0)
    out = torch.full_like(xs[0], float("nan"))
    op(xs, w, out)
    _check(out, xs, w, torch.bfloat16)
    # out aliasing an input exactly is allowed: each element is read before it is written.
    ref_out = out.clone()
    keep = [x.clone() for x in xs]
    op(xs, w, xs[0])
    torch.testing.assert_close(xs[0], ref_out, rtol=0, atol=0)
    _check(xs[0], keep, w, torch.bfloat16)


@needs_ext
@needs_cuda
@pytest.mark.gpu
def test_no_host_sync_and_graph_capture():
    """Weights stay on the device and work goes to the current stream: no sync, and the
    op (workspace allocation included, K = 9) can be captured in a CUDA graph."""
    inputs, weights = _inputs(9, 4099, torch.float16, seed=3)
    out = torch.full_like(inputs[0], float("nan"))
    torch.cuda.set_sync_debug_mode("error")
    try:
        op(inputs, weights, out)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        op(inputs, weights, out)  # warm-up outside capture
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        op(inputs, weights, out)
    for x in inputs:
        x.mul_(-0.5)
    weights.add_(0.25)
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    _check(out, inputs, weights, torch.float16)


@needs_ext
@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("case, match", [
    ("empty", "at least one input"),
    ("dtype", r"inputs\[1\] has dtype"),
    ("sizes", r"inputs\[1\] has sizes"),
    ("strides", r"inputs\[1\] has strides"),
    ("weights_len", "weights must be 1-D of length 2"),
    ("weights_dtype", "weights must be float32"),
    ("weights_cpu", "weights is on cpu"),
    ("out_dtype", "out has dtype"),
    ("input_cpu", r"inputs\[1\] is on cpu"),
])
def test_bad_arguments_name_the_problem(case, match):
    x = torch.randn(4, 6, device="cuda")
    inputs, w, out = [x, x.clone()], torch.ones(2, device="cuda"), torch.empty_like(x)
    if case == "empty":
        inputs = []
    elif case == "dtype":
        inputs[1] = inputs[1].half()
    elif case == "sizes":
        inputs[1] = torch.randn(4, 7, device="cuda")
    elif case == "strides":
        inputs[1] = torch.randn(6, 4, device="cuda").t()
    elif case == "weights_len":
        w = torch.ones(3, device="cuda")
    elif case == "weights_dtype":
        w = w.double()
    elif case == "weights_cpu":
        w = w.cpu()
    elif case == "out_dtype":
        out = out.double()
    elif case == "input_cpu":
        inputs[1] = inputs[1].cpu()
    with pytest.raises(RuntimeError, match=match):
        op(inputs, w, out)
