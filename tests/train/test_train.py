"""dartsfast.train: the training loop, and the model.pt it writes (tiny configs, seconds on 2 cores)."""
import json
import math
import os

import pytest
import torch
from sample_genotypes import GENO_FAST

from dartsfast.data import load_dataset
from dartsfast.search.space import Genotype
from dartsfast.train import TrainConfig, evaluate, load_model, train

HISTORY_KEYS = {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_time_s",
                "images_per_s"}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("train_digits")
    cfg = TrainConfig(dataset="digits", epochs=3, batch_size=64, channels=4, layers=3, lr=0.05,
                      drop_path_prob=0.1, auxiliary=True, cutout=4, augment=False, seed=0,
                      out=str(out))
    return train(GENO_FAST, cfg, progress=False, dataset=digits), out


def test_digits_training_learns_and_writes_files(digits_run):
    result, out = digits_run
    hist = result.history
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    for h in hist:
        assert HISTORY_KEYS <= set(h)
        assert all(math.isfinite(h[k]) for k in HISTORY_KEYS)
    assert result.test_acc == hist[-1]["test_acc"]
    assert result.test_acc > 0.5, hist  # chance is 0.1
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    # Cosine LR decreasing from lr; drop path ramped 0, p/3, 2p/3.
    assert hist[0]["lr"] == pytest.approx(0.05) and hist[2]["lr"] < hist[1]["lr"] < hist[0]["lr"]
    assert [h["drop_path_prob"] for h in hist] == pytest.approx([0.0, 0.1 / 3, 0.2 / 3])
    assert sorted(os.listdir(out)) == ["model.pt", "train_history.json"]  # no temp files left
    with open(out / "train_history.json") as f:
        assert json.load(f) == hist


def test_saved_model_reloads_and_reproduces_accuracy(digits_run, digits):
    result, out = digits_run
    payload = torch.load(out / "model.pt", weights_only=True)
    assert {"state_dict", "genotype", "config"} <= set(payload)
    assert Genotype.from_dict(payload["genotype"]) == GENO_FAST
    assert payload["config"]["channels"] == 4
    model = load_model(out)
    assert not model.training and model.genotype == GENO_FAST
    device = next(result.model.parameters()).device
    _, acc = evaluate(model.to(device), digits.test_x.to(device), digits.test_y.to(device))
    if device.type == "cpu":
        assert acc == result.test_acc
    else:  # GPU kernels (and channels_last) may flip a borderline sample
        assert acc == pytest.approx(result.test_acc, abs=2 / len(digits.test_y))


def _synthetic_cfg(**kw):
    args = dict(dataset="synthetic", image_size=8, epochs=2, batch_size=32, channels=4, layers=3,
                max_train_samples=128, max_test_samples=64, drop_path_prob=0.2, cutout=3, seed=3)
    args.update(kw)
    return TrainConfig(**args)


def test_same_seed_same_history_on_cpu():
    runs = [train(GENO_FAST, _synthetic_cfg(device="cpu"), progress=False).history for _ in range(2)]
    def strip(hist):
        return [{k: v for k, v in h.items() if k not in ("epoch_time_s", "images_per_s", "data_wait_s")} for h in hist]

    assert strip(runs[0]) == strip(runs[1])
    other = train(GENO_FAST, _synthetic_cfg(seed=4, device="cpu"), progress=False).history
    assert strip(other) != strip(runs[0])


@pytest.mark.parametrize("amp, channels_last", [("bf16", True), ("fp16", False)])
def test_cpu_autocast_training_step(amp, channels_last):
    cfg = _synthetic_cfg(epochs=1, amp=amp, channels_last=channels_last, auxiliary=True)
    result = train(GENO_FAST, cfg, progress=False)
    h = result.history[0]
    assert math.isfinite(h["train_loss"]) and math.isfinite(h["test_loss"])


def test_train_accepts_genotype_path_and_checks_batch_size(tmp_path):
    path = tmp_path / "genotype.json"
    path.write_text(GENO_FAST.to_json())
    with pytest.raises(ValueError, match="batch_size"):
        train(str(path), _synthetic_cfg(batch_size=200), progress=False)
    with pytest.raises(TypeError, match="genotype"):
        train(42, _synthetic_cfg(), progress=False)
