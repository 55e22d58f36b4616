"""Profile records: the JSON schema, its validator, atomic writing, and the Markdown report.

A profile document (``dartsfast profile --out FILE.json``)::

    {"schema": "dartsfast.profile/1", "complete": true, "seconds": 12.3,
     "environment": {...},            # profiling.timing.environment_info
     "ceilings": {...},               # profiling.ceilings.Ceilings.to_dict
     "config": {...},                 # what was asked for (repeats, warmup, ...)
     "records": [record, ...]}

One record per block × dtype × layout × impl × mode × batch:

    block, label            "mbconv", "effnetv2-s/stage4/first"
    preset, stage, position, count, native
                            where the shape comes from; ``count`` blocks of it run there
    params                  c_in, c_out, h, w (input), out_h, out_w, stride, exp_ratio,
                            kernel, se_ratio
    dtype, layout, impl, mode, batch
                            "bfloat16", "nchw" | "channels_last", "eager" | "compile" |
                            "fused", "inference" | "training", images per call
    backend, compile_backend   dwconv_se backend that ran (fused) / torch.compile backend
    device, device_type, driver, versions {torch, triton, cuda, python}, git_commit
    status, reason          "ok" | "unsupported" | "error" | "skipped", and why
    median_s, iqr_s, q25_s, q75_s, min_s, mean_s, n
                            per-call latency (s) over n timed calls after warm-up
    images_per_s            batch / median_s
    flops, bytes, arithmetic_intensity     analytic (profiling.models), per call
    tflops_per_s, gb_per_s  flops / median_s / 1e12, bytes / median_s / 1e9
    pct_of_compute_ceiling, pct_of_bandwidth_ceiling   vs the matmul / copy ceilings
    peak_mem_bytes, peak_mem_delta_bytes   torch.cuda.max_memory_allocated during one call
                            (absolute / above what was allocated before it); None on CPU
    compile_s               first call of a torch.compile case (compilation included)
    graph_median_s, graph_iqr_s, launch_overhead_s, graph_error
                            CUDA-graph replay of the same call, and median − graph median

Timing fields are None unless status is "ok".
"""
from __future__ import annotations

import math
from numbers import Integral, Real

from dartsfast._io import atomic_write, write_json

SCHEMA = "dartsfast.profile/1"
STATUSES = ("ok", "unsupported", "error", "skipped")
BLOCK_LABELS = {"mbconv": "MBConv", "fused_mbconv": "Fused-MBConv", "dsconv": "DSConv"}
# field → (kind, None allowed). kind: "str", "int", "num" (finite float or int) or "dict".
RECORD_FIELDS = {
    **{k: ("str", False) for k in ("block", "label", "preset", "stage", "position", "native", "dtype", "layout",
                                   "impl", "mode", "backend", "compile_backend", "device", "device_type",
                                   "driver", "git_commit", "status", "reason", "graph_error")},
    **{k: ("int", False) for k in ("count", "batch", "n", "flops", "bytes")},
    **{k: ("dict", False) for k in ("params", "versions")},
    "arithmetic_intensity": ("num", False),
    **{k: ("num", True) for k in ("median_s", "iqr_s", "q25_s", "q75_s", "min_s", "mean_s", "images_per_s",
                                  "tflops_per_s", "gb_per_s", "pct_of_compute_ceiling",
                                  "pct_of_bandwidth_ceiling", "compile_s", "graph_median_s", "graph_iqr_s",
                                  "launch_overhead_s")},
    **{k: ("int", True) for k in ("peak_mem_bytes", "peak_mem_delta_bytes")},
}
PARAM_FIELDS = ("c_in", "c_out", "h", "w", "out_h", "out_w", "stride", "exp_ratio", "kernel", "se_ratio")
VERSION_FIELDS = ("torch", "triton", "cuda", "python")
TIME_FIELDS = ("median_s", "iqr_s", "q25_s", "q75_s", "min_s", "mean_s")


def make_record(spec, *, dtype: str, layout: str, impl: str, mode: str, batch: int, env: dict, cost,
                ceilings: dict, status: str = "ok", reason: str = "", stats=None, backend: str = "",
                compile_backend: str = "", **extra) -> dict:
    """One record (schema above) from a :class:`~dartsfast.profiling.presets.BlockSpec`, a
    :class:`~dartsfast.profiling.models.Cost`, the ceilings' dict and the timing stats."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
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
        "driver": env.get("driver", ""), "versions": {k: env.get(k, "") for k in VERSION_FIELDS},
        "git_commit": env.get("git_commit", ""), "status": status, "reason": reason,
        **{k: None for k in TIME_FIELDS}, "n": 0, "images_per_s": None,
        "flops": cost.flops, "bytes": cost.bytes, "arithmetic_intensity": cost.intensity,
        "tflops_per_s": None, "gb_per_s": None, "pct_of_compute_ceiling": None, "pct_of_bandwidth_ceiling": None,
        "peak_mem_bytes": None, "peak_mem_delta_bytes": None, "compile_s": None,
        "graph_median_s": None, "graph_iqr_s": None, "launch_overhead_s": None, "graph_error": "",
    }
    if status == "ok":
        if stats is None:
            raise ValueError("a record with status 'ok' needs timing stats")
        t = stats.median
        rec.update(median_s=t, iqr_s=stats.iqr, q25_s=stats.q25, q75_s=stats.q75, min_s=stats.min,
                   mean_s=stats.mean, n=stats.n, images_per_s=batch / t,
                   tflops_per_s=cost.flops / t / 1e12, gb_per_s=cost.bytes / t / 1e9)
        bandwidth = ceilings.get("bandwidth_bytes_per_s")
        compute = ceilings.get("compute_flops_per_s", {}).get(dtype)
        if bandwidth:
            rec["pct_of_bandwidth_ceiling"] = 100.0 * cost.bytes / t / bandwidth
        if compute:
            rec["pct_of_compute_ceiling"] = 100.0 * cost.flops / t / compute
    unknown = set(extra) - set(RECORD_FIELDS)
    if unknown:
        raise ValueError(f"unknown record field(s) {sorted(unknown)}")
    rec.update(extra)
    return rec


def _type_ok(value, kind: str, optional: bool) -> bool:
    if value is None:
        return optional
    if kind == "int":
        return isinstance(value, Integral) and not isinstance(value, bool)
    if kind == "num":
        return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, {"str": str, "dict": dict}[kind])


def record_problems(rec) -> list[str]:
    """Everything wrong with one record ([] when it is valid)."""
    if not isinstance(rec, dict):
        return [f"a record must be a dict, got {type(rec).__name__}"]
    problems = [f"missing field {k!r}" for k in RECORD_FIELDS if k not in rec]
    problems += [f"unknown field {k!r}" for k in rec if k not in RECORD_FIELDS]
    for key, (kind, optional) in RECORD_FIELDS.items():
        if key in rec and not _type_ok(rec[key], kind, optional):
            problems.append(f"{key}={rec[key]!r} is not {kind}" + (" or None" if optional else ""))
    if problems:
        return problems
    problems += [f"params lacks {k!r}" for k in PARAM_FIELDS if k not in rec["params"]]
    problems += [f"versions lacks {k!r}" for k in VERSION_FIELDS if k not in rec["versions"]]
    if rec["status"] not in STATUSES:
        problems.append(f"status {rec['status']!r} is not one of {STATUSES}")
    if rec["batch"] < 1 or rec["count"] < 0 or rec["flops"] < 0 or rec["bytes"] <= 0:
        problems.append("batch must be ≥ 1, count and flops ≥ 0, bytes > 0")
    if rec["status"] != "ok":
        if not rec["reason"]:
            problems.append(f"status {rec['status']!r} needs a reason")
        filled = [k for k in TIME_FIELDS + ("images_per_s", "tflops_per_s", "gb_per_s") if rec[k] is not None]
        if filled:
            problems.append(f"status {rec['status']!r} but timing fields are set: {filled}")
        return problems
    missing = [k for k in TIME_FIELDS + ("images_per_s", "tflops_per_s", "gb_per_s") if rec[k] is None]
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


def validate_record(rec) -> dict:
    problems = record_problems(rec)
    if problems:
        label = rec.get("label", "?") if isinstance(rec, dict) else "?"
        raise ValueError(f"invalid profile record {label}: " + "; ".join(problems))
    return rec


def validate_document(doc) -> dict:
    """ValueError naming every problem unless ``doc`` is a valid profile document."""
    if not isinstance(doc, dict):
        raise ValueError(f"a profile document must be a JSON object, got {type(doc).__name__}")
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"not a profile document: schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    missing = [k for k in ("complete", "environment", "ceilings", "config", "records") if k not in doc]
    if missing:
        raise ValueError(f"profile document lacks {missing}")
    if not isinstance(doc["records"], list):
        raise ValueError("profile document 'records' must be a list")
    problems = []
    for i, rec in enumerate(doc["records"]):
        problems += [f"record {i}: {p}" for p in record_problems(rec)]
    if problems:
        raise ValueError("invalid profile document: " + "; ".join(problems[:20])
                         + (f"; ... {len(problems) - 20} more" if len(problems) > 20 else ""))
    return doc


def write_document(path: str, doc: dict) -> None:
    """Validate, then write atomically (a crash never leaves half a file)."""
    write_json(path, validate_document(doc))


# ----------------------------------------------------------------------------- Markdown

def _ms(seconds) -> str:
    return "–" if seconds is None else f"{seconds * 1e3:.3f}"


def _num(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def stage_latencies(records) -> dict:
    """{(preset, stage, dtype, layout, mode, batch): {(block, impl): seconds}}.

    A stage's latency is Σ count × median over its positions, and only when every position
    of the stage was timed for that (block, impl) — a partial sum would flatter it.
    """
    positions: dict = {}
    for r in records:
        positions.setdefault((r["preset"], r["stage"]), set()).add(r["position"])
    sums: dict = {}
    for r in records:
        group = (r["preset"], r["stage"], r["dtype"], r["layout"], r["mode"], r["batch"])
        entry = sums.setdefault(group, {}).setdefault((r["block"], r["impl"]), {})
        entry[r["position"]] = r["count"] * r["median_s"] if r["status"] == "ok" else None
    out: dict = {}
    for group, per_impl in sums.items():
        need = positions[group[:2]]
        out[group] = {key: sum(parts.values()) for key, parts in per_impl.items()
                      if set(parts) == need and None not in parts.values()}
    return out


def comparison_rows(records) -> list[dict]:
    """MBConv vs Fused-MBConv per stage: best-impl latency of each and their ratio."""
    rows = []
    first_shape = {}
    for r in records:
        first_shape.setdefault((r["preset"], r["stage"]), r)
    for group, lat in stage_latencies(records).items():
        best = {}
        for block in ("mbconv", "fused_mbconv"):
            options = {impl: t for (b, impl), t in lat.items() if b == block}
            if options:
                impl = min(options, key=options.get)
                best[block] = (options[impl], impl)
        if len(best) < 2:
            continue
        (t_mb, impl_mb), (t_fu, impl_fu) = best["mbconv"], best["fused_mbconv"]
        preset, stage, dtype, layout, mode, batch = group
        rows.append(dict(preset=preset, stage=stage, dtype=dtype, layout=layout, mode=mode, batch=batch,
                         shape=first_shape[(preset, stage)], latencies=lat,
                         mbconv_s=t_mb, mbconv_impl=impl_mb, fused_s=t_fu, fused_impl=impl_fu,
                         ratio=t_fu / t_mb, faster="Fused-MBConv" if t_fu < t_mb else "MBConv"))
    # One table per (preset, dtype, layout, mode, batch), stages in network order within it.
    tables = list(dict.fromkeys((r["preset"], r["dtype"], r["layout"], r["mode"], r["batch"]) for r in rows))
    return sorted(rows, key=lambda r: tables.index((r["preset"], r["dtype"], r["layout"], r["mode"], r["batch"])))


def _shape_text(r) -> str:
    p = r["params"]
    reps = f" ×{r['count']}" if r["position"] in ("all", "edges") else ""
    return f"{p['c_in']}→{p['c_out']} {p['h']}×{p['w']} s{p['stride']} e{p['exp_ratio']:g} k{p['kernel']}{reps}"


def comparison_markdown(records) -> str:
    rows = comparison_rows(records)
    if not rows:
        return "_No MBConv / Fused-MBConv pair was timed at the same stage: nothing to compare._\n"
    impls = [i for i in ("eager", "fused", "compile") if any((b, i) in r["latencies"] for r in rows
                                                             for b in ("mbconv", "fused_mbconv"))]
    cols = [(b, i) for b in ("mbconv", "fused_mbconv") for i in impls
            if any((b, i) in r["latencies"] for r in rows)]
    out, group = [], None
    for r in rows:
        key = (r["preset"], r["dtype"], r["layout"], r["mode"], r["batch"])
        if key != group:
            group = key
            out += ["", f"### {r['preset']}: {r['mode']}, {r['dtype']}, {r['layout']}, batch {r['batch']}", "",
                    "Stage latency = Σ over the stage's blocks (first + repeats) of the median, in ms; "
                    "ratio = best Fused-MBConv / best MBConv (< 1: Fused-MBConv is faster).", "",
                    "| stage | first block | " + " | ".join(f"{BLOCK_LABELS[b]} {i}" for b, i in cols)
                    + " | ratio | faster |", "|" + "---|" * (len(cols) + 4)]
        cells = [_ms(r["latencies"].get(c)) for c in cols]
        out.append(f"| {r['stage']} | {_shape_text(r['shape'])} | " + " | ".join(cells)
                   + f" | {r['ratio']:.2f}× | {r['faster']} |")
    return "\n".join(out).lstrip("\n") + "\n"


def records_markdown(records) -> str:
    head = ["block", "where", "dtype", "layout", "impl", "mode", "batch", "median ms", "IQR ms", "img/s",
            "TFLOP/s", "GB/s", "% compute", "% bandwidth", "peak MiB", "launch ms", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        mem = None if r["peak_mem_bytes"] is None else r["peak_mem_bytes"] / 2 ** 20
        status = r["status"] + (f": {r['reason'][:70]}" if r["status"] != "ok" else "")
        cells = [BLOCK_LABELS.get(r["block"], r["block"]), f"{r['label']} ({_shape_text(r)})", r["dtype"],
                 r["layout"], r["impl"] + (f" ({r['backend']})" if r["backend"] else ""), r["mode"],
                 str(r["batch"]), _ms(r["median_s"]), _ms(r["iqr_s"]), _num(r["images_per_s"], 0),
                 _num(r["tflops_per_s"], 2), _num(r["gb_per_s"]), _num(r["pct_of_compute_ceiling"]),
                 _num(r["pct_of_bandwidth_ceiling"]), _num(mem), _ms(r["launch_overhead_s"]), status]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def markdown_report(doc: dict) -> str:
    """The whole report: environment and ceilings, the per-stage comparison, every record."""
    env, ceil = doc["environment"], doc["ceilings"]
    bw = ceil.get("bandwidth_bytes_per_s")
    compute = ", ".join(f"{k} {v / 1e12:.1f} TFLOP/s" for k, v in ceil.get("compute_flops_per_s", {}).items()
                        if v is not None) or "–"
    lines = [f"# Block profile on {env.get('device_name', '?')}", "",
             f"torch {env.get('torch', '')}, triton {env.get('triton', '') or '–'}, CUDA {env.get('cuda') or '–'}, "
             f"driver {env.get('driver') or '–'}, commit {env.get('git_commit', '')[:10]}"
             f"{' (dirty)' if env.get('git_dirty') else ''}, {env.get('date', '')}"
             + ("" if doc.get("complete", True) else " — **INCOMPLETE run**"), "",
             f"Ceilings measured in this run: copy {'–' if bw is None else f'{bw / 1e9:.1f} GB/s'}; "
             f"matmul {compute} (fp32 as {ceil.get('fp32_math', '?')}).", "",
             "## MBConv vs Fused-MBConv per stage", "", comparison_markdown(doc["records"]),
             "## Every record", "", records_markdown(doc["records"])]
    return "\n".join(lines)


def write_markdown(path: str, doc: dict) -> None:
    text = markdown_report(doc).encode()
    atomic_write(path, lambda f: f.write(text))
