"""benchmarks/bench_blocks.py as gpu_suite.sh calls it (``--out FILE``), in its quick CPU
form: a valid profile document, the Markdown and both PNGs beside it, every stage compared."""
import json
import subprocess
import sys
from pathlib import Path

from dartsfast import records
from dartsfast.profiling import report
from dartsfast.testing import NO_TIME_BUDGET, SUBPROCESS_TIMEOUT_S

REPO = Path(__file__).resolve().parents[2]


def test_quick_bench_blocks_writes_document_report_and_plots(tmp_path):
    out = tmp_path / "suite" / "bench_blocks.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_blocks.py"), "--out", str(out),
                           "--device", "cpu", "--repeats", "2", "--warmup", "0", *NO_TIME_BUDGET],
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = records.validate_document(json.loads(out.read_text()))
    assert doc["complete"] and doc["config"]["quick"] and doc["config"]["threads"] == 1
    recs = doc["records"]
    # 11 EfficientNetV2-S stage positions × 2 blocks × {eager, fused} × 2 modes; Fused-MBConv
    # (no SE in EfficientNetV2) has no fused impl: 22 unsupported, the rest timed.
    assert len(recs) == 88
    assert sum(r["status"] == "ok" for r in recs) == 66
    assert {r["stage"] for r in recs} == {f"stage{i}" for i in range(1, 7)}
    rows = report.comparison_rows(recs)
    assert len(rows) == 6 * 2  # every stage compared, in both modes
    assert all(r["faster"] in ("MBConv", "Fused-MBConv") and r["ratio"] > 0 for r in rows)
    md = out.with_suffix(".md").read_text()
    assert md.count("| stage | first block |") == 2 and md.count("| stage6 |") == 2  # a table per mode
    for name in ("bench_blocks_stages.png", "bench_blocks_roofline.png"):
        assert (out.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## bench_blocks on" in proc.stdout and "records: 66 ok, 22 unsupported" in proc.stdout
