"""`bench run --format pytest-benchmark` (issue 19): records in pytest-benchmark's JSON layout,
checked key by key, statistic by statistic against the statistics module, and read back by
pytest-benchmark's own `compare` command. Synthetic samples: no timing."""
import json
import statistics
import subprocess
import sys

import pytest

from dartsfast import records
from dartsfast.bench.export import to_pytest_benchmark
from dartsfast.timing import TimingStats

ENV = {"device_type": "cpu", "device_name": "Test CPU", "cpu_model": "Test CPU", "cpu_count": 2, "arch": "x86_64",
       "git_commit": "a" * 40, "git_dirty": False, "date": "2026-12-01T04:00:00+00:00", "python": "3.11.7"}
SAMPLES = [1e-3 * (1 + 0.01 * ((7 * i) % 13)) for i in range(40)] + [5e-3]  # one outlier


def _doc():
    recs = [records.bench_record(name=name, params={"K": 4}, provider="torch", dtype="float32", layout="flat",
                                 env=ENV, stats=TimingStats.from_samples(SAMPLES),
                                 extra={"ratio": {"value": 1.5}, "samples": {"bench": SAMPLES, "unit": SAMPLES}})
            for name in ("weighted_sum/forward", "dwconv_se/forward")]
    recs.append(records.bench_record(name="broken", params={}, provider="torch", dtype="float32", layout="flat",
                                     env=ENV, status="error", error="boom"))
    return records.document("bench", ENV, recs, suite="quick", complete=False, seconds=1.0)


def test_the_layout_and_its_statistics():
    out = to_pytest_benchmark(_doc())
    assert set(out) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    assert out["commit_info"]["id"] == "a" * 40 and out["datetime"].startswith("2026-12-01")
    assert [b["name"] for b in out["benchmarks"]] == ["weighted_sum/forward", "dwconv_se/forward"]
    b = out["benchmarks"][0]
    assert {"name", "fullname", "params", "stats", "group", "extra_info"} <= set(b)
    assert b["fullname"].startswith("dartsfast.bench::weighted_sum/forward [K=4]")
    s = b["stats"]
    q1, q2, q3 = statistics.quantiles(SAMPLES, n=4, method="inclusive")
    assert s["min"] == min(SAMPLES) and s["max"] == max(SAMPLES) and s["rounds"] == len(SAMPLES)
    assert s["mean"] == pytest.approx(statistics.fmean(SAMPLES))
    assert s["stddev"] == pytest.approx(statistics.stdev(SAMPLES))
    assert (s["q1"], s["median"], s["q3"]) == pytest.approx((q1, q2, q3)) and s["iqr"] == pytest.approx(q3 - q1)
    assert s["ops"] == pytest.approx(1 / statistics.fmean(SAMPLES)) and s["iterations"] == 1
    assert s["iqr_outliers"] == 1 and s["hd15iqr"] < 5e-3
    assert b["extra_info"]["calibrated_ratio"] == 1.5


def test_records_without_samples_are_refused():
    doc = _doc()
    del doc["records"][0]["samples"]
    with pytest.raises(ValueError, match="weighted_sum/forward: the record has no samples"):
        to_pytest_benchmark(doc)


def test_pytest_benchmark_itself_reads_it(tmp_path):
    pytest.importorskip("pytest_benchmark")
    path = tmp_path / "0001_dartsfast.json"
    path.write_text(json.dumps(to_pytest_benchmark(_doc())))
    proc = subprocess.run([sys.executable, "-c", "import sys; from pytest_benchmark.cli import main; "
                           "sys.argv = ['pytest-benchmark', 'compare', sys.argv[1]]; main()", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "weighted_sum/forward" in proc.stdout and "dwconv_se/forward" in proc.stdout
