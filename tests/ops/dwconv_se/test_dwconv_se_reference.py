"""dwconv_se: the op on its torch reference against the composition of standard PyTorch
modules in float64, its hand-written backward, running statistics and errors.
Registration (opcheck, torch.compile, the Triton backend): test_dwconv_se_dispatch.py."""
import itertools

import pytest
import torch
from dwconv_se_checks import make_module

from dartsfast import backend
from dartsfast.ops import dwconv_se, dwconv_se_ref
from dartsfast.testing import (
    assert_close_to_reference,
    make_generator,
    poisoned_outputs,
    random_tensor,
)


def clone_op_args(module):
    return [t.detach().clone().requires_grad_(t.requires_grad) for t in module.op_args()]


GRID = list(itertools.product(
    [1, 3],                      # N
    [8, 24, 123],                # C
    [(7, 7), (8, 8), (9, 13)],   # H, W
    [3, 5],                      # k
    [1, 2],                      # stride
))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("n, c, hw, k, stride", GRID)
def test_matches_module_composition_float64(n, c, hw, k, stride, training):
    seed = hash((n, c, hw, k, stride, training)) % 10_000
    module = make_module(c, k, stride, seed=seed).train(training)
    gen = make_generator(seed + 1)
    x = random_tensor((n, c, *hw), dtype=torch.float64, generator=gen, channels_last=(c % 2 == 0),
                      requires_grad=True)
    args = clone_op_args(module)
    ref = module(x)
    out = dwconv_se(x, *args, stride=stride, training=training)
    assert out.shape == ref.shape
    assert_close_to_reference(out, ref, torch.float64, "output")
    assert_close_to_reference(args[3], module.bn.running_mean, torch.float64, "running_mean")
    assert_close_to_reference(args[4], module.bn.running_var, torch.float64, "running_var")

    grad_out = random_tensor(ref.shape, dtype=torch.float64, generator=gen)
    ref_leaves = [x, *module.parameters_in_op_order()]
    op_leaves = [x, args[0], args[1], args[2], *args[5:]]
    ref_grads = torch.autograd.grad(ref, ref_leaves, grad_out)
    op_grads = torch.autograd.grad(out, op_leaves, grad_out)
    names = ["x", "weight", "bn_weight", "bn_bias", "se_reduce_weight", "se_reduce_bias",
             "se_expand_weight", "se_expand_bias"]
    for name, got, want in zip(names, op_grads, ref_grads):
        assert_close_to_reference(got, want, torch.float64, f"grad {name}")


@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_op_and_reference(training):
    module = make_module(4, 3, 2, seed=3, reduced=2)
    gen = make_generator(4)
    x = random_tensor((2, 4, 5, 6), dtype=torch.float64, generator=gen, requires_grad=True)
    w, bnw, bnb, rm, rv, srw, srb, sew, seb = clone_op_args(module)
    leaves = (x, w, bnw, bnb, srw, srb, sew, seb)

    def run(fn):
        def call(x, w, bnw, bnb, srw, srb, sew, seb):
            return fn(x, w, bnw, bnb, rm.clone(), rv.clone(), srw, srb, sew, seb, stride=2, training=training)
        return call

    assert torch.autograd.gradcheck(run(dwconv_se), leaves)
    assert torch.autograd.gradcheck(run(dwconv_se_ref), leaves)


def test_running_stats_follow_batchnorm_over_steps():
    module = make_module(24, 3, 1, seed=5).train()
    args = clone_op_args(module)
    gen = make_generator(6)
    for step in range(4):
        x = random_tensor((3, 24, 8, 8), dtype=torch.float64, generator=gen, scale=1 + step, offset=step)
        module(x)
        dwconv_se(x, *args, stride=1, training=True, momentum=module.bn.momentum)
    assert_close_to_reference(args[3], module.bn.running_mean, torch.float64, "running_mean")
    assert_close_to_reference(args[4], module.bn.running_var, torch.float64, "running_var")


def test_eval_mode_leaves_running_stats_alone():
    module = make_module(8, 3, 1, seed=7)
    args = clone_op_args(module)
    before = [args[3].clone(), args[4].clone()]
    x = random_tensor((2, 8, 7, 7), dtype=torch.float64, generator=make_generator(8))
    dwconv_se(x, *args, training=False)
    assert torch.equal(args[3], before[0]) and torch.equal(args[4], before[1])


def test_training_without_running_stats():
    module = make_module(8, 5, 1, seed=9).train()
    args = clone_op_args(module)
    args[3] = args[4] = None
    module.bn.track_running_stats = False
    module.bn.running_mean = module.bn.running_var = None
    x = random_tensor((2, 8, 7, 7), dtype=torch.float64, generator=make_generator(10))
    assert_close_to_reference(dwconv_se(x, *args, training=True), module(x), torch.float64)


def plain_pytorch_in_dtype(module, x, dtype):
    """The composition run by stock PyTorch in `dtype` (fp32 math where CPU has no kernel)."""
    low = make_module(module.conv.in_channels, module.conv.kernel_size[0], module.conv.stride[0], seed=0)
    low.load_state_dict(module.state_dict())
    return low.to(dtype).train(module.training)(x.to(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("training", [True, False])
def test_low_precision_activations_with_fp32_parameters(dtype, training):
    """Under autocast the activations are fp16/bf16 while parameters stay fp32."""
    module = make_module(24, 3, 2, seed=11).train(training)
    gen = make_generator(12)
    x = random_tensor((3, 24, 9, 13), dtype=dtype, generator=gen, channels_last=True)
    ref_module = make_module(24, 3, 2, seed=11).train(training)  # float64 twin
    ref = ref_module(x.double())
    args32 = [t.detach().float().clone() for t in module.op_args()]
    out = dwconv_se(x, *args32, stride=2, training=training)
    assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last)
    try:
        baseline = plain_pytorch_in_dtype(module, x, dtype)
    except RuntimeError:  # a CPU kernel missing in this dtype: compare against the tolerance only
        baseline = None
    assert_close_to_reference(out, ref, dtype, "output", baseline)


def test_autocast_does_not_lower_the_internal_precision():
    """fp32 activations under CPU bf16 autocast still get fp32 math and fp32 statistics."""
    module = make_module(8, 3, 1, seed=26).float()
    x = random_tensor((2, 8, 7, 7), generator=make_generator(27), requires_grad=True)
    plain_args = [t.detach().clone().requires_grad_(t.requires_grad) for t in module.op_args()]
    plain = dwconv_se(x, *plain_args)
    auto_args = [t.detach().clone().requires_grad_(t.requires_grad) for t in module.op_args()]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast_out = dwconv_se(x, *auto_args)
        stats = torch.ops.dartsfast.dwconv_se(x, *[t.detach() for t in module.op_args()], 1, True, 1e-5)
    assert autocast_out.dtype == torch.float32 and stats[1].dtype == stats[2].dtype == torch.float32
    assert_close_to_reference(autocast_out, plain, torch.float32, "autocast output")
    assert_close_to_reference(auto_args[3], plain_args[3], torch.float32, "running_mean")
    grad = torch.ones_like(plain)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (g_auto,) = torch.autograd.grad(autocast_out, auto_args[0], grad)
    (g_plain,) = torch.autograd.grad(plain, plain_args[0], grad)
    assert_close_to_reference(g_auto, g_plain, torch.float32, "weight grad under autocast")


@pytest.mark.parametrize("channels_last", [False, True])
def test_output_keeps_memory_format(channels_last):
    module = make_module(8, 3, 2, seed=13)
    x = random_tensor((2, 8, 9, 9), generator=make_generator(14), channels_last=channels_last)
    out = dwconv_se(x, *[t.detach().float() for t in module.op_args()], stride=2)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert out.shape == (2, 8, 5, 5) and out.is_contiguous(memory_format=fmt)


def test_weight_grads_are_deterministic():
    module = make_module(24, 3, 1, seed=15).float()
    x = random_tensor((3, 24, 9, 13), generator=make_generator(16), channels_last=True)
    runs = []
    for _ in range(3):
        args = [t.detach().clone().requires_grad_(True) for t in module.op_args()]
        dwconv_se(x, *args).square().sum().backward()
        runs.append([args[i].grad for i in (0, 1, 2, 5, 6, 7, 8)])
    for later in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], later))


def _bad_case(name):
    module = make_module(8, 3, 1, seed=22).float()
    x = random_tensor((2, 8, 7, 7), generator=make_generator(23))
    args = [t.detach() for t in module.op_args()]
    kwargs = {}
    if name == "even_k":
        args[0] = torch.randn(8, 1, 4, 4)
    elif name == "weight_not_depthwise":
        args[0] = torch.randn(8, 8, 3, 3)
    elif name == "stride3":
        kwargs["stride"] = 3
    elif name == "bn_weight_shape":
        args[1] = torch.randn(7)
    elif name == "se_reduce_shape":
        args[5] = torch.randn(2, 7)
    elif name == "se_expand_shape":
        args[7] = torch.randn(8, 3)
    elif name == "x_3d":
        x = x[0]
    elif name == "x_int":
        x = x.to(torch.int64)
    elif name == "device":
        args[2] = args[2].to("meta")
    elif name == "dtype":
        args[6] = args[6].double()
    elif name == "eval_without_running":
        args[3] = args[4] = None
        kwargs["training"] = False
    elif name == "single_value":
        x = x[:1, :, :1, :1]
    return x, args, kwargs


@pytest.mark.parametrize("name, error, message", [
    ("even_k", ValueError, "even kernel size 4"),
    ("weight_not_depthwise", ValueError, "weight must be a depthwise filter"),
    ("stride3", ValueError, "stride must be 1 or 2, got 3"),
    ("bn_weight_shape", ValueError, "bn_weight must have shape \\(8,\\)"),
    ("se_reduce_shape", ValueError, "se_reduce_weight must be \\[Cr, C\\] or.*C=8.*got \\(2, 7\\)"),
    ("se_expand_shape", ValueError, "se_expand_weight must have shape \\(8, 2\\)"),
    ("x_3d", ValueError, "x must be 4-D"),
    ("x_int", TypeError, "x has dtype int64"),
    ("device", ValueError, "bn_bias is on meta"),
    ("dtype", TypeError, "se_reduce_bias has dtype float64"),
    ("eval_without_running", ValueError, "running_mean is None"),
    ("single_value", ValueError, "more than one value per channel"),
])
def test_bad_inputs_raise_clear_errors(name, error, message):
    x, args, kwargs = _bad_case(name)
    with pytest.raises(error, match=message):
        dwconv_se(x, *args, **kwargs)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("training", [True, False])
def test_gpu_matches_float64(dtype, training):
    module = make_module(123, 5, 2, seed=24).train(training)
    x = random_tensor((3, 123, 28, 28), dtype=dtype, generator=make_generator(25), channels_last=True)
    ref = module(x.double())
    args = [t.detach().float().cuda() for t in module.op_args()]
    with poisoned_outputs():
        out = dwconv_se(x.cuda(), *args, stride=2, training=training)
    assert_close_to_reference(out.cpu(), ref, dtype, f"dwconv_se on {backend.select('dwconv_se', out.device)[0]}")


def test_empty_batch_in_eval_gives_empty_output_and_zero_grads():
    """aten's native_batch_norm_backward crashes the process on N=0; the op must not reach it."""
    gen = make_generator(77)
    c = 8
    x = torch.randn(0, c, 5, 5, requires_grad=True)
    weight = torch.randn(c, 1, 3, 3, generator=gen, requires_grad=True)
    params = [torch.ones(c), torch.zeros(c), torch.zeros(c), torch.ones(c), torch.randn(2, c, generator=gen),
              torch.zeros(2), torch.randn(c, 2, generator=gen), torch.zeros(c)]
    out = dwconv_se(x, weight, *params, training=False)
    assert out.shape == (0, c, 5, 5)
    out.sum().backward()
    assert x.grad.shape == x.shape and torch.equal(weight.grad, torch.zeros_like(weight))
    with pytest.raises(ValueError, match="gives 0"):
        dwconv_se(x, weight, *params, training=True)
