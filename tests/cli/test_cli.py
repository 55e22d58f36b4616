"""The dartsfast command: end to end on tiny synthetic data, and exit status 2 on bad input."""
import json
import subprocess
import sys

import pytest

from dartsfast.cli import EXIT_USAGE, main
from dartsfast.search.checkpoint import CHECKPOINT_FILE
from dartsfast.testing import SUBPROCESS_TIMEOUT_S

TINY_SEARCH = ["search", "--dataset", "synthetic", "--synthetic-size", "96", "--image-size", "8",
               "--epochs", "1", "--batch-size", "16", "--layers", "3", "--channels", "4",
               "--ops", "skip_connect,avg_pool_3x3,dsconv_3x3,none", "--device", "cpu", "--no-progress",
               "--no-plots"]


def test_search_then_train_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(TINY_SEARCH + ["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    genotype = json.loads((out / "genotype.json").read_text())
    assert json.loads(printed[printed.index("{"):printed.rindex("}") + 1]) == genotype
    assert (out / "history.json").exists() and (out / CHECKPOINT_FILE).exists()

    code = main(["train", "--genotype", str(out / "genotype.json"), "--dataset", "synthetic",
                 "--image-size", "8", "--epochs", "1", "--batch-size", "32", "--layers", "3",
                 "--channels", "4", "--max-train-samples", "64", "--device", "cpu", "--no-progress",
                 "--out", str(tmp_path / "train")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "test accuracy:" in printed
    assert (tmp_path / "train" / "model.pt").exists()


def test_resume_via_the_cli_continues(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(TINY_SEARCH + ["--out", out]) == 0
    args = [a if a != "1" or i != TINY_SEARCH.index("--epochs") + 1 else "2" for i, a in enumerate(TINY_SEARCH)]
    assert main(args + ["--out", out, "--resume"]) == EXIT_USAGE  # epochs differ: a mismatched checkpoint
    assert "epochs: 1 != 2" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["search", "--ops", "dsconv_3x3,conv_9x9"], "unknown op(s) 'conv_9x9'"),
    (["search", "--epochs", "0"], "expected a positive integer"),
    (["search", "--amp", "fp8"], "invalid choice: 'fp8'"),
    (["search", "--order", "3"], "invalid choice: 3"),
    (["search", "--backend", "opencl"], "invalid choice: 'opencl'"),
    (["search", "--layers", "2", "--dataset", "synthetic"], "SearchConfig.layers"),
    (["search", "--dataset", "fashion-mnist", "--data-dir", "/nonexistent/fm"], "pass --download"),
    (["search", "--dataset", "cifar10"], "CIFAR-10"),
    (["train", "--genotype", "/nonexistent/genotype.json"], "genotype file not found"),
    (["train"], "--genotype"),
    ([], "required"),
])
def test_bad_input_exits_with_2_and_says_why(argv, message, capsys, tmp_path):
    if argv and argv[0] == "search":
        argv = argv + ["--out", str(tmp_path / "out")]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse errors
        code = e.code
    assert code == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_corrupt_checkpoint_exits_with_2(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(TINY_SEARCH + ["--out", str(out)]) == 0
    (out / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    assert main(TINY_SEARCH + ["--out", str(out), "--resume"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "corrupt or unreadable" in err and (out / CHECKPOINT_FILE).read_bytes() == b"not a checkpoint"


def test_bad_genotype_file_exits_with_2(tmp_path, capsys):
    path = tmp_path / "genotype.json"
    path.write_text('{"normal": [["conv_9x9", 0]]}')
    assert main(["train", "--genotype", str(path)]) == EXIT_USAGE
    assert "genotype file" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "dartsfast", "search", "--epochs", "0"],
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert done.returncode == EXIT_USAGE
    assert "dartsfast search: error: argument --epochs" in done.stderr
    done = subprocess.run([sys.executable, "-m", "dartsfast", "--help"], capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S)
    assert done.returncode == 0 and "search" in done.stdout and "train" in done.stdout
