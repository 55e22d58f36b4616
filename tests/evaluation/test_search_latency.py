"""The end of a hardware-aware search (issue 18): the found network's measured latency beside
the table's prediction in OUT/latency.json, the prediction checked against a sum over the
table done here by hand, the constant part (stem, preprocessing, classifier) included, and
bad inputs named. No timing value is asserted: only structure and arithmetic."""
import json

import pytest
import torch

from dartsfast.cli import main
from dartsfast.evaluation import count_parameters
from dartsfast.evaluation.search_latency import (
    LATENCY_FILE,
    final_latency,
    measure_network,
    write_final_latency,
)
from dartsfast.search.latency_constant import Placeholder, skeleton_network
from dartsfast.search.latency_lut import SCHEMA, build_lut, lut_key
from dartsfast.search.network import DiscreteNetwork
from dartsfast.search.positions import edge_positions
from dartsfast.search.space import Genotype
from dartsfast.timing import environment_info

OPS = ("skip_connect", "avg_pool_3x3", "dsconv_3x3", "none")
CONSTANT_MS = 0.7
SEARCH = ["search", "--dataset", "synthetic", "--synthetic-size", "96", "--image-size", "8", "--epochs", "1",
          "--batch-size", "16", "--layers", "3", "--channels", "4", "--ops", ",".join(OPS), "--device", "cpu",
          "--no-progress", "--no-plots", "--threads", "1"]


def entry_ms(op, c, h, stride):
    """A different value for every (op, position), so a sum over wrong positions shows."""
    return 0.0 if op == "none" else 1 + OPS.index(op) + c / 10 + h / 1000 + stride / 100000


def write_table(path, constant_ms=CONSTANT_MS):
    name = environment_info("cpu")["device_name"]
    entries = {}
    for cell in edge_positions(4, 3, 8):
        for c, h, w, s in cell.edges:
            for op in OPS:
                entries[lut_key(op, c, c, h, w, s, "float32", "nchw", name)] = dict(
                    op=op, c_in=c, c_out=c, h=h, w=w, stride=s, count=1, median_s=entry_ms(op, c, h, s) / 1e3,
                    iqr_s=0.0, n=1, measured=op != "none")
    header = dict(device_name=name, dtype="float32", layout="nchw", mode="inference", batch=1, space=list(OPS),
                  constant_s=constant_ms / 1e3)
    path.write_text(json.dumps({"schema": SCHEMA, "header": header, "entries": entries}))
    return str(path)


def by_hand_ms(genotype: Genotype) -> float:
    """Constant + the table's value of each kept edge at its position, cell by cell."""
    edge_order = [(node, j) for node in range(4) for j in range(2 + node)]  # the alphas' rows
    total = CONSTANT_MS
    for cell in edge_positions(4, 3, 8):
        kept = genotype.reduce if cell.reduction else genotype.normal
        for e, (op, j) in enumerate(kept):
            c, h, _, s = cell.edges[edge_order.index((e // 2, j))]
            total += entry_ms(op, c, h, s)
    return total


def test_search_writes_the_measured_latency_beside_the_table_sum(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(SEARCH + ["--out", str(out), "--latency-lut", write_table(tmp_path / "lut.json")]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / LATENCY_FILE).read_text())["final_latency"]
    genotype = Genotype.load(str(out / "genotype.json"))
    assert Genotype.from_dict(record["genotype"]) == genotype
    assert record["predicted_ms"] == pytest.approx(by_hand_ms(genotype), rel=1e-12)
    assert record["constant_ms"] == pytest.approx(CONSTANT_MS, rel=1e-12)
    assert record["ops_ms"] == pytest.approx(by_hand_ms(genotype) - CONSTANT_MS, rel=1e-12)
    # The history's LUT latency of the last genotype is the same prediction.
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["genotype_latency_ms"] == pytest.approx(record["predicted_ms"], rel=1e-12)
    assert record["measured_ms"] > 0 and record["measured_q25_ms"] <= record["measured_q75_ms"]
    assert record["ratio"] == pytest.approx(record["measured_ms"] / record["predicted_ms"])
    assert record["error"] == pytest.approx(record["predicted_ms"] / record["measured_ms"] - 1)
    assert {k: record[k] for k in ("mode", "batch", "dtype", "layout", "device", "threads", "channels", "layers",
                                   "input_shape", "num_classes")} == dict(
        mode="inference", batch=1, dtype="float32", layout="nchw", device="cpu", threads=1, channels=4, layers=3,
        input_shape=[3, 8, 8], num_classes=10)
    assert "measured/predicted" in printed and LATENCY_FILE in printed


def test_no_table_no_latency_file_and_the_opt_out(tmp_path):
    assert main(SEARCH + ["--out", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / LATENCY_FILE).exists()
    lut = write_table(tmp_path / "lut.json")
    assert main(SEARCH + ["--out", str(tmp_path / "off"), "--latency-lut", lut, "--no-final-latency"]) == 0
    assert not (tmp_path / "off" / LATENCY_FILE).exists()


def test_skeleton_is_the_network_without_its_ops():
    genotype = Genotype.from_dict({
        "normal": [["dsconv_3x3", 0], ["avg_pool_3x3", 1]] * 4, "normal_concat": [2, 3, 4, 5],
        "reduce": [["dsconv_3x3", 0], ["dsconv_3x3", 1]] * 4, "reduce_concat": [2, 3, 4, 5]})
    torch.manual_seed(0)
    real = DiscreteNetwork(genotype, 4, 10, 3, 1)
    skeleton = skeleton_network(4, 3, in_channels=1, num_classes=10)
    ops_params = sum(count_parameters(op) for cell in real.cells for op in cell.ops)
    assert count_parameters(skeleton) == count_parameters(real) - ops_params
    assert all(isinstance(op, Placeholder) for cell in skeleton.cells for op in cell.ops)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert skeleton(x).shape == real.eval()(x).shape == (2, 10)


def test_a_built_table_holds_the_constant_for_its_input_and_classes():
    lut = build_lut(("skip_connect", "none"), channels=4, layers=3, image_size=8, warmup=0, repeats=1,
                    in_channels=1, num_classes=7)
    hd = lut.header
    assert hd["constant_s"] > 0 and hd["constant_iqr_s"] >= 0
    assert (hd["in_channels"], hd["num_classes"]) == (1, 7)


def test_bad_inputs_name_the_problem(tmp_path):
    from dartsfast.search import search
    from tests.search.test_loop import tiny

    plain = search(tiny(None, epochs=1))
    with pytest.raises(ValueError, match="latency_lut"):
        final_latency(plain)
    common = dict(channels=4, layers=3, input_shape=(3, 8, 8), num_classes=10, device="cpu", repeats=1,
                  min_time_s=0.0, warmup=0)
    good = dict(mode="inference", dtype="float32", layout="nchw", batch=1)
    for field, bad in (("mode", "deploy"), ("dtype", "int8"), ("layout", "nhwc"), ("batch", 0)):
        with pytest.raises(ValueError, match=f"header {field} {bad!r}"):
            measure_network(plain.genotype, header={**good, field: bad}, **common)
    with pytest.raises(ValueError, match=r"input_shape .*\(8, 8\)"):
        measure_network(plain.genotype, header=good, **{**common, "input_shape": (8, 8)})
    with pytest.raises(TypeError, match="genotype must be a Genotype, got dict"):
        measure_network(plain.genotype.to_dict(), header=good, **common)
    with pytest.raises(ValueError, match="nope"):
        write_final_latency(str(tmp_path / "nope"), {})
