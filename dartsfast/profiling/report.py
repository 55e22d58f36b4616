"""The profile report: MBConv vs Fused-MBConv per stage, and every record, as Markdown.

Reads profile documents and records (schema: :mod:`dartsfast.records`, kind "profile").
"""
from __future__ import annotations

from dartsfast._io import atomic_write

BLOCK_LABELS = {"mbconv": "MBConv", "fused_mbconv": "Fused-MBConv", "dsconv": "DSConv"}


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
