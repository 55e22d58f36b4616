"""``--dataset imagefolder`` end to end through the CLI: search and train on a generated folder,
device-resident and streamed (the same results bit for bit on a CPU), corrupt files counted
in the history."""
import json

import pytest
from image_folders import make_image_folder
from test_image_folders import _corrupt

from dartsfast.cli import main
from dartsfast.search import SearchConfig, search
from dartsfast.timing import num_threads

# Measured, not computed: they differ between runs of the same search.
TIMING_KEYS = ("epoch_time_s", "train_time_s", "images_per_s", "peak_memory_bytes", "data_wait_s")
# --threads 1: the DataLoader worker gets the other core.
SIZE = ["--image-size", "8", "--layers", "3", "--channels", "4", "--batch-size", "16", "--device", "cpu",
        "--no-progress", "--threads", "1"]
STREAMED = ["--data-memory-gb", "0", "--data-workers", "1"]


def _search(folder, out, *flags):
    argv = ["search", "--dataset", "imagefolder", "--data-dir", str(folder), *SIZE, "--epochs", "2", "--no-plots",
            "--ops", "skip_connect,dsconv_3x3,none", "--alpha-lr", "0.05", "--augment", "--out", str(out), *flags]
    assert main(argv) == 0
    return json.loads((out / "history.json").read_text())


def _untimed(history):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in history]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("runs"), classes=3, per_class=40, test_per_class=4)


def test_search_resident_and_streamed_give_the_same_run(folder, tmp_path, capsys):
    resident = _search(folder, tmp_path / "resident")
    assert "device-resident" in capsys.readouterr().out
    streamed = _search(folder, tmp_path / "streamed", *STREAMED)
    out = capsys.readouterr().out
    assert "3 classes, 120 training and 12 test images (test/)" in out and "streamed from the files" in out
    assert _untimed(resident) == _untimed(streamed)  # alphas, losses, genotype: bit for bit
    for record in resident + streamed:
        assert record["skipped_images"] == 0 and record["data_wait_s"] >= 0
    assert len(streamed) == 2 and streamed[-1]["val_acc"] > 1 / 3 - 1e-9  # it ran, and the data is learnable
    # A streamed run's checkpoint resumes device-resident (one state-dict schema), bit for bit.
    config = dict(dataset="imagefolder", data_dir=str(folder), image_size=8, layers=3, channels=4, batch_size=16,
                  epochs=2, ops=("skip_connect", "dsconv_3x3", "none"), alpha_lr=0.05, augment=True, device="cpu",
                  progress=False, plots=False, out=str(tmp_path / "switch"))

    def stop(epoch, record):
        raise KeyboardInterrupt
    with num_threads(1), pytest.raises(KeyboardInterrupt):  # as the CLI runs above (--threads 1)
        search(SearchConfig(**config, data_memory_gb=0, data_workers=0), on_epoch_end=stop)
    with num_threads(1):
        resumed = search(SearchConfig(**config, resume=True)).history
    assert _untimed(resumed) == _untimed(resident)


def test_train_resident_and_streamed_agree(folder, tmp_path, capsys):
    genotype = tmp_path / "search"
    _search(folder, genotype, "--epochs", "1")
    results = []
    for flags in ([], STREAMED):
        out = tmp_path / f"train{len(flags)}"
        argv = ["train", "--genotype", str(genotype / "genotype.json"), "--dataset", "imagefolder", "--data-dir",
                str(folder), *SIZE, "--epochs", "2", "--out", str(out), *flags]
        assert main(argv) == 0
        results.append(json.loads((out / "train_history.json").read_text()))
    assert _untimed(results[0]) == _untimed(results[1])
    assert 0 <= results[0][-1]["test_acc"] <= 1 and "test accuracy" in capsys.readouterr().out


def test_corrupt_images_are_counted_in_the_history(tmp_path, capsys):
    folder = make_image_folder(tmp_path / "data", classes=2, per_class=30)
    _corrupt(folder)
    for name, flags in (("resident", []), ("streamed", STREAMED)):
        history = _search(folder, tmp_path / name, "--epochs", "1", *flags)
        assert history[-1]["skipped_images"] == 2, name
    out = capsys.readouterr().out
    assert "1 unreadable image(s) skipped" in out and "1 image(s) did not decode and were dropped" in out
