"""Oracles and checks shared by the weighted_sum test modules beside this file (pytest's
default import mode puts this folder on sys.path, so they import it by name)."""
import pytest
import torch

from dartsfast import backend
from dartsfast.ops import weighted_sum
from dartsfast.ops._common import memory_format_of
from dartsfast.testing import assert_close_to_reference, poisoned_outputs

LOW_PRECISION = (torch.float16, torch.bfloat16)


_NO_INTERPRETER = not backend.triton_interpreter_enabled() or bool(backend.why_unavailable("triton"))


_NO_GPU = bool(backend.why_unavailable("triton")) or not torch.cuda.is_available()


def interpreter(test):
    """Triton kernels on CPU tensors; skipped where the interpreter is off (a GPU machine)."""
    skip = pytest.mark.skipif(_NO_INTERPRETER, reason="needs triton with TRITON_INTERPRET=1")
    return pytest.mark.interpreter(skip(test))


def gpu(test):
    return pytest.mark.gpu(pytest.mark.skipif(_NO_GPU, reason="needs triton and a CUDA device")(test))


def float64_sum(inputs, weights):
    """Independent oracle: plain float64 arithmetic, no dartsfast code."""
    return sum(w * x.double() for w, x in zip(weights.double().unbind(0), inputs))


def plain_pytorch_sum(inputs, weights):
    """Eager PyTorch in the inputs' dtype: the low-precision error baseline."""
    w = weights.to(inputs[0].dtype)
    return sum(w[k] * x for k, x in enumerate(inputs))


def float64_grads(inputs, weights, grad_out):
    """(input grads, weight grads) of float64_sum by float64 autograd."""
    xs = [x.detach().double().requires_grad_(True) for x in inputs]
    w = weights.detach().double().requires_grad_(True)
    float64_sum(xs, w).backward(grad_out.double())
    return [x.grad for x in xs], w.grad


def check_forward(inputs, weights, what="weighted_sum"):
    dtype = inputs[0].dtype
    with backend.use_backend("triton"), poisoned_outputs():
        out = weighted_sum(inputs, weights)
    assert out.dtype == dtype and out.shape == inputs[0].shape
    assert out.is_contiguous(memory_format=memory_format_of(inputs[0]))
    baseline = plain_pytorch_sum(inputs, weights) if dtype in LOW_PRECISION else None
    assert_close_to_reference(out, float64_sum(inputs, weights), dtype, what, baseline)
    return out


def check_backward(inputs, weights, grad_out):
    dtype = inputs[0].dtype
    xs = [x.detach().clone().requires_grad_(True) for x in inputs]
    w = weights.detach().clone().requires_grad_(True)
    with backend.use_backend("triton"), poisoned_outputs():
        weighted_sum(xs, w).backward(grad_out)
    ref_x, ref_w = float64_grads(inputs, weights, grad_out)
    for i, (x, ref) in enumerate(zip(xs, ref_x)):
        assert x.grad.dtype == dtype and x.grad.stride() == x.stride()
        assert_close_to_reference(x.grad, ref, dtype, f"grad inputs[{i}]")
    assert w.grad.dtype == weights.dtype
    # Σ grad·y_k over inputs already rounded to `dtype`: products of two fp16/bf16 numbers
    # are exact in fp32, so only the fp32 summation differs from float64.
    assert_close_to_reference(w.grad, ref_w, torch.float32, "grad weights")
    return [x.grad for x in xs], w.grad
