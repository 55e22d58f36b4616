"""Benchmark dartsfast.ops.weighted_sum (issue 4): eager ``sum(w*y)``, ``torch.compile`` of
it, the Triton kernels, and the CUDA extension (forward only) when built; K ∈ {4, 8, 20},
M = 2^20 … 2^26 elements, bf16 then fp32; forward, backward, forward+backward.

Bytes per call (the op's floor, the same for every provider, so GB/s compare like with like;
b = element size, fp32 weights):
    forward            (K+1)·M·b + 4K       read K inputs + weights, write the output
    backward           (2K+1)·M·b + 8K      read grad + K inputs + weights, write K grads + K weight-grads
    forward+backward   (3K+2)·M·b + 12K
Eager ``sum(w*y)`` materialises every product and partial sum, ~5K·M·b in the forward.
Targets (H100/H200, M ≥ 2^24): Triton ≥ 85% of the copy ceiling forward, ≥ 80% backward;
≥ 4× eager forward, ≥ 3× eager backward, ≥ 1.3× torch.compile.

On CPU (or with --quick) only eager and torch.compile run, at tiny sizes: that exercises
the harness in CI in a few seconds; CPU compile uses the aot_eager backend, because
inductor's C++ build takes ~35 s per graph on a 2-core runner.

    python benchmarks/bench_weighted_sum.py --out results/bench_weighted_sum.json [--quick]
"""
from __future__ import annotations

import math

import harness  # benchmarks/harness.py: also puts this checkout on sys.path
import torch

from dartsfast import backend
from dartsfast.ops import weighted_sum
from dartsfast.ops.weighted_sum import OP, weighted_sum_ref
from dartsfast.testing import relative_error

MODES = ("forward", "backward", "forward+backward")
# 2^26 … 2^20, largest first; bf16 (the targets' dtype) before fp32, so a time cap drops fp32.
FULL = dict(ks=(4, 8, 20), sizes=tuple(1 << p for p in range(26, 19, -2)), dtypes=(torch.bfloat16, torch.float32))
# Quick: 2 compiled graphs (one per K), ~1 s each with aot_eager on a 2-core runner.
QUICK = dict(ks=(4, 8), sizes=(1 << 14, 1 << 10), dtypes=(torch.bfloat16,))


def op_bytes(mode: str, k: int, m: int, elem: int) -> int:
    """Bytes the op must move (see the module docstring)."""
    forward = (k + 1) * m * elem + 4 * k
    backward = (2 * k + 1) * m * elem + 8 * k
    return {"forward": forward, "backward": backward, "forward+backward": forward + backward}[mode]


def eager_sum(xs, w):
    """What DARTS code writes: one product and one partial sum tensor per input."""
    return sum(wk * y for wk, y in zip(w, xs))


def providers(args) -> dict:
    """name → (callable(xs, w), backend to select while it runs, modes it supports)."""
    compile_backend, label = harness.compile_backend(args)
    # dynamic=True: one graph per (K, dtype) instead of one per M as well; cold inductor
    # compiles (~3–5 s each) would otherwise take most of the time budget.
    compiled = torch.compile(eager_sum, dynamic=True, backend=compile_backend)
    out = {"eager": (eager_sum, "torch", MODES), label: (compiled, "torch", MODES)}
    if args.device.type == "cuda" and not backend.why_unavailable("triton"):
        out["triton"] = (weighted_sum, "triton", MODES)
    if args.device.type == "cuda" and "cuda" in backend.kernels_for(OP) and not backend.why_unavailable("cuda"):
        out["cuda"] = (weighted_sum, "cuda", ("forward",))  # the extension has no backward kernel
    return out


def mode_fn(mode, f, xs, w, g):
    params = [*xs, w]
    if mode == "forward":
        return lambda: f(xs, w)
    if mode == "backward":
        out = f(xs, w)  # once; each timed call replays the backward on the kept graph
        return lambda: torch.autograd.grad(out, params, g, retain_graph=True)
    return lambda: torch.autograd.grad(f(xs, w), params, g)


def bench_case(run, provs, dtype, k, m, timing) -> None:
    gen = torch.Generator(device=run.device).manual_seed(k * 1000 + m % 997)
    xs = [torch.randn(m, device=run.device, dtype=dtype, generator=gen).requires_grad_(True) for _ in range(k)]
    w = torch.softmax(torch.randn(k, device=run.device, generator=gen), 0).requires_grad_(True)
    g = torch.randn(m, device=run.device, dtype=dtype, generator=gen)
    ref = weighted_sum_ref([x.detach() for x in xs], w.detach())
    by_mode: dict[str, dict[str, dict]] = {mode: {} for mode in MODES}
    for name, (f, backend_name, modes) in provs.items():
        with backend.use_backend(backend_name):
            try:  # a wrong answer would make its timing meaningless: record the error next to it
                # (with grad enabled, as timed: no_grad would be one more compiled graph)
                err = relative_error(f(xs, w).detach(), ref)
                err = err if math.isfinite(err) else "non-finite output"
            except Exception as exc:
                err = f"{type(exc).__name__}: {exc}".splitlines()[0]
            for mode in modes:
                params = {"K": k, "M": m}
                nbytes = op_bytes(mode, k, m, xs[0].element_size())
                try:
                    fn = mode_fn(mode, f, xs, w, g)
                except Exception as exc:
                    fn = harness.raiser(exc)
                rec = run.time(fn, name=f"weighted_sum/{mode}", params=params, provider=name, dtype=dtype,
                               nbytes=nbytes, extra={"rel_err": err}, **timing)
                by_mode[mode][name] = rec
                del fn
    for recs in by_mode.values():  # ratios within this run: the numbers regressions compare
        for base in ("eager", "compile"):
            ref_rec = next((r for name, r in recs.items() if name.split(":")[0] == base), None)
            for rec in recs.values():
                ok = rec["status"] == "ok" and ref_rec is not None and ref_rec["status"] == "ok"
                rec[f"vs_{base}"] = ref_rec["median_s"] / rec["median_s"] if ok else None
    del xs, w, g, ref
    harness.free_memory(run.device)


def main(argv=None) -> dict:
    args = harness.parse_args(__doc__.splitlines()[0], argv, configure=harness.add_compile_backend_option)
    grid = QUICK if args.quick else FULL
    # Quick: a handful of calls is enough to exercise the path. GPU: ≥ 20 calls and ≥ 30 ms
    # per case, so µs-short cases still get hundreds of samples for a stable median.
    timing = dict(warmup=1, repeats=5) if args.quick else dict(warmup=3, repeats=20, min_time_s=0.03)
    # One graph per (K, dtype) is 6 recompiles of eager_sum; dynamo's default limit is 8.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    with harness.BenchRun("weighted_sum", args, extra_columns=("vs_eager", "vs_compile", "rel_err")) as run:
        provs = providers(args)
        for dtype in grid["dtypes"]:
            for k in grid["ks"]:
                for m in grid["sizes"]:
                    bench_case(run, provs, dtype, k, m, timing)
    return run.payload(complete=True)


if __name__ == "__main__":
    main()
