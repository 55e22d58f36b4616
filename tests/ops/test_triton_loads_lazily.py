"""Triton loads on the first kernel call, for every op alike: `import dartsfast` leaves it
unimported, the backend table still lists the Triton kernels, and TRITON_INTERPRET set
after the import (before the first call) still sends CPU tensors through the interpreter.
Each check runs in a fresh interpreter, so sys.modules starts empty."""
import os
import subprocess
import sys

import pytest

from dartsfast import _triton
from dartsfast.testing import SUBPROCESS_TIMEOUT_S

OPS = ("weighted_sum", "weighted_sum_backward", "dwconv_se", "dwconv_se_backward")


def run_fresh(code: str, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter without TRITON_INTERPRET (plus ``env``)."""
    clean = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**clean, **env}, timeout=SUBPROCESS_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_import_dartsfast_does_not_import_triton():
    run_fresh(f"""
import sys
import dartsfast
from dartsfast import backend
assert 'triton' not in sys.modules, sorted(m for m in sys.modules if m.startswith('triton'))
if {_triton.installed()}:  # the kernels are registered all the same
    for op in {OPS}:
        assert 'triton' in backend.kernels_for(op), (op, backend.kernels_for(op))
""")


@pytest.mark.interpreter
@pytest.mark.skipif(not _triton.installed(), reason="needs triton")
def test_triton_interpret_set_after_import_runs_the_interpreter():
    # No CUDA device in the child, so a Triton kernel can only run on these CPU tensors
    # through the interpreter; the kernels must also be defined as interpreted functions.
    run_fresh("""
import os, sys
import torch
import dartsfast
from dartsfast import backend
from dartsfast.ops import dwconv_se, dwconv_se_ref, weighted_sum, weighted_sum_ref
assert 'triton' not in sys.modules
os.environ['TRITON_INTERPRET'] = '1'
gen = torch.Generator().manual_seed(0)
xs = [torch.randn(300, generator=gen, requires_grad=True) for _ in range(3)]
w = torch.softmax(torch.randn(3, generator=gen), 0)
x = torch.randn(2, 8, 5, 5, generator=gen, requires_grad=True)
params = [torch.randn(8, 1, 3, 3, generator=gen), torch.ones(8), torch.zeros(8), torch.zeros(8), torch.ones(8),
          torch.randn(2, 8, generator=gen), torch.zeros(2), torch.randn(8, 2, generator=gen), torch.zeros(8)]
with backend.use_backend('triton'):
    out = weighted_sum(xs, w)
    out.sum().backward()
    y = dwconv_se(x, *params)
    y.sum().backward()
from triton.runtime.interpreter import InterpretedFunction
from dartsfast.ops.dwconv_se import triton_backward, triton_forward
from dartsfast.ops.weighted_sum import triton as ws_kernels
for kernel in (ws_kernels._weighted_sum_forward_kernel.fn, ws_kernels._weighted_sum_backward_kernel,
               triton_forward._dwconv_se_forward_kernel, triton_backward._dwconv_se_backward_dx_kernel):
    assert isinstance(kernel, InterpretedFunction), type(kernel)
torch.testing.assert_close(out, weighted_sum_ref(xs, w))
torch.testing.assert_close(xs[0].grad, torch.full((300,), w[0].item()))
ref = dwconv_se_ref(x.detach(), *[p.clone() for p in params])
torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)
assert x.grad is not None and x.grad.isfinite().all()
""", CUDA_VISIBLE_DEVICES="")
