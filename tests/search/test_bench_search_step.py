"""benchmarks/bench_search_step.py in --quick mode, as benchmarks/gpu_suite.sh calls it."""
import json
import subprocess
import sys
from pathlib import Path

import torch

from dartsfast.testing import NO_TIME_BUDGET, SUBPROCESS_TIMEOUT_S

REPO = Path(__file__).resolve().parents[2]


def test_quick_search_step_benchmark_times_both_orders(tmp_path):
    out = tmp_path / "bench_search_step.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_search_step.py"), "--out", str(out),
                           "--quick", "--device", "cpu", "--repeats", "2", "--warmup", "1", *NO_TIME_BUDGET],
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads(out.read_text())
    assert payload["complete"]
    records = payload["records"]
    assert sorted(r["params"]["order"] for r in records) == [1, 2]
    for r in records:
        assert r["status"] == "ok", r
        assert r["params"]["config"] == "tiny" and r["n"] == 2
        assert 0 < r["min_s"] <= r["median_s"]
        assert abs(r["images_per_s"] - r["params"]["batch_size"] / r["median_s"]) < 1e-6 * r["images_per_s"]
        assert r["aten_ops"] > 100 and r["host_syncs"] >= 0 and "count_error" not in r
        assert r["kernel_launches"] is None and r["gpu_busy_pct"] is None  # CUDA only
    first, second = sorted(records, key=lambda r: r["params"]["order"])
    assert second["aten_ops"] > first["aten_ops"]  # the unrolled step does strictly more


def test_op_counter_counts_dispatched_ops_and_host_syncs():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import bench_search_step

    def step():
        x = torch.ones(3)           # aten.ones
        y = (x + 1).sum()           # aten.add, aten.sum
        return y.item()             # aten._local_scalar_dense: a host sync

    counts = bench_search_step.count_step(step, torch.device("cpu"))
    assert (counts["aten_ops"], counts["host_syncs"]) == (4, 1)
    assert counts["kernel_launches"] is None
