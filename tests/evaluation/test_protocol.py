"""The evaluation protocol's statistics and files, with an injected trainer (issue 17)."""
import json
import os
import statistics

import pytest
from PIL import Image

from dartsfast.data import make_synthetic
from dartsfast.evaluation import REFERENCE_GENOTYPES, Score, count_parameters, evaluate_genotypes
from dartsfast.evaluation.report import format_accuracy, format_count, markdown_table
from dartsfast.search.network import DiscreteNetwork
from dartsfast.train import TrainConfig

# Known test accuracies per (genotype, training seed): what the injected trainer returns.
KNOWN = {"ref:all-dsconv": [0.91, 0.95, 0.93, 0.90], "ref:all-mbconv": [0.80, 0.84, 0.85, 0.81]}
CONFIG = TrainConfig(dataset="synthetic", layers=3, channels=4, epochs=1, device="cpu", image_size=8)


@pytest.fixture(scope="module")
def dataset():
    return make_synthetic(64, num_classes=4, in_channels=1, image_size=8, seed=0)


def known_trainer(calls):
    def trainer(genotype, config, data):
        calls.append((genotype, config, data))
        label = next(k for k, v in REFERENCE_GENOTYPES.items() if v == genotype)
        return Score(KNOWN["ref:" + label][config.seed - 10], loss=1.0 + config.seed)
    return trainer


def test_mean_and_sd_are_those_of_the_known_accuracies(dataset, tmp_path):
    calls = []
    result = evaluate_genotypes(list(KNOWN), CONFIG, seeds=4, seed_base=10, out=str(tmp_path / "ev"),
                                dataset=dataset, trainer=known_trainer(calls), log=lambda line: None)
    assert [e.label for e in result.entries] == list(KNOWN)
    for entry in result.entries:
        accs = KNOWN[entry.label]
        assert entry.test_acc == accs and entry.seeds == [10, 11, 12, 13]
        assert entry.mean == pytest.approx(statistics.mean(accs), abs=1e-15)
        assert entry.sd == pytest.approx(statistics.stdev(accs), abs=1e-15)  # sample sd (n - 1)
        assert entry.test_loss == [11.0, 12.0, 13.0, 14.0]
    # Each run: from scratch with train's settings and its own seed, on the one dataset.
    assert [c[1].seed for c in calls] == [10, 11, 12, 13] * 2
    assert all(c[1].epochs == 1 and c[1].layers == 3 and c[1].out is None for c in calls)
    assert all(c[2].train_x.data_ptr() == calls[0][2].train_x.data_ptr() for c in calls)


def test_sizes_are_those_of_the_trained_network(dataset):
    result = evaluate_genotypes(["ref:seed-fmnist"], CONFIG, seeds=1, dataset=dataset,
                                trainer=lambda g, c, d: Score(0.5, 1.0), log=lambda line: None)
    entry = result.entries[0]
    net = DiscreteNetwork(REFERENCE_GENOTYPES["seed-fmnist"], 4, dataset.num_classes, 3, dataset.in_channels)
    assert entry.params == sum(p.numel() for p in net.parameters()) == count_parameters(net)
    assert entry.multiply_adds > 0 and entry.latency is None
    assert entry.sd is None  # one seed has no sample sd
    assert result.to_dict()["genotypes"][0]["test_acc_sd"] is None


def test_files_are_complete_readable_and_atomic(dataset, tmp_path):
    out = tmp_path / "ev"
    evaluate_genotypes(list(KNOWN), CONFIG, seeds=4, seed_base=10, out=str(out), latency=True,
                       dataset=dataset, trainer=known_trainer([]), log=lambda line: None)
    assert sorted(os.listdir(out)) == ["evaluation.json", "evaluation.md", "evaluation.png"]  # no temp, no lock
    data = json.loads((out / "evaluation.json").read_text())
    assert data["complete"] is True and data["seeds"] == [10, 11, 12, 13]
    assert data["dataset"]["name"] == "synthetic" and data["train_config"]["layers"] == 3
    first = data["genotypes"][0]
    assert first["test_acc_mean"] == pytest.approx(statistics.mean(KNOWN["ref:all-dsconv"]))
    assert first["latency"]["median_ms"] > 0 and first["latency"]["batch"] == 1
    md = (out / "evaluation.md").read_text()
    mean, sd = statistics.mean(KNOWN["ref:all-mbconv"]), statistics.stdev(KNOWN["ref:all-mbconv"])
    assert f"| ref:all-mbconv | 4 | {100 * mean:.2f} ± {100 * sd:.2f} |" in md
    with Image.open(out / "evaluation.png") as png:
        png.verify()
        assert png.format == "PNG"


def test_a_failing_run_keeps_the_genotypes_already_evaluated(dataset, tmp_path):
    def trainer(genotype, config, data):
        if genotype == REFERENCE_GENOTYPES["all-mbconv"]:
            raise FloatingPointError("diverged")
        return Score(0.9, 0.1)

    with pytest.raises(FloatingPointError):
        evaluate_genotypes(["ref:all-dsconv", "ref:all-mbconv"], CONFIG, seeds=2, out=str(tmp_path / "ev"),
                           dataset=dataset, trainer=trainer, log=lambda line: None)
    data = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert data["complete"] is False and [g["label"] for g in data["genotypes"]] == ["ref:all-dsconv"]
    assert not [n for n in os.listdir(tmp_path / "ev") if n.endswith(".tmp")]


def test_report_formatting():
    assert format_count(12_345_678) == "12.35M" and format_count(4321) == "4.32k" and format_count(12) == "12"
    assert format_accuracy(0.98611, 0.0042) == "98.61 ± 0.42"
    assert format_accuracy(0.5, None) == "50.00 (one seed)"


def test_markdown_escapes_pipes_in_labels(dataset):
    result = evaluate_genotypes([("a|b", REFERENCE_GENOTYPES["all-dsconv"])], CONFIG, seeds=2, dataset=dataset,
                                trainer=lambda g, c, d: Score(0.5, 1.0), log=lambda line: None)
    assert "| a\\|b | 2 | 50.00 ± 0.00 |" in markdown_table(result.to_dict())


@pytest.mark.parametrize("kwargs, error, phrase", [
    (dict(seeds=0), ValueError, "seeds must be a positive int"),
    (dict(seeds=2.0), ValueError, "seeds must be"),
    (dict(seed_base=-1), ValueError, "seed_base"),
    (dict(seed_base=2**32 - 1, seeds=2), ValueError, "seed_base"),
    (dict(latency_batch=0), ValueError, "latency_batch"),
    (dict(config=TrainConfig(out="x")), ValueError, "TrainConfig.out must be None"),
    (dict(config="digits"), TypeError, "TrainConfig"),
    (dict(genotypes=[]), ValueError, "no genotypes to evaluate"),
    (dict(genotypes=["ref:nope"]), ValueError, "known: ref:all-dsconv"),
    (dict(dataset="digits"), TypeError, "ImageDataset"),
    (dict(trainer=lambda g, c, d: Score(1.5, 0.0)), ValueError, "expected \\[0, 1\\]"),
])
def test_bad_arguments_name_the_problem(kwargs, error, phrase, dataset, tmp_path):
    args = dict(genotypes=["ref:all-dsconv"], config=CONFIG, seeds=2, dataset=dataset,
                trainer=lambda g, c, d: Score(0.5, 1.0), log=lambda line: None)
    args.update(kwargs)
    with pytest.raises(error, match=phrase):
        evaluate_genotypes(args.pop("genotypes"), args.pop("config"), **args)


def test_the_default_trainer_trains_for_real(dataset):
    # One tiny real run per seed: the scores are accuracies on the test part, and repeat.
    config = TrainConfig(dataset="synthetic", layers=3, channels=4, epochs=1, batch_size=16, device="cpu")
    first = evaluate_genotypes(["ref:all-dsconv"], config, seeds=2, dataset=dataset, log=lambda line: None)
    again = evaluate_genotypes(["ref:all-dsconv"], config, seeds=2, dataset=dataset, log=lambda line: None)
    accs = first.entries[0].test_acc
    n_test = dataset.test_x.shape[0]
    assert all(0 <= a <= 1 and abs(a * n_test - round(a * n_test)) < 1e-9 for a in accs)
    assert accs == again.entries[0].test_acc
