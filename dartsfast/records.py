"""The one record schema of dartsfast's timing results, its validation, and the one atomic
writer and loader of result documents (DESIGN.md §8).

Every result file is a *document*::

    {"schema": "dartsfast.records/1", "kind": "bench" | "profile",
     "complete": true, "seconds": 12.3,
     "environment": {...},             # dartsfast.timing.environment_info
     "device_class": "cpu-x86_64-2c-amd-epyc", "fingerprint": "bcbd1f8653bb",
     ...,                              # the fields of its kind, below
     "records": [record, ...]}

- kind ``bench``: regression benchmarks. ``dartsfast bench run`` adds suite, rounds,
  ceiling, planted (``bench update-baseline`` also baseline); benchmarks/*.py, through
  benchmarks/harness.py, add benchmark, quick, ceiling.
- kind ``profile``: the block profiler (``dartsfast profile``, benchmarks/bench_blocks.py)
  adds ceilings (dartsfast.profiling.ceilings) and config (what was asked for).

Every record has the timing core: status, median_s, iqr_s, q25_s, q75_s, min_s, mean_s
(seconds per call over n timed calls after warm-up; None unless status is "ok"), n, and
dtype, layout, params, device (its name), versions, git_commit, bytes, gb_per_s.

A bench record adds name, provider (the backend), machine, error, pct_of_ceiling (of the
copy ceiling), device_class and fingerprint; ``bench run`` adds ratio, calibration and
planted_slowdown (dartsfast.bench.runner), a script any fields of its own. Status "ok",
"error" or "skipped".

A profile record (one per block × dtype × layout × impl × mode × batch) adds::

    block, label            "mbconv", "effnetv2-s/stage4/first"
    preset, stage, position, count, native
                            where the shape comes from; ``count`` blocks of it run there
    params                  c_in, c_out, h, w (input), out_h, out_w, stride, exp_ratio,
                            kernel, se_ratio
    impl, mode, batch       "eager" | "compile" | "fused", "inference" | "training", images per call
    backend, compile_backend   dwconv_se backend that ran (fused) / torch.compile backend
    device_type, driver, reason   and status "ok" | "unsupported" | "error" | "skipped"
    images_per_s            batch / median_s
    flops, arithmetic_intensity, tflops_per_s   analytic (profiling.models), per call
    pct_of_compute_ceiling, pct_of_bandwidth_ceiling   vs the matmul / copy ceilings
    peak_mem_bytes, peak_mem_delta_bytes   torch.cuda.max_memory_allocated during one call
                            (absolute / above what was allocated before it); None on CPU
    compile_s               first call of a torch.compile case (compilation included)
    graph_median_s, graph_iqr_s, launch_overhead_s, graph_error
                            CUDA-graph replay of the same call, and median − graph median

Documents written before this schema still load, mapped to it: bench results and harness
files (``"schema": 1``, or none at all) are kind "bench", ``"dartsfast.profile/1"`` is kind
"profile". Any other schema id is refused with an error naming it.

Records are only ever compared within one *device class*: for a CPU, architecture + core
count + CPU model ("a machine like yours"); for a GPU, its name. The fingerprint is a finer
hash (platform, CPU, GPU, driver) that is recorded, not matched: a baseline stays valid
across kernel updates.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from numbers import Integral, Real
from pathlib import Path

from dartsfast._io import write_json

SCHEMA = "dartsfast.records/1"
KINDS = ("bench", "profile")
# Schema ids of the documents written before the one schema, and the kind each is.
LEGACY_SCHEMAS = {1: "bench", "dartsfast.profile/1": "profile"}
TIME_FIELDS = ("median_s", "iqr_s", "q25_s", "q75_s", "min_s", "mean_s")
BENCH_STATUSES = ("ok", "error", "skipped")
PROFILE_STATUSES = ("ok", "unsupported", "error", "skipped")
_BENCH_VERSIONS = ("torch", "triton", "cuda", "driver", "python")
_ARCHES = ("x86_64", "aarch64", "arm64", "ppc64le", "s390x", "riscv64", "i686", "AMD64")

# Profile record field → (kind, None allowed). kind: "str", "int", "num" (finite) or "dict".
PROFILE_FIELDS = {
    **{k: ("str", False) for k in ("block", "label", "preset", "stage", "position", "native", "dtype", "layout",
                                   "impl", "mode", "backend", "compile_backend", "device", "device_type",
                                   "driver", "git_commit", "status", "reason", "graph_error")},
    **{k: ("int", False) for k in ("count", "batch", "n", "flops", "bytes")},
    **{k: ("dict", False) for k in ("params", "versions")},
    "arithmetic_intensity": ("num", False),
    **{k: ("num", True) for k in (*TIME_FIELDS, "images_per_s", "tflops_per_s", "gb_per_s", "pct_of_compute_ceiling",
                                  "pct_of_bandwidth_ceiling", "compile_s", "graph_median_s", "graph_iqr_s",
                                  "launch_overhead_s")},
    **{k: ("int", True) for k in ("peak_mem_bytes", "peak_mem_delta_bytes")},
}
PROFILE_PARAMS = ("c_in", "c_out", "h", "w", "out_h", "out_w", "stride", "exp_ratio", "kernel", "se_ratio")
PROFILE_VERSIONS = ("torch", "triton", "cuda", "python")
_PROFILE_DERIVED = ("images_per_s", "tflops_per_s", "gb_per_s")


# ----------------------------------------------------------------------------- the machine

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

    ``env`` is :func:`dartsfast.timing.environment_info`'s dict.
    """
    if env.get("device_type") == "cuda":
        return f"gpu-{_slug(env.get('device_name', ''))}"
    return f"cpu-{_arch(env)}-{int(env.get('cpu_count') or 0)}c-{_slug(env.get('cpu_model', ''))}"


def machine_fingerprint(env: dict) -> str:
    """12 hex digits identifying the exact machine setup (recorded, never matched on)."""
    parts = [env.get(k, "") for k in ("platform", "cpu_model", "cpu_count", "device_name", "capability", "driver")]
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- building

def dtype_name(dtype) -> str:
    """``torch.bfloat16`` (or its text) → "bfloat16"."""
    return str(dtype).replace("torch.", "")


def timing_fields(stats=None) -> dict:
    """The timing core of a record from :class:`~dartsfast.timing.TimingStats` (None: not timed)."""
    if stats is None:
        return {**{k: None for k in TIME_FIELDS}, "n": 0}
    return {"median_s": stats.median, "iqr_s": stats.iqr, "q25_s": stats.q25, "q75_s": stats.q75,
            "min_s": stats.min, "mean_s": stats.mean, "n": stats.n}


def bench_record(*, name: str, params: dict, provider: str, dtype, layout: str, env: dict, stats=None,
                 nbytes: int | None = None, ceiling_bytes_per_s: float | None = None, status: str = "ok",
                 error: str = "", extra: dict | None = None) -> dict:
    """One bench record; time fields are None unless ``stats`` are given."""
    if status not in BENCH_STATUSES:
        raise ValueError(f"status must be one of {BENCH_STATUSES}, got {status!r}")
    rec = {"name": name, "params": dict(params), "provider": provider, "dtype": dtype_name(dtype),
           "layout": layout, "device": env.get("device_name", ""), "machine": env.get("machine", ""),
           "status": status, "error": error, **timing_fields(), "bytes": nbytes, "gb_per_s": None,
           "pct_of_ceiling": None, "versions": {k: env.get(k, "") for k in _BENCH_VERSIONS},
           "git_commit": env.get("git_commit", ""),
           # `dartsfast bench compare` matches records within a device class only
           "device_class": device_class(env), "fingerprint": machine_fingerprint(env)}
    if stats is not None:
        rec.update(timing_fields(stats))
        if nbytes:
            rec["gb_per_s"] = nbytes / stats.median / 1e9
            if ceiling_bytes_per_s:
                rec["pct_of_ceiling"] = 100.0 * nbytes / stats.median / ceiling_bytes_per_s
    rec.update(extra or {})
    return rec


def document(kind: str, env: dict, records: list, **fields) -> dict:
    """A document of ``kind`` in the one schema: its fields, the machine, then the records."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return {"schema": SCHEMA, "kind": kind, **fields, "environment": env, "device_class": device_class(env),
            "fingerprint": machine_fingerprint(env), "records": records}


# ----------------------------------------------------------------------------- validation

def _fail(where, problem: str):
    raise ValueError(f"{where}: {problem}")


def upgrade(doc, where="document") -> dict:
    """``doc`` in the one schema (a shallow copy with schema and kind set); a document of an
    older schema is mapped to it, one of an unknown schema refused naming the id."""
    if not isinstance(doc, dict):
        _fail(where, f"expected a JSON object with 'records', got {type(doc).__name__}")
    schema = doc.get("schema")
    if schema == SCHEMA:
        kind = doc.get("kind")
        if kind not in KINDS:
            _fail(where, f"schema {SCHEMA!r} needs a 'kind' of {', '.join(KINDS)}, got {kind!r}")
        return dict(doc)
    # bool is an int: `"schema": true` must not pass for the legacy 1
    if schema is not None and (isinstance(schema, bool) or not isinstance(schema, (int, str))
                               or schema not in LEGACY_SCHEMAS):
        _fail(where, f"unknown schema {schema!r}; this dartsfast reads {SCHEMA!r} and the older "
                     f"{', '.join(map(repr, LEGACY_SCHEMAS))}")
    # Result files older than any schema id are bench results (as `bench compare` read them).
    return {**doc, "schema": SCHEMA, "kind": LEGACY_SCHEMAS.get(schema, "bench")}


def _check_bench(doc: dict, where) -> None:
    records = doc.get("records")
    if not isinstance(records, list):
        _fail(where, "no 'records' list (is this a `dartsfast bench run` or benchmarks/*.py result file?)")
    env = doc.get("environment") if isinstance(doc.get("environment"), dict) else {}
    file_class = doc.get("device_class") or (device_class(env) if env else "")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("name"), str) or not rec["name"]:
            _fail(where, f"record {i} has no 'name'")
        if not isinstance(rec.get("params", {}), dict):
            _fail(where, f"record {i} ({rec['name']}): 'params' must be an object")
        if rec.get("status", "ok") not in BENCH_STATUSES:
            _fail(where, f"record {i} ({rec['name']}): status {rec.get('status')!r} is not one of {BENCH_STATUSES}")
        for field in ("median_s", "iqr_s"):
            value = rec.get(field)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                _fail(where, f"record {i} ({rec['name']}): {field} must be a non-negative number, got {value!r}")
        ratio = rec.get("ratio")
        if ratio is not None and not (isinstance(ratio, dict) and all(
                isinstance(ratio.get(f), (int, float)) and math.isfinite(ratio[f]) and ratio[f] >= 0
                for f in ("value", "rel_se", "n")) and ratio["value"] > 0):
            _fail(where, f"record {i} ({rec['name']}): 'ratio' needs numeric value > 0, rel_se and n, got {ratio!r}")
        rec.setdefault("device_class", file_class)
        if not rec["device_class"]:
            _fail(where, f"record {i} ({rec['name']}): no device_class and no 'environment' to derive it from")


def _type_ok(value, kind: str, optional: bool) -> bool:
    if value is None:
        return optional
    if kind == "int":
        return isinstance(value, Integral) and not isinstance(value, bool)
    if kind == "num":
        return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, {"str": str, "dict": dict}[kind])


def profile_record_problems(rec) -> list[str]:
    """Everything wrong with one profile record ([] when it is valid)."""
    if not isinstance(rec, dict):
        return [f"a record must be a dict, got {type(rec).__name__}"]
    problems = [f"missing field {k!r}" for k in PROFILE_FIELDS if k not in rec]
    problems += [f"unknown field {k!r}" for k in rec if k not in PROFILE_FIELDS]
    for key, (kind, optional) in PROFILE_FIELDS.items():
        if key in rec and not _type_ok(rec[key], kind, optional):
            problems.append(f"{key}={rec[key]!r} is not {kind}" + (" or None" if optional else ""))
    if problems:
        return problems
    problems += [f"params lacks {k!r}" for k in PROFILE_PARAMS if k not in rec["params"]]
    problems += [f"versions lacks {k!r}" for k in PROFILE_VERSIONS if k not in rec["versions"]]
    if rec["status"] not in PROFILE_STATUSES:
        problems.append(f"status {rec['status']!r} is not one of {PROFILE_STATUSES}")
    if rec["batch"] < 1 or rec["count"] < 0 or rec["flops"] < 0 or rec["bytes"] <= 0:
        problems.append("batch must be ≥ 1, count and flops ≥ 0, bytes > 0")
    if rec["status"] != "ok":
        if not rec["reason"]:
            problems.append(f"status {rec['status']!r} needs a reason")
        filled = [k for k in TIME_FIELDS + _PROFILE_DERIVED if rec[k] is not None]
        if filled:
            problems.append(f"status {rec['status']!r} but timing fields are set: {filled}")
        return problems
    missing = [k for k in TIME_FIELDS + _PROFILE_DERIVED if rec[k] is None]
    if missing:
        return problems + [f"status 'ok' but {missing} are None"]
    if not (0 < rec["min_s"] <= rec["q25_s"] <= rec["median_s"] <= rec["q75_s"]):
        problems.append(f"quantiles out of order: min {rec['min_s']}, q25 {rec['q25_s']}, "
                        f"median {rec['median_s']}, q75 {rec['q75_s']}")
    if not math.isclose(rec["iqr_s"], rec["q75_s"] - rec["q25_s"], rel_tol=1e-9, abs_tol=1e-15):
        problems.append(f"iqr_s {rec['iqr_s']} != q75_s − q25_s")
    if rec["n"] < 1:
        problems.append(f"status 'ok' with n={rec['n']} timed calls")
    derived = {"images_per_s": rec["batch"] / rec["median_s"], "gb_per_s": rec["bytes"] / rec["median_s"] / 1e9,
               "tflops_per_s": rec["flops"] / rec["median_s"] / 1e12}
    for key, expected in derived.items():
        if not math.isclose(rec[key], expected, rel_tol=1e-6, abs_tol=1e-12):
            problems.append(f"{key} {rec[key]} disagrees with the median ({expected})")
    return problems


def validate_profile_record(rec) -> dict:
    problems = profile_record_problems(rec)
    if problems:
        label = rec.get("label", "?") if isinstance(rec, dict) else "?"
        raise ValueError(f"invalid profile record {label}: " + "; ".join(problems))
    return rec


def _check_profile(doc: dict, where) -> None:
    missing = [k for k in ("complete", "environment", "ceilings", "config", "records") if k not in doc]
    if missing:
        _fail(where, f"profile document lacks {missing}")
    if not isinstance(doc["records"], list):
        _fail(where, "profile document 'records' must be a list")
    problems = []
    for i, rec in enumerate(doc["records"]):
        problems += [f"record {i}: {p}" for p in profile_record_problems(rec)]
    if problems:
        _fail(where, "invalid profile document: " + "; ".join(problems[:20])
              + (f"; ... {len(problems) - 20} more" if len(problems) > 20 else ""))


def validate_document(doc, where="document", kind: str | None = None) -> dict:
    """``doc`` in the one schema, checked: ValueError naming ``where`` and every problem (a
    bench document: the first). ``kind``: the kind the caller needs (None: either). Bench
    records without a ``device_class`` get the document's (or one derived from its environment)."""
    doc = upgrade(doc, where)
    if kind is not None and doc["kind"] != kind:
        _fail(where, f"a {doc['kind']} document, expected a {kind} document")
    (_check_bench if doc["kind"] == "bench" else _check_profile)(doc, where)
    return doc


# ----------------------------------------------------------------------------- files

def load_document(path, kind: str | None = None) -> dict:
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
    return validate_document(doc, path, kind)


def write_document(path, doc: dict) -> dict:
    """Validate, then write atomically (temp file, fsync, rename: a crash never leaves half a
    file), creating the directory; returns the document as written."""
    doc = validate_document(doc, path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_json(str(path), doc)
    return doc
