"""``gate_rates.py --synthetic``: how often ``dartsfast bench ab`` would cry wolf or miss a
planted slowdown, on synthetic timings whose noise is the per-process noise *measured* on
this machine, resampled. No timing happens here: it takes seconds, and the figures are the
statistics' rates, not a claim about one more run.

Measured noise: for every benchmark, the log of each process's calibrated ratio minus the
median of its side (``bench ab`` reports: base and head processes of A/A runs; gate_rates
results: each fresh-process run's change against the run's first, minus their median).
A synthetic run draws ``per_side`` base and head values per benchmark with replacement,
multiplies the planted benchmark's head values by 1 + fraction, and judges every benchmark
with :func:`dartsfast.bench.ab_stats.judge`, as ``bench ab`` does.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from dartsfast._io import atomic_write, write_json
from dartsfast.bench import ab_stats


def measured_noise(paths) -> dict[str, np.ndarray]:
    """{benchmark: log deviations of single processes from their side's median}."""
    out: dict[str, list] = {}
    for path in paths:
        doc = json.loads(Path(path).read_text())
        if doc.get("kind") == "bench_ab":
            planted = doc.get("planted") or ""
            for row in doc["rows"]:
                sides = [row.get("base_values") or []]
                if row["name"] not in planted:
                    sides.append(row.get("head_values") or [])
                for values in sides:
                    if len(values) >= 2:
                        logs = np.log(values)
                        out.setdefault(row["name"], []).extend(logs - np.median(logs))
        elif "runs" in doc:  # gate_rates.py results: change of each run against one base run
            changes: dict[str, list] = {}
            for run in doc["runs"]:
                for name, row in run["rows"].items():
                    if name not in run.get("planted", {}) and row.get("change") is not None:
                        changes.setdefault(name, []).append(math.log1p(row["change"]))
            for name, logs in changes.items():
                out.setdefault(name, []).extend(np.asarray(logs) - np.median(logs))
        else:
            raise ValueError(f"{path}: neither a bench ab report nor gate_rates results")
    return {name: np.asarray(v) for name, v in out.items() if len(v) >= 4}


def synthetic_rates(noise: dict, plant: str, fractions=(0.0, 0.10, 0.20), runs: int = 20, sets: int = 200,
                    per_side: int = 4, seed: int = 0) -> dict:
    """Per plant fraction: flagged runs per set of ``runs`` (any benchmark for A/A, the planted
    one otherwise), their mean, and how often a set meets the issue's targets."""
    if plant not in noise:
        raise ValueError(f"no measured noise for the planted benchmark {plant!r}; have {', '.join(noise)}")
    rng = np.random.default_rng(seed)
    out = {}
    for fraction in fractions:
        per_set = []
        for _ in range(sets):
            flagged = 0
            for _ in range(runs):
                hit = False
                for name, dev in noise.items():
                    base = np.exp(rng.choice(dev, per_side))
                    head = np.exp(rng.choice(dev, per_side)) * (1 + fraction if name == plant else 1.0)
                    verdict = ab_stats.judge(base, head, bootstrap=False).verdict
                    if verdict == "regression" and (fraction == 0 or name == plant):
                        hit = True
                flagged += hit
            per_set.append(flagged)
        per_set = np.asarray(per_set)
        target = (per_set == 0) if fraction == 0 else (per_set >= runs - 1) if fraction < 0.15 else (per_set == runs)
        out[f"{fraction:g}"] = {"fraction": fraction, "flagged_mean": float(per_set.mean()),
                                "flagged_max": int(per_set.max()), "flagged_min": int(per_set.min()),
                                "sets_meeting_target": float(target.mean())}
    return out


def main(args) -> int:
    noise = measured_noise(args.synthetic)
    plant = next(iter(args.plant_map))
    rates = synthetic_rates(noise, plant, runs=args.runs, sets=args.sets)
    spread = {n: float(np.std(d, ddof=1)) for n, d in noise.items()}
    lines = [f"## bench ab on synthetic timings of measured noise ({', '.join(p.name for p in args.synthetic)})", "",
             f"{args.sets} sets of {args.runs} runs, 4 processes a side; planted: {plant}.", "",
             "| benchmark | processes measured | sd of one process |", "|---|---|---|"]
    lines += [f"| {n} | {len(noise[n])} | {100 * spread[n]:.2f}% |" for n in noise]
    lines += ["", "| planted | runs flagged per set of 20 (mean, min–max) | sets meeting the target |", "|---|---|---|"]
    goal = {"0": "0 of 20 (A/A)", "0.1": "≥ 19 of 20", "0.2": "20 of 20"}
    for key, r in rates.items():
        lines.append(f"| {100 * r['fraction']:.0f}% | {r['flagged_mean']:.2f} ({r['flagged_min']}–{r['flagged_max']}) "
                     f"| {100 * r['sets_meeting_target']:.1f}% ({goal.get(key, '')}) |")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(str(args.out), {"sources": [str(p) for p in args.synthetic], "plant": plant, "runs": args.runs,
                                   "sets": args.sets, "noise_sd": spread, "rates": rates})
        atomic_write(str(args.out.with_suffix(".md")), lambda f: f.write(report.encode()))
    return 0
