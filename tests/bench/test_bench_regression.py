"""`dartsfast bench` end to end: the quick suite (two cheap benchmarks) compared with itself
passes, an unmistakable planted slowdown (5x) is flagged with exit 1; baselines, history and
the CLI's errors (exit 2 naming the problem). The wall-clock variant (unchanged code passes,
a 20% plant is flagged) is marked `timing` and left out of the default run."""
import json
import os
import subprocess
import sys

import pytest
import torch

from dartsfast.bench import suites
from dartsfast.bench.history import append_history, read_history
from dartsfast.bench.runner import PLANT_ENV, run_suite
from dartsfast.bench.suites import QUICK, suite
from dartsfast.cli import EXIT_USAGE, main
from dartsfast.testing import SUBPROCESS_TIMEOUT_S

# The two quietest quick benchmarks (run-to-run sd 0.3–0.5% here), at 30% of their pairs:
# ~2 s of timing per run on a 2-core runner.
CHEAP = "dwconv_se/forward,fused_mbconv/forward+backward"
RUN = ["bench", "run", "--only", CHEAP, "--pairs-scale", "0.3"]


def _cli(args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != PLANT_ENV}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "dartsfast", *args], capture_output=True, text=True, env=env,
                          timeout=SUBPROCESS_TIMEOUT_S)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "base.json"
    proc = _cli([*RUN, "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def _verdicts(path):
    return {r["benchmark"].split(" ")[0]: r for r in json.loads(path.read_text())["rows"]}


def test_the_same_measurements_pass_compare(base_run, tmp_path):
    # Both sides are one run: change 0 whatever the machine's speed, so the ok path of the
    # CLI (exit 0, table, --json verdicts) is checked without a second, noisy measurement.
    proc = _cli(["bench", "compare", str(base_run), str(base_run), "--json", str(tmp_path / "v.json")])
    assert proc.returncode == 0, proc.stdout
    rows = _verdicts(tmp_path / "v.json")
    assert sorted(rows) == sorted(CHEAP.split(","))
    assert all(r["verdict"] == "ok" and r["change"] == 0 for r in rows.values())
    assert "no significant regression: 2 ok" in proc.stdout


def test_an_unmistakable_planted_slowdown_fails_compare(base_run, tmp_path):
    # 5x the call (400% extra work): flagged unless the threshold were > 400%, i.e. unless
    # the calibration's own speed moved ~e-fold between the runs. The 20% plant the gate is
    # meant to catch is measured by test_unchanged_passes_and_a_planted_20pct_slowdown_fails
    # (marked `timing`) and by benchmarks/gate_rates.py, not here: on a busy machine the gate
    # rightly widens its threshold past 20% (issue 11).
    slow = tmp_path / "slow.json"
    proc = _cli([*RUN, "--out", str(slow)], {PLANT_ENV: "dwconv_se/forward:4"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(slow.read_text())
    assert doc["planted"] == {"dwconv_se/forward": 4.0}
    assert {r["name"]: r["planted_slowdown"] for r in doc["records"]} == {"dwconv_se/forward": 4.0,
                                                                           "fused_mbconv/forward+backward": 0.0}
    proc = _cli(["bench", "compare", str(base_run), str(slow), "--json", str(tmp_path / "v.json")])
    assert proc.returncode == 1, proc.stdout
    planted = _verdicts(tmp_path / "v.json")["dwconv_se/forward"]
    assert planted["verdict"] == "regression" and planted["change"] > planted["threshold"]
    assert "REGRESSION" in proc.stdout and "planted 400% in new" in proc.stdout


@pytest.mark.timing
def test_unchanged_passes_and_a_planted_20pct_slowdown_fails(base_run, tmp_path):
    # Wall-clock: passes on a quiet machine; on a busy one the gate may rightly widen its
    # threshold past 20% (then this fails, as issue 11 saw), so it is kept out of the default run.
    same = tmp_path / "same.json"
    assert _cli([*RUN, "--out", str(same)]).returncode == 0
    proc = _cli(["bench", "compare", str(base_run), str(same), "--json", str(tmp_path / "v1.json")])
    assert proc.returncode == 0, proc.stdout
    assert [r["verdict"] for r in _verdicts(tmp_path / "v1.json").values()] == ["ok", "ok"]

    slow = tmp_path / "slow.json"
    proc = _cli([*RUN, "--out", str(slow)], {PLANT_ENV: "dwconv_se/forward:0.2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = _cli(["bench", "compare", str(base_run), str(slow), "--json", str(tmp_path / "v2.json")])
    assert proc.returncode == 1, proc.stdout
    rows = _verdicts(tmp_path / "v2.json")
    assert rows["dwconv_se/forward"]["verdict"] == "regression"
    assert 0.12 < rows["dwconv_se/forward"]["change"] < 0.3, rows  # the plant is 20% of the call
    assert rows["fused_mbconv/forward+backward"]["verdict"] == "ok"


def test_run_records_have_the_design_fields(base_run):
    doc = json.loads(base_run.read_text())
    assert doc["suite"] == "quick" and doc["device_class"].startswith("cpu-") and doc["complete"]
    assert [r["name"] for r in doc["records"]] == CHEAP.split(",")
    for r in doc["records"]:
        assert r["status"] == "ok" and r["provider"] == "torch" and r["dtype"] == "float32" and r["layout"] == "nchw"
        assert r["params"]["threads"] == 1 and r["device_class"] == doc["device_class"] and r["fingerprint"]
        assert 0 < r["min_s"] <= r["median_s"] and r["iqr_s"] >= 0 and r["versions"]["torch"]
        assert r["ratio"]["value"] > 0 and r["ratio"]["rounds"] == 3 and len(r["ratio"]["round_values"]) == 3
        assert r["ratio"]["n"] == r["n"] >= 3 * 10 and r["calibration"]["units"] >= 1


def test_update_baseline_from_files_and_compare_against_the_directory(base_run, tmp_path, capsys):
    assert main(["bench", "update-baseline", str(base_run), str(base_run), "--dir", str(tmp_path / "bl")]) == 0
    cls = json.loads(base_run.read_text())["device_class"]
    baseline = json.loads((tmp_path / "bl" / f"{cls}.json").read_text())
    assert baseline["baseline"]["runs"] == 2 and baseline["records"][0]["ratio"]["run_rel_sd"] == 0
    assert main(["bench", "compare", str(tmp_path / "bl"), str(base_run)]) == 0
    assert "no significant regression: 2 ok" in capsys.readouterr().out
    # no baseline for this device class: the gate never passes on nothing (issue 19) unless allowed
    assert main(["bench", "compare", str(tmp_path / "empty"), str(base_run)]) == EXIT_USAGE  # not a directory
    (tmp_path / "empty").mkdir()
    assert main(["bench", "compare", str(tmp_path / "empty"), str(base_run)]) == EXIT_USAGE
    assert f"no baseline for device class {cls}" in capsys.readouterr().err
    assert main(["bench", "compare", str(tmp_path / "empty"), str(base_run), "--allow-no-baseline"]) == 0
    assert f"no baseline for device class {cls}" in capsys.readouterr().out


def test_update_baseline_refuses_a_planted_run(base_run, tmp_path, capsys):
    doc = json.loads(base_run.read_text())
    doc["records"][0]["planted_slowdown"] = 0.2
    (tmp_path / "p.json").write_text(json.dumps(doc))
    assert main(["bench", "update-baseline", str(tmp_path / "p.json"), "--dir", str(tmp_path)]) == EXIT_USAGE
    assert "planted slowdown" in capsys.readouterr().err
    assert not list(tmp_path.glob("cpu-*.json"))


def test_history_appends_and_plots(base_run, tmp_path, capsys):
    hist = tmp_path / "h.jsonl"
    doc = json.loads(base_run.read_text())
    append_history(hist, doc)
    append_history(hist, {**doc, "environment": {**doc["environment"], "git_commit": "f" * 40}})
    with open(hist, "a") as fh:
        fh.write('{"date": "truncated by a kill')  # a run killed mid-append
    entries = read_history(hist)
    assert len(entries) == 2 and entries[1]["git_commit"] == "f" * 40
    assert entries[0]["records"][0]["ratio"] == doc["records"][0]["ratio"]["value"]
    png = tmp_path / "ws.png"
    assert main(["bench", "history", "--name", "dwconv_se/forward", "--history", str(hist), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "2 point(s)" in capsys.readouterr().out
    assert main(["bench", "history", "--name", "nope", "--history", str(hist), "--out", str(png)]) == EXIT_USAGE
    assert "no successful runs of 'nope'" in capsys.readouterr().err


def test_run_appends_to_history(tmp_path):
    hist = tmp_path / "h.jsonl"
    proc = _cli(["bench", "run", "--only", "weighted_sum/forward", "--pairs-scale", "0.02", "--rounds", "1",
                 "--history", str(hist)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["name"] for r in read_history(hist)[0]["records"]] == ["weighted_sum/forward"]


@pytest.mark.parametrize("content, message", [
    (None, "no such file"), ("{not json", "not valid JSON"), ('{"records": 3}', "no 'records' list"),
    ('{"records": [{"name": "a", "median_s": -1, "device_class": "c"}]}', "median_s must be a non-negative number"),
])
def test_compare_bad_files_exit_2_naming_the_problem(base_run, tmp_path, capsys, content, message):
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    assert main(["bench", "compare", str(base_run), str(bad)]) == EXIT_USAGE
    assert main(["bench", "compare", str(bad), str(base_run)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and str(bad) in err


@pytest.mark.parametrize("args, env, message", [
    (["bench", "run", "--only", "nope"], {}, "unknown benchmark(s) 'nope'"),
    (["bench", "run", "--only", "weighted_sum/forward"], {PLANT_ENV: "nope:0.2"}, "unknown benchmark 'nope'"),
    (["bench", "run", "--only", "weighted_sum/forward"], {PLANT_ENV: "weighted_sum/forward"}, "NAME:FRACTION"),
    (["bench", "run", "--suite", "full"], {}, "no CUDA device"),
    (["bench", "history", "--name", "x", "--history", "/nonexistent/h.jsonl", "--out", "x.png"], {},
     "no such history file"),
])
def test_cli_usage_errors_exit_2(monkeypatch, capsys, args, env, message):
    if "full" in args and torch.cuda.is_available():
        pytest.skip("a GPU is visible: the full suite would run")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(args) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_max_regression_must_be_a_fraction(base_run, capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "compare", str(base_run), str(base_run), "--max-regression", "ten"])
    assert info.value.code == EXIT_USAGE and "expected a fraction" in capsys.readouterr().err


def test_a_failing_benchmark_is_recorded_and_the_rest_still_run(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("kernel exploded")

    monkeypatch.setitem(suites._BUILDERS, "weighted_sum/forward", (broken, "flat", "weighted_sum"))
    doc = run_suite("quick", names=["weighted_sum/forward", "weighted_sum/backward"], pairs_scale=0.02, rounds=1)
    first, second = doc["records"]
    assert first["status"] == "error" and "kernel exploded" in first["error"] and first["median_s"] is None
    assert second["status"] == "ok" and not doc["complete"]


def test_full_suite_builders_run_in_its_formats_at_tiny_sizes():
    # The full suite is for GPUs; here its formats (bf16, channels_last, autocast in the
    # search step) go through every builder at the quick sizes, on the CPU.
    full = suite("full")
    assert [s.name for s in full] == [s.name for s in suite("quick")]  # the same benchmarks on every device
    for spec in full:
        assert spec.dtype == torch.bfloat16 and spec.layout in ("flat", "channels_last") and spec.units >= 1
        fn, nbytes = spec.build(torch.device("cpu"), spec.dtype, spec.layout, **QUICK[spec.name][0])
        out = fn()
        tensors = out if isinstance(out, (tuple, list)) else [out]
        assert all(torch.isfinite(t.float()).all() for t in tensors), spec.name
        assert nbytes is None or nbytes > 0


def test_a_spent_time_budget_skips_what_is_left():
    doc = run_suite("quick", names=["weighted_sum/forward"], max_seconds=1e-9)
    (only,) = doc["records"]
    assert only["status"] == "skipped" and "time budget" in only["error"] and not doc["complete"]
