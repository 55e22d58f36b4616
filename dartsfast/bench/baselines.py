"""Baselines for regression tracking: what identifies a benchmark across runs, and a
baseline (``benchmarks/baselines/<device-class>.json``) made of several runs.

Records are only ever compared within one device class (:func:`dartsfast.records.device_class`,
which every record carries); within it, a benchmark is matched on :func:`record_key`.
"""
from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

DEFAULT_BASELINES = "benchmarks/baselines"
# 8 runs (~2.5 min for the quick suite): the 90% upper bound of the run-to-run sd is then
# 1.57× the estimate (1.94× with 5 runs), which keeps thresholds of the noisier benchmarks
# under 20%.
BASELINE_RUNS = 8


def record_key(rec: dict) -> tuple:
    """What identifies a benchmark across runs: name, parameters, backend, dtype, layout.

    (Two records of one name and params but another backend/dtype/layout measure different
    code, so they are different benchmarks.) Device class is matched separately.
    """
    params = json.dumps(rec.get("params", {}), sort_keys=True, default=str)
    return (rec.get("name", ""), params, rec.get("provider", ""), rec.get("dtype", ""), rec.get("layout", ""))


def describe_key(key: tuple) -> str:
    name, params, provider, dtype, layout = key
    p = " ".join(f"{k}={v}" for k, v in json.loads(params).items())
    tags = "/".join(t for t in (provider, dtype, layout) if t)
    return f"{name} [{p}]" + (f" ({tags})" if tags else "")


def baseline_file(directory: Path, new: dict, new_path) -> Path:
    """The baseline in ``directory`` for the device class of ``new``'s records (which may not
    exist yet); ValueError if they come from several classes."""
    classes = sorted({r["device_class"] for r in new["records"]})
    if len(classes) != 1:
        raise ValueError(f"{new_path}: records of several device classes ({', '.join(classes)}); "
                         f"give the baseline file explicitly")
    return Path(directory) / f"{classes[0]}.json"


def merge_runs(docs: list[dict]) -> dict:
    """A baseline from several runs of one suite on one device class: per benchmark the
    median of the runs' ratios, their relative sd and the median calibration-unit time."""
    if not docs:
        raise ValueError("no runs to make a baseline from")
    classes = {d.get("device_class") for d in docs}
    if len(classes) != 1:
        raise ValueError(f"runs come from different device classes: {sorted(map(str, classes))}")
    suites = sorted({str(d.get("suite")) for d in docs if d.get("suite")})
    if len(suites) > 1:
        raise ValueError(f"runs come from different suites: {suites}")
    planted = [d.get("planted") for d in docs if d.get("planted")]
    planted += [r["name"] for d in docs for r in d["records"] if r.get("planted_slowdown")]
    if planted:
        raise ValueError(f"a run has a planted slowdown ({planted[0]}); a baseline must time the real code")
    empty = [i + 1 for i, d in enumerate(docs) if not d.get("records")]
    if empty:
        raise ValueError(f"run(s) {', '.join(map(str, empty))} of {len(docs)} have no records; "
                         f"a baseline of nothing would let every benchmark pass")
    by_key: dict = defaultdict(list)
    for d in docs:
        for rec in d["records"]:
            by_key[record_key(rec)].append(rec)
    records = []
    for recs in by_key.values():
        ok = [r for r in recs if r.get("status") == "ok" and isinstance(r.get("ratio"), dict)]
        if not ok:
            records.append(recs[0])
            continue
        values = [r["ratio"]["value"] for r in ok]
        units = [r["ratio"]["unit_s"] for r in ok if r["ratio"].get("unit_s")]
        center = statistics.median(values)
        rec = dict(ok[0])
        rec["ratio"] = {**ok[0]["ratio"], "value": center, "runs": len(values), "run_values": values,
                        "rel_se": statistics.median(r["ratio"]["rel_se"] for r in ok) / math.sqrt(len(values)),
                        "run_rel_sd": statistics.stdev(values) / center if len(values) > 1 else None,
                        "unit_s": statistics.median(units) if units else None}
        for field in ("median_s", "iqr_s", "min_s", "q25_s", "q75_s", "mean_s", "gb_per_s", "pct_of_ceiling"):
            vals = [r[field] for r in ok if r.get(field) is not None]
            rec[field] = statistics.median(vals) if vals else None
        records.append(rec)
    if not any(r.get("status") == "ok" for r in records):
        raise ValueError("no benchmark was measured in any run (all errored or were skipped); no baseline written")
    out = {k: v for k, v in docs[0].items() if k != "records"}
    out.update(records=records, baseline={"runs": len(docs), "commits": sorted({
        d.get("environment", {}).get("git_commit", "") for d in docs})})
    return out
