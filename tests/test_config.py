"""dartsfast.config.RunConfig: the settings SearchConfig and TrainConfig share, checked in one place."""
import dataclasses
import pathlib

import pytest

from dartsfast.config import DATASETS, RunConfig
from dartsfast.data import DATASETS as DATA_DATASETS
from dartsfast.search.config import SearchConfig
from dartsfast.train import TrainConfig

SHARED = {f.name for f in dataclasses.fields(RunConfig)}


def test_both_configs_extend_the_base():
    for cls in (SearchConfig, TrainConfig):
        assert issubclass(cls, RunConfig)
        assert SHARED <= {f.name for f in dataclasses.fields(cls)}
    assert DATASETS is DATA_DATASETS  # one list of dataset names


@pytest.mark.parametrize("field, value", [
    ("dataset", "imagenet"), ("epochs", 0), ("batch_size", True), ("channels", 2.5), ("image_size", 0),
    ("max_train_samples", -3), ("augment", "yes"), ("amp", "fp8"), ("channels_last", 1), ("seed", 1.5),
    ("grad_clip", -1.0), ("device", "warp:0"), ("out", 3), ("data_dir", 4.5),
])
def test_shared_field_checked_alike(field, value):
    messages = []
    for cls in (RunConfig, SearchConfig, TrainConfig):
        with pytest.raises(ValueError, match=field) as info:
            cls(**{field: value})
        messages.append(str(info.value).split(".", 1)[1])  # drop the class name
    assert messages[0] == messages[1] == messages[2]


def test_layers_rule_per_config():
    assert TrainConfig(layers=1).layers == 1
    with pytest.raises(ValueError, match="SearchConfig.layers must be an int >= 3"):
        SearchConfig(layers=2)
    assert RunConfig(out=pathlib.Path("runs")).out == "runs"  # paths stored as str
