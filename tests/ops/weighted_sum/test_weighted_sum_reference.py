"""weighted_sum: the op on its torch reference against an independent float64 oracle, its
backward and its argument errors. Registration (opcheck, torch.compile, the backend seam):
test_weighted_sum_dispatch.py."""
import pytest
import torch
from weighted_sum_checks import LOW_PRECISION, float64_sum, plain_pytorch_sum

from dartsfast.ops import weighted_sum, weighted_sum_ref
from dartsfast.testing import (
    assert_close_to_reference,
    make_generator,
    random_inputs,
    random_simplex,
)

SHAPES = [(1,), (7,), (1023,), (4099,), (2, 3, 5, 7), (1, 123, 7, 7)]


@pytest.mark.parametrize("k", [1, 2, 3, 7, 8, 9, 20])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_forward_matches_float64(k, shape, dtype):
    gen = make_generator(1000 * k + len(shape))
    inputs = random_inputs(k, shape, dtype=dtype, generator=gen)
    weights = random_simplex(k, generator=gen)
    out = weighted_sum(inputs, weights)
    assert out.dtype == dtype and out.shape == inputs[0].shape
    baseline = plain_pytorch_sum(inputs, weights) if dtype in LOW_PRECISION else None
    assert_close_to_reference(out, float64_sum(inputs, weights), dtype, "weighted_sum", baseline)


@pytest.mark.parametrize("channels_last", [False, True])
def test_memory_format_is_preserved(channels_last):
    gen = make_generator(3)
    inputs = random_inputs(3, (2, 5, 4, 3), generator=gen, channels_last=channels_last)
    out = weighted_sum(inputs, random_simplex(3, generator=gen))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt)
    assert out.stride() == inputs[0].stride()


def test_mixed_layouts_and_non_dense_inputs():
    gen = make_generator(4)
    a = random_inputs(1, (2, 6, 5, 4), generator=gen, channels_last=True)[0]
    b = random_inputs(1, (2, 6, 5, 4), generator=gen)[0]
    c = random_inputs(1, (2, 6, 5, 8), generator=gen)[0][..., ::2]  # strided view
    weights = random_simplex(3, generator=gen)
    out = weighted_sum([a, b, c], weights)
    assert_close_to_reference(out, float64_sum([a, b, c], weights), torch.float32)


def test_low_precision_weights_in_input_dtype():
    gen = make_generator(5)
    inputs = random_inputs(4, (333,), dtype=torch.bfloat16, generator=gen)
    weights = random_simplex(4, generator=gen, dtype=torch.bfloat16)
    out = weighted_sum(inputs, weights)
    assert_close_to_reference(out, float64_sum(inputs, weights), torch.bfloat16,
                              baseline=plain_pytorch_sum(inputs, weights))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("k", [1, 3, 9])
def test_backward_matches_float64(dtype, k):
    gen = make_generator(10 + k)
    inputs = random_inputs(k, (3, 4, 5, 6), dtype=dtype, generator=gen, channels_last=True, requires_grad=True)
    weights = random_simplex(k, generator=gen).requires_grad_(True)
    grad_out = random_inputs(1, (3, 4, 5, 6), dtype=dtype, generator=gen)[0]
    weighted_sum(inputs, weights).backward(grad_out)

    ref_inputs = [x.detach().double().requires_grad_(True) for x in inputs]
    ref_weights = weights.detach().double().requires_grad_(True)
    float64_sum(ref_inputs, ref_weights).backward(grad_out.double())
    for i, (x, ref) in enumerate(zip(inputs, ref_inputs)):
        assert x.grad.dtype == dtype
        assert_close_to_reference(x.grad, ref.grad, dtype, f"grad inputs[{i}]")
    assert weights.grad.dtype == torch.float32
    # Weight grads are dot products over 360 elements of inputs rounded to `dtype`: the
    # reference sees the same rounded inputs, so only the fp32 accumulation differs.
    assert_close_to_reference(weights.grad, ref_weights.grad, torch.float32, "grad weights")


def test_backward_handles_expanded_grad():
    """`out.sum().backward()` hands the backward a stride-0 gradient."""
    gen = make_generator(6)
    inputs = random_inputs(2, (4, 5), generator=gen, requires_grad=True)
    weights = random_simplex(2, generator=gen).requires_grad_(True)
    weighted_sum(inputs, weights).sum().backward()
    torch.testing.assert_close(inputs[1].grad, torch.full((4, 5), weights[1].item()))
    torch.testing.assert_close(weights.grad, torch.stack([x.detach().sum() for x in inputs]))


def test_gradcheck_op_and_reference():
    gen = make_generator(7)
    inputs = tuple(random_inputs(3, (2, 3, 4), dtype=torch.float64, generator=gen, requires_grad=True))
    weights = random_simplex(3, dtype=torch.float64, generator=gen).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w, *xs: weighted_sum(list(xs), w), (weights, *inputs))
    assert torch.autograd.gradcheck(lambda w, *xs: weighted_sum_ref(list(xs), w), (weights, *inputs))


def test_weight_grads_are_deterministic():
    gen = make_generator(8)
    inputs = random_inputs(8, (64, 129), generator=gen)
    weights = random_simplex(8, generator=gen)
    grad_out = random_inputs(1, (64, 129), generator=gen)[0]
    runs = []
    for _ in range(3):
        w = weights.clone().requires_grad_(True)
        weighted_sum(inputs, w).backward(grad_out)
        runs.append(w.grad)
    assert all(torch.equal(runs[0], r) for r in runs[1:])


@pytest.mark.parametrize("bad, error, message", [
    (lambda x, w: ([], w[:0]), ValueError, "K=0"),
    (lambda x, w: (torch.stack(x), w), TypeError, "single tensor"),
    (lambda x, w: ([x[0], x[1][:2]], w[:2]), ValueError, "inputs\\[1\\] has shape"),
    (lambda x, w: ([x[0], x[1].double()], w[:2]), TypeError, "inputs\\[1\\] has dtype"),
    (lambda x, w: ([x[0], x[1].to("meta")], w[:2]), ValueError, "inputs\\[1\\] is on meta"),
    (lambda x, w: (x, w[None]), ValueError, "weights must be 1-D"),
    (lambda x, w: (x, w[:2]), ValueError, "weights has length 2 but there are 3 inputs"),
    (lambda x, w: (x, w.to(torch.int64)), TypeError, "weights has dtype int64"),
    (lambda x, w: (x, w.double()), TypeError, "weights has dtype float64"),
    (lambda x, w: (x, w.to("meta")), ValueError, "weights is on meta"),
    (lambda x, w: ([t.to(torch.int32) for t in x], w), TypeError, "inputs\\[0\\] has dtype int32"),
    (lambda x, w: ([x[0], "y"], w[:2]), TypeError, "inputs\\[1\\] must be a torch.Tensor"),
])
def test_bad_inputs_raise_clear_errors(bad, error, message):
    gen = make_generator(12)
    inputs = random_inputs(3, (4, 5), generator=gen)
    args = bad(inputs, random_simplex(3, generator=gen))
    with pytest.raises(error, match=message):
        weighted_sum(*args)
