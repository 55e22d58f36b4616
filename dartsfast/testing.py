"""Test helpers shared by the test suite and the GPU suite: one tolerance table,
random-input factories, poisoned outputs and verbose comparisons."""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch

from dartsfast.ops import _common

# Relative error ‖out − ref‖ / ‖ref‖ against a float64 reference (DESIGN.md §6).
TOLERANCES: dict[object, float] = {
    torch.float64: 1e-12,
    torch.float32: 1e-5,
    "tf32": 5e-4,
    torch.float16: 2e-3,
    torch.bfloat16: 1e-2,
}
# Low precision must also be at most this many times plain PyTorch's own error in the dtype.
LOW_PRECISION_FACTOR = 2.0
LOW_PRECISION_ATOL = 1e-6
# Tests that start a subprocess (a CLI, a benchmark script, the Triton interpreter) give it
# this long before calling it hung. A guard against hangs only, never a performance bound:
# the slowest such subprocess takes ~2 min on an idle 2-core runner and must still pass with
# the other core busy, so 20 minutes leaves a wide margin.
SUBPROCESS_TIMEOUT_S = 1200
# Benchmark scripts skip the cases left once their --max-seconds budget is spent; tests that
# check every case was measured pass this so a slow, busy machine never decides the outcome.
NO_TIME_BUDGET = ["--max-seconds", "1e9"]


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out − ref‖₂ / ‖ref‖₂ in float64 (inf if out has NaN/inf: unwritten or broken)."""
    out64, ref64 = out.detach().to(torch.float64), ref.detach().to(torch.float64)
    if out64.shape != ref64.shape:
        raise AssertionError(f"shape {tuple(out64.shape)} != reference shape {tuple(ref64.shape)}")
    if not torch.isfinite(out64).all():
        return float("inf")
    denom = ref64.norm().item()
    return (out64 - ref64).norm().item() / (denom if denom > 0 else 1.0)


def assert_close_to_reference(out: torch.Tensor, ref: torch.Tensor, dtype: object, what: str = "output",
                              baseline: torch.Tensor | None = None) -> float:
    """Assert ``out`` is within ``TOLERANCES[dtype]`` of the float64 ``ref``.

    For fp16/bf16 with ``baseline`` (plain PyTorch computed in that dtype) also assert the
    error is at most ``LOW_PRECISION_FACTOR`` × the baseline's error (+ a small atol).
    Returns the relative error.
    """
    err = relative_error(out, ref)
    tol = TOLERANCES[dtype]
    if not err <= tol:
        nonfinite = int((~torch.isfinite(out.detach())).sum())
        raise AssertionError(f"{what}: relative error {err:.3e} > {tol:.1e} for {dtype} "
                             f"(shape {tuple(out.shape)}, {nonfinite} non-finite elements)")
    if baseline is not None and dtype in (torch.float16, torch.bfloat16):
        base_err = relative_error(baseline, ref)
        bound = LOW_PRECISION_FACTOR * base_err + LOW_PRECISION_ATOL
        if not err <= bound:
            raise AssertionError(f"{what}: relative error {err:.3e} exceeds {LOW_PRECISION_FACTOR}× "
                                 f"plain PyTorch's {base_err:.3e} in {dtype}")
    return err


@contextlib.contextmanager
def poisoned_outputs() -> Iterator[None]:
    """Inside the block, kernel output buffers start NaN-filled, so unwritten elements fail."""
    previous = _common._poison_outputs
    _common._poison_outputs = True
    try:
        yield
    finally:
        _common._poison_outputs = previous


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def random_tensor(shape: Sequence[int], *, dtype: torch.dtype = torch.float32, device="cpu",
                  generator: torch.Generator | None = None, scale: float = 1.0, offset: float = 0.0,
                  channels_last: bool = False, requires_grad: bool = False) -> torch.Tensor:
    """Normal(offset, scale) values drawn in float64 then cast, so every dtype sees the same numbers."""
    t = torch.randn(tuple(shape), dtype=torch.float64, generator=generator) * scale + offset
    t = t.to(device=device, dtype=dtype)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last)
    return t.requires_grad_(requires_grad)


def random_inputs(k: int, shape: Sequence[int], **kwargs) -> list[torch.Tensor]:
    """K independent random tensors of one shape (see :func:`random_tensor`)."""
    return [random_tensor(shape, **kwargs) for _ in range(k)]


def random_simplex(k: int, *, dtype=torch.float32, device="cpu",
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Softmax of random logits: positive weights summing to one, like DARTS alphas."""
    logits = torch.randn(k, dtype=torch.float64, generator=generator)
    return torch.softmax(logits, 0).to(device=device, dtype=dtype)
