"""Run a suite: every benchmark timed interleaved with a calibration workload.

Why a calibration workload: on a shared CI machine the speed we get drifts by tens of
percent within a minute (other jobs, frequency, memory traffic). Each benchmark call is
paired with a call of a fixed workload timed right next to it, and the record carries the
ratio benchmark / calibration unit (low quantiles of both, pooled over the run: see
:mod:`dartsfast.bench.stats`). Whatever slows both (a busy neighbour, a slower clock) cancels in the
ratio; a change to the benchmarked code does not. Measured over 6 runs of unchanged code on
this 2-core runner, both cores busy with other jobs: raw medians moved 5–50% run to run,
the calibrated ratio 0.1–1.9%. Details that make the pairs comparable:

- the calibration call repeats its unit ``units`` times (fixed per benchmark in
  :mod:`dartsfast.bench.suites`) to last about as long as the benchmark call, so both are exposed to
  scheduler preemption alike;
- pairs alternate their order (calibration first, then benchmark first) so cache warmth
  favours neither side;
- the pairs are spread over ``ROUNDS`` rounds through the suite (three moments per benchmark);
- on a CPU torch runs one thread (``threads``; recorded in params): measured on this 2-core
  runner with both cores busy with other jobs, a 2-thread weighted_sum forward took 56 ms
  instead of 0.09 ms — an OpenMP team stalls whenever one of its threads is descheduled.

A planted slowdown for tests and evidence: ``DARTSFAST_BENCH_PLANT_SLOWDOWN=name:fraction``
(comma-separated for several) adds ``fraction`` × the benchmark's own time of extra work to
each call of that benchmark (a CPU spin loop; ``torch.cuda._sleep`` on a GPU), recorded in
the record as ``planted_slowdown``.
"""
from __future__ import annotations

import contextlib
import math
import os
import statistics
import time
from typing import Callable

import torch

from dartsfast import backend, records
from dartsfast.bench.stats import calibrated_ratio
from dartsfast.bench.suites import BenchSpec, provider, select, suite
from dartsfast.timing import TimingStats, environment_info, measure_copy_bandwidth, num_threads, quantile, time_fn

PLANT_ENV = "DARTSFAST_BENCH_PLANT_SLOWDOWN"


def parse_plant(text: str | None, known: list[str]) -> dict[str, float]:
    """``"name:0.2,other:0.1"`` → {name: 0.2, ...}; ValueError naming the variable and problem."""
    if not text or not text.strip():
        return {}
    out = {}
    for item in text.split(","):
        name, sep, frac = item.strip().rpartition(":")
        try:
            value = float(frac)
        except ValueError:
            value = math.nan
        if not sep or not name or not 0 < value <= 10:
            raise ValueError(f"{PLANT_ENV}={text!r}: expected NAME:FRACTION with 0 < FRACTION ≤ 10, "
                             f"e.g. weighted_sum/forward:0.2; got {item!r}")
        if name not in known:
            raise ValueError(f"{PLANT_ENV} names unknown benchmark {name!r}; known: {', '.join(known)}")
        out[name] = value
    return out


class _Calibration:
    """``units`` × (square matmul + memory copy + a tiny autograd graph): compute-bound,
    memory-bound and overhead-bound (dispatcher, Python, autograd engine) parts, because the
    benchmarks span all three and a busy neighbour slows each differently. With only the
    first two, the overhead-bound search step's ratio scattered 4–6% run to run (1.7% with).
    CPU: 96² fp32 matmul (~19 µs) + 512 KiB copy (~12 µs) + grad of sum(sin(w·x)) over 16
    elements (~60 µs): ~93 µs per unit. GPU: 2048² bf16 matmul (~29 µs on an H100) + 32 MiB
    copy (~24 µs) + the same tiny graph (launch-bound, ~30 µs)."""

    def __init__(self, device: torch.device) -> None:
        cuda = device.type == "cuda"
        n, copy_bytes, dtype = (2048, 32 << 20, torch.bfloat16) if cuda else (96, 512 << 10, torch.float32)
        gen = torch.Generator(device=device).manual_seed(0)
        self.a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
        self.b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
        self.out = torch.empty_like(self.a)
        self.src = torch.randn(copy_bytes // 4, device=device, generator=gen)
        self.dst = torch.empty_like(self.src)
        self.w = torch.randn(16, device=device, generator=gen).requires_grad_(True)
        self.x = torch.randn(16, device=device, generator=gen)
        self.units = 1

    def __call__(self) -> None:
        for _ in range(self.units):
            torch.mm(self.a, self.b, out=self.out)
            self.dst.copy_(self.src)
            torch.autograd.grad((self.w * self.x).sin().sum(), self.w)


def _call_time(fn, device) -> float:
    return time_fn(fn, warmup=0, repeats=1, device=device).median


def _warm(fn, device, min_calls: int, min_s: float, max_calls: int) -> list[float]:
    """Untimed-for-the-record calls (allocator, caches, autotuning); their times estimate a call."""
    times, t0 = [], time.perf_counter()
    while len(times) < max_calls and (len(times) < min_calls or time.perf_counter() - t0 < min_s):
        times.append(_call_time(fn, device))
    return times


def _plant(fn, fraction: float, call_s: float, device) -> Callable[[], object]:
    """``fn`` followed by extra work lasting ``fraction`` × ``call_s`` (the unloaded call time)."""
    if device.type == "cuda":
        probe = 1_000_000
        cycles_per_s = probe / _call_time(lambda: torch.cuda._sleep(probe), device)
        cycles = max(1, int(fraction * call_s * cycles_per_s))

        def planted():
            out = fn()
            torch.cuda._sleep(cycles)
            return out
        return planted
    probe = 200_000
    loop_s = min(_call_time(lambda: _spin(probe), device) for _ in range(5)) / probe
    iters = max(1, int(fraction * call_s / loop_s))

    def planted():
        out = fn()
        _spin(iters)
        return out
    return planted


def _spin(n: int) -> None:
    for _ in range(n):
        pass


def time_interleaved(fn, calib: _Calibration, device, *, units: int, pairs: int,
                     warmup_s: float = 0.1) -> tuple[TimingStats, TimingStats]:
    """(benchmark call times, calibration per-unit times): ``pairs`` pairs, alternating which
    side goes first, after ≥ 3 warm-up calls (≥ ``warmup_s``) of each."""
    calib.units = units
    _warm(fn, device, 3, warmup_s, 50)
    _warm(calib, device, 3, warmup_s, 50)
    bench, unit = [], []
    for i in range(pairs):
        if i % 2:
            b = _call_time(fn, device)
            c = _call_time(calib, device)
        else:
            c = _call_time(calib, device)
            b = _call_time(fn, device)
        bench.append(b)
        unit.append(c / units)
    return TimingStats.from_samples(bench), TimingStats.from_samples(unit)


def bench_record(spec: BenchSpec, *, env: dict, provider_name: str, params: dict, status: str = "ok",
                 error: str = "", stats: TimingStats | None = None, nbytes: int | None = None,
                 ceiling: float | None = None, extra: dict | None = None) -> dict:
    """The record (:func:`dartsfast.records.bench_record`, as benchmarks/harness.py's) of ``spec``."""
    return records.bench_record(name=spec.name, params=params, provider=provider_name, dtype=spec.dtype,
                                layout=spec.layout, env=env, stats=stats, nbytes=nbytes, ceiling_bytes_per_s=ceiling,
                                status=status, error=error, extra=extra)


SUITE_BACKEND = {"quick": "torch", "full": None}  # quick: the reference paths; full: dispatch (auto)
# Each benchmark's pairs are split over ROUNDS rounds that visit every benchmark in turn, so a
# benchmark is sampled at three moments ~5 s apart and a quiet moment in any of them counts:
# pooling the rounds' pairs, mbconv's run-to-run sd was 0.4% against 3.7% for the median of
# the per-round ratios (one run had a neighbour busy through two of its rounds).
ROUNDS = 3


class _Case:
    def __init__(self, spec: BenchSpec, common: dict) -> None:
        self.spec, self.common = spec, common
        self.fn = self.nbytes = None
        self.error, self.status = "", "ok"
        self.rounds: list[tuple[TimingStats, TimingStats]] = []


def _summarise(case: _Case, ceiling: float, plant: dict, keep_samples: bool, max_seconds: float) -> dict:
    spec = case.spec
    if not case.rounds:
        return bench_record(spec, status="error" if case.error else "skipped",
                            error=case.error or f"time budget of {max_seconds:g} s spent", **case.common)
    bench = [t for b, _ in case.rounds for t in b.samples]
    unit = [t for _, u in case.rounds for t in u.samples]
    ratio = calibrated_ratio(bench, unit)  # pooled over the rounds: see dartsfast.bench.stats
    values = [quantile(b.samples, ratio["quantile"]) / quantile(u.samples, ratio["quantile"]) for b, u in case.rounds]
    ratio.update(rounds=len(values), round_values=values,
                 round_rel_sd=statistics.stdev(values) / statistics.fmean(values) if len(values) > 1 else None)
    extra = {"ratio": ratio, "planted_slowdown": plant.get(spec.name, 0.0),
             "calibration": {"units": spec.units, "unit_median_s": statistics.median(unit)}}
    if keep_samples:
        extra["samples"] = {"bench": bench, "unit": unit}
    return bench_record(spec, stats=TimingStats.from_samples(bench), nbytes=case.nbytes, ceiling=ceiling,
                        extra=extra, status="ok" if not case.error else "error", error=case.error, **case.common)


def run_suite(suite_name: str = "quick", *, device: str | torch.device = "cpu", names=(),
              threads: int | None = None, max_seconds: float = math.inf, pairs_scale: float = 1.0,
              rounds: int = ROUNDS, keep_samples: bool = False, log: Callable[[str], None] = lambda s: None) -> dict:
    """Time every benchmark of the suite (or those in ``names``); return the result document.

    A benchmark that fails is recorded with status "error" (the others still run); once
    ``max_seconds`` are spent, no further benchmark round starts: a benchmark keeps the rounds
    it has (``ratio.rounds`` says how many), one never timed is recorded as "skipped".
    ``pairs_scale`` scales every benchmark's pair count (tests use
    fewer; ≥ 10 pairs per round are kept); ``keep_samples`` stores the raw times.
    """
    device = torch.device(device)
    specs = select(suite(suite_name), list(names))
    plant = parse_plant(os.environ.get(PLANT_ENV), [s.name for s in suite(suite_name)])
    if threads is None:
        threads = 1 if device.type == "cpu" else None
    if not (isinstance(pairs_scale, (int, float)) and 0 < pairs_scale <= 100):
        raise ValueError(f"pairs_scale must be in (0, 100], got {pairs_scale!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= 20:
        raise ValueError(f"rounds must be an int in [1, 20], got {rounds!r}")
    started = time.monotonic()
    env = environment_info(device)
    env["arch"] = os.uname().machine
    env["threads"] = threads or torch.get_num_threads()
    chosen = SUITE_BACKEND[suite_name]
    with num_threads(threads), (backend.use_backend(chosen) if chosen else contextlib.nullcontext()):
        ceiling = measure_copy_bandwidth(device, (16 << 20) if device.type == "cpu" else None, warmup=1, repeats=5)
        calib = _Calibration(device)
        _warm(calib, device, 3, 0.3, 10_000)  # clocks up, allocator and caches warm before the first benchmark
        cases = []
        for spec in specs:
            params = dict(spec.sizes, **({"threads": env["threads"]} if device.type == "cpu" else {}))
            case = _Case(spec, dict(env=env, params=params, provider_name=_safe_provider(spec, device)))
            try:
                case.fn, case.nbytes = spec.build(device, spec.dtype, spec.layout, **spec.sizes)
                if spec.name in plant:
                    # The plant's size: the call's time as the ratio sees it — its fastest calls
                    # when interleaved with the calibration (caches as in the run). Sized from
                    # standalone calls it came out 15% instead of 20% for Fused-MBConv.
                    probe, _ = time_interleaved(case.fn, calib, device, units=spec.units, pairs=30)
                    case.fn = _plant(case.fn, plant[spec.name], quantile(probe.samples, 0.1), device)
            except Exception as exc:  # one broken benchmark is a result, not the end of the run
                case.error = _first_line(exc)
            cases.append(case)
        for r in range(rounds):
            for case in cases:
                if time.monotonic() - started > max_seconds:
                    break  # what is left of the budget is for writing the results
                if case.error:
                    continue
                pairs = max(10, round(case.spec.pairs * pairs_scale / rounds))
                try:
                    case.rounds.append(time_interleaved(case.fn, calib, device, units=case.spec.units, pairs=pairs,
                                                        warmup_s=0.1 if r == 0 else 0.01))
                except Exception as exc:
                    case.error = _first_line(exc)
        recs = []
        for case in cases:
            recs.append(_summarise(case, ceiling, plant, keep_samples, max_seconds))
            log(_line(recs[-1]))
            case.fn = None
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return records.document("bench", env, recs, suite=suite_name, complete=all(r["status"] == "ok" for r in recs),
                            seconds=round(time.monotonic() - started, 2), rounds=rounds,
                            ceiling={"kind": "device-to-device copy", "bytes_per_s": ceiling}, planted=plant)


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _safe_provider(spec: BenchSpec, device) -> str:
    try:
        return provider(spec, device)
    except Exception as exc:  # noqa: BLE001 - recorded in the name; the run reports the error
        return f"unavailable ({type(exc).__name__})"


def _line(rec: dict) -> str:
    if rec["status"] != "ok":
        return f"{rec['name']:32s} {rec['status']}: {rec['error']}"
    r = rec["ratio"]
    spread = "" if r["round_rel_sd"] is None else f", rounds sd {100 * r['round_rel_sd']:.1f}%"
    iqr_pct = 100 * rec['iqr_s'] / rec['median_s']
    return (f"{rec['name']:32s} median {rec['median_s'] * 1e3:8.3f} ms (IQR {iqr_pct:3.0f}%)"
            f"  ratio {r['value']:8.3f} (±{100 * r['rel_se']:.1f}%{spread})  n={r['n']}")
