"""`dartsfast profile` through dartsfast.cli.main: a tiny CPU run writing every output, the
LUT, and exit status 2 with a message naming the problem for bad input."""
import json

import pytest

from dartsfast import records
from dartsfast.cli import EXIT_USAGE, main

TINY = ["profile", "--device", "cpu", "--shape", "8,8,6,6,1,2", "--shape", "8,16,6,6,2,4", "--impls", "eager,fused",
        "--modes", "inference,training", "--batch-sizes", "2", "--repeats", "3", "--warmup", "1", "--threads", "1",
        "--no-progress"]


def test_profile_writes_records_report_and_plots(tmp_path, capsys):
    out = tmp_path / "deep" / "dir"  # parents are created
    code = main(TINY + ["--out", str(out / "p.json"), "--markdown", str(out / "p.md"), "--plot",
                        str(out / "stages.png"), "--roofline", str(out / "roof.png"), "--plot-size", "480x360"])
    assert code == 0
    doc = records.validate_document(json.loads((out / "p.json").read_text()))
    # 2 shapes × 2 blocks × 2 impls × 2 modes; Fused-MBConv without SE has no fused impl.
    assert len(doc["records"]) == 16
    assert sum(r["status"] == "ok" for r in doc["records"]) == 12
    assert {r["stage"] for r in doc["records"]} == {"8,8,6,6,1,2", "8,16,6,6,2,4"}
    assert doc["config"]["threads"] == 1 and doc["complete"]
    md = (out / "p.md").read_text()
    assert "| 8,16,6,6,2,4 | 8→16 6×6 s2 e4 k3 |" in md
    from PIL import Image

    for name in ("stages.png", "roof.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size == (480, 360)
    printed = capsys.readouterr().out
    assert "profile: 16 records (12 ok, 4 unsupported)" in printed and "ratio" in printed


def test_se_override_gives_fused_mbconv_a_fused_impl(tmp_path):
    code = main(["profile", "--device", "cpu", "--shape", "8,8,6,6,1,2", "--blocks", "fused_mbconv", "--se",
                 "fused_mbconv=0.25", "--impls", "eager,fused", "--modes", "training", "--batch-sizes", "2",
                 "--repeats", "2", "--warmup", "1", "--threads", "1", "--no-progress",
                 "--out", str(tmp_path / "p.json")])
    assert code == 0
    recs = json.loads((tmp_path / "p.json").read_text())["records"]
    assert [(r["impl"], r["status"], r["params"]["se_ratio"]) for r in recs] == [("eager", "ok", 0.25),
                                                                               ("fused", "ok", 0.25)]
    assert recs[1]["backend"] == "torch"


def test_profile_lut_only(tmp_path, capsys):
    path = tmp_path / "lut.json"
    code = main(["profile", "--device", "cpu", "--lut", str(path), "--space", "skip_connect,avg_pool_3x3,none",
                 "--channels", "4", "--layers", "3", "--input-size", "8", "--batch-sizes", "2", "--repeats", "2",
                 "--warmup", "0", "--threads", "1", "--no-progress"])
    assert code == 0
    lut = json.loads(path.read_text())
    assert len(lut["entries"]) == 3 * 5 and lut["header"]["batch"] == 2
    printed = capsys.readouterr().out
    assert "lut: 15 entries (3 ops × 5 cell positions)" in printed
    assert "profile:" not in printed  # --lut alone profiles no blocks


@pytest.mark.parametrize("extra, message", [
    (["--shape", "8,8,6"], "--shape '8,8,6': expected 6 comma-separated fields"),
    (["--shape", "8,8,6,6,3,4"], "stride must be 1 or 2, got 3"),
    (["--shape", "8,x,6,6,1,4"], "C_out must be an integer, got 'x'"),
    (["--preset", "resnet50"], "unknown preset(s) 'resnet50'; available: effnetv2-s, effnet-b0, seed"),
    (["--preset", "seed,effnet-b7"], "unknown preset(s) 'effnet-b7'"),
    (["--dtypes", "fp32,int8"], "unknown dtype(s) 'int8'"),
    (["--impls", "tensorrt"], "unknown impl(s) 'tensorrt'"),
    (["--blocks", "mbconv,resnet"], "unknown block(s) 'resnet'"),
    (["--batch-sizes", "2,zero"], "'zero' is not an integer"),
    (["--plot-size", "big"], "plot size must look like 1200x700"),
    (["--se", "resnet=0.25"], "expected BLOCK=RATIO entries"),
    (["--se", "mbconv=2"], "an SE ratio must be in [0, 1], got 2.0"),
    (["--device", "cuda:7"], "no CUDA device is visible"),
    (["--lut", "x.json", "--dtypes", "fp32,bf16"], "a LUT is measured for one dtype"),
    (["--lut", "x.json", "--space", "dsconv_3x3,conv_9x9"], "unknown op(s) 'conv_9x9'"),
])
def test_bad_input_exits_2_naming_the_problem(extra, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["profile", "--device", "cpu", "--threads", "1", "--no-progress", "--repeats", "1", "--warmup", "0",
            "--impls", "eager", "--modes", "inference", "--shape", "4,4,4,4,1,1"]
    if "--device" in extra:
        argv = argv[:1] + argv[3:]
    assert main(argv + extra) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("dartsfast profile: error: ") and message in err
    assert not (tmp_path / "x.json").exists()


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["profile", "--repeats", "0"])
    assert exc.value.code == EXIT_USAGE
    assert "expected a positive integer, got 0" in capsys.readouterr().err
