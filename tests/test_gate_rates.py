"""benchmarks/gate_rates.py: the counting of false alarms and detections (on synthetic
verdicts, exact), its argument errors, and one tiny end-to-end run (structure only: the
verdicts of a real run are wall-clock measurements and are not asserted here)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dartsfast.testing import SUBPROCESS_TIMEOUT_S

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import gate_rates  # noqa: E402

PLANT = {"a": 0.2}


def _run(planted, **rows):
    return {"planted": PLANT if planted else {},
            "rows": {n: {"verdict": v, "change": c, "threshold": t} for n, (v, c, t) in rows.items()}}


def test_summary_counts_false_alarms_and_detections():
    runs = [_run(False, a=("ok", 0.01, 0.1), b=("ok", -0.02, 0.1)),
            _run(True, a=("regression", 0.19, 0.1), b=("ok", 0.0, 0.1)),
            _run(False, a=("ok", 0.05, 0.1), b=("regression", 0.3, 0.12)),  # a false alarm
            _run(True, a=("ok", 0.15, 0.2), b=("regression", 0.4, 0.1)),  # missed, and a false alarm
            _run(False, a=("error", None, None), b=("ok", 0.0, 0.1))]
    s = gate_rates.summarise(runs, PLANT)
    assert (s["unchanged_runs"], s["false_alarm_runs"], s["false_alarms"]) == (3, 1, ["b"])
    assert s["planted_runs"] == 2 and s["false_alarms_in_planted_runs"] == ["b"]
    assert s["planted"]["a"] == {"fraction": 0.2, "detected": 1, "change_min": 0.15, "change_max": 0.19,
                                 "threshold_min": 0.1, "threshold_max": 0.2}
    md = gate_rates.markdown(s, {"cpu_model": "X"}, type("A", (), {"base": "run", "busy": 1})())
    assert "1 of 3 runs flagged (b)" in md and "planted 20% in a: flagged in 1 of 2 runs" in md
    assert "+15.0% to +19.0%" in md


@pytest.mark.parametrize("argv, message", [
    (["--runs", "0"], "--runs must be"),
    (["--busy", "-1"], "--busy must be"),
    (["--plant", "nope:0.2"], "unknown benchmark 'nope'"),
    (["--plant", "dwconv_se/forward"], "NAME:FRACTION"),
    (["--only", "weighted_sum/forward"], "which --only leaves out"),
])
def test_bad_arguments_exit_2_naming_the_problem(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        gate_rates.parse_args(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_a_tiny_run_writes_runs_and_summary(tmp_path):
    out = tmp_path / "gate" / "g.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gate_rates.py"), "--runs", "1",
                           "--only", "weighted_sum/forward", "--plant", "weighted_sum/forward:1",
                           "--pairs-scale", "0.02", "--base", "run", "--busy", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert [bool(r["planted"]) for r in doc["runs"]] == [False, True]  # unchanged first, then planted
    assert all(set(r["rows"]) == {"weighted_sum/forward"} for r in doc["runs"])
    s = doc["summary"]
    assert (s["unchanged_runs"], s["planted_runs"]) == (1, 1) and s["planted"]["weighted_sum/forward"]["fraction"] == 1
    assert doc["config"]["busy"] == 1 and doc["config"]["base"] == "run"
    assert out.with_suffix(".md").read_text().startswith("## gate_rates on")
    assert not list(out.parent.glob(".*.tmp"))


def test_synthetic_rates_from_measured_noise(tmp_path):
    """--synthetic (issue 19): values resampled from per-process noise read from a bench ab
    report; at 0.5% noise no A/A run is flagged and every 10% and 20% plant is."""
    import gate_synthetic
    import numpy as np

    rng = np.random.default_rng(0)
    rows = [{"name": n, "base_values": list(np.exp(rng.normal(0, 0.005, 6))),
             "head_values": list(np.exp(rng.normal(0, 0.005, 6)))} for n in ("a", "b")]
    path = tmp_path / "ab.json"
    path.write_text(json.dumps({"kind": "bench_ab", "planted": "", "rows": rows}))
    noise = gate_synthetic.measured_noise([path])
    assert set(noise) == {"a", "b"} and len(noise["a"]) == 12
    logs = np.log(rows[0]["base_values"])
    assert np.allclose(noise["a"][:6], logs - np.median(logs))  # centred on each side's median
    rates = gate_synthetic.synthetic_rates(noise, "a", runs=20, sets=5)
    assert rates["0"]["flagged_max"] == 0 and rates["0.1"]["flagged_min"] == 20 and rates["0.2"]["flagged_min"] == 20
    with pytest.raises(ValueError, match="no measured noise for the planted benchmark 'c'"):
        gate_synthetic.synthetic_rates(noise, "c")
