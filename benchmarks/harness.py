"""Shared harness for benchmarks/bench_*.py (DESIGN.md §8).

A benchmark script does::

    args = harness.parse_args("what it measures")
    with harness.BenchRun("weighted_sum", args) as run:   # environment + copy ceiling
        run.time(fn, params={"K": 8, "M": 2**24}, provider="triton", dtype=torch.bfloat16,
                 layout="flat", nbytes=exact_bytes_moved)
    # on exit: the document (dartsfast.records, kind "bench") written atomically to --out
    # (also on error / SIGTERM, marked incomplete), a Markdown table printed (and written
    # next to the JSON as .md)

Command line every script accepts (benchmarks/gpu_suite.sh calls ``bench_X.py --out FILE``):
``--out FILE.json``, ``--quick`` (tiny sizes; automatic without CUDA), ``--repeats N``,
``--warmup N``, ``--max-seconds S`` (time budget: later cases are recorded as skipped),
``--device cpu|cuda[:i]``.

Records are :func:`dartsfast.records.bench_record`'s: name, params, provider, dtype, layout,
device name, median/IQR/quartiles/min/mean of the per-call time (s), n, bytes, GB/s, % of
the copy ceiling measured in the same run, versions, git commit, device class + machine
fingerprint, status ("ok" / "error" / "skipped") and any extra fields. ``dartsfast bench
compare`` reads these files too (raw medians; the `bench run` suites add a calibrated ratio).
"""
from __future__ import annotations

import argparse
import gc
import math
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # benchmark this checkout even without `pip install -e .`
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from dartsfast import records  # noqa: E402
from dartsfast._io import atomic_write  # noqa: E402
from dartsfast.profiling.ceilings import CPU_MATMUL_SIZE, CUDA_MATMUL_SIZE, matmul_flops_per_s  # noqa: E402
from dartsfast.records import dtype_name  # noqa: E402
from dartsfast.timing import (  # noqa: E402
    DEFAULT_COPY_BYTES_CPU,
    DEFAULT_COPY_BYTES_CUDA,
    environment_info,
    measure_copy_bandwidth,
    time_fn,
)

SCHEMA_VERSION = records.SCHEMA  # what the documents written here carry
STATUSES = records.BENCH_STATUSES
make_record = records.bench_record  # one benchmark record; time fields are None unless status is "ok"


def add_compile_backend_option(parser: argparse.ArgumentParser) -> None:
    """``--compile-backend`` for scripts that time a ``torch.compile`` provider."""
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend (default: inductor on CUDA, aot_eager on CPU)")


def compile_backend(args: argparse.Namespace) -> tuple[str, str]:
    """(torch.compile backend, provider label): inductor on CUDA; aot_eager on CPU, where
    inductor's C++ compile of every shape would take most of a CI run."""
    name = args.compile_backend or ("inductor" if args.device.type == "cuda" else "aot_eager")
    return name, "compile" if name == "inductor" else f"compile:{name}"


def raiser(exc: BaseException) -> Callable[[], None]:
    """A provider that could not be built: timing it records the error as the case's status."""
    def fn():
        raise exc
    return fn


def free_memory(device: torch.device) -> None:
    """Drop one case's tensors before the next allocates (full grids reach GBs on a GPU)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def parse_args(description: str, argv: list[str] | None = None,
               configure: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The common options (plus any ``configure`` adds); ``quick`` is forced on without CUDA."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=None, help="write the records here (JSON)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CPU / CI); automatic without CUDA")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per case (script default)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls per case (script default)")
    parser.add_argument("--max-seconds", type=float, default=100.0,
                        help="time budget; cases after it are recorded as skipped (default 100)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    if configure is not None:
        configure(parser)
    args = parser.parse_args(argv)
    for name in ("repeats", "warmup"):
        value = getattr(args, name)
        if value is not None and value < (1 if name == "repeats" else 0):
            parser.error(f"--{name} must be ≥ {1 if name == 'repeats' else 0}, got {value}")
    if not args.max_seconds > 0:
        parser.error(f"--max-seconds must be > 0, got {args.max_seconds}")
    if args.out is not None and args.out.is_dir():
        parser.error(f"--out {args.out} is a directory; give a file name such as {args.out / 'bench.json'}")
    try:
        args.device = torch.device(args.device)
    except RuntimeError as exc:
        parser.error(f"--device {args.device!r}: {exc}")
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but no CUDA device is visible")
    if args.device.type not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda[:i], got {args.device}")
    args.quick = args.quick or args.device.type != "cuda"
    return args


def _fmt(value, scale: float = 1.0, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value * scale:.{digits}f}"


def _fmt_extra(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if math.isfinite(value) else "–"
    return "–" if value is None else str(value)


def markdown_table(records: Iterable[dict], extra_columns: Iterable[str] = ()) -> str:
    """A Markdown table of the records: one row each, times in µs."""
    extra_columns = list(extra_columns)
    head = ["name", "params", "provider", "dtype", "layout", "median µs", "IQR µs", "GB/s", "% ceil",
            *extra_columns, "status"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        params = " ".join(f"{k}={v}" for k, v in r["params"].items())
        cells = [r["name"], params, r["provider"], r["dtype"], r["layout"], _fmt(r["median_s"], 1e6),
                 _fmt(r["iqr_s"], 1e6), _fmt(r["gb_per_s"]), _fmt(r["pct_of_ceiling"]),
                 *(_fmt_extra(r.get(c)) for c in extra_columns),
                 r["status"] + (f": {r['error'][:60]}" if r["error"] else "")]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class BenchRun:
    """Collects the records of one benchmark script; writes them when the block ends.

    Measures the environment and the copy-bandwidth ceiling on entry. ``time`` never
    raises for a failing case: it records status "error" (or "skipped" once the time
    budget is spent), so one broken provider cannot lose the other results.
    """

    def __init__(self, name: str, args: argparse.Namespace, *, ceiling_bytes: int | None = None,
                 extra_columns: Iterable[str] = ()) -> None:
        self.name, self.args = name, args
        self.device = args.device
        self.extra_columns = list(extra_columns)
        self.records: list[dict] = []
        self.started = time.monotonic()
        self.env = environment_info(self.device)
        # Quick runs copy 16 MiB 6 times (~0.1 s on a 2-core CI runner); full runs the
        # timing module's default (512 MiB on CUDA), 23 times, ~20 ms on an H100.
        default = DEFAULT_COPY_BYTES_CUDA if self.device.type == "cuda" else DEFAULT_COPY_BYTES_CPU
        self.ceiling_bytes = ceiling_bytes or ((16 << 20) if args.quick else default)
        reps = dict(warmup=1, repeats=5) if args.quick else {}
        self.ceiling = measure_copy_bandwidth(self.device, self.ceiling_bytes, **reps)
        # The compute ceiling beside it (the ops are memory-bound, but a record should say how
        # far from both roofs it is): bf16 8192² on CUDA (~1.5 ms), fp32 256² on a CPU.
        cuda = self.device.type == "cuda"
        self.matmul_dtype = torch.bfloat16 if cuda else torch.float32
        self.matmul_flops = matmul_flops_per_s(self.device, self.matmul_dtype,
                                               CUDA_MATMUL_SIZE if cuda else CPU_MATMUL_SIZE, **reps)
        self._previous_sigterm = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def over_budget(self) -> bool:
        return self.elapsed() > self.args.max_seconds

    def time(self, fn: Callable[[], object], *, params: dict, provider: str, dtype, layout: str = "flat",
             nbytes: int | None = None, warmup: int = 3, repeats: int = 20, min_time_s: float = 0.0,
             name: str | None = None, extra: dict | None = None) -> dict:
        """Time ``fn`` (``--warmup`` / ``--repeats`` override the defaults) and append its record.

        ``name`` defaults to the run's name (e.g. "weighted_sum/backward" for one mode).
        """
        common = dict(name=name or self.name, params=params, provider=provider, dtype=dtype, layout=layout,
                      env=self.env, nbytes=nbytes, ceiling_bytes_per_s=self.ceiling, extra=extra)
        if self.over_budget():
            rec = make_record(status="skipped", error=f"time budget of {self.args.max_seconds:.0f} s spent", **common)
        else:
            try:
                stats = time_fn(fn, warmup=self.args.warmup if self.args.warmup is not None else warmup,
                                repeats=self.args.repeats or repeats, min_time_s=min_time_s, device=self.device)
                rec = make_record(stats=stats, **common)
            except Exception as exc:  # a broken provider is a result, not the end of the run
                rec = make_record(status="error", error=f"{type(exc).__name__}: {exc}".splitlines()[0], **common)
        self.records.append(rec)
        return rec

    def payload(self, complete: bool) -> dict:
        """The JSON document; NaN/inf (not valid JSON) become null so the write cannot fail."""
        return _finite(records.document(
            "bench", self.env, self.records, benchmark=self.name, complete=complete, quick=self.args.quick,
            seconds=round(self.elapsed(), 2),
            ceiling={"kind": "device-to-device copy", "bytes_per_s": self.ceiling, "nbytes": self.ceiling_bytes,
                     "matmul_flops_per_s": self.matmul_flops, "matmul_dtype": dtype_name(self.matmul_dtype)}))

    def finish(self, complete: bool = True) -> dict:
        """Write the JSON (+ .md beside it) if ``--out`` was given, print the table; return the payload."""
        payload = self.payload(complete)
        table = (f"## {self.name} on {self.env['device_name']} (copy ceiling {self.ceiling / 1e9:.1f} GB/s, "
                 f"{dtype_name(self.matmul_dtype)} matmul {self.matmul_flops / 1e12:.2f} TFLOP/s"
                 f"{'' if complete else '; INCOMPLETE'})\n\n"
                 + markdown_table(self.records, self.extra_columns))
        if self.args.out is not None:
            records.write_document(self.args.out, payload)
            text = (table + "\n").encode()
            atomic_write(str(self.args.out.with_suffix(".md")), lambda f: f.write(text))
        print(table, flush=True)
        return payload

    def __enter__(self) -> "BenchRun":
        # gpu_suite.sh stops an overrunning step with SIGTERM: turn it into an exception so
        # __exit__ still writes what was measured (marked incomplete).
        def on_sigterm(signum, frame):
            raise SystemExit(128 + signum)

        self._previous_sigterm = signal.signal(signal.SIGTERM, on_sigterm)
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        signal.signal(signal.SIGTERM, self._previous_sigterm or signal.SIG_DFL)
        self.finish(complete=kind is None)
        return False
