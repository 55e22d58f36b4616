"""The random-search baseline: budget arithmetic, selection on validation data only, files,
and the seconds budget on an injected clock (issue 17). No assertion reads the wall clock."""
import dataclasses
import json
import os

import pytest
import torch

from dartsfast.data import make_synthetic
from dartsfast.evaluation import Budget, Score, random_search
from dartsfast.evaluation.data import search_split
from dartsfast.search import SearchConfig
from dartsfast.search.data_setup import build_search_data
from dartsfast.search.distributed import DistContext
from dartsfast.search.random_genotypes import sample_genotypes
from dartsfast.search.space import DEFAULT_OPS, Genotype
from dartsfast.train import TrainConfig

CONFIG = TrainConfig(dataset="synthetic", layers=3, channels=4, batch_size=8, device="cpu", seed=5)
OPS = ("skip_connect", "dsconv_3x3", "max_pool_3x3", "none")


@pytest.fixture(scope="module")
def dataset():
    return make_synthetic(80, num_classes=4, in_channels=1, image_size=8, seed=1)


class Clock:
    """Seconds that pass only when a fake training run says so."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def scripted(scores, clock=None, costs=None, calls=None):
    """A trainer returning ``scores[k]`` for its k-th call, taking ``costs[k]`` fake seconds."""
    def trainer(genotype, config, data):
        k = trainer.k
        trainer.k += 1
        if calls is not None:
            calls.append((genotype, config, data))
        if clock is not None:
            clock.now += costs[k] if costs else 10.0
        if isinstance(scores[k], Exception):
            raise scores[k]
        return Score(*scores[k])
    trainer.k = 0
    return trainer


@pytest.mark.parametrize("budget, plan", [
    (Budget(samples=4, epochs_per_sample=2), (4, 2)),
    (Budget(samples=4), (4, 1)),
    (Budget(total_epochs=10, samples=3), (3, 3)),
    (Budget(total_epochs=10, epochs_per_sample=3), (3, 3)),
    (Budget(total_epochs=5), (5, 1)),
    (Budget(total_epochs=6, samples=3, epochs_per_sample=2), (3, 2)),
    (Budget(total_epochs=7, samples=3, epochs_per_sample=2), (3, 2)),
    (Budget(seconds=60), (None, 1)),
    (Budget(seconds=60, samples=2, epochs_per_sample=3), (2, 3)),
    (Budget(seconds=60, total_epochs=4, epochs_per_sample=2), (2, 2)),
])
def test_budget_plans(budget, plan):
    assert budget.plan() == plan


@pytest.mark.parametrize("kwargs, phrase", [
    (dict(), "give the random search a budget"),
    (dict(epochs_per_sample=2), "give the random search a budget"),
    (dict(total_epochs=2, samples=3), "too small for 3 samples"),
    (dict(total_epochs=2, epochs_per_sample=3), "too small for one sample of 3 epochs"),
    (dict(total_epochs=5, samples=3, epochs_per_sample=2), "need 6 epochs, more than the budget of 5"),
    (dict(samples=0), "Budget.samples"),
    (dict(samples=2.5), "Budget.samples"),
    (dict(seconds=0), "Budget.seconds"),
    (dict(seconds=float("nan")), "Budget.seconds"),
])
def test_bad_budgets_name_the_problem(kwargs, phrase):
    with pytest.raises(ValueError, match=phrase):
        Budget(**kwargs).plan()


def test_keeps_the_best_by_validation_accuracy_with_a_running_best(dataset, tmp_path):
    # Sample 4 ties sample 2's accuracy with a lower loss: it wins the tie; sample 5 is worse.
    scores = [(0.50, 1.0), (0.75, 0.9), (0.60, 0.5), (0.75, 0.4), (0.70, 0.1)]
    calls = []
    result = random_search(CONFIG, Budget(samples=5, epochs_per_sample=2), ops=OPS, out=str(tmp_path / "rs"),
                           dataset=dataset, trainer=scripted(scores, calls=calls), log=lambda line: None)
    expected = sample_genotypes(5, seed=CONFIG.seed, ops=OPS)
    assert [c[0] for c in calls] == expected  # the sampler's genotypes, in order
    assert all(c[1].epochs == 2 and c[1].seed == 5 and c[1].out is None for c in calls)
    assert result.genotype == expected[3] and result.best["sample"] == 4
    assert [r["best_sample"] for r in result.history] == [1, 2, 2, 4, 4]
    assert [r["best_val_acc"] for r in result.history] == [0.50, 0.75, 0.75, 0.75, 0.75]
    assert [r["val_acc"] for r in result.history] == [s[0] for s in scores]
    # Files: the best genotype, loadable as `dartsfast train --genotype` loads it, and the history.
    out = tmp_path / "rs"
    assert sorted(os.listdir(out)) == ["genotype.json", "history.json"]
    assert Genotype.load(str(out / "genotype.json")) == expected[3]
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 5 and history[2]["genotype"] == expected[2].to_dict()
    assert set(history[0]) >= {"sample", "genotype", "val_acc", "val_loss", "epochs", "time_s", "elapsed_s",
                               "best_sample", "best_val_acc", "best_val_loss"}


def test_the_seed_decides_the_genotypes(dataset):
    def trained(seed):
        calls = []
        config = dataclasses.replace(CONFIG, seed=seed)
        random_search(config, Budget(samples=3), dataset=dataset, trainer=scripted([(0.5, 1.0)] * 3, calls=calls),
                      log=lambda line: None)
        return [c[0] for c in calls]
    assert trained(1) == trained(1) == sample_genotypes(3, seed=1, ops=DEFAULT_OPS)
    assert trained(1) != trained(2)


def test_samples_are_scored_on_the_searchs_validation_half_never_the_test_set(dataset):
    config = dataclasses.replace(CONFIG, max_train_samples=40)
    calls = []
    random_search(config, Budget(samples=1), dataset=dataset, trainer=scripted([(0.5, 1.0)], calls=calls),
                  log=lambda line: None)
    seen = calls[0][2]
    # The DARTS search of the same settings, through its own data setup.
    search_config = SearchConfig(dataset="synthetic", layers=3, channels=4, batch_size=8, device="cpu", seed=5,
                                 max_train_samples=40)
    search_data = build_search_data(search_config, torch.device("cpu"), DistContext(), dataset)
    try:
        assert torch.equal(seen.test_x, search_data.val.x) and torch.equal(seen.test_y, search_data.val.y)
    finally:
        search_data.close()
    assert seen.train_x.shape[0] + seen.test_x.shape[0] == 40
    first_40 = dataset.train_x[:40].flatten(1)
    for part in (seen.train_x, seen.test_x):
        rows = part.flatten(1)
        assert all((first_40 == r).all(1).any() for r in rows)  # from the training set's first 40 ...
        assert not any((dataset.test_x.flatten(1) == r).all(1).any() for r in rows)  # ... never a test image
    assert calls[0][1].max_train_samples is None  # the cap was applied once, before the split


def test_search_split_matches_split_indices_of_the_capped_set(dataset):
    split = search_split(dataset, max_train_samples=None, train_fraction=0.25, seed=0)
    assert split.train_x.shape[0] == int(dataset.train_x.shape[0] * 0.25)
    assert split.train_x.shape[0] + split.test_x.shape[0] == dataset.train_x.shape[0]


def test_the_seconds_budget_stops_before_a_sample_that_would_not_fit(dataset):
    clock = Clock()
    # Each sample takes 10 fake seconds: after 3 (30 s), a 4th would end at 40 s > 35 s.
    result = random_search(CONFIG, Budget(seconds=35), dataset=dataset, clock=clock,
                           trainer=scripted([(0.5, 1.0)] * 10, clock), log=lambda line: None)
    assert len(result.history) == 3 and result.elapsed_s == 30.0
    assert [r["elapsed_s"] for r in result.history] == [10.0, 20.0, 30.0]
    clock = Clock()
    result = random_search(CONFIG, Budget(seconds=40), dataset=dataset, clock=clock,
                           trainer=scripted([(0.5, 1.0)] * 10, clock), log=lambda line: None)
    assert len(result.history) == 4  # ends exactly at the budget


def test_the_longest_sample_so_far_is_the_estimate(dataset):
    clock = Clock()
    # 5 s, then 20 s: at 25 s a third sample estimated at 20 s would end at 45 s > 40 s.
    result = random_search(CONFIG, Budget(seconds=40), dataset=dataset, clock=clock,
                           trainer=scripted([(0.5, 1.0)] * 5, clock, costs=[5, 20, 1, 1, 1]), log=lambda line: None)
    assert len(result.history) == 2


def test_samples_and_seconds_together_stop_at_whichever_comes_first(dataset):
    clock = Clock()
    result = random_search(CONFIG, Budget(seconds=1000, samples=2), dataset=dataset, clock=clock,
                           trainer=scripted([(0.5, 1.0)] * 5, clock), log=lambda line: None)
    assert len(result.history) == 2


def test_a_seconds_budget_too_small_for_one_sample_is_an_error_and_writes_nothing(dataset, tmp_path):
    clock = Clock()
    with pytest.raises(ValueError, match="too small for one sample: the first took 10.0 s"):
        random_search(CONFIG, Budget(seconds=5), dataset=dataset, clock=clock, out=str(tmp_path / "rs"),
                      trainer=scripted([(0.5, 1.0)], clock), log=lambda line: None)
    assert not (tmp_path / "rs").exists()


def test_a_diverged_sample_is_recorded_and_never_kept(dataset, tmp_path):
    result = random_search(CONFIG, Budget(samples=3), dataset=dataset, out=str(tmp_path / "rs"),
                           trainer=scripted([FloatingPointError("diverged"), (0.4, 1.0), (0.3, 1.0)]),
                           log=lambda line: None)
    first = result.history[0]
    assert first["val_acc"] is None and "diverged" in first["diverged"] and first["best_sample"] is None
    assert result.best["sample"] == 2
    json.loads((tmp_path / "rs" / "history.json").read_text())  # strict JSON despite the missing scores
    with pytest.raises(FloatingPointError, match="all 2 sampled genotype"):
        random_search(CONFIG, Budget(samples=2), dataset=dataset,
                      trainer=scripted([FloatingPointError("a"), FloatingPointError("b")]), log=lambda line: None)


@pytest.mark.parametrize("kwargs, error, phrase", [
    (dict(config=TrainConfig(out="x")), ValueError, "TrainConfig.out must be None"),
    (dict(config="cfg"), TypeError, "TrainConfig"),
    (dict(budget=10), TypeError, "Budget"),
    (dict(ops=("none",)), ValueError, "besides 'none'"),
    (dict(ops=("warp",)), ValueError, "unknown op"),
    (dict(train_fraction=1.0), ValueError, "fraction"),
    (dict(dataset="digits"), TypeError, "ImageDataset"),
    (dict(trainer=lambda g, c, d: Score(float("nan"), 0.0)), ValueError, "validation accuracy nan"),
])
def test_bad_arguments_name_the_problem(kwargs, error, phrase, dataset):
    args = dict(config=CONFIG, budget=Budget(samples=1), dataset=dataset,
                trainer=lambda g, c, d: Score(0.5, 1.0), log=lambda line: None)
    args.update(kwargs)
    with pytest.raises(error, match=phrase):
        random_search(args.pop("config"), args.pop("budget"), **args)


def test_the_default_trainer_scores_on_the_validation_half(dataset):
    result = random_search(CONFIG, Budget(samples=2), ops=OPS, dataset=dataset, log=lambda line: None)
    n_val = dataset.train_x.shape[0] - int(dataset.train_x.shape[0] * 0.5)
    for record in result.history:
        assert 0 <= record["val_acc"] <= 1
        assert abs(record["val_acc"] * n_val - round(record["val_acc"] * n_val)) < 1e-9  # k of n_val right
