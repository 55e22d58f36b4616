"""benchmarks/: the weighted_sum benchmark end to end in --quick mode (as gpu_suite.sh calls
it), and the shared harness's records, budget and error handling (the atomic writer it
uses is tested in tests/test_records.py)."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dartsfast.testing import NO_TIME_BUDGET, SUBPROCESS_TIMEOUT_S

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import harness  # noqa: E402


def exact_bytes(mode, k, m, elem):
    """Independent count: forward reads K inputs, writes 1; backward reads grad + K, writes K."""
    fwd = (k * m + m) * elem + 4 * k
    bwd = (m + k * m + k * m) * elem + 4 * k + 4 * k
    return {"forward": fwd, "backward": bwd, "forward+backward": fwd + bwd}[mode]


def test_quick_benchmark_writes_valid_records(tmp_path):
    out = tmp_path / "results" / "bench_weighted_sum.json"
    # The calling convention of benchmarks/gpu_suite.sh, plus --quick and --device cpu.
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_weighted_sum.py"), "--out", str(out),
                           "--quick", "--device", "cpu", "--repeats", "3", *NO_TIME_BUDGET],
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads(out.read_text())
    assert payload["schema"] == harness.SCHEMA_VERSION and payload["complete"] and payload["quick"]
    assert payload["ceiling"]["bytes_per_s"] > 0 and payload["environment"]["torch"] == torch.__version__
    assert payload["ceiling"]["matmul_flops_per_s"] > 0 and payload["ceiling"]["matmul_dtype"] == "float32"  # CPU
    records = payload["records"]
    # K ∈ {4, 8} × 2 sizes × bf16 × {eager, compile} × 3 modes.
    assert len(records) == 24
    assert {r["provider"] for r in records} == {"eager", "compile:aot_eager"}
    assert {r["name"] for r in records} == {f"weighted_sum/{m}" for m in ("forward", "backward", "forward+backward")}
    for r in records:
        assert r["status"] == "ok", r
        assert r["dtype"] == "bfloat16" and r["n"] == 3
        assert 0 < r["min_s"] <= r["q25_s"] <= r["median_s"] <= r["q75_s"]
        mode = r["name"].split("/")[1]
        assert r["bytes"] == exact_bytes(mode, r["params"]["K"], r["params"]["M"], 2)
        assert r["gb_per_s"] == pytest.approx(r["bytes"] / r["median_s"] / 1e9)
        ceiling = payload["ceiling"]["bytes_per_s"]
        assert r["pct_of_ceiling"] == pytest.approx(100 * r["bytes"] / r["median_s"] / ceiling)
        assert r["rel_err"] < 1e-2  # bf16 tolerance: every provider computed the right sum
        assert r["git_commit"] == payload["environment"]["git_commit"]
        assert r["vs_eager"] > 0 and r["vs_compile"] > 0
    assert out.with_suffix(".md").read_text().startswith("## weighted_sum")
    assert "| weighted_sum/forward | K=4 M=16384 | eager |" in proc.stdout
    assert not list(out.parent.glob(".*.tmp")), "temporary file left behind"


def make_args(tmp_path, **kw):
    ns = dict(out=tmp_path / "r.json", quick=True, repeats=2, warmup=0, max_seconds=60.0, device=torch.device("cpu"))
    return argparse.Namespace(**(ns | kw))


def test_harness_records_errors_and_budget_and_writes_incomplete_runs(tmp_path):
    args = make_args(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        with harness.BenchRun("demo", args) as run:
            ok = run.time(lambda: sum(range(100)), params={"M": 100}, provider="p", dtype=torch.float32,
                          nbytes=800, extra={"rel_err": float("nan")})
            bad = run.time(lambda: 1 / 0, params={"M": 1}, provider="q", dtype=torch.float32)
            args.max_seconds = 1e-9  # budget spent: later cases are recorded, not run
            skipped = run.time(lambda: pytest.fail("ran past the budget"), params={}, provider="r", dtype="bf16")
            raise RuntimeError("boom")  # the script dies: what was measured must still be written
    assert ok["status"] == "ok" and ok["gb_per_s"] == pytest.approx(800 / ok["median_s"] / 1e9)
    assert bad["status"] == "error" and "ZeroDivisionError" in bad["error"] and bad["median_s"] is None
    assert skipped["status"] == "skipped" and "budget" in skipped["error"]
    payload = json.loads(args.out.read_text())
    assert payload["complete"] is False and [r["status"] for r in payload["records"]] == ["ok", "error", "skipped"]
    assert payload["records"][0]["rel_err"] is None  # NaN is not JSON: written as null, never a failed write


def test_markdown_table_rows():
    env = {"device_name": "cpu", "git_commit": "abc"}
    rec = harness.make_record(name="n", params={"K": 4}, provider="eager", dtype=torch.bfloat16, layout="flat",
                              env=env, extra={"vs_eager": 2.0})
    table = harness.markdown_table([rec], extra_columns=["vs_eager"])
    lines = table.splitlines()
    assert len(lines) == 3 and lines[2].startswith("| n | K=4 | eager | bfloat16 | flat | – |")
    assert "| 2 |" in lines[2]
    with pytest.raises(ValueError, match="status"):
        harness.make_record(name="n", params={}, provider="p", dtype="f", layout="l", env=env, status="bad")


@pytest.mark.parametrize("argv, message", [
    (["--repeats", "0"], "--repeats must be"),
    (["--max-seconds", "0"], "--max-seconds must be"),
    (["--device", "tpu"], "--device"),
])
def test_parse_args_rejects_bad_values(argv, message, capsys):
    with pytest.raises(SystemExit):
        harness.parse_args("demo", argv)
    assert message in capsys.readouterr().err


def test_parse_args_out_directory_and_quick_on_cpu(tmp_path, capsys):
    with pytest.raises(SystemExit):
        harness.parse_args("demo", ["--out", str(tmp_path)])
    assert "is a directory" in capsys.readouterr().err
    args = harness.parse_args("demo", ["--device", "cpu"])
    assert args.quick and args.out is None and args.device == torch.device("cpu")
