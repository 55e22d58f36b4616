"""Triton kernels for ``weighted_sum``: ``out = Σ_k w_k · y_k`` and its backward, and their
launchers (plain functions: tensors in, tensors out). Imported on the first Triton call by
the op's registration (``dartsfast.ops.weighted_sum``), never by ``import dartsfast``.

Byte and FLOP floors (K inputs of M elements, element size b; fp32 accumulation):

- forward: reads K·M·b, writes M·b, 2·K·M FLOPs (one FMA per input element).
  bf16, K=8, M=2^24: 302 MB → 90 µs at 3.35 TB/s (H100 SXM DRAM peak).
  Arithmetic intensity 2K/((K+1)·b) ≤ 1 FLOP/byte in bf16: purely memory-bound.
- backward: reads grad + K inputs ((K+1)·M·b), writes K input-grads (K·M·b), 3·K·M
  FLOPs (w_k·g, and g·y_k summed); the weight-grads cost only K·P·4 bytes of per-program
  partial sums (P = ⌈M/BLOCK⌉ programs; 20·16384·4 B = 1.3 MB at M=2^24, <0.1%).
- K > ``MAX_ARITY``: inputs go in chunks of ``MAX_ARITY`` pointers, one launch each. The
  forward carries the running sum between chunks in an fp32 buffer (+8·M bytes per chunk
  boundary, so the result is rounded to the output dtype exactly once); the backward
  re-reads grad once per extra chunk (+M·b). With MAX_ARITY=32, K ≤ 32 is one launch.

The K inputs are passed as a tuple of pointers (kernel parameters, one per input), never
as a pointer array loaded from memory: the interpreter and some backends reject those.

The forward is autotuned over BLOCK/num_warps on the GPU, keyed on the ⌈log2 M⌉ bucket,
inputs per launch and dtypes. The backward is not: its per-program partial sums are added
in an order fixed by BLOCK and num_warps, so a per-process autotune could change the
weight-grad bits from one process to the next; a fixed table keeps them a pure function
of (M, K, dtype, GPU). Under the Triton interpreter (CPU) both use one small config.
"""
from __future__ import annotations

from typing import Sequence

import torch
import triton
import triton.language as tl
import triton.testing

from dartsfast import _triton
from dartsfast.ops._common import memory_format_of, new_output

# Pointers per launch. 32 keeps a 20-op edge in one launch, and a whole DARTS cell node
# (2–5 edges × 7 run ops = 14–35 inputs) too, except the 35-input last node. Compiled
# offline for sm_90 (triton.compile + ptxas -v), a 32-input chunk needs 39–237 registers
# depending on BLOCK and dtype, with no spills, and keeps 16-byte vector loads.
MAX_ARITY = 32
# Under the interpreter every program runs one after another in numpy: few, small blocks
# (4099 elements → 17 programs, the last one partial) keep the tests fast and still
# exercise both the full-block and the masked tail paths.
_INTERPRETER_BLOCK = 256

if _triton.interpreter_enabled():
    _FORWARD_CONFIGS = [triton.Config({"BLOCK": _INTERPRETER_BLOCK}, num_warps=4)]
else:
    # Every config gives each thread ≥ 8 elements per input: ≥ one 16-byte vector in
    # bf16/fp16 (ptx ld.global.v4.b32), two in fp32. 512/2 gives 128 programs at
    # M=2^16 (H100: 132 SMs); 4096/8 gives 16 elements per thread for the largest M.
    _FORWARD_CONFIGS = [triton.Config({"BLOCK": b}, num_warps=w)
                        for b, w in ((512, 2), (1024, 4), (2048, 8), (4096, 8))]


@triton.jit
def _load(ptr, offs, mask, MASKED: tl.constexpr):
    # Full blocks load without a mask so the compiler can emit 16-byte vector loads
    # even when M is not a multiple of 16 (only the last program is masked).
    if MASKED:
        return tl.load(ptr + offs, mask=mask, other=0.0).to(tl.float32)
    return tl.load(ptr + offs).to(tl.float32)


@triton.jit
def _store(ptr, offs, value, mask, MASKED: tl.constexpr):
    if MASKED:
        tl.store(ptr + offs, value.to(ptr.dtype.element_ty), mask=mask)
    else:
        tl.store(ptr + offs, value.to(ptr.dtype.element_ty))


@triton.jit
def _forward_block(xs, w_ptr, acc_ptr, out_ptr, offs, mask, FIRST: tl.constexpr, MASKED: tl.constexpr):
    if FIRST:
        acc = _load(xs[0], offs, mask, MASKED) * tl.load(w_ptr)
    else:
        acc = _load(acc_ptr, offs, mask, MASKED) + _load(xs[0], offs, mask, MASKED) * tl.load(w_ptr)
    for j in tl.static_range(1, len(xs)):
        acc += _load(xs[j], offs, mask, MASKED) * tl.load(w_ptr + j)
    # out_ptr is the fp32 carry buffer for all but the last chunk: one rounding at the end.
    _store(out_ptr, offs, acc, mask, MASKED)


def _fitting_configs(configs, named_args, **kwargs):
    """Drop configs whose loads cannot fit in registers. Compiled for sm_90, 1024 bytes
    of input per thread (32 bf16 inputs × 16 elements, 4096/8) spilled 10 KB, while
    640 (20 fp32 × 8, 1024/4) took 147 registers and no spills: keep ≤ 768 bytes.
    The smallest config always stays."""
    args = {**named_args, **kwargs}
    per_thread = lambda c: c.kwargs["BLOCK"] // (32 * c.num_warps) * args["num_inputs"] * args["in_bytes"]  # noqa: E731
    fitting = [c for c in configs if per_thread(c) <= 768]
    return fitting or [min(configs, key=per_thread)]


def _quick_bench(fn, quantiles):
    # 5 ms warm-up + 20 ms of repeats per config (Triton's default 25 + 100): tuning
    # one key of 4 configs costs ~0.1 s, so a benchmark sweep of ~50 keys stays short.
    return triton.testing.do_bench(fn, warmup=5, rep=20, quantiles=quantiles)


@triton.autotune(configs=_FORWARD_CONFIGS, key=["size_bucket", "num_inputs", "in_bytes", "FIRST"],
                 prune_configs_by={"early_config_prune": _fitting_configs}, do_bench=_quick_bench)


@triton.jit(do_not_specialize=["size_bucket", "num_inputs", "in_bytes"])
def _weighted_sum_forward_kernel(xs, w_ptr, acc_ptr, out_ptr, n_elements,
                                 size_bucket, num_inputs, in_bytes,  # autotune key only
                                 FIRST: tl.constexpr, BLOCK: tl.constexpr):
    """out[i] = (FIRST ? 0 : acc[i]) + Σ_j w[j]·xs[j][i] over one BLOCK of flat elements."""
    start = tl.program_id(0).to(tl.int64) * BLOCK  # int64: M may exceed 2^31
    offs = start + tl.arange(0, BLOCK)
    mask = offs < n_elements
    if start + BLOCK <= n_elements:
        _forward_block(xs, w_ptr, acc_ptr, out_ptr, offs, mask, FIRST, False)
    else:
        _forward_block(xs, w_ptr, acc_ptr, out_ptr, offs, mask, FIRST, True)


@triton.jit
def _backward_block(g_ptr, xs, gxs, w_ptr, row_ptr, row_stride, offs, mask, MASKED: tl.constexpr):
    g = _load(g_ptr, offs, mask, MASKED)
    for j in tl.static_range(len(xs)):
        _store(gxs[j], offs, g * tl.load(w_ptr + j), mask, MASKED)
        # Masked lanes loaded 0 for g and y: they add nothing to the partial sum.
        tl.store(row_ptr + j * row_stride, tl.sum(g * _load(xs[j], offs, mask, MASKED), axis=0))


@triton.jit
def _weighted_sum_backward_kernel(g_ptr, xs, gxs, w_ptr, partial_ptr, n_elements, num_programs,
                                  BLOCK: tl.constexpr):
    """gxs[j] = w[j]·g and partial[j, pid] = Σ_block g·xs[j], from one read of g and xs[j]."""
    pid = tl.program_id(0)
    start = pid.to(tl.int64) * BLOCK
    offs = start + tl.arange(0, BLOCK)
    mask = offs < n_elements
    if start + BLOCK <= n_elements:
        _backward_block(g_ptr, xs, gxs, w_ptr, partial_ptr + pid, num_programs, offs, mask, False)
    else:
        _backward_block(g_ptr, xs, gxs, w_ptr, partial_ptr + pid, num_programs, offs, mask, True)


def _backward_config(n_elements: int, elem_size: int) -> tuple[int, int]:
    """(BLOCK, num_warps) of the backward; fixed, not autotuned (see the module docstring)."""
    if _triton.interpreter_enabled():
        return _INTERPRETER_BLOCK, 4
    # ≤ 2^18 elements would be ≤ 256 programs of 1024: blocks of 512 fill 132 SMs better.
    block = 512 if n_elements <= 1 << 18 else 1024
    # One 16-byte vector per thread per tensor: 1024 bf16 → 4 warps, 1024 fp32 → 8 warps.
    return block, max(1, block * elem_size // (16 * 32))


def _same_layout(x: torch.Tensor, strides: Sequence[int]) -> bool:
    """True if ``x`` is dense with ``strides`` (strides of size-1 dims do not matter)."""
    return all(n == 1 or s == t for n, s, t in zip(x.shape, x.stride(), strides))


def _dense(tensors: Sequence[torch.Tensor], strides: Sequence[int],
           layout: torch.memory_format) -> list[torch.Tensor]:
    # The kernels treat every tensor as a flat buffer laid out like the output; a tensor
    # with other strides (another memory format, a strided view, an expanded grad) is
    # copied once into that layout, never mis-indexed.
    return [t if _same_layout(t, strides) else t.clone(memory_format=layout) for t in tensors]


def _chunks(k: int, max_arity: int) -> list[tuple[int, int]]:
    if not isinstance(max_arity, int) or max_arity < 1:
        raise ValueError(f"max_arity must be a positive int, got {max_arity!r}")
    return [(s, min(s + max_arity, k)) for s in range(0, k, max_arity)]


def weighted_sum_triton(inputs: Sequence[torch.Tensor], weights: torch.Tensor, *,
                        max_arity: int = MAX_ARITY) -> torch.Tensor:
    """``Σ_k weights[k] · inputs[k]`` with the Triton kernel (contract of ``weighted_sum_ref``).

    inputs: K ≥ 1 non-empty tensors of one shape and dtype (fp32/fp16/bf16); weights: [K],
    fp32 or the inputs' dtype. The op checks the arguments, and its registration sends fp64
    and empty inputs elsewhere. ``max_arity`` (pointers per launch) is a knob for tests;
    the default suits the GPU.
    """
    x0 = inputs[0]
    chunks = _chunks(len(inputs), max_arity)
    layout = memory_format_of(x0)
    out = new_output(x0.shape, x0.dtype, x0.device, layout)
    m = out.numel()
    xs = _dense(inputs, out.stride(), layout)
    w = weights.detach().to(device=x0.device, dtype=torch.float32).contiguous()
    # Running sums between chunks live in fp32 buffers that alternate, so no launch reads
    # and writes the same buffer (an autotuning rerun would otherwise add twice).
    n_carry = min(len(chunks) - 1, 2)
    carries = [new_output((m,), torch.float32, x0.device) for _ in range(n_carry)]
    key = dict(size_bucket=max(m - 1, 1).bit_length(), in_bytes=x0.element_size())
    grid = lambda meta: (triton.cdiv(m, meta["BLOCK"]),)  # noqa: E731
    with _triton.device_guard(x0.device):
        for i, (lo, hi) in enumerate(chunks):
            last = i == len(chunks) - 1
            dst = out if last else carries[i % 2]
            src = carries[(i - 1) % 2] if i > 0 else dst  # unused when FIRST
            _weighted_sum_forward_kernel[grid](tuple(xs[lo:hi]), w[lo:], src, dst, m,
                                               num_inputs=hi - lo, FIRST=i == 0, **key)
    return out


def weighted_sum_backward_triton(grad: torch.Tensor, inputs: Sequence[torch.Tensor], weights: torch.Tensor,
                                 *, max_arity: int = MAX_ARITY) -> list[torch.Tensor]:
    """``[grad_inputs[0..K-1]..., grad_weights]`` (contract of ``weighted_sum_backward_ref``).

    grad_inputs[k] = weights[k]·grad in the inputs' dtype and each input's memory format;
    grad_weights[k] = Σ grad·inputs[k] (fp32 sums, bitwise reproducible) in weights' dtype.
    Takes what :func:`weighted_sum_triton` takes.
    """
    x0 = inputs[0]
    chunks = _chunks(len(inputs), max_arity)
    layout = memory_format_of(x0)
    grads = [new_output(x0.shape, x0.dtype, x0.device, layout) for _ in inputs]
    m = x0.numel()
    strides = grads[0].stride()
    g, *xs = _dense([grad, *inputs], strides, layout)
    w = weights.detach().to(device=x0.device, dtype=torch.float32).contiguous()
    block, num_warps = _backward_config(m, x0.element_size())
    num_programs = triton.cdiv(m, block)
    # partials[k, p]: program p's share of Σ grad·y_k; NaN-poisoned under test like outputs.
    partials = new_output((len(inputs), num_programs), torch.float32, x0.device)
    with _triton.device_guard(x0.device):
        for lo, hi in chunks:
            _weighted_sum_backward_kernel[(num_programs,)](g, tuple(xs[lo:hi]), tuple(grads[lo:hi]), w[lo:],
                                                           partials[lo:], m, num_programs,
                                                           BLOCK=block, num_warps=num_warps)
    # Second pass: a fixed-order fp32 reduction over programs (torch's sum uses no atomics).
    grad_weights = partials.sum(dim=1).to(weights.dtype)
    # An input in another memory format than inputs[0] gets its grad in its own format.
    grads = [gk if memory_format_of(x) == layout else gk.contiguous(memory_format=memory_format_of(x))
             for gk, x in zip(grads, inputs)]
    return grads + [grad_weights]
