"""The regression-tracking suites: which benchmarks ``dartsfast bench run`` times, at what sizes.

Each benchmark is a builder ``build(device, dtype, layout, **sizes) -> (fn, nbytes)`` that
allocates its inputs once and returns the zero-argument call to time (``nbytes``: bytes the
op must move, for GB/s, or None where no single byte count is meaningful). The two suites
run the *same* builders:

- ``quick`` — CPU/CI: fp32, NCHW, the torch reference paths (no Triton interpreter: it
  would time the interpreter, not the code). One call takes 0.2–2 ms on one core of this
  2-core runner (weighted_sum fwd 0.18 ms, bwd 0.27 ms, dwconv_se fwd 0.63 ms, fwd+bwd
  1.3 ms, MBConv fwd+bwd 1.8 ms — its floor is per-op overhead, 1.3 ms even at 8x8 —
  Fused-MBConv 0.57 ms) except the search step (~19 ms: the smallest supernet has 3 cells).
  Short calls matter on a shared machine: a call shorter than the scheduler's ~3 ms slice
  is rarely preempted, so its fastest calls are clean. ~15 s for the suite.
- ``full`` — GPUs: bf16, channels_last, the dispatching backend (Triton / CUDA), the sizes
  of DESIGN.md §4 (weighted_sum K=8, M=2^24; the EfficientNet-B0 stage-3 MBConv middle at
  batch 128; a search step at the seed configuration).

Names are stable identifiers: a baseline matches on name + params + backend + dtype + layout.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F

from dartsfast import backend
from dartsfast.nn import FusedMBConv, MBConv
from dartsfast.ops import dwconv_se, weighted_sum
from dartsfast.search import DEFAULT_OPS, ArchParams, SearchModel, Supernet

SUITES = ("quick", "full")
Builder = Callable[..., tuple[Callable[[], object], "int | None"]]


@dataclasses.dataclass(frozen=True)
class BenchSpec:
    """One benchmark: ``name`` + ``sizes`` (its params), how to build it, and the op whose
    dispatched backend is recorded as the record's ``provider``."""

    name: str
    build: Builder
    sizes: dict
    dtype: torch.dtype
    layout: str  # "flat" | "nchw" | "channels_last"
    op: str  # the fused op whose backend runs: "weighted_sum" | "dwconv_se"
    units: int  # calibration units per pair (see dartsfast.bench.runner)
    pairs: int  # timed (calibration, benchmark) pairs


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _to_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x


def _weighted_sum_inputs(device, dtype, k, m):
    gen = _generator(device, 1000 * k + m % 997)
    xs = [torch.randn(m, device=device, dtype=dtype, generator=gen).requires_grad_(True) for _ in range(k)]
    w = torch.softmax(torch.randn(k, device=device, generator=gen), 0).requires_grad_(True)
    return xs, w


def build_weighted_sum_forward(device, dtype, layout, *, K: int, M: int):
    """The fused op forward: reads K inputs + weights, writes one output, (K+1)·M·b bytes."""
    xs, w = _weighted_sum_inputs(device, dtype, K, M)
    return (lambda: weighted_sum(xs, w)), (K + 1) * M * xs[0].element_size() + 4 * K


def build_weighted_sum_backward(device, dtype, layout, *, K: int, M: int):
    """Backward alone, replayed on a kept graph: (2K+1)·M·b bytes (grad + K inputs → K grads)."""
    xs, w = _weighted_sum_inputs(device, dtype, K, M)
    out = weighted_sum(xs, w)
    grad = torch.randn(out.shape, device=device, dtype=dtype, generator=_generator(device, 7))
    params = [*xs, w]
    nbytes = (2 * K + 1) * M * xs[0].element_size() + 8 * K
    return (lambda: torch.autograd.grad(out, params, grad, retain_graph=True)), nbytes


def _dwconv_se_inputs(device, dtype, layout, n, c, hw, k):
    gen = _generator(device, n * 131 + c * 7 + hw)
    cr = max(1, c // 4)

    def param(*shape, scale=1.0):
        return (scale * torch.randn(*shape, device=device, generator=gen)).requires_grad_(True)

    x = _to_layout(torch.randn(n, c, hw, hw, device=device, dtype=dtype, generator=gen), layout).requires_grad_(True)
    args = (x, param(c, 1, k, k, scale=0.3), param(c), param(c),
            torch.zeros(c, device=device), torch.ones(c, device=device),
            param(cr, c, scale=0.2), param(cr), param(c, cr, scale=0.2), param(c))
    return args


def build_dwconv_se_forward(device, dtype, layout, *, N: int, C: int, HW: int, k: int):
    """The fused MBConv middle (depthwise conv + BN + SiLU + SE), training-mode forward."""
    args = _dwconv_se_inputs(device, dtype, layout, N, C, HW, k)
    return (lambda: dwconv_se(*args)), None


def build_dwconv_se_forward_backward(device, dtype, layout, *, N: int, C: int, HW: int, k: int):
    args = _dwconv_se_inputs(device, dtype, layout, N, C, HW, k)
    grad = torch.randn(args[0].shape, device=device, dtype=dtype, generator=_generator(device, 11))
    grad = _to_layout(grad, layout)
    inputs = [a for a in args if a.requires_grad]

    def step():
        return torch.autograd.grad(dwconv_se(*args), inputs, grad)

    return step, None


def _block_step(block: torch.nn.Module, device, dtype, layout, n, c, hw):
    block = block.to(device=device, dtype=dtype)
    if layout == "channels_last":
        block = block.to(memory_format=torch.channels_last)
    x = _to_layout(torch.randn(n, c, hw, hw, device=device, dtype=dtype, generator=_generator(device, 5)), layout)
    params = list(block.parameters())

    def step():
        return torch.autograd.grad(block(x).float().square().mean(), params)

    return step, None


def build_mbconv_forward_backward(device, dtype, layout, *, N: int, C: int, HW: int, exp: float):
    """An MBConv block (1x1 expand → fused dwconv_se → 1x1 project), forward + weight grads."""
    torch.manual_seed(0)
    return _block_step(MBConv(C, C, 3, 1, exp_ratio=exp), device, dtype, layout, N, C, HW)


def build_fused_mbconv_forward_backward(device, dtype, layout, *, N: int, C: int, HW: int, exp: float):
    """A Fused-MBConv block (dense 3x3 expand → 1x1 project), forward + weight grads."""
    torch.manual_seed(0)
    return _block_step(FusedMBConv(C, C, 3, 1, exp_ratio=exp), device, dtype, layout, N, C, HW)


def build_search_step(device, dtype, layout, *, N: int, C: int, HW: int, layers: int, steps: int):
    """A supernet (the default EfficientNetV2 op space) forward + backward on one batch: the
    weight half of a search step, without the optimiser (its cost is not the library's)."""
    torch.manual_seed(0)
    net = Supernet(C, 10, layers, DEFAULT_OPS, in_channels=3, steps=steps, multiplier=steps)
    model = SearchModel(net, ArchParams(len(DEFAULT_OPS), steps=steps)).to(device)
    if layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    gen = _generator(device, 3)
    x = _to_layout(torch.randn(N, 3, HW, HW, device=device, generator=gen), layout)
    y = torch.randint(0, 10, (N,), device=device, generator=gen)
    params = list(model.parameters())
    amp = dtype in (torch.bfloat16, torch.float16)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        return torch.autograd.grad(loss, params)

    return step, None


_BUILDERS = {  # name → (builder, layout kind, op whose backend is recorded)
    "weighted_sum/forward": (build_weighted_sum_forward, "flat", "weighted_sum"),
    "weighted_sum/backward": (build_weighted_sum_backward, "flat", "weighted_sum"),
    "dwconv_se/forward": (build_dwconv_se_forward, "image", "dwconv_se"),
    "dwconv_se/forward+backward": (build_dwconv_se_forward_backward, "image", "dwconv_se"),
    "mbconv/forward+backward": (build_mbconv_forward_backward, "image", "dwconv_se"),
    "fused_mbconv/forward+backward": (build_fused_mbconv_forward_backward, "image", "dwconv_se"),
    "search_step/forward+backward": (build_search_step, "image", "weighted_sum"),
}

# name → (sizes, calibration units, pairs). Units and pairs are fixed, not adapted to the
# machine: the calibration's per-unit time depends a little on how many units run back to
# back (caches), so an adaptive count made the ratio of one benchmark move 14% between runs
# of unchanged code (33 vs 134 units). Quick values are sized from this 2-core runner: one
# unit ≈ 93 µs; units ≈ the benchmark call / 93 µs; pairs give ≥ 0.35 s of benchmark calls
# (≥ 50 pairs), ~15 s for the suite.
QUICK = {
    "weighted_sum/forward": (dict(K=4, M=1 << 16), 2, 2000),        # 0.18 ms per call
    "weighted_sum/backward": (dict(K=4, M=1 << 16), 3, 2000),       # 0.27 ms
    "dwconv_se/forward": (dict(N=4, C=32, HW=16, k=3), 7, 1500),    # 0.63 ms
    "dwconv_se/forward+backward": (dict(N=2, C=32, HW=16, k=3), 14, 800),  # 1.3 ms
    "mbconv/forward+backward": (dict(N=2, C=8, HW=16, exp=4.0), 19, 400),  # 1.8 ms
    "fused_mbconv/forward+backward": (dict(N=2, C=8, HW=16, exp=4.0), 6, 1500),  # 0.57 ms
    "search_step/forward+backward": (dict(N=2, C=4, HW=8, layers=3, steps=1), 200, 50),  # 19 ms
}
# GPU sizes: memory-bound ops at DRAM-filling sizes (≥ 300 MB moved per weighted_sum call),
# EfficientNet-B0 stage 3 (240 mid channels at 28x28, k=5) at batch 128, and the seed
# search configuration (16 channels, 5 cells, 4 nodes, batch 64 at 28x28). One GPU unit ≈
# 80 µs on an H100 (2048² bf16 matmul ≈ 29 µs + 32 MiB copy ≈ 24 µs + a launch-bound tiny
# autograd graph ≈ 30 µs); units are estimates, not measurements (no GPU was at hand; a
# mismatch only costs some noise); pairs keep the timing near 20 s.
FULL = {
    "weighted_sum/forward": (dict(K=8, M=1 << 24), 1, 100),          # ~0.11 ms at 2.8 TB/s
    "weighted_sum/backward": (dict(K=8, M=1 << 24), 3, 100),         # ~0.2 ms
    "dwconv_se/forward": (dict(N=128, C=240, HW=28, k=5), 6, 100),   # ~0.45 ms
    "dwconv_se/forward+backward": (dict(N=128, C=240, HW=28, k=5), 18, 50),  # ~1.5 ms
    "mbconv/forward+backward": (dict(N=128, C=48, HW=28, exp=4.0), 25, 50),  # ~2 ms
    "fused_mbconv/forward+backward": (dict(N=128, C=48, HW=28, exp=4.0), 25, 50),
    "search_step/forward+backward": (dict(N=64, C=16, HW=28, layers=5, steps=4), 500, 20),  # launch-bound, ~40 ms
}
SUITE_FORMAT = {"quick": (QUICK, torch.float32, "nchw"), "full": (FULL, torch.bfloat16, "channels_last")}


def suite(name: str) -> list[BenchSpec]:
    """The benchmarks of suite ``name`` ("quick" or "full")."""
    if name not in SUITE_FORMAT:
        raise ValueError(f"unknown suite {name!r}; expected one of {', '.join(SUITES)}")
    table, dtype, image_layout = SUITE_FORMAT[name]
    specs = []
    for bench, (sizes, units, pairs) in table.items():
        build, kind, op = _BUILDERS[bench]
        specs.append(BenchSpec(bench, build, dict(sizes), dtype, "flat" if kind == "flat" else image_layout, op,
                               units, pairs))
    return specs


def select(specs: list[BenchSpec], names) -> list[BenchSpec]:
    """The specs named in ``names`` (all when empty); ValueError naming unknown ones."""
    if not names:
        return list(specs)
    known = [s.name for s in specs]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(map(repr, unknown))}; this suite has: {', '.join(known)}")
    return [s for s in specs if s.name in names]


def provider(spec: BenchSpec, device: torch.device) -> str:
    """The backend that runs ``spec.op`` on ``device`` under the current backend choice."""
    return backend.select(spec.op, device)[0]
