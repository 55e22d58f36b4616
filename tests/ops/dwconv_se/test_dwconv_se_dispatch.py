"""dwconv_se's registration: torch.library checks (opcheck), torch.compile, autograd saving
only the op's inputs, and the Triton backend behind the op (fp64 and empty batches sent
elsewhere, MBConv through it, dartsfast without triton). Triton tests run on CPU tensors
through the interpreter (TRITON_INTERPRET=1, set by conftest), on CUDA where there is one."""
import copy
import subprocess
import sys

import pytest
import torch
from dwconv_se_checks import DEVICE, make_inputs, make_module, run, triton_step

from dartsfast import _triton, backend
from dartsfast.nn import MBConv
from dartsfast.ops import dwconv_se
from dartsfast.testing import (
    SUBPROCESS_TIMEOUT_S,
    TOLERANCES,
    assert_close_to_reference,
    make_generator,
    random_tensor,
)


def triton_test(test):
    """A test of the Triton backend: marked `interpreter`, skipped without triton."""
    return pytest.mark.interpreter(pytest.mark.skipif(not _triton.installed(), reason="needs triton")(test))


# ----------------------------------------------------------------------------- torch reference

@pytest.mark.parametrize("training", [True, False])
def test_opcheck(training):
    module = make_module(6, 3, 2, seed=17, reduced=2).float()
    x = random_tensor((2, 6, 7, 7), generator=make_generator(18), channels_last=True, requires_grad=True)
    w, bnw, bnb, rm, rv, srw, srb, sew, seb = [t.detach().clone().requires_grad_(t.requires_grad)
                                                for t in module.op_args()]
    args = (x, w, bnw, bnb, rm, rv, srw, srb, sew, seb, 2, training, 1e-5)
    torch.library.opcheck(torch.ops.dartsfast.dwconv_se.default, args)
    grad = random_tensor((2, 6, 4, 4), generator=make_generator(19), channels_last=True)
    detached = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(torch.ops.dartsfast.dwconv_se_backward.default, (grad, *detached))


def test_torch_compile_fullgraph_matches_eager():
    module = make_module(8, 3, 1, seed=20).float()
    x = random_tensor((2, 8, 7, 7), generator=make_generator(21), channels_last=True)

    def step(x, args):
        return dwconv_se(x, *args, stride=1, training=True).square().mean()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    results = []
    for fn in (step, compiled):
        args = [t.detach().clone().requires_grad_(t.requires_grad) for t in module.op_args()]
        loss = fn(x, args)
        loss.backward()
        results.append([loss.detach(), args[0].grad, args[5].grad, args[3], args[4]])
    for eager, comp in zip(*results):
        torch.testing.assert_close(comp, eager, rtol=TOLERANCES[torch.float32] * 10, atol=1e-6)


# ----------------------------------------------------------------------------- Triton backend

@triton_test
def test_float64_runs_the_torch_reference():
    x, params, running = make_inputs(2, 8, (7, 7), 3, dtype=torch.float64, param_dtype=torch.float64,
                                     channels_last=True, seed=70)
    grad_out = random_tensor((2, 8, 7, 7), dtype=torch.float64, generator=make_generator(71), device=x.device)
    got = triton_step(x, params, running, grad_out, 1, True)
    with backend.use_backend("torch"):
        want = run(dwconv_se, x, params, running, grad_out, stride=1, training=True)
    assert torch.equal(got[0], want[0]) and all(torch.equal(a, b) for a, b in zip(got[1], want[1]))


@triton_test
def test_empty_batch_in_eval_mode():
    x, params, running = make_inputs(0, 8, (7, 7), 3, dtype=torch.float32, param_dtype=torch.float32,
                                     channels_last=True, seed=75)
    got = triton_step(x, params, running, torch.empty(0, 8, 4, 4, device=x.device), 2, False)
    assert got[0].shape == (0, 8, 4, 4) and got[1][0].shape == x.shape
    assert all(torch.equal(g, torch.zeros_like(g)) for g in got[1][1:])


@triton_test
def test_only_the_inputs_are_saved_for_backward():
    """The activation memory of the op is x itself: nothing of [N, C, H', W'] is saved."""
    x, params, running = make_inputs(3, 24, (9, 13), 3, dtype=torch.float32, param_dtype=torch.float32,
                                     channels_last=True, seed=80)
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, *params)]
    saved = []
    with backend.use_backend("triton"), torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t) or t, lambda t: t):
        dwconv_se(leaves[0], *leaves[1:4], *running, *leaves[4:], stride=2, training=True)
    assert sum(t.numel() for t in saved) == sum(t.numel() for t in leaves)
    assert any(t.data_ptr() == leaves[0].data_ptr() for t in saved)


@pytest.mark.parametrize("training", [True, False])
@triton_test
def test_opcheck_with_triton_backend(training):
    x, params, running = make_inputs(2, 6, (7, 7), 3, dtype=torch.float32, param_dtype=torch.float32,
                                     channels_last=True, seed=100)
    x.requires_grad_(True)
    params = [p.requires_grad_(True) for p in params]
    args = (x, *params[:3], *running, *params[3:], 2, training, 1e-5)
    grad = random_tensor((2, 6, 4, 4), generator=make_generator(101), channels_last=True, device=x.device)
    detached = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
    with backend.use_backend("triton"):
        torch.library.opcheck(torch.ops.dartsfast.dwconv_se.default, args)
        torch.library.opcheck(torch.ops.dartsfast.dwconv_se_backward.default, (grad, *detached))


@triton_test
def test_torch_compile_fullgraph_with_triton_backend():
    """One opaque op under torch.compile (aot_eager on CPU: no C++ compiler needed)."""
    x, params, running = make_inputs(2, 8, (7, 7), 3, dtype=torch.float32, param_dtype=torch.float32,
                                     channels_last=True, seed=110)

    def step(x, params, running):
        return dwconv_se(x, *params[:3], *running, *params[3:], stride=1, training=True).square().mean()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager" if DEVICE == "cpu" else "inductor")
    results = []
    with backend.use_backend("triton"):
        for fn in (step, compiled):
            leaves = [p.detach().clone().requires_grad_(True) for p in params]
            stats = [r.clone() for r in running]
            loss = fn(x, leaves, stats)
            loss.backward()
            results.append([loss.detach(), *(p.grad for p in leaves), *stats])
    for eager, comp in zip(*results):
        torch.testing.assert_close(comp, eager, rtol=TOLERANCES[torch.float32] * 10, atol=1e-6)


@triton_test
def test_mbconv_runs_the_triton_kernels_and_matches_the_torch_backend(monkeypatch):
    # Imported here, not at the top: they import triton, which the skip above may lack.
    from dartsfast.ops.dwconv_se import triton_backward as dwconv_se_triton_backward
    from dartsfast.ops.dwconv_se import triton_forward as dwconv_se_triton

    calls = []
    for module, name in ((dwconv_se_triton, "dwconv_se_forward_triton"),
                         (dwconv_se_triton_backward, "dwconv_se_backward_triton")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    torch.manual_seed(120)
    block = MBConv(8, 8, dw_kernel_size=5, stride=1, exp_ratio=3).to(DEVICE).train()
    assert block.fused
    twin = copy.deepcopy(block)
    x = random_tensor((2, 8, 9, 13), generator=make_generator(121), channels_last=True, device=DEVICE)
    outputs = []
    for name, module in (("torch", block), ("triton", twin)):
        xi = x.clone().requires_grad_(True)
        with backend.use_backend(name):
            out = module(xi)
            out.square().sum().backward()
        outputs.append((out, xi.grad, [p.grad for p in module.parameters()], list(module.buffers())))
    assert calls == ["dwconv_se_forward_triton", "dwconv_se_backward_triton"]
    (out_t, gx_t, gp_t, buf_t), (out_r, gx_r, gp_r, buf_r) = outputs
    assert_close_to_reference(out_r, out_t, torch.float32, "MBConv output")
    assert_close_to_reference(gx_r, gx_t, torch.float32, "MBConv grad x")
    for (name, _), a, b in zip(block.named_parameters(), gp_r, gp_t):
        assert_close_to_reference(a, b, torch.float32, f"MBConv grad {name}")
    for a, b in zip(buf_r, buf_t):
        assert_close_to_reference(a.double(), b.double(), torch.float32, "MBConv buffer")


@triton_test
def test_import_dartsfast_without_triton():
    """With triton hidden from the import system, dartsfast imports and says why not."""
    code = """
import importlib.machinery as m
_find = m.PathFinder.find_spec
m.PathFinder.find_spec = classmethod(
    lambda cls, name, path=None, target=None: None if name.split('.')[0] == 'triton' else _find(name, path, target))
import dartsfast
from dartsfast import backend
assert 'triton' not in backend.kernels_for('dwconv_se'), backend.kernels_for('dwconv_se')
print(backend.why_unavailable('triton'))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert "'triton' package is not installed" in done.stdout
