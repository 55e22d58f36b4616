"""summary.md of a GPU-suite work directory: versions, steps, compile times, tests, and one
table per benchmark with its targets and verdicts (issue 12). Reads what the steps wrote;
a missing or broken file becomes a line saying so, never an exception, so a summary always
comes back from the slot.

Targets (DESIGN.md §4, the benchmark scripts' docstrings, issue 14):
- weighted_sum, bf16, M ≥ 2^24: Triton forward ≥ 85% of the copy ceiling, backward ≥ 80%;
  ≥ 4× eager forward, ≥ 3× eager backward; ≥ 1.3× torch.compile.
- dwconv_se forward+backward, bf16 channels_last, EfficientNetV2-S shapes, batch 128:
  Triton ≥ 2.5× eager channels_last and ≥ 70% of the copy ceiling by its pass model.
- MBConv vs Fused-MBConv per EfficientNetV2-S stage: EfficientNetV2 found Fused-MBConv
  faster in stages 1–3 and MBConv in 4–6; the table says whether this GPU agrees.
- search step, seed configuration, first order: ≤ 9,000 aten ops and 0 host syncs per
  step, second order ≤ 2.2× the first-order ops; launches and GPU busy % reported.

    python benchmarks/gpu_summary.py WORKDIR   # prints the summary
"""
from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

WS_TARGETS = {"forward": (85.0, 4.0), "backward": (80.0, 3.0)}  # mode → (% of copy ceiling, × eager)
WS_VS_COMPILE = 1.3
WS_MIN_M = 1 << 24
DW_VS_EAGER_CL, DW_MODEL_PCT = 2.5, 70.0
STEP_MAX_OPS, STEP_MAX_SYNCS, STEP_ORDER2_FACTOR = 9000, 0, 2.2
EARLY_STAGES = ("stage1", "stage2", "stage3")


def write_text_atomic(path: Path, text: str) -> None:
    # Imported here: importing dartsfast imports torch, and gpu_suite.py must still say
    # "cannot import torch" in one line where torch is broken.
    from dartsfast._io import atomic_write

    atomic_write(str(path), lambda f: f.write(text.encode()))


def _load(path: Path):
    """(document, None) or (None, why not)."""
    if not path.exists():
        return None, f"{path.name}: not written (step skipped or failed before writing)"
    try:
        return json.loads(path.read_text()), None
    except (OSError, ValueError) as exc:
        return None, f"{path.name}: unreadable ({exc})"


def _verdict(value, target, at_least=True) -> str:
    if value is None:
        return "–"
    return "pass" if (value >= target if at_least else value <= target) else "MISS"


def _f(x, fmt="{:.1f}") -> str:
    return "–" if x is None else fmt.format(x)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


def versions_section(work: Path) -> list[str]:
    v, why = _load(work / "versions.json")
    if v is None:
        return ["## Versions", "", why, ""]
    return ["## Versions", "", *_table(["", ""], [[k, str(val)] for k, val in v.items()]), ""]


def steps_section(work: Path) -> list[str]:
    steps, why = _load(work / "steps.json")
    if steps is None:
        return ["## Steps", "", why, ""]
    rows = [[s["step"], str(s["rc"]), _f(s["seconds"], "{:.0f}"), _f(s.get("cap_s"), "{:.0f}"), s["note"]]
            for s in steps]
    return ["## Steps", "", *_table(["step", "rc", "seconds", "cap s", "note"], rows), ""]


def warm_section(work: Path) -> list[str]:
    doc, why = _load(work / "warm.json")
    if doc is None:
        return ["## Compile and autotune (first call − steady call)", "", why, ""]
    rows = [[r["op"], r["backend"], " ".join(f"{k}={r[k]}" for k in ("dtype", "K", "M", "N", "C", "HW", "k", "stride")
                                          if k in r), _f(r["first_s"], "{:.3f}"), _f(r["steady_s"], "{:.4f}"),
             _f(r["compile_s"], "{:.3f}"), r["error"][:80]] for r in doc["records"]]
    return ["## Compile and autotune (first call − steady call)", "",
            *_table(["op", "backend", "case", "first s", "steady s", "compile s", "error"], rows), ""]


def _junit(path: Path):
    """(passed, failed, errors, skipped, seconds, [failing test ids]) or None."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    n = f = e = sk = 0
    secs, bad = 0.0, []
    for s in suites:
        n, f, e, sk = (a + int(s.get(k, 0)) for a, k in zip((n, f, e, sk), ("tests", "failures", "errors", "skipped")))
        secs += float(s.get("time", 0))
        bad += [f"{c.get('classname')}::{c.get('name')}" for c in s.iter("testcase")
                if c.find("failure") is not None or c.find("error") is not None]
    return n - f - e - sk, f, e, sk, secs, bad


def tests_section(work: Path) -> list[str]:
    lines, rows, failing = ["## Tests", ""], [], []
    for name in ("pytest_gpu", "pytest_rest"):
        res = _junit(work / f"{name}.xml")
        if res is None:
            rows.append([name, "–", "–", "–", "–", "–", f"no junit report (see {name}.log)"])
            continue
        p, f, e, sk, secs, bad = res
        rows.append([name, str(p), str(f), str(e), str(sk), f"{secs:.0f}", ""])
        failing += bad
    lines += _table(["run", "passed", "failed", "errors", "skipped", "seconds", "note"], rows)
    lines += [""] + [f"- FAILED {t}" for t in failing[:40]] + ([f"- … and {len(failing) - 40} more"]
                                                              if len(failing) > 40 else [])
    return lines + [""]


def _ceiling_line(doc: dict) -> str:
    c = doc.get("ceiling") or {}
    bw, mm = c.get("bytes_per_s"), c.get("matmul_flops_per_s")
    return (f"Same-run ceilings on {doc.get('environment', {}).get('device_name', '?')}: copy "
            f"{_f(bw and bw / 1e9)} GB/s, {c.get('matmul_dtype', 'bf16')} matmul {_f(mm and mm / 1e12)} TFLOP/s"
            + ("" if doc.get("complete") else " — INCOMPLETE run (time cap): later cases missing"))


def weighted_sum_section(work: Path) -> list[str]:
    doc, why = _load(work / "bench_weighted_sum.json")
    head = ["## weighted_sum (Triton)", ""]
    if doc is None:
        return head + [why, ""]
    rows = []
    for r in doc["records"]:
        mode = r["name"].split("/")[1]
        if r["provider"] != "triton" or r["status"] != "ok" or mode not in WS_TARGETS:
            continue
        pct_target, eager_target = WS_TARGETS[mode]
        big = r["params"]["M"] >= WS_MIN_M and r["dtype"] == "bfloat16"
        verdicts = [_verdict(r["pct_of_ceiling"], pct_target), _verdict(r.get("vs_eager"), eager_target),
                    _verdict(r.get("vs_compile"), WS_VS_COMPILE)] if big else ["(info)"] * 3
        rows.append([mode, r["dtype"], str(r["params"]["K"]), f"2^{r['params']['M'].bit_length() - 1}",
                     _f(r["median_s"] * 1e6), _f(r["pct_of_ceiling"]), _f(r.get("vs_eager"), "{:.2f}"),
                     _f(r.get("vs_compile"), "{:.2f}"), *verdicts])
    if not rows:
        rows.append(["(no Triton records: no GPU, or every case failed; see bench_weighted_sum.md)"] + [""] * 10)
    return head + [_ceiling_line(doc), "", f"Targets at bf16, M ≥ 2^24: % of copy ceiling ≥ 85 forward / 80 "
                   f"backward; × eager ≥ 4 / 3; × compile ≥ {WS_VS_COMPILE}.", "",
                   *_table(["mode", "dtype", "K", "M", "µs", "% copy", "× eager", "× compile", "% verdict",
                            "× eager verdict", "× compile verdict"], rows), ""]


def dwconv_se_section(work: Path) -> list[str]:
    doc, why = _load(work / "bench_dwconv_se.json")
    head = ["## dwconv_se (training, forward+backward)", ""]
    if doc is None:
        return head + [why, ""]
    by = {}
    for r in doc["records"]:
        if r["status"] == "ok":
            key = (r["name"], r["params"]["layer"], r["params"]["N"])
            by.setdefault(key, {})[r["provider"].split(":")[0]] = r
    rows = []
    for (name, layer, n), recs in by.items():
        fused = recs.get("triton") or recs.get("cuda")
        if name != "dwconv_se/forward+backward" or fused is None:
            continue
        eager_cl, eager_nchw, comp = recs.get("eager_cl"), recs.get("eager_nchw"), recs.get("compile")
        ratio = lambda base, fused=fused: base["median_s"] / fused["median_s"] if base else None  # noqa: E731
        target = layer.startswith("v2s") and n == 128
        rows.append([layer, str(n), fused["provider"], _f(fused["median_s"] * 1e6), _f(ratio(eager_cl), "{:.2f}"),
                     _f(ratio(eager_nchw), "{:.2f}"), _f(ratio(comp), "{:.2f}"), _f(fused.get("model_pct")),
                     _f(fused.get("pct_of_ceiling")),
                     _verdict(ratio(eager_cl), DW_VS_EAGER_CL) if target else "(info)",
                     _verdict(fused.get("model_pct"), DW_MODEL_PCT) if target else "(info)"])
    if not rows:
        rows.append(["(no fused records: no GPU, or every case failed; see bench_dwconv_se.md)"] + [""] * 10)
    return head + [_ceiling_line(doc), "", f"Targets at EfficientNetV2-S shapes, batch 128, bf16: × eager "
                   f"channels_last ≥ {DW_VS_EAGER_CL}, % of copy ceiling by the pass model ≥ {DW_MODEL_PCT:.0f}.", "",
                   *_table(["layer", "N", "impl", "µs", "× eager CL", "× eager NCHW", "× compile", "model %",
                            "floor %", "× eager verdict", "model % verdict"], rows), ""]


def blocks_section(work: Path) -> list[str]:
    doc, why = _load(work / "bench_blocks.json")
    head = ["## MBConv vs Fused-MBConv per EfficientNetV2-S stage", ""]
    if doc is None:
        return head + [why, ""]
    try:
        from dartsfast.profiling import report  # imports torch: see write_text_atomic

        rows = report.comparison_rows(doc["records"])
    except Exception as exc:  # noqa: BLE001
        return head + [f"bench_blocks.json: cannot compare stages ({type(exc).__name__}: {exc})", ""]
    out = []
    for mode in sorted({r["mode"] for r in rows}):
        these = [r for r in rows if r["mode"] == mode]
        agree = [(r["stage"] in EARLY_STAGES) == (r["faster"] == "Fused-MBConv") for r in these]
        out += [f"{mode}: EfficientNetV2's finding (Fused-MBConv faster in stages 1–3, MBConv in 4–6) holds "
                f"in {sum(agree)} of {len(agree)} stages on this device.", "",
                *_table(["stage", "MBConv ms", "impl", "Fused-MBConv ms", "fused/mb", "faster", "as EfficientNetV2"],
                        [[r["stage"], _f(r["mbconv_s"] * 1e3, "{:.3f}"), r["mbconv_impl"],
                          _f(r["fused_s"] * 1e3, "{:.3f}"), _f(r["ratio"], "{:.2f}"), r["faster"],
                          "yes" if a else "no"] for r, a in zip(these, agree)]), ""]
    return head + (out or ["no stage could be compared (see bench_blocks.md)", ""])


def search_step_section(work: Path) -> list[str]:
    doc, why = _load(work / "bench_search_step.json")
    head = ["## Search step", ""]
    if doc is None:
        return head + [why, ""]
    recs = [r for r in doc["records"] if r["status"] == "ok"]
    first = {r["dtype"]: r.get("aten_ops") for r in recs if r["params"]["order"] == 1}
    rows = []
    for r in recs:
        order, ops = r["params"]["order"], r.get("aten_ops")
        seed = r["params"]["config"] == "seed"
        if order == 1:
            ops_verdict = _verdict(ops, STEP_MAX_OPS, at_least=False)
        else:
            base = first.get(r["dtype"])
            ops_verdict = _verdict(ops / base if ops and base else None, STEP_ORDER2_FACTOR, at_least=False)
        rows.append([r["params"]["config"], str(order), r["dtype"], r["layout"], _f(r["median_s"] * 1e3, "{:.2f}"),
                     _f(r.get("images_per_s"), "{:.0f}"), _f(ops, "{:d}"), _f(r.get("host_syncs"), "{:d}"),
                     _f(r.get("kernel_launches"), "{:d}"), _f(r.get("gpu_busy_pct")),
                     ops_verdict if seed else "(info)",
                     _verdict(r.get("host_syncs"), STEP_MAX_SYNCS, at_least=False) if seed else "(info)"])
    return head + [f"Targets (seed configuration): ≤ {STEP_MAX_OPS} aten ops per first-order step, second order "
                   f"≤ {STEP_ORDER2_FACTOR}× the first, {STEP_MAX_SYNCS} host syncs.", "",
                   *_table(["config", "order", "dtype", "layout", "ms/step", "img/s", "aten ops", "host syncs",
                            "launches", "GPU busy %", "ops verdict", "syncs verdict"], rows), ""]


def bench_full_section(work: Path) -> list[str]:
    doc, why = _load(work / "bench_full.json")
    head = ["## Regression suite (`dartsfast bench run`)", ""]
    if doc is None:
        return head + [why, ""]
    rows = [[r["name"], r["status"], _f(r.get("median_s") and r["median_s"] * 1e6),
             _f((r.get("ratio") or {}).get("value"), "{:.3f}")] for r in doc["records"]]
    return head + [f"suite {doc.get('suite')}, device class {doc.get('device_class')}; commit these records as a "
                   f"baseline with `dartsfast bench update-baseline`.", "",
                   *_table(["benchmark", "status", "median µs", "calibrated ratio"], rows), ""]


def summarise(work: Path, dry: bool = False) -> str:
    work = Path(work)
    dry_note = " (DRY RUN on the CPU: tiny sizes, nothing here is a GPU number)" if dry else ""
    lines = ["# dartsfast GPU suite" + dry_note,
             ""]
    for section in (versions_section, steps_section, tests_section, warm_section, weighted_sum_section,
                    dwconv_se_section, search_step_section, blocks_section, bench_full_section):
        try:
            lines += section(work)
        except Exception as exc:  # noqa: BLE001  (one broken file must not cost the other sections)
            lines += [f"## {section.__name__}: could not be summarised ({type(exc).__name__}: {exc})", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/gpu_summary.py WORKDIR")
    print(summarise(Path(sys.argv[1])))
