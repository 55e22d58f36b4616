"""The project's one timer, the bandwidth ceiling it is compared with, and the machine it ran on.

Used by the benchmarks (benchmarks/harness.py), the block profiler (dartsfast.profiling) and
regression tracking (dartsfast.bench), so every number in a record is measured the same way;
it sits below all three so that none of them imports another for it:

- :func:`time_fn` — warm-up calls, then ``repeats`` (or more, to fill ``min_time_s``) timed
  calls. On CUDA each call is bracketed by its own pair of CUDA events, all recorded back to
  back and read after one synchronisation (no host sync between calls, so launch overhead
  is hidden exactly as in a real training step); on CPU by ``time.perf_counter``.
- :func:`measure_copy_bandwidth` — a large device-to-device copy timed in the same run: the
  practical DRAM ceiling a memory-bound kernel is reported against (% of it), counting read
  + write bytes. An H100 SXM copies at ~2.6–3.0 TB/s of its 3.35 TB/s peak.
- :func:`environment_info` — versions, device, driver, git commit and a CPU fingerprint.
- :func:`num_threads` — torch's CPU thread count for a block of timing, restored after.

Imports only torch and the standard library (DESIGN.md §1 layering).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import math
import os
import platform
import shutil
import subprocess
import time
from typing import Callable, Iterable

import torch

# A copy this large defeats any cache: 512 MiB ≫ the H100's 50 MB L2 (≥ 0.35 ms per copy).
DEFAULT_COPY_BYTES_CUDA = 512 << 20
DEFAULT_COPY_BYTES_CPU = 64 << 20  # ≫ a server CPU's L3, and quick on a 2-core CI runner
MAX_REPEATS = 100_000


@dataclasses.dataclass(frozen=True)
class TimingStats:
    """Summary of per-call times, all in seconds; ``samples`` keeps the raw times."""

    median: float
    q25: float
    q75: float
    iqr: float
    min: float
    mean: float
    n: int
    samples: tuple[float, ...] = ()

    @classmethod
    def from_samples(cls, samples) -> "TimingStats":
        xs = sorted(float(s) for s in samples)
        if not xs:
            raise ValueError("TimingStats needs at least one sample")
        if not all(math.isfinite(x) and x >= 0 for x in xs):
            raise ValueError(f"samples must be finite and non-negative, got {xs[:5]}...")
        q25, q75 = _sorted_quantile(xs, 0.25), _sorted_quantile(xs, 0.75)
        return cls(median=_sorted_quantile(xs, 0.5), q25=q25, q75=q75, iqr=q75 - q25, min=xs[0],
                   mean=math.fsum(xs) / len(xs), n=len(xs), samples=tuple(samples))

    def to_dict(self, samples: bool = False) -> dict:
        d = dataclasses.asdict(self)
        if not samples:
            d.pop("samples")
        else:
            d["samples"] = list(self.samples)
        return d


def quantile(xs: Iterable[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), of an iterable of numbers."""
    s = sorted(xs)
    if not s:
        raise ValueError("quantile of no samples")
    return _sorted_quantile(s, q)


def _sorted_quantile(sorted_xs: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default 'linear' method)."""
    pos = q * (len(sorted_xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def _check_device(device) -> torch.device:
    try:
        dev = torch.device(device)
    except (TypeError, RuntimeError) as exc:
        raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {device!r}") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but no CUDA device is visible")
    return dev


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int ≥ {minimum}, got {value!r}")
    return value


def time_fn(fn: Callable[[], object], *, warmup: int, repeats: int, min_time_s: float = 0.0,
            device: str | torch.device, per_repeat: bool = True,
            max_repeats: int = MAX_REPEATS) -> TimingStats:
    """Time ``fn()`` (no arguments; its result is ignored) on ``device``.

    Args:
        warmup: untimed calls first (compilation, autotuning, allocator warm-up).
        repeats: timed calls, at least; more if needed to fill ``min_time_s`` seconds
            (estimated from the warm-up), up to ``max_repeats``.
        device: where ``fn`` runs: "cpu" (perf_counter per call) or "cuda[:i]" (CUDA events).
        per_repeat: CUDA only. True: one event pair per call, so quantiles are real. False:
            one pair around all calls, for µs-short kernels where the ~2 µs per event pair
            would show; the stats then hold a single sample (the mean), n=1.
    Returns:
        TimingStats of the per-call times, in seconds.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    _check_int("warmup", warmup, 0)
    _check_int("repeats", repeats, 1)
    _check_int("max_repeats", max_repeats, repeats)
    if isinstance(min_time_s, bool) or not isinstance(min_time_s, (int, float)) or not 0 <= min_time_s < math.inf:
        raise ValueError(f"min_time_s must be a finite number ≥ 0, got {min_time_s!r}")
    dev = _check_device(device)
    if dev.type == "cuda":
        with torch.cuda.device(dev):
            return _time_cuda(fn, warmup, repeats, float(min_time_s), per_repeat, max_repeats)
    return _time_cpu(fn, warmup, repeats, float(min_time_s), max_repeats)


def _n_repeats(repeats: int, min_time_s: float, estimate_s: float, max_repeats: int) -> int:
    if min_time_s <= 0:
        return repeats
    needed = math.ceil(min_time_s / max(estimate_s, 1e-9))
    return max(repeats, min(needed, max_repeats))


def _time_cpu(fn, warmup, repeats, min_time_s, max_repeats) -> TimingStats:
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    estimate = (time.perf_counter() - t0) / warmup if warmup else 0.0
    if warmup == 0 and min_time_s > 0:  # no warm-up to estimate from: one call outside the stats
        t0 = time.perf_counter()
        fn()
        estimate = time.perf_counter() - t0
    samples = []
    for _ in range(_n_repeats(repeats, min_time_s, estimate, max_repeats)):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return TimingStats.from_samples(samples)


def _time_cuda(fn, warmup, repeats, min_time_s, per_repeat, max_repeats) -> TimingStats:
    estimate = 0.0
    if warmup:
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(warmup):
            fn()
        end.record()
        torch.cuda.synchronize()
        estimate = start.elapsed_time(end) / 1e3 / warmup
    elif min_time_s > 0:
        # No warm-up to estimate from: one call outside the stats, as on the CPU.
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        estimate = time.perf_counter() - t0
    n = _n_repeats(repeats, min_time_s, estimate, max_repeats)
    torch.cuda.synchronize()
    if per_repeat:
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        return TimingStats.from_samples([s.elapsed_time(e) / 1e3 for s, e in events])
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(n):
        fn()
    end.record()
    torch.cuda.synchronize()
    return TimingStats.from_samples([start.elapsed_time(end) / 1e3 / n])


@contextlib.contextmanager
def num_threads(n: int | None):
    """``torch.set_num_threads(n)`` inside the block (no change for None), restored after.

    On a shared CPU runner one thread is the robust choice: an OpenMP team waits out any
    descheduled sibling's time slice (0.3 ms calls measured 13–240 ms with 2 threads on 2
    busy cores)."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def measure_copy_bandwidth(device: str | torch.device, nbytes: int | None = None, *,
                           warmup: int = 3, repeats: int = 20) -> float:
    """Bytes per second of a device-to-device copy of ``nbytes`` (read + write: 2·nbytes
    per copy), median of ``repeats``. Default size: 512 MiB on CUDA, 64 MiB on CPU."""
    dev = _check_device(device)
    if nbytes is None:
        nbytes = DEFAULT_COPY_BYTES_CUDA if dev.type == "cuda" else DEFAULT_COPY_BYTES_CPU
    _check_int("nbytes", nbytes, 1024)
    n = nbytes // 4  # float32 elements: copy_ takes its fast vectorised path
    src = torch.ones(n, dtype=torch.float32, device=dev)
    dst = torch.empty_like(src)
    stats = time_fn(lambda dst=dst, src=src: dst.copy_(src), warmup=warmup, repeats=repeats, device=dev)
    del src, dst
    return 2 * 4 * n / stats.median


def _run(*cmd: str, cwd: str | None = None) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=cwd)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    # Read the installed metadata instead of importing: importing triton here would fix
    # TRITON_INTERPRET for the whole process as a side effect.
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


def environment_info(device: str | torch.device | None = None) -> dict:
    """Versions, device, git commit and machine fingerprint, JSON-serialisable.

    ``device`` (default: cuda if visible, else cpu) picks the GPU to name.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = _check_device(device)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # dartsfast/timing.py → checkout
    cpu_model, cpu_count = _cpu_model(), os.cpu_count() or 0
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "cuda": torch.version.cuda or "",
        "device_type": dev.type,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_model,
        "capability": ".".join(map(str, torch.cuda.get_device_capability(dev))) if dev.type == "cuda" else "",
        "driver": "",
        "git_commit": _run("git", "rev-parse", "HEAD", cwd=repo),
        "git_dirty": bool(_run("git", "status", "--porcelain", "--untracked-files=no", cwd=repo)),
        "cpu_model": cpu_model,
        "cpu_count": cpu_count,
    }
    if shutil.which("nvidia-smi"):
        info["driver"] = _run("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader").split("\n")[0]
    # Records are compared only within one machine class: this string names it.
    gpu = f"{info['device_name']} | " if dev.type == "cuda" else ""
    info["machine"] = f"{gpu}{cpu_model} x{cpu_count}"
    return info
