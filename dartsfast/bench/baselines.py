"""Benchmark records and result files for regression tracking (DESIGN.md §8).

A result file (``dartsfast bench run --out FILE.json``; benchmarks/harness.py writes the
same shape)::

    {"schema": 1, "suite": "quick", "complete": true, "environment": {...},
     "device_class": "cpu-x86_64-2c-amd-epyc", "records": [record, ...]}

A record has the harness's fields — name, params, provider (the backend), dtype, layout,
device (name), machine, status, error, median_s, iqr_s, q25_s, q75_s, min_s, mean_s, n,
bytes, gb_per_s, pct_of_ceiling, versions, git_commit — plus ``device_class`` and
``fingerprint``; the suites of :mod:`bench_runner` add ``ratio`` (the benchmark's time over
a calibration workload timed alongside it, see there) and ``calibration``.

Records are only ever compared within one *device class*: for a CPU, architecture + core
count + CPU model ("a machine like yours" — the CI runner and a developer's box of the same
type match); for a GPU, its name. The fingerprint is a finer hash (platform, CPU, GPU,
driver) that is recorded, not matched: a baseline stays valid across kernel updates.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

SCHEMA_VERSION = 1  # the harness's SCHEMA_VERSION: both write the same document shape
STATUSES = ("ok", "error", "skipped")
_ARCHES = ("x86_64", "aarch64", "arm64", "ppc64le", "s390x", "riscv64", "i686", "AMD64")


def _slug(text: str) -> str:
    # "AMD EPYC 7763 64-Core Processor" → "amd-epyc-7763-64-core-processor"
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "unknown"


def _arch(env: dict) -> str:
    if env.get("arch"):
        return str(env["arch"])
    plat = str(env.get("platform", ""))
    return next((a for a in _ARCHES if a in plat), "unknown")


def device_class(env: dict) -> str:
    """The class of machines whose records may be compared: ``cpu-<arch>-<n>c-<model>``
    on a CPU (``cpu-x86_64-2c-amd-epyc``), ``gpu-<name>`` on a GPU (``gpu-nvidia-h100-80gb-hbm3``).

    ``env`` is :func:`dartsfast.profiling.timing.environment_info`'s dict.
    """
    if env.get("device_type") == "cuda":
        return f"gpu-{_slug(env.get('device_name', ''))}"
    return f"cpu-{_arch(env)}-{int(env.get('cpu_count') or 0)}c-{_slug(env.get('cpu_model', ''))}"


def machine_fingerprint(env: dict) -> str:
    """12 hex digits identifying the exact machine setup (recorded, never matched on)."""
    parts = [env.get(k, "") for k in ("platform", "cpu_model", "cpu_count", "device_name", "capability", "driver")]
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:12]


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


def _fail(path, problem: str):
    raise ValueError(f"{path}: {problem}")


def validate_results(doc, path="results") -> dict:
    """Check a result document's shape; return it with every record's ``device_class`` set.

    Raises ValueError naming the file and the problem (not a dict, no records, a record
    without a name, a non-numeric time ...), so a corrupt file is never compared silently.
    """
    if not isinstance(doc, dict):
        _fail(path, f"expected a JSON object with 'records', got {type(doc).__name__}")
    records = doc.get("records")
    if not isinstance(records, list):
        _fail(path, "no 'records' list (is this a `dartsfast bench run` or benchmarks/*.py result file?)")
    env = doc.get("environment") if isinstance(doc.get("environment"), dict) else {}
    file_class = doc.get("device_class") or (device_class(env) if env else "")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("name"), str) or not rec["name"]:
            _fail(path, f"record {i} has no 'name'")
        if not isinstance(rec.get("params", {}), dict):
            _fail(path, f"record {i} ({rec['name']}): 'params' must be an object")
        if rec.get("status", "ok") not in STATUSES:
            _fail(path, f"record {i} ({rec['name']}): status {rec.get('status')!r} is not one of {STATUSES}")
        for field in ("median_s", "iqr_s"):
            value = rec.get(field)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                _fail(path, f"record {i} ({rec['name']}): {field} must be a non-negative number, got {value!r}")
        ratio = rec.get("ratio")
        if ratio is not None and not (isinstance(ratio, dict) and all(
                isinstance(ratio.get(f), (int, float)) and math.isfinite(ratio[f]) and ratio[f] >= 0
                for f in ("value", "rel_se", "n")) and ratio["value"] > 0):
            _fail(path, f"record {i} ({rec['name']}): 'ratio' needs numeric value > 0, rel_se and n, got {ratio!r}")
        rec.setdefault("device_class", file_class)
        if not rec["device_class"]:
            _fail(path, f"record {i} ({rec['name']}): no device_class and no 'environment' to derive it from")
    return doc


def load_results(path) -> dict:
    """Read and validate a result file; FileNotFoundError / ValueError name the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path} is a directory, expected a JSON result file")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text file ({exc})") from None
    return validate_results(doc, path)
