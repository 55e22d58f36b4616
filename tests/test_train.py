"""dartsfast.train: the discrete network, drop path, the training loop and its files.

Tiny configs throughout (channels 4, layers 3, 8-16 px) so the file runs in seconds on 2 cores.
"""
import json
import math
import os

import pytest
import torch

from dartsfast.data import load_dataset
from dartsfast.search.space import Genotype
from dartsfast.train import DiscreteCell, DiscreteNetwork, TrainConfig, evaluate, load_genotype, load_model, train

CONCAT = (2, 3, 4, 5)
# Every op kind in the cells (mbconv only in the shape tests: its reference path is slow on CPU).
GENO_ALL = Genotype(
    normal=(("dsconv_3x3", 0), ("skip_connect", 1), ("mbconv_3x3", 0), ("fused_mbconv_3x3", 2),
            ("sep_conv_3x3", 1), ("max_pool_3x3", 2), ("skip_connect", 3), ("dsconv_3x3", 4)),
    normal_concat=CONCAT,
    reduce=(("max_pool_3x3", 0), ("dsconv_3x3", 1), ("skip_connect", 2), ("fused_mbconv_3x3", 1),
            ("mbconv_3x3", 0), ("skip_connect", 2), ("sep_conv_3x3", 3), ("max_pool_3x3", 4)),
    reduce_concat=CONCAT)
GENO_FAST = Genotype(
    normal=(("dsconv_3x3", 0), ("skip_connect", 1), ("sep_conv_3x3", 0), ("fused_mbconv_3x3", 2),
            ("dsconv_3x3", 1), ("max_pool_3x3", 2), ("skip_connect", 3), ("dsconv_3x3", 4)),
    normal_concat=CONCAT,
    reduce=(("max_pool_3x3", 0), ("dsconv_3x3", 1), ("skip_connect", 2), ("dsconv_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("sep_conv_3x3", 3), ("max_pool_3x3", 4)),
    reduce_concat=CONCAT)
GENO_SKIP = Genotype(normal=(("skip_connect", 0), ("skip_connect", 1)) * 4, normal_concat=CONCAT,
                     reduce=(("skip_connect", 0), ("skip_connect", 1)) * 4, reduce_concat=CONCAT)
HISTORY_KEYS = {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_time_s",
                "images_per_s"}


def _tiny_net(genotype=GENO_ALL, **kw):
    args = dict(channels=4, num_classes=10, layers=3, in_channels=3)
    args.update(kw)
    return DiscreteNetwork(genotype, **args)


# ----------------------------------------------------------------------------- network

@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("layers", [3, 5])
def test_network_shapes_and_reductions(in_channels, layers):
    torch.manual_seed(0)
    net = _tiny_net(in_channels=in_channels, layers=layers, num_classes=7)
    assert net.reduction_layers == (layers // 3, 2 * layers // 3)
    sizes = []
    hooks = [c.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape))) for c in net.cells]
    x = torch.randn(2, in_channels, 16, 16)
    for mode in (True, False):
        sizes.clear()
        out = net.train(mode)(x)
        assert out.shape == (2, 7) and torch.isfinite(out).all()
    for h in hooks:
        h.remove()
    side, c = 16, 4
    for i, shape in enumerate(sizes):
        if i in net.reduction_layers:
            side, c = side // 2, c * 2
        assert shape == (2, 4 * c, side, side), f"cell {i}"
    assert side == 4


def test_auxiliary_head_train_and_eval():
    torch.manual_seed(0)
    net = _tiny_net(auxiliary=True, num_classes=5)
    x = torch.randn(3, 3, 16, 16)
    logits, aux = net.train()(x)
    assert logits.shape == aux.shape == (3, 5)
    (logits.sum() + aux.sum()).backward()
    assert net.auxiliary_head.classifier.weight.grad is not None
    out = net.eval()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 5)
    # The head also works on the 1x1 maps of 8 px inputs (adaptive pooling).
    logits, aux = net.train()(torch.randn(2, 3, 8, 8))
    assert aux.shape == (2, 5)


def test_channels_last_matches_nchw():
    torch.manual_seed(0)
    net = _tiny_net().eval()
    x = torch.randn(2, 3, 16, 16)
    ref = net(x)
    net_cl = net.to(memory_format=torch.channels_last)
    out = net_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_bad_network_arguments():
    with pytest.raises(ValueError, match="layers"):
        DiscreteNetwork(GENO_FAST, layers=0)
    with pytest.raises(TypeError, match="Genotype"):
        DiscreteNetwork({"normal": []})
    with pytest.raises(ValueError, match="drop_path_prob"):
        DiscreteNetwork(GENO_FAST, channels=4, layers=3).drop_path_prob = 1.0


# ----------------------------------------------------------------------------- drop path

def test_drop_path_only_in_training():
    torch.manual_seed(0)
    net = _tiny_net(genotype=GENO_FAST)
    x = torch.randn(8, 3, 16, 16)
    # Train mode with p = 0: BN uses batch statistics, which depend only on x, so two
    # passes agree exactly — any difference with p > 0 comes from drop path alone.
    net.train()
    net.drop_path_prob = 0.0
    torch.testing.assert_close(net(x), net(x), rtol=0, atol=0)
    net.drop_path_prob = 0.3
    a, b = net(x), net(x)
    assert not torch.equal(a, b)
    net.eval()
    torch.testing.assert_close(net(x), net(x), rtol=0, atol=0)


def test_drop_path_skips_identities_and_is_per_sample():
    torch.manual_seed(0)
    # Identity-only normal cell: nothing to drop, even at p = 0.5 in training.
    cell = DiscreteCell(GENO_SKIP, 6, 6, 6, reduction=False, reduction_prev=False, drop_path=0.5).train()
    x0, x1 = torch.randn(4, 6, 8, 8), torch.randn(4, 6, 8, 8)
    torch.testing.assert_close(cell(x0, x1), cell(x0, x1), rtol=0, atol=0)
    # A real op: masks are drawn per sample, so some sample's output changes across passes
    # while the p = 0 cell is exactly repeatable.
    cell = DiscreteCell(GENO_FAST, 6, 6, 6, reduction=False, reduction_prev=False, drop_path=0.5).train()
    outs = [cell(x0, x1) for _ in range(4)]
    assert outs[0].shape == (4, 24, 8, 8)
    assert any(not torch.equal(outs[0][n], o[n]) for o in outs[1:] for n in range(4))
    cell.set_drop_path(0.0)
    torch.testing.assert_close(cell(x0, x1), cell(x0, x1), rtol=0, atol=0)


# ----------------------------------------------------------------------------- training

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


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.pt"):
        load_model(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        load_model(tmp_path / "model.pt")


def _synthetic_cfg(**kw):
    args = dict(dataset="synthetic", image_size=8, epochs=2, batch_size=32, channels=4, layers=3,
                max_train_samples=128, max_test_samples=64, drop_path_prob=0.2, cutout=3, seed=3)
    args.update(kw)
    return TrainConfig(**args)


def test_same_seed_same_history_on_cpu():
    runs = [train(GENO_FAST, _synthetic_cfg(device="cpu"), progress=False).history for _ in range(2)]
    def strip(hist):
        return [{k: v for k, v in h.items() if k not in ("epoch_time_s", "images_per_s")} for h in hist]

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


# ----------------------------------------------------------------------------- files and config

def test_load_genotype(tmp_path):
    path = tmp_path / "genotype.json"
    path.write_text(GENO_ALL.to_json())
    assert load_genotype(path) == GENO_ALL
    assert load_genotype(tmp_path) == GENO_ALL  # a directory means DIR/genotype.json
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_genotype(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    for text, match in [("{not json", "not valid JSON"), ("[1, 2]", "object"),
                        ('{"normal": []}', "missing"),
                        (GENO_ALL.to_json().replace("dsconv_3x3", "warp_drive"), "warp_drive")]:
        bad.write_text(text)
        with pytest.raises(ValueError, match=match) as info:
            load_genotype(bad)
        assert "bad.json" in str(info.value)


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
