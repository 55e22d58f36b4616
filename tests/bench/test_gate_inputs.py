"""The gate never passes on nothing (issue 19): empty records, missing, erroring or skipped
benchmarks, a base of another suite, another device class and unknown schemas exit 2 naming
the problem unless a flag allows it; update-baseline refuses to write an empty baseline.
Synthetic documents: no timing, so nothing here depends on this machine's speed."""
import json

import pytest

from dartsfast import records
from dartsfast.cli import EXIT_USAGE, main
from dartsfast.timing import TimingStats

ENV = {"device_type": "cpu", "device_name": "Test CPU", "cpu_model": "Test CPU", "cpu_count": 2, "arch": "x86_64",
       "git_commit": "0" * 40}
NAMES = ("weighted_sum/forward", "dwconv_se/forward")


def record(name, value=2.0, status="ok", env=ENV):
    if status != "ok":
        return records.bench_record(name=name, params={}, provider="torch", dtype="float32", layout="nchw",
                                    env=env, status=status, error="RuntimeError: kernel exploded")
    samples = [1e-3 * value * (1 + 0.001 * i) for i in range(20)]
    ratio = {"value": value, "quantile": 0.02, "rel_se": 0.002, "n": 20, "unit_s": 1e-3}
    return records.bench_record(name=name, params={}, provider="torch", dtype="float32", layout="nchw", env=env,
                                stats=TimingStats.from_samples(samples),
                                extra={"ratio": ratio, "calibration": {"units": 2, "unit_median_s": 1e-3}})


def doc(recs, suite="quick", env=ENV):
    return records.document("bench", env, recs, suite=suite, complete=True, seconds=1.0)


def write(tmp_path, name, d):
    path = tmp_path / name
    path.write_text(json.dumps(d))
    return str(path)


@pytest.fixture
def base(tmp_path):
    return write(tmp_path, "base.json", doc([record(n) for n in NAMES]))


def test_the_same_document_passes(base, capsys):
    assert main(["bench", "compare", base, base]) == 0
    assert "CANNOT PASS" not in capsys.readouterr().err


@pytest.mark.parametrize("new_doc, message, flag", [
    (doc([]), "new has no records", None),
    (doc([record(NAMES[0])]), "missing from new (--allow-missing): dwconv_se/forward", "--allow-missing"),
    (doc([record(NAMES[0]), record(NAMES[1], status="error")]),
     "not measured (--allow-errors): dwconv_se/forward", "--allow-errors"),
    (doc([record(NAMES[0]), record(NAMES[1], status="skipped")]), "not measured", "--allow-errors"),
    (doc([record(n) for n in NAMES], suite="full"), "base is suite 'quick', new is suite 'full'",
     "--allow-incomparable"),
    (doc([record("other/bench")]), "no benchmark was compared", None),
])
def test_gate_refuses_to_pass_on_nothing(base, tmp_path, capsys, new_doc, message, flag):
    new = write(tmp_path, "new.json", new_doc)
    assert main(["bench", "compare", base, new]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err
    if flag is None:  # nothing compared: no flag makes that a pass
        for allow in ("--allow-missing", "--allow-errors", "--allow-incomparable"):
            assert main(["bench", "compare", base, new, allow]) == EXIT_USAGE
    else:
        assert main(["bench", "compare", base, new, flag]) == 0


def test_an_empty_base_fails_too(base, tmp_path, capsys):
    empty = write(tmp_path, "empty.json", doc([]))
    assert main(["bench", "compare", empty, base]) == EXIT_USAGE
    assert "base has no records" in capsys.readouterr().err


def test_another_device_class_is_not_comparable(base, tmp_path, capsys):
    other = {**ENV, "cpu_model": "Other CPU"}
    new = write(tmp_path, "new.json", doc([record(n, env=other) for n in NAMES], env=other))
    assert main(["bench", "compare", base, new]) == EXIT_USAGE
    assert "not comparable (--allow-incomparable)" in capsys.readouterr().err


@pytest.mark.parametrize("schema", [99, "99", "dartsfast.records/2", True])
def test_unknown_schema_is_refused(base, tmp_path, capsys, schema):
    d = doc([record(n) for n in NAMES])
    d["schema"] = schema
    bad = write(tmp_path, "bad.json", d)
    assert main(["bench", "compare", base, bad]) == EXIT_USAGE
    assert main(["bench", "compare", bad, base]) == EXIT_USAGE
    assert "unknown schema" in capsys.readouterr().err


def test_no_baseline_for_this_device_class_fails_unless_allowed(base, tmp_path, capsys):
    (tmp_path / "baselines").mkdir()
    assert main(["bench", "compare", str(tmp_path / "baselines"), base]) == EXIT_USAGE
    assert "no baseline for device class cpu-x86_64-2c-test-cpu" in capsys.readouterr().err
    assert main(["bench", "compare", str(tmp_path / "baselines"), base, "--allow-no-baseline"]) == 0


def test_a_regression_still_exits_1_and_the_json_lists_problems(base, tmp_path):
    slow = write(tmp_path, "slow.json", doc([record(NAMES[0]), record(NAMES[1], value=4.0)]))
    assert main(["bench", "compare", base, slow, "--json", str(tmp_path / "v.json")]) == 1
    out = json.loads((tmp_path / "v.json").read_text())
    assert out["regression"] and out["problems"] == []


@pytest.mark.parametrize("runs, message", [
    ([doc([])], "have no records"),
    ([doc([record(n, status="error") for n in NAMES])], "no benchmark was measured"),
    ([doc([record(n) for n in NAMES]), doc([record(n) for n in NAMES], suite="full")], "different suites"),
])
def test_update_baseline_refuses_an_empty_baseline(tmp_path, capsys, runs, message):
    paths = [write(tmp_path, f"r{i}.json", d) for i, d in enumerate(runs)]
    assert main(["bench", "update-baseline", *paths, "--dir", str(tmp_path / "bl")]) == EXIT_USAGE
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bl").exists() or not list((tmp_path / "bl").iterdir())
