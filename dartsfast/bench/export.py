"""Bench records in pytest-benchmark's JSON layout (``bench run --format pytest-benchmark``),
so the dashboards users already run read them (github-action-benchmark's ``pytest`` tool,
Bencher's and CodSpeed's importers, ``pytest-benchmark compare``).

The layout (pytest-benchmark 4–5): ``machine_info``, ``commit_info``, ``benchmarks`` — one
entry per benchmark with ``name``, ``fullname``, ``params`` and ``stats`` (min, max, mean,
stddev, median, iqr, q1, q3, rounds, iterations, ops, total, outliers...) in seconds per
call — ``datetime`` and ``version``. The stats come from every timed call of the run (the
records' samples), computed with numpy; the calibrated ratio the gate compares goes into
``extra_info``.
"""
from __future__ import annotations

import platform

import numpy as np

from dartsfast.bench.baselines import describe_key, record_key

LAYOUT_VERSION = "5.1.0"  # the pytest-benchmark JSON layout written (unchanged since 4.0)


def _stats(samples) -> dict:
    x = np.asarray(samples, dtype=np.float64)
    if x.size < 2:
        raise ValueError(f"need ≥ 2 timed calls for statistics, got {x.size}")
    q1, median, q3 = np.quantile(x, [0.25, 0.5, 0.75])
    iqr = q3 - q1
    mean, stddev = float(x.mean()), float(x.std(ddof=1))
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    inside = x[(x >= low) & (x <= high)]
    return {"min": float(x.min()), "max": float(x.max()), "mean": mean, "stddev": stddev, "rounds": int(x.size),
            "median": float(median), "iqr": float(iqr), "q1": float(q1), "q3": float(q3),
            "iqr_outliers": int(((x < low) | (x > high)).sum()),
            "stddev_outliers": int((np.abs(x - mean) > stddev).sum()),
            "outliers": f"{int((np.abs(x - mean) > stddev).sum())};{int(((x < low) | (x > high)).sum())}",
            "ld15iqr": float(inside.min()), "hd15iqr": float(inside.max()), "ops": 1.0 / mean,
            "total": float(x.sum()), "iterations": 1}


def to_pytest_benchmark(doc: dict) -> dict:
    """``doc`` (a ``bench run`` document whose records keep their samples) in pytest-benchmark's
    layout; records that did not run are left out (pytest-benchmark has no place for them)."""
    env = doc.get("environment", {})
    benchmarks = []
    for rec in doc["records"]:
        if rec.get("status") != "ok":
            continue
        samples = (rec.get("samples") or {}).get("bench")
        if not samples:
            raise ValueError(f"{rec['name']}: the record has no samples; run `bench run --keep-samples` "
                             f"(--format pytest-benchmark keeps them)")
        params = dict(rec.get("params", {}))
        label = describe_key(record_key(rec))
        benchmarks.append({
            "group": f"dartsfast-{doc.get('suite', 'bench')}", "name": rec["name"],
            "fullname": f"dartsfast.bench::{label}", "params": params,
            "param": ",".join(f"{k}={v}" for k, v in params.items()),
            "extra_info": {"provider": rec.get("provider"), "dtype": rec.get("dtype"), "layout": rec.get("layout"),
                           "calibrated_ratio": (rec.get("ratio") or {}).get("value"),
                           "device_class": rec.get("device_class"), "planted_slowdown": rec.get("planted_slowdown")},
            "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": len(samples), "max_time": None,
                        "min_time": None, "warmup": True},
            "stats": _stats(samples)})
    return {
        "machine_info": {"node": platform.node(), "processor": env.get("cpu_model", platform.processor()),
                         "machine": env.get("arch", platform.machine()),
                         "python_compiler": platform.python_compiler(),
                         "python_implementation": platform.python_implementation(),
                         "python_version": env.get("python", platform.python_version()),
                         "python_build": list(platform.python_build()), "release": platform.release(),
                         "system": platform.system(),
                         "cpu": {"brand_raw": env.get("cpu_model", ""), "count": env.get("cpu_count"),
                                 "arch": env.get("arch", "")},
                         "device_class": doc.get("device_class", ""), "torch": env.get("torch", "")},
        "commit_info": {"id": env.get("git_commit", ""), "time": None, "author_time": None,
                        "dirty": bool(env.get("git_dirty")), "project": "dartsfast", "branch": None},
        "benchmarks": benchmarks,
        "datetime": env.get("date", ""),
        "version": LAYOUT_VERSION,
    }
