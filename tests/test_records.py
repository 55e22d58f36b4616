"""dartsfast.records: the one record schema. Device classes, validation naming the problem,
old documents (harness and bench results schema 1, "dartsfast.profile/1") mapped on load,
unknown schema ids refused, and the one atomic writer."""
import json
from pathlib import Path

import pytest

from dartsfast import _io, records
from dartsfast.records import SCHEMA, device_class, load_document, machine_fingerprint, validate_document
from dartsfast.timing import TimingStats

REPO = Path(__file__).resolve().parent.parent
CPU = "cpu-x86_64-2c-amd-epyc"
ENV = {"device_type": "cpu", "device_name": "cpu", "cpu_model": "AMD EPYC", "cpu_count": 2,
       "platform": "Linux-x86_64", "git_commit": "abc"}


def test_device_class_and_fingerprint():
    env = {"device_type": "cpu", "cpu_model": "AMD EPYC 7763 64-Core Processor", "cpu_count": 2,
           "platform": "Linux-6.1-x86_64-with-glibc2.36"}
    assert device_class(env) == "cpu-x86_64-2c-amd-epyc-7763-64-core-processor"
    assert device_class({**env, "cpu_count": 4}) != device_class(env)
    gpu = {**env, "device_type": "cuda", "device_name": "NVIDIA H100 80GB HBM3"}
    assert device_class(gpu) == "gpu-nvidia-h100-80gb-hbm3"
    assert machine_fingerprint(env) == machine_fingerprint(dict(env)) != machine_fingerprint(gpu)
    assert len(machine_fingerprint(env)) == 12


@pytest.mark.parametrize("bad, match", [
    ([1, 2], "expected a JSON object"), ({"x": 1}, "no 'records'"), ({"records": [{}]}, "record 0 has no 'name'"),
    ({"records": [{"name": "a", "median_s": "fast", "device_class": CPU}]}, "median_s"),
    ({"records": [{"name": "a", "ratio": {"value": -1}, "device_class": CPU}]}, "'ratio'"),
    ({"records": [{"name": "a"}]}, "no device_class"),
    ({"records": [{"name": "a", "status": "great", "device_class": CPU}]}, "status"),
])
def test_validation_names_the_problem(bad, match):
    with pytest.raises(ValueError, match=match):
        validate_document(bad, "x.json")


def test_validation_derives_the_device_class_from_the_environment():
    d = validate_document({"environment": {"device_type": "cpu", "cpu_model": "Xeon", "cpu_count": 2,
                                          "platform": "Linux-x86_64"}, "records": [{"name": "a"}]})
    assert d["records"][0]["device_class"] == "cpu-x86_64-2c-xeon"


@pytest.mark.parametrize("path", sorted(str(p.relative_to(REPO)) for p in (REPO / "benchmarks").glob("**/*.json")
                                        if "records" in json.loads(p.read_text())))
def test_committed_result_files_load_in_the_one_schema(path):
    raw = json.loads((REPO / path).read_text())
    doc = load_document(REPO / path)
    assert raw["schema"] == 1 and doc["schema"] == SCHEMA and doc["kind"] == "bench"
    assert len(doc["records"]) == len(raw["records"]) and all(r["device_class"] for r in doc["records"])


def test_the_committed_baseline_loads_for_bench_compare():
    doc = load_document(REPO / "benchmarks" / "baselines" / f"{CPU}.json", kind="bench")
    assert doc["device_class"] == CPU and all(r["ratio"]["value"] > 0 for r in doc["records"])


def test_an_old_profile_document_maps_to_kind_profile():
    old = {"schema": "dartsfast.profile/1", "complete": True, "environment": ENV, "ceilings": {}, "config": {},
           "records": []}
    doc = validate_document(old)
    assert (doc["schema"], doc["kind"]) == (SCHEMA, "profile") and old["schema"] == "dartsfast.profile/1"
    with pytest.raises(ValueError, match="a profile document, expected a bench document"):
        validate_document(old, "p.json", kind="bench")


@pytest.mark.parametrize("schema", [2, "dartsfast.records/2", "dartsfast.lut/1", True, [1]])
def test_unknown_schema_ids_are_refused_naming_the_id(schema):
    with pytest.raises(ValueError, match="unknown schema") as info:
        validate_document({"schema": schema, "records": []}, "f.json")
    assert repr(schema) in str(info.value) and "f.json" in str(info.value)


def test_the_one_schema_needs_a_kind():
    with pytest.raises(ValueError, match="'kind'"):
        validate_document({"schema": SCHEMA, "records": []})


def test_new_documents_carry_the_one_schema_and_the_machine():
    rec = records.bench_record(name="n", params={"K": 4}, provider="torch", dtype="torch.float32", layout="flat",
                               env=ENV, stats=TimingStats.from_samples([1e-3, 2e-3, 3e-3]), nbytes=4000,
                               ceiling_bytes_per_s=1e9)
    assert rec["dtype"] == "float32" and rec["median_s"] == 2e-3 and rec["n"] == 3
    assert rec["gb_per_s"] == pytest.approx(2e-3) and rec["pct_of_ceiling"] == pytest.approx(0.2)
    doc = records.document("bench", ENV, [rec], suite="quick", complete=True)
    assert (doc["schema"], doc["kind"], doc["device_class"]) == (SCHEMA, "bench", device_class(ENV))
    assert doc["fingerprint"] == machine_fingerprint(ENV) == rec["fingerprint"]
    with pytest.raises(ValueError, match="kind"):
        records.document("lut", ENV, [])


def test_write_document_is_atomic_validated_and_makes_the_directory(tmp_path):
    path = tmp_path / "new" / "dir" / "r.json"
    doc = records.document("bench", ENV, [records.bench_record(name="n", params={}, provider="p", dtype="f",
                                                               layout="flat", env=ENV)], complete=True)
    records.write_document(path, doc)
    assert load_document(path)["records"][0]["name"] == "n"
    with pytest.raises(ValueError, match="record 0 has no 'name'"):
        records.write_document(path, {**doc, "records": [{"median_s": 1.0}]})
    assert load_document(path)["records"][0]["name"] == "n", "a refused write must leave the old file intact"
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]


def test_write_json_replaces_and_rejects_nan(tmp_path):
    # The writer under write_document (moved from benchmarks/harness.py's write_json_atomic).
    path = tmp_path / "a.json"
    _io.write_json(str(path), {"x": 1})
    _io.write_json(str(path), {"x": 2})
    assert json.loads(path.read_text()) == {"x": 2}
    with pytest.raises(ValueError):
        _io.write_json(str(path), {"x": float("nan")})
    assert json.loads(path.read_text()) == {"x": 2}, "a failed write must leave the old file intact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
