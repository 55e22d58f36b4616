"""Benchmark dartsfast.ops.dwconv_se (issue 5), the MBConv middle (depthwise conv → BN →
SiLU → SE), in training mode: the eager PyTorch composition in NCHW and channels_last
(native kernel vs cuDNN), ``torch.compile`` of it, the Triton kernels, and the CUDA
extension when it has a dwconv_se kernel; forward, backward, forward+backward.

Shapes: the MBConv middles of EfficientNetV2-S stages 4–6 (384 px) and of EfficientNet-B0
stages 2–6 (224 px; stage numbers as in the B0 paper's Table 1) at batch 32 and 128, plus
seed-search cells (batch 64, 28×28 and smaller, 16–64 channels). bf16 on the GPU.

Bytes (b = element size, M_in = N·H·W·C, M_out = N·H'·W'·C). ``bytes``/``GB/s``/``% ceil``
use the op's floor, the same for every provider so GB/s compare like with like:
    forward            (M_in + M_out)·b          read x, write out
    backward           (2·M_in + M_out)·b        read x and grad, write d_x
    forward+backward   the sum
``model_bytes`` / ``model_pct`` are what each provider's kernels actually move by the
pass models (Triton: dartsfast/ops/dwconv_se/triton_*.py docstrings; eager: forward M_in + 9·M_out —
conv, BN stats + normalise, SiLU, mean, scale — and backward ≈ 2·M_in + 16·M_out
element reads/writes: g·gate, Σg·y, the two-path sum, SiLU, BN's reduce + apply, dgrad and
wgrad); ``model_pct`` is the number the ≥ 70% target reads.
``act_bytes``: tensors autograd keeps for backward beyond x and the parameters (saved-
tensor hooks, unique storages); ``act_alloc``: on CUDA, memory still allocated after the
forward minus its output (allocator view, includes the stats buffers).
Targets (H100/H200, V2-S shapes, bf16): Triton forward+backward ≥ 2.5× eager channels_last
and ≥ 70% model_pct.

On CPU (or with --quick) only eager and torch.compile (aot_eager: inductor's C++ build is
~35 s per graph on a 2-core runner) run, at tiny shapes, in seconds.

    python benchmarks/bench_dwconv_se.py --out results/bench_dwconv_se.json [--quick]
"""
from __future__ import annotations

import math

import harness  # benchmarks/harness.py: also puts this checkout on sys.path
import torch
import torch.nn.functional as F

from dartsfast import backend
from dartsfast.ops import dwconv_se
from dartsfast.ops.dwconv_se import OP, output_size
from dartsfast.testing import relative_error

MODES = ("forward", "backward", "forward+backward")

# (label, C = depthwise channels, Cr = SE channels, H = W, k, stride) of one MBConv middle.
V2S = [("v2s.s4.first", 256, 16, 48, 3, 2), ("v2s.s4", 512, 32, 24, 3, 1),
       ("v2s.s5.first", 768, 32, 24, 3, 1), ("v2s.s5", 960, 40, 24, 3, 1),
       ("v2s.s6.first", 960, 40, 24, 3, 2), ("v2s.s6", 1536, 64, 12, 3, 1)]
B0 = [("b0.s2", 32, 8, 112, 3, 1), ("b0.s3.first", 96, 4, 112, 3, 2), ("b0.s3", 144, 6, 56, 3, 1),
      ("b0.s4.first", 144, 6, 56, 5, 2), ("b0.s4", 240, 10, 28, 5, 1), ("b0.s5.first", 240, 10, 28, 3, 2),
      ("b0.s5", 480, 20, 14, 3, 1), ("b0.s6.first", 480, 20, 14, 5, 1), ("b0.s6", 672, 28, 14, 5, 1)]
SEARCH = [("search.c16", 16, 4, 28, 3, 1), ("search.c32", 32, 8, 28, 5, 2),
          ("search.c64", 64, 16, 14, 3, 1), ("search.c64.k5", 64, 16, 7, 5, 1)]
# Most important first: cases past --max-seconds are recorded as skipped, not lost.
FULL = [(128, s) for s in V2S] + [(32, s) for s in V2S] + [(128, s) for s in B0] + \
       [(32, s) for s in B0] + [(64, s) for s in SEARCH]
QUICK = [(4, ("quick.k3", 32, 8, 14, 3, 1)), (4, ("quick.k5s2", 48, 12, 14, 5, 2))]


def composition(x, weight, bn_weight, bn_bias, running_mean, running_var, srw, srb, sew, seb, stride):
    """What a PyTorch MBConv computes (DESIGN.md §2), training mode."""
    k = weight.shape[-1]
    y = F.conv2d(x, weight, stride=stride, padding=k // 2, groups=x.shape[1])
    y = F.silu(F.batch_norm(y, running_mean, running_var, bn_weight, bn_bias, True, 0.1, 1e-5))
    s = torch.sigmoid(F.linear(F.silu(F.linear(y.mean((2, 3)), srw, srb)), sew, seb))
    return y * s[:, :, None, None]


def fused(x, weight, bn_weight, bn_bias, running_mean, running_var, srw, srb, sew, seb, stride):
    return dwconv_se(x, weight, bn_weight, bn_bias, running_mean, running_var, srw, srb, sew, seb,
                     stride=stride, training=True)


def floor_bytes(mode: str, m_in: int, m_out: int, elem: int) -> int:
    fwd, bwd = (m_in + m_out) * elem, (2 * m_in + m_out) * elem
    return {"forward": fwd, "backward": bwd, "forward+backward": fwd + bwd}[mode]


def model_bytes(provider: str, mode: str, m_in: int, m_out: int, elem: int) -> int | None:
    """Bytes the provider's kernels move (module docstring), None where there is no model."""
    if provider == "triton":
        from dartsfast.ops.dwconv_se.triton_forward import store_z_saves_bytes  # imports triton: GPU runs only

        store = store_z_saves_bytes(m_in, m_out, elem, True)
        fwd = m_in * elem + m_out * elem + (3 * m_out * 4 if store else 2 * m_in * elem)
        bwd = (4 * m_in + 4 * m_out) * elem
    elif provider.startswith("eager"):
        fwd, bwd = (m_in + 9 * m_out) * elem, (2 * m_in + 16 * m_out) * elem
    else:
        return None
    return {"forward": fwd, "backward": bwd, "forward+backward": fwd + bwd}[mode]


def providers(args) -> dict:
    """name → (callable, backend to select while it runs, channels_last input)."""
    compile_backend, label = harness.compile_backend(args)
    # dynamic=True: one graph per (k, stride) family rather than one per shape; cold
    # inductor compiles of forward + backward (~10 s each) would eat the time budget.
    compiled = torch.compile(composition, dynamic=True, backend=compile_backend)
    out = {"eager_nchw": (composition, "torch", False), "eager_cl": (composition, "torch", True),
           label: (compiled, "torch", True)}
    if args.device.type == "cuda" and not backend.why_unavailable("triton"):
        out["triton"] = (fused, "triton", True)
    if args.device.type == "cuda" and "cuda" in backend.kernels_for(OP) and not backend.why_unavailable("cuda"):
        out["cuda"] = (fused, "cuda", True)
    return out


def make_case(n, c, cr, hw, k, dtype, device, seed):
    gen = torch.Generator(device=device).manual_seed(seed)

    def rnd(*shape, scale=1.0, offset=0.0):
        return torch.randn(shape, device=device, generator=gen) * scale + offset

    x = rnd(n, c, hw, hw).to(dtype)
    # Parameters stay fp32, as under autocast; the composition gets them in x's dtype.
    params = [rnd(c, 1, k, k, scale=0.3), rnd(c, scale=0.3, offset=1.0), rnd(c, scale=0.3),
              rnd(cr, c, scale=0.5), rnd(cr, scale=0.3), rnd(c, cr, scale=0.5), rnd(c, scale=0.3)]
    running = (rnd(c, scale=0.2), rnd(c, scale=0.2).abs() + 0.5)
    return x, params, running


def call_args(x, params, running, dtype, channels_last, provider):
    """Inputs as each provider takes them: the fused op keeps fp32 parameters."""
    xi = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    cast = provider in ("triton", "cuda")
    leaves = [xi.detach().requires_grad_(True)] + [
        (p if cast else p.to(dtype)).detach().clone().requires_grad_(True) for p in params]
    stats = [r.clone() if cast else r.to(dtype).clone() for r in running]
    return leaves, stats


def mode_fn(mode, f, leaves, stats, grad, stride):
    def run():
        return f(leaves[0], *leaves[1:4], *stats, *leaves[4:], stride)

    if mode == "forward":
        return run
    if mode == "backward":
        out = run()  # once; each timed call replays the backward on the kept graph
        return lambda: torch.autograd.grad(out, leaves, grad, retain_graph=True)
    return lambda: torch.autograd.grad(run(), leaves, grad)


def activation_bytes(f, leaves, stats, stride, device) -> tuple[int, int | None]:
    """(bytes autograd saves beyond x and the parameters, CUDA allocator growth − output)."""
    inputs = {t.untyped_storage().data_ptr() for t in leaves}
    storages: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in inputs:
            storages[ptr] = t.untyped_storage().nbytes()
        return t

    alloc = None
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = f(leaves[0], *leaves[1:4], *stats, *leaves[4:], stride)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        alloc = torch.cuda.memory_allocated(device) - before - out.untyped_storage().nbytes()
    del out
    return sum(storages.values()), alloc


def bench_case(run, provs, dtype, n, layer, timing) -> None:
    label, c, cr, hw, k, stride = layer
    ho = output_size(hw, k, stride)
    m_in, m_out, elem = n * c * hw * hw, n * c * ho * ho, torch.empty((), dtype=dtype).element_size()
    x, params, running = make_case(n, c, cr, hw, k, dtype, run.device, seed=c * 100 + hw + k + n)
    grad = torch.randn(n, c, ho, ho, device=run.device, dtype=dtype)
    # fp32 composition on the same rounded inputs: each provider's forward error against it.
    with torch.no_grad():
        ref = composition(x.float(), *params[:3], *[r.clone() for r in running], *params[3:], stride)
    by_mode: dict[str, dict[str, dict]] = {mode: {} for mode in MODES}
    for name, (f, backend_name, channels_last) in provs.items():
        with backend.use_backend(backend_name):
            try:
                leaves, stats = call_args(x, params, running, dtype, channels_last, name)
                err = relative_error(f(leaves[0], *leaves[1:4], *stats, *leaves[4:], stride).detach(), ref)
                err = err if math.isfinite(err) else "non-finite output"
                act, alloc = activation_bytes(f, leaves, stats, stride, run.device)
            except Exception as exc:  # recorded next to the timings, which will say error too
                err, act, alloc = f"{type(exc).__name__}: {exc}".splitlines()[0], None, None
            for mode in MODES:
                params_rec = {"layer": label, "N": n, "C": c, "HW": hw, "k": k, "stride": stride}
                model = model_bytes(name, mode, m_in, m_out, elem)
                extra = {"rel_err": err, "act_bytes": act, "act_alloc": alloc, "model_bytes": model}
                try:
                    leaves, stats = call_args(x, params, running, dtype, channels_last, name)
                    fmt = torch.channels_last if channels_last else torch.contiguous_format
                    fn = mode_fn(mode, f, leaves, stats, grad.contiguous(memory_format=fmt), stride)
                except Exception as exc:
                    fn = harness.raiser(exc)
                rec = run.time(fn, name=f"dwconv_se/{mode}", params=params_rec, provider=name, dtype=dtype,
                               layout="nhwc" if channels_last else "nchw",
                               nbytes=floor_bytes(mode, m_in, m_out, elem), extra=extra, **timing)
                ok = rec["status"] == "ok" and model
                rec["model_pct"] = 100.0 * model / rec["median_s"] / run.ceiling if ok else None
                by_mode[mode][name] = rec
                del fn
    for recs in by_mode.values():  # ratios within this run: what regressions compare
        for base in ("eager_cl", "compile"):
            ref_rec = next((r for nm, r in recs.items() if nm.split(":")[0] == base), None)
            for rec in recs.values():
                ok = rec["status"] == "ok" and ref_rec is not None and ref_rec["status"] == "ok"
                rec[f"vs_{base}"] = ref_rec["median_s"] / rec["median_s"] if ok else None
    del x, params, running, grad, ref
    harness.free_memory(run.device)


def main(argv=None) -> dict:
    args = harness.parse_args(__doc__.splitlines()[0], argv, configure=harness.add_compile_backend_option)
    cases = QUICK if args.quick else FULL
    dtype = torch.float32 if args.device.type == "cpu" else torch.bfloat16
    timing = dict(warmup=1, repeats=3) if args.quick else dict(warmup=3, repeats=20, min_time_s=0.03)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    # The backward mode replays one compiled backward (retain_graph=True), which buffer
    # donation forbids; donation only saves memory, not time.
    torch._functorch.config.donated_buffer = False
    columns = ("vs_eager_cl", "vs_compile", "model_pct", "act_bytes", "rel_err")
    with harness.BenchRun("dwconv_se", args, extra_columns=columns) as run:
        provs = providers(args)
        for n, layer in cases:
            bench_case(run, provs, dtype, n, layer, timing)
    return run.payload(complete=True)


if __name__ == "__main__":
    main()
