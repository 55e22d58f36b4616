"""``dartsfast random-search`` and ``dartsfast evaluate`` end to end, at toy sizes (issue 17)."""
import json
import os

from PIL import Image

from dartsfast.cli import main
from dartsfast.search.random_genotypes import sample_genotypes
from dartsfast.search.space import DEFAULT_OPS, Genotype

TINY = ["--device", "cpu", "--no-progress", "--threads", "1", "--image-size", "8", "--layers", "3",
        "--channels", "4", "--batch-size", "16"]


def test_random_search_then_evaluate_the_winner_beside_a_reference(tmp_path, capsys):
    rs = tmp_path / "rs"
    code = main(["random-search", *TINY, "--dataset", "synthetic", "--synthetic-size", "96", "--budget-epochs", "2",
                 "--samples", "2", "--seed", "3", "--out", str(rs)])
    assert code == 0, capsys.readouterr().err
    assert "best of 2 samples (1 epoch(s) each" in capsys.readouterr().out
    history = json.loads((rs / "history.json").read_text())
    drawn = sample_genotypes(2, seed=3, ops=DEFAULT_OPS)
    assert [Genotype.from_dict(r["genotype"]) for r in history] == drawn
    best = max(history, key=lambda r: r["val_acc"])
    assert Genotype.load(str(rs / "genotype.json")) in drawn and history[-1]["best_val_acc"] == best["val_acc"]

    ev = tmp_path / "ev"
    code = main(["evaluate", str(rs / "genotype.json"), "ref:all-dsconv", *TINY, "--dataset", "digits",
                 "--epochs", "1", "--seeds", "2", "--seed-base", "4", "--max-train-samples", "64",
                 "--max-test-samples", "32", "--out", str(ev)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "| ref:all-dsconv | 2 |" in printed.out
    assert sorted(os.listdir(ev)) == ["evaluation.json", "evaluation.md", "evaluation.png"]
    data = json.loads((ev / "evaluation.json").read_text())
    assert data["seeds"] == [4, 5] and data["complete"]
    assert [g["label"] for g in data["genotypes"]] == [str(rs / "genotype.json"), "ref:all-dsconv"]
    assert all(len(g["test_acc"]) == 2 and g["params"] > 0 and g["multiply_adds"] > 0 for g in data["genotypes"])
    assert data["train_config"]["max_test_samples"] == 32 and data["train_config"]["epochs"] == 1
    with Image.open(ev / "evaluation.png") as png:
        png.verify()


def test_help_lists_both_commands(capsys):
    try:
        main(["--help"])
    except SystemExit:
        pass
    out = capsys.readouterr().out
    assert "random-search" in out and "evaluate" in out
