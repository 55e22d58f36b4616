"""TrainConfig: defaults, and every bad field named in its error."""
import pytest

from dartsfast.train import TrainConfig


@pytest.mark.parametrize("field, value", [
    ("dataset", "imagenet"), ("epochs", 0), ("batch_size", -1), ("channels", 2.5), ("layers", True),
    ("lr", 0.0), ("lr", float("nan")), ("lr_min", 1.0), ("momentum", 1.0), ("weight_decay", -1e-4),
    ("grad_clip", -1.0), ("drop_path_prob", 1.0), ("auxiliary_weight", -0.1), ("cutout", -2),
    ("amp", "fp8"), ("channels_last", "yes"), ("device", "warp:0"), ("seed", 1.5),
    ("image_size", 0), ("max_train_samples", 0),
])
def test_config_validation_names_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_config_defaults_valid():
    cfg = TrainConfig()
    assert (cfg.dataset, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.amp) == ("digits", 0.025, 0.9, 3e-4, "off")
    assert cfg.to_dict()["channels_last"] is None
