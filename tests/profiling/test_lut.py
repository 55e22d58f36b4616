"""The latency LUT: every op × cell position of a small space (positions derived by hand),
a JSON round trip, lookups, and a warning when loaded for another device / dtype / layout."""
import json
import math
import warnings

import pytest

from dartsfast.profiling.lut import SCHEMA, build_lut, load_lut, lut_key, save_lut
from dartsfast.profiling.profiler import num_threads

SPACE = ("skip_connect", "dsconv_3x3", "none")
# Supernet(C=4, layers=3) on 8×8: cell 0 normal (C 4 at 8×8, stride 1); cells 1 and 2 are
# reductions (layers//3 = 1, 2·layers//3 = 2) doubling C, with stride-2 edges from their two
# inputs at the incoming size and stride-1 edges at half of it.
POSITIONS = [(4, 8, 8, 1), (8, 8, 8, 2), (8, 4, 4, 1), (16, 4, 4, 2), (16, 2, 2, 1)]


@pytest.fixture(scope="module")
def lut():
    with num_threads(1):
        return build_lut(SPACE, channels=4, layers=3, image_size=8, device="cpu", batch=2, warmup=1, repeats=3)


def test_keys_cover_every_op_at_every_position(lut):
    device = lut.header["device_name"]
    expected = {lut_key(op, c, c, h, w, s, "float32", "nchw", device) for op in SPACE for c, h, w, s in POSITIONS}
    assert set(lut.entries) == expected
    for key, e in lut.entries.items():
        assert key == lut_key(e["op"], e["c_in"], e["c_out"], e["h"], e["w"], e["stride"], "float32", "nchw", device)
        if e["op"] == "none":  # never run by a MixedOp: costs nothing
            assert (e["median_s"], e["measured"]) == (0.0, False)
        else:
            assert e["measured"] and e["n"] == 3 and 0 < e["median_s"] < math.inf and e["iqr_s"] >= 0
    # Edge counts: 14 per normal cell; 8 stride-2 + 6 stride-1 per reduction cell.
    counts = {(e["c_in"], e["h"], e["stride"]): e["count"] for e in lut.entries.values() if e["op"] == "none"}
    assert counts == {(4, 8, 1): 14, (8, 8, 2): 8, (8, 4, 1): 6, (16, 4, 2): 8, (16, 2, 1): 6}
    assert lut.header["space"] == list(SPACE) and lut.header["dtype"] == "float32"


def test_per_op_overhead_is_measured_on_whole_networks_of_one_op(lut):
    """Each probe is the network with one op on every edge: its op instances and the sum of
    its entries by hand, and per_op_s the median of the probes' residual per instance."""
    hd = lut.header
    probes = hd["per_op_probes"]
    assert set(probes) == {"skip_connect", "dsconv_3x3"}  # not 'none'

    def entry(op, c, h, s):
        return lut.latency(op, c, c, h, h, s)
    # Every node takes the op from the two cell inputs: 8 edges per cell. In the normal cell
    # (C=4, 8x8) they are stride 1, in the reductions (C=8 at 8x8, C=16 at 4x4) stride 2.
    for op, instances in (("dsconv_3x3", 3 * 8), ("skip_connect", 2 * 8)):  # skip at stride 1: an identity
        assert probes[op]["instances"] == instances
        hand = 8 * (entry(op, 4, 8, 1) + entry(op, 8, 8, 2) + entry(op, 16, 4, 2))
        assert probes[op]["entries_s"] == pytest.approx(hand, rel=1e-12)
        assert probes[op]["measured_s"] > 0
    residual = [(p["measured_s"] - hd["constant_s"] - p["entries_s"]) / p["instances"] for p in probes.values()]
    assert hd["per_op_s"] == pytest.approx(sum(residual) / 2, rel=1e-12)  # the median of two


def test_round_trip_and_lookup(lut, tmp_path):
    path = str(tmp_path / "lut.json")
    save_lut(path, lut)
    assert json.loads(open(path).read())["schema"] == SCHEMA
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same device, dtype and layout: no warning
        back = load_lut(path, device="cpu", dtype="float32", layout="nchw")
    assert back.entries == lut.entries
    assert back.latency("dsconv_3x3", 8, 8, 8, 8, 2) == lut.entries[back.key("dsconv_3x3", 8, 8, 8, 8, 2)]["median_s"]
    with pytest.raises(KeyError, match="no LUT entry for mbconv_3x3 8->8 8x8 stride 2"):
        back.latency("mbconv_3x3", 8, 8, 8, 8, 2)


def test_loading_for_another_device_or_dtype_warns(lut, tmp_path):
    path = str(tmp_path / "lut.json")
    save_lut(path, lut)
    with pytest.warns(UserWarning, match=r"dtype float32 \(this run: bfloat16\)"):
        load_lut(path, device="cpu", dtype="bfloat16")
    with pytest.warns(UserWarning, match="layout nchw"):
        load_lut(path, layout="channels_last")
    data = json.loads(open(path).read())
    data["header"]["device_name"] = "NVIDIA H100 80GB HBM3"
    other = tmp_path / "h100.json"
    other.write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="device 'NVIDIA H100 80GB HBM3'.*re-run `dartsfast profile --lut`"):
        load_lut(str(other), device="cpu", dtype="float32")


def test_bad_files_and_arguments(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_lut(str(bad))
    bad.write_text(json.dumps({"schema": "dartsfast.profile/1"}))
    with pytest.raises(ValueError, match="not a latency LUT"):
        load_lut(str(bad))
    with pytest.raises(ValueError, match="unknown op"):
        build_lut(("conv_9x9",), channels=4, layers=3, image_size=8)
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        build_lut(("skip_connect",), channels=4, layers=3, image_size=8, dtype="int8")
