"""The block profiler: every block × dtype × layout × impl × mode × batch, timed.

- impl ``eager``: the plain module (MBConv with its unfused depthwise → BN → SiLU → SE
  middle); ``compile``: ``torch.compile`` of that same module; ``fused``: the block whose
  BN → SiLU → SE (with MBConv's depthwise conv) runs :func:`dartsfast.ops.dwconv_se` under
  the ``fused_backend`` (``auto``: the CUDA extension or Triton on a GPU, the torch
  reference on a CPU — the record says which). Blocks without SE have no fused impl.
- mode ``inference``: forward under ``no_grad`` with eval-mode BN; ``training``: forward,
  backward of a fixed random output gradient (no loss kernel), and an SGD-momentum step.
  The input requires grad, as for a block inside a network.
- dtype: the whole block, parameters included, in that dtype (no autocast): its bytes are
  then exactly what :mod:`profiling.models` counts.

Latency: :func:`~dartsfast.timing.time_fn` (CUDA events per call on a GPU,
``perf_counter`` on a CPU), median and IQR. On CUDA also the peak memory of one call and,
with ``cuda_graph=True``, the same call replayed from a CUDA graph: the difference is the
CPU launch overhead. A case that cannot run is a record with status and reason — an
unsupported combination, a compile failure, out of memory — never the end of the sweep.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import time
from typing import Iterable, Sequence

import torch
import torch.nn as nn

from dartsfast import backend as backends
from dartsfast import records
from dartsfast.nn import DSConv, FusedMBConv, MBConv
from dartsfast.profiling.ceilings import DTYPES, measure_ceilings
from dartsfast.profiling.models import MODES, block_cost
from dartsfast.profiling.presets import BlockSpec
from dartsfast.records import PROFILE_FIELDS, PROFILE_STATUSES, PROFILE_VERSIONS, timing_fields
from dartsfast.timing import environment_info, num_threads, time_fn

IMPLS = ("eager", "compile", "fused")
LAYOUTS = ("nchw", "channels_last")
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
LAYOUT_ALIASES = {"nhwc": "channels_last", "channels-last": "channels_last", "contiguous": "nchw"}
# lr small enough that ~100 steps on a fixed random gradient move the weights by < 1%.
SGD_LR, SGD_MOMENTUM = 1e-4, 0.9
# On a CPU inductor's C++ build takes ~35 s per graph on a 2-core runner; aot_eager traces
# the same graphs (fwd + bwd) in ~1–5 s and still exercises the compile path.
CPU_COMPILE_BACKEND = "aot_eager"
# A cold inductor compile of one block's forward + backward: ~5–20 s (first-call time).
COMPILE_GUESS_S = 10.0


@dataclasses.dataclass(frozen=True)
class Case:
    spec: BlockSpec
    dtype: str
    layout: str
    impl: str
    mode: str
    batch: int


def iter_cases(specs: Sequence[BlockSpec], dtypes, layouts, impls, modes, batch_sizes) -> list[Case]:
    """Every combination; compile cases last, so a compile-time budget only ever drops them."""
    cases = [Case(spec, d, lay, impl, mode, b) for spec in specs for d in dtypes for lay in layouts
             for mode in modes for b in batch_sizes for impl in impls]
    return sorted(cases, key=lambda c: c.impl == "compile")  # stable: the order above otherwise


def unsupported_reason(case: Case, device: torch.device) -> str:
    """Why ``case`` is not a meaningful measurement on ``device`` ('' when it is)."""
    if case.dtype == "float16" and device.type != "cuda":
        return "float16 is profiled on CUDA only (CPU float16 convs are a slow fallback)"
    if case.impl == "fused" and case.spec.block == "dsconv":
        return "no fused implementation for dsconv (MBConv and Fused-MBConv run BN+SiLU+SE through dwconv_se)"
    if case.impl == "fused" and case.spec.se_ratio <= 0:
        return (f"{case.spec.block} without squeeze-excitation (se_ratio 0) has nothing for the fused "
                "dwconv_se op to run")
    return ""


def build_block(spec: BlockSpec, impl: str = "eager") -> nn.Module:
    """The module of ``spec``; BN → SiLU → SE runs through the fused dwconv_se op exactly when
    ``impl == 'fused'`` (MBConv: with its depthwise conv; Fused-MBConv: with a 1×1 identity filter)."""
    s = spec.shape
    if spec.block == "mbconv":
        return MBConv(s.c_in, s.c_out, s.kernel, s.stride, exp_ratio=s.exp_ratio, se_ratio=spec.se_ratio,
                      fused=impl == "fused")
    if spec.block == "fused_mbconv":
        return FusedMBConv(s.c_in, s.c_out, s.kernel, s.stride, exp_ratio=s.exp_ratio, se_ratio=spec.se_ratio,
                           fused=impl == "fused")
    if spec.block == "dsconv":
        return DSConv(s.c_in, s.c_out, s.kernel, s.stride, se_ratio=spec.se_ratio)
    raise ValueError(f"unknown block {spec.block!r}")


def _memory_format(layout: str) -> torch.memory_format:
    return torch.channels_last if layout == "channels_last" else torch.contiguous_format


def make_step(model: nn.Module, case: Case, device: torch.device):
    """A no-argument callable running one inference forward or one training step."""
    s, dtype, fmt = case.spec.shape, DTYPES[case.dtype], _memory_format(case.layout)
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(case.batch, s.c_in, s.h, s.w, device=device, dtype=dtype, generator=gen)
    x = x.contiguous(memory_format=fmt)
    if case.mode == "inference":
        model.eval()

        def infer():
            with torch.no_grad():
                return model(x)
        return infer
    model.train()
    x.requires_grad_(True)
    out_h, out_w = s.out_hw
    grad = torch.randn(case.batch, s.c_out, out_h, out_w, device=device, dtype=dtype, generator=gen)
    grad = grad.contiguous(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=SGD_LR, momentum=SGD_MOMENTUM)

    def train_step():
        opt.zero_grad(set_to_none=True)
        x.grad = None
        out = model(x)
        out.backward(grad)
        opt.step()
    return train_step


def _first_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def make_record(spec, *, dtype: str, layout: str, impl: str, mode: str, batch: int, env: dict, cost,
                ceilings: dict, status: str = "ok", reason: str = "", stats=None, backend: str = "",
                compile_backend: str = "", **extra) -> dict:
    """One profile record (schema: :mod:`dartsfast.records`) from a :class:`~dartsfast.profiling.presets.BlockSpec`, a
    :class:`~dartsfast.profiling.models.Cost`, the ceilings' dict and the timing stats."""
    if status not in PROFILE_STATUSES:
        raise ValueError(f"status must be one of {PROFILE_STATUSES}, got {status!r}")
    s = spec.shape
    out_h, out_w = s.out_hw
    rec = {
        "block": spec.block, "label": s.label, "preset": s.preset, "stage": s.stage, "position": s.position,
        "count": s.count, "native": s.native,
        "params": dict(c_in=s.c_in, c_out=s.c_out, h=s.h, w=s.w, out_h=out_h, out_w=out_w, stride=s.stride,
                       exp_ratio=s.exp_ratio, kernel=s.kernel, se_ratio=spec.se_ratio),
        "dtype": dtype, "layout": layout, "impl": impl, "mode": mode, "batch": batch,
        "backend": backend, "compile_backend": compile_backend,
        "device": env.get("device_name", ""), "device_type": env.get("device_type", ""),
        "driver": env.get("driver", ""), "versions": {k: env.get(k, "") for k in PROFILE_VERSIONS},
        "git_commit": env.get("git_commit", ""), "status": status, "reason": reason,
        **timing_fields(), "images_per_s": None,
        "flops": cost.flops, "bytes": cost.bytes, "arithmetic_intensity": cost.intensity,
        "tflops_per_s": None, "gb_per_s": None, "pct_of_compute_ceiling": None, "pct_of_bandwidth_ceiling": None,
        "peak_mem_bytes": None, "peak_mem_delta_bytes": None, "compile_s": None,
        "graph_median_s": None, "graph_iqr_s": None, "launch_overhead_s": None, "graph_error": "",
    }
    if status == "ok":
        if stats is None:
            raise ValueError("a record with status 'ok' needs timing stats")
        t = stats.median
        rec.update(timing_fields(stats), images_per_s=batch / t, tflops_per_s=cost.flops / t / 1e12,
                   gb_per_s=cost.bytes / t / 1e9)
        bandwidth = ceilings.get("bandwidth_bytes_per_s")
        compute = ceilings.get("compute_flops_per_s", {}).get(dtype)
        if bandwidth:
            rec["pct_of_bandwidth_ceiling"] = 100.0 * cost.bytes / t / bandwidth
        if compute:
            rec["pct_of_compute_ceiling"] = 100.0 * cost.flops / t / compute
    unknown = set(extra) - set(PROFILE_FIELDS)
    if unknown:
        raise ValueError(f"unknown record field(s) {sorted(unknown)}")
    rec.update(extra)
    return rec


def _cuda_graph_stats(fn, device, warmup: int, repeats: int):
    """Capture ``fn`` in a CUDA graph (after warm-up on a side stream) and time its replay."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    try:
        return time_fn(graph.replay, warmup=warmup, repeats=repeats, device=device)
    finally:
        torch.cuda.synchronize(device)
        del graph


class ProfileRun:
    """One profiling run: environment and ceilings measured once, then cases, then a document.

    Args:
        device: "cpu" or "cuda[:i]".
        dtypes: dtype names the ceilings are measured for (those of the cases).
        warmup, repeats: untimed / timed calls per case.
        cuda_graph: also time CUDA-graph replay (GPU only; eager and fused impls).
        compile_backend: torch.compile backend (default inductor on CUDA, aot_eager on CPU).
        fused_backend: dartsfast backend for the fused impl ("auto").
        max_seconds: after this many seconds the remaining cases are recorded as skipped.
        compile_budget_s: once first-call compile times add up to this, further compile
            cases are skipped (cold inductor compiles take ~5–20 s per block).
        progress: a tqdm bar.
        threads: CPU only: ``torch.set_num_threads`` while profiling (restored after). On a
            shared runner 1 thread is the robust choice: with 2 threads on 2 busy cores an
            OpenMP barrier waits out a descheduled sibling's time slice, and 0.3 ms calls
            measured 13–240 ms.
    """

    def __init__(self, device, dtypes: Iterable[str] = ("float32",), *, warmup: int = 3, repeats: int = 20,
                 cuda_graph: bool = False, compile_backend: str | None = None, fused_backend: str = "auto",
                 max_seconds: float | None = None, compile_budget_s: float | None = None,
                 progress: bool = True, threads: int | None = None) -> None:
        self.device = torch.device(device)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        self.threads = threads if self.device.type == "cpu" else None
        if warmup < 0 or repeats < 1:
            raise ValueError(f"warmup must be ≥ 0 and repeats ≥ 1, got {warmup} and {repeats}")
        self.warmup, self.repeats, self.progress = warmup, repeats, progress
        self.cuda_graph = cuda_graph and self.device.type == "cuda"
        self.compile_backend = compile_backend or ("inductor" if self.device.type == "cuda" else CPU_COMPILE_BACKEND)
        self.fused_backend = fused_backend
        self.max_seconds, self.compile_budget_s = max_seconds, compile_budget_s
        self.started = time.monotonic()
        self.compile_spent = 0.0
        self.slowest_compile = 0.0
        self.env = environment_info(self.device)
        with num_threads(self.threads):
            self.ceilings = measure_ceilings(self.device, tuple(dtypes)).to_dict()
        self.records: list[dict] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _skip_reason(self, case: Case) -> str:
        if self.max_seconds is not None and self.elapsed() > self.max_seconds:
            return f"time budget of {self.max_seconds:g} s spent"
        if case.impl != "compile":
            return ""
        if self.compile_budget_s is not None and self.compile_spent > self.compile_budget_s:
            return f"compile budget of {self.compile_budget_s:g} s spent ({self.compile_spent:.0f} s compiling)"
        # One cold compile can take as long as the slowest seen so far (COMPILE_GUESS_S before
        # any): don't start one that would run past the time budget.
        next_compile_s = self.slowest_compile or COMPILE_GUESS_S
        if self.max_seconds is not None and self.elapsed() + next_compile_s > self.max_seconds:
            return (f"a compile (~{self.slowest_compile or COMPILE_GUESS_S:.0f} s) would overrun the time budget "
                    f"of {self.max_seconds:g} s")
        return ""

    def run_case(self, case: Case) -> dict:
        """Profile one case and append its record (never raises for a failing case)."""
        element_size = DTYPES[case.dtype].itemsize
        common = dict(dtype=case.dtype, layout=case.layout, impl=case.impl, mode=case.mode, batch=case.batch,
                      env=self.env, cost=block_cost(case.spec, case.batch, element_size, case.mode),
                      ceilings=self.ceilings,
                      compile_backend=self.compile_backend if case.impl == "compile" else "")
        reason = unsupported_reason(case, self.device)
        skip = "" if reason else self._skip_reason(case)
        if reason or skip:
            rec = make_record(case.spec, status="unsupported" if reason else "skipped", reason=reason or skip,
                              **common)
        else:
            try:
                rec = make_record(case.spec, **common, **self._measure(case))
            except Exception as exc:  # a failing case is a result, not the end of the sweep
                rec = make_record(case.spec, status="error", reason=_first_line(exc), **common)
            finally:
                gc.collect()
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
        self.records.append(rec)
        return rec

    def _measure(self, case: Case) -> dict:
        dev, out = self.device, {}
        torch.manual_seed(0)  # the same initial weights for every impl of a block
        model = build_block(case.spec, case.impl).to(device=dev, dtype=DTYPES[case.dtype])
        model = model.to(memory_format=_memory_format(case.layout))
        use = backends.use_backend(self.fused_backend) if case.impl == "fused" else contextlib.nullcontext()
        with use:
            if case.impl == "fused":
                out["backend"] = backends.select("dwconv_se", dev)[0]
            if case.impl == "compile":
                torch._dynamo.reset()  # fresh caches: no recompile limit reached across blocks
                model = torch.compile(model, backend=self.compile_backend)
            fn = make_step(model, case, dev)
            if case.impl == "compile":
                t0 = time.perf_counter()
                try:  # the first call compiles; a failing compile still spends the budget
                    fn()
                    if dev.type == "cuda":
                        torch.cuda.synchronize(dev)
                finally:
                    out["compile_s"] = time.perf_counter() - t0
                    self.compile_spent += out["compile_s"]
                    self.slowest_compile = max(self.slowest_compile, out["compile_s"])
            stats = time_fn(fn, warmup=self.warmup, repeats=self.repeats, device=dev)
            out["stats"] = stats
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
                torch.cuda.reset_peak_memory_stats(dev)
                before = torch.cuda.memory_allocated(dev)
                fn()
                torch.cuda.synchronize(dev)
                out["peak_mem_bytes"] = torch.cuda.max_memory_allocated(dev)
                out["peak_mem_delta_bytes"] = out["peak_mem_bytes"] - before
            if self.cuda_graph and case.impl != "compile":
                try:
                    g = _cuda_graph_stats(fn, dev, min(self.warmup, 3), self.repeats)
                    out.update(graph_median_s=g.median, graph_iqr_s=g.iqr, launch_overhead_s=stats.median - g.median)
                except Exception as exc:  # capture is optional: keep the eager timing
                    out["graph_error"] = _first_line(exc)
        return out

    def run(self, cases: Sequence[Case]) -> list[dict]:
        """Profile ``cases`` in order with a progress bar; returns (and keeps) their records."""
        from tqdm.auto import tqdm  # heavy optional dependency: only a sweep draws a bar

        done = []
        bar = tqdm(total=len(cases), disable=not self.progress, desc="profile", unit="case", leave=False)
        with num_threads(self.threads), bar:
            for case in cases:
                bar.set_postfix_str(f"{case.spec.label} {case.dtype} {case.layout} {case.impl} {case.mode} "
                                    f"b{case.batch}", refresh=False)
                done.append(self.run_case(case))
                bar.update()
        return done

    def document(self, config: dict | None = None, complete: bool = True) -> dict:
        """The profile document (schema: :mod:`dartsfast.records`, kind "profile")."""
        return records.document("profile", self.env, list(self.records), complete=complete,
                                seconds=round(self.elapsed(), 3), ceilings=self.ceilings,
                                config={"device": str(self.device),
                                        "threads": self.threads or torch.get_num_threads(),
                                        "warmup": self.warmup, "repeats": self.repeats,
                                        "cuda_graph": self.cuda_graph, "compile_backend": self.compile_backend,
                                        "fused_backend": self.fused_backend, "max_seconds": self.max_seconds,
                                        "compile_budget_s": self.compile_budget_s, **(config or {})})


def profile(specs: Sequence[BlockSpec], *, dtypes=("float32",), layouts=("nchw",), impls=("eager",),
            modes=MODES, batch_sizes=(8,), device="cpu", **options) -> dict:
    """Profile every combination and return the document (options as for :class:`ProfileRun`)."""
    for name, values, allowed in (("dtype", dtypes, tuple(DTYPES)), ("layout", layouts, LAYOUTS),
                                  ("impl", impls, IMPLS), ("mode", modes, MODES)):
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise ValueError(f"unknown {name}(s) {bad or '(none given)'}; expected some of {', '.join(allowed)}")
    if not batch_sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise ValueError(f"batch sizes must be positive ints, got {list(batch_sizes)}")
    run = ProfileRun(device, dtypes, **options)
    run.run(iter_cases(specs, dtypes, layouts, impls, modes, batch_sizes))
    return run.document()
