"""Op registry, Genotype JSON round trip and validation, derivation from hand-made alphas."""
import pytest
import torch
from sample_genotypes import GENO_ALL

from dartsfast.search import space
from dartsfast.search.space import (
    DEFAULT_OPS,
    Genotype,
    available_ops,
    build_op,
    derive_genotype,
    num_edges,
    register_op,
)

CLASSIC = ["skip_connect", "max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "sep_conv_5x5",
           "dil_conv_3x3", "dil_conv_5x5"]


@pytest.mark.parametrize("name", list(DEFAULT_OPS) + CLASSIC)
@pytest.mark.parametrize("stride", [1, 2])
def test_every_op_keeps_channels_and_applies_stride(name, stride):
    op = build_op(name, 8, stride, affine=False)
    out = op(torch.randn(2, 8, 9, 9))
    assert out.shape == (2, 8, 5 if stride == 2 else 9, 5 if stride == 2 else 9)


def test_efficientnet_candidates_have_no_internal_residual():
    for name in DEFAULT_OPS[:3]:
        assert build_op(name, 8, 1, affine=False).has_skip is False


def test_fused_mbconv_candidate_is_a_dense_conv():
    op = build_op("fused_mbconv_3x3", 8, 1, affine=False)
    assert op.conv_exp.groups == 1 and op.conv_exp.weight.shape == (32, 8, 3, 3)


def test_user_ops_register_and_duplicates_are_refused(monkeypatch):
    monkeypatch.setattr(space, "_OPS", dict(space._OPS))
    register_op("conv_1x1", lambda c, stride, affine: torch.nn.Conv2d(c, c, 1, stride))
    assert "conv_1x1" in available_ops()
    assert build_op("conv_1x1", 4, 2, True)(torch.randn(1, 4, 6, 6)).shape == (1, 4, 3, 3)
    with pytest.raises(ValueError, match="already registered"):
        register_op("conv_1x1", lambda c, s, a: None)


@pytest.mark.parametrize("ops, message", [([], "empty"), (["dsconv_3x3", "warp_drive"], "unknown op.*warp_drive"),
                                          (["none"], "besides 'none'"), (["none", "none"], "duplicates")])
def test_bad_op_lists(ops, message):
    with pytest.raises(ValueError, match=message):
        space.check_op_names(ops)


def hand_made_alphas(op_names, picks):
    """Weights where edge e's op `picks[e]` has strength s_e and 'none' is always the largest."""
    w = torch.full((num_edges(), len(op_names)), 0.01)
    w[:, op_names.index("none")] = 0.9  # 'none' must never be chosen however strong
    for e, (op, strength) in picks.items():
        w[e, op_names.index(op)] = strength
    return w


def test_derivation_picks_top2_edges_and_strongest_non_none_op():
    ops = list(DEFAULT_OPS)
    # Node 0: edges 0,1. Node 1: edges 2,3,4. Node 2: edges 5..8. Node 3: edges 9..13.
    picks = {0: ("mbconv_3x3", 0.5), 1: ("dsconv_3x3", 0.4),
             2: ("dsconv_3x3", 0.1), 3: ("fused_mbconv_3x3", 0.6), 4: ("mbconv_3x3", 0.3),
             5: ("dsconv_3x3", 0.2), 6: ("dsconv_3x3", 0.25), 7: ("mbconv_3x3", 0.7), 8: ("fused_mbconv_3x3", 0.8),
             9: ("mbconv_3x3", 0.05), 10: ("mbconv_3x3", 0.06), 11: ("dsconv_3x3", 0.5), 12: ("dsconv_3x3", 0.07),
             13: ("fused_mbconv_3x3", 0.55)}
    normal = hand_made_alphas(ops, picks)
    reduce = hand_made_alphas(ops, {e: ("fused_mbconv_3x3", 0.2 + 0.01 * e) for e in range(14)})
    g = derive_genotype(normal, reduce, ops)
    assert g.normal == (("mbconv_3x3", 0), ("dsconv_3x3", 1),
                        ("fused_mbconv_3x3", 1), ("mbconv_3x3", 2),
                        ("fused_mbconv_3x3", 3), ("mbconv_3x3", 2),
                        ("fused_mbconv_3x3", 4), ("dsconv_3x3", 2))
    assert g.reduce == (("fused_mbconv_3x3", 1), ("fused_mbconv_3x3", 0),
                        ("fused_mbconv_3x3", 2), ("fused_mbconv_3x3", 1),
                        ("fused_mbconv_3x3", 3), ("fused_mbconv_3x3", 2),
                        ("fused_mbconv_3x3", 4), ("fused_mbconv_3x3", 3))
    assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5)


def test_derivation_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="weights_normal has shape"):
        derive_genotype(torch.rand(13, 4), torch.rand(14, 4), DEFAULT_OPS)


def test_genotype_json_round_trip():
    g = derive_genotype(torch.rand(14, 4), torch.rand(14, 4), DEFAULT_OPS)
    again = Genotype.from_json(g.to_json())
    assert again == g and hash(again) == hash(g)


@pytest.mark.parametrize("text, message", [
    ("not json", "not valid JSON"),
    ('{"normal": []}', "missing field"),
    ('{"normal": [["warp", 0], ["dsconv_3x3", 1]], "normal_concat": [2], "reduce": [], "reduce_concat": [2]}',
     "unknown op 'warp'"),
    ('{"normal": [["dsconv_3x3", 0], ["dsconv_3x3", 2]], "normal_concat": [2], "reduce": [], "reduce_concat": [2]}',
     "node 0 can only read states 0..1"),
    ('{"normal": [["dsconv_3x3", 0]], "normal_concat": [2], "reduce": [], "reduce_concat": [2]}', "two per node"),
])
def test_bad_genotypes_are_rejected(text, message):
    with pytest.raises(ValueError, match=message):
        Genotype.from_json(text)


GOOD_CELL = '[["dsconv_3x3", 0], ["dsconv_3x3", 1]]'


@pytest.mark.parametrize("normal, concat, message", [
    ('[["dsconv_3x3", 1.7], ["dsconv_3x3", 1]]', "[2]", "edge 0 has 1.7 \\(float\\)"),
    ('[["dsconv_3x3", 0], ["dsconv_3x3", true]]', "[2]", "edge 1 has True \\(bool\\)"),
    ('[["dsconv_3x3", "1"], ["dsconv_3x3", 1]]', "[2]", "edge 0 has '1' \\(str\\)"),
    ('[["dsconv_3x3", Infinity], ["dsconv_3x3", 1]]', "[2]", "edge 0 has inf"),
    (GOOD_CELL, "[2.5]", "normal_concat has 2.5"),
    (GOOD_CELL, "[true]", "normal_concat has True"),
    ('[["dsconv_3x3", 0, 1], ["dsconv_3x3", 1]]', "[2]", "expected a pair"),
    ('[[3, 0], ["dsconv_3x3", 1]]', "[2]", "names op 3"),
])
def test_genotype_values_are_not_coerced(normal, concat, message):
    """A value that is not exactly a state index is refused, never rounded into another architecture."""
    text = f'{{"normal": {normal}, "normal_concat": {concat}, "reduce": {GOOD_CELL}, "reduce_concat": [2]}}'
    with pytest.raises(ValueError, match=message):
        Genotype.from_json(text)


@pytest.mark.parametrize("name, kernel, expansion", [("mbconv_5x5_e6", 5, 6.0), ("fused_mbconv_3x3_e2", 3, 2.0),
                                                     ("mbconv_3x3", 3, 4.0), ("dsconv_5x5", 5, None)])
def test_family_variants_carry_kernel_and_expansion_in_the_name(name, kernel, expansion):
    op = build_op(name, 8, 2, affine=False)
    assert op(torch.randn(2, 8, 9, 9)).shape == (2, 8, 5, 5)
    convs = [m for m in op.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1]
    assert convs and convs[0].kernel_size == (kernel, kernel)
    widest = max(m.out_channels for m in op.modules() if isinstance(m, torch.nn.Conv2d))
    assert widest == (8 if expansion is None else int(8 * expansion))
    assert space.check_op_names([name, "none"]) == (name, "none")
    # A genotype naming the variant validates, so `dartsfast train` can rebuild it.
    Genotype(normal=((name, 0), (name, 1)) * 4, normal_concat=(2, 3, 4, 5),
             reduce=((name, 0), (name, 1)) * 4, reduce_concat=(2, 3, 4, 5))


@pytest.mark.parametrize("name", ["dsconv_3x3_e4", "mbconv_4x4", "mbconv_3x5", "mbconv_3x3_e0", "mbconv_3x3_e99"])
def test_bad_family_variants_are_unknown(name):
    with pytest.raises(ValueError, match="unknown op"):
        space.check_op_names([name])


# ----------------------------------------------------------------------------- genotype files

def test_load_genotype(tmp_path):
    path = tmp_path / "genotype.json"
    path.write_text(GENO_ALL.to_json())
    assert Genotype.load(path) == GENO_ALL
    assert Genotype.load(tmp_path) == GENO_ALL  # a directory means DIR/genotype.json
    with pytest.raises(FileNotFoundError, match="nope.json"):
        Genotype.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    for text, match in [("{not json", "not valid JSON"), ("[1, 2]", "object"),
                        ('{"normal": []}', "missing"),
                        (GENO_ALL.to_json().replace("dsconv_3x3", "warp_drive"), "warp_drive")]:
        bad.write_text(text)
        with pytest.raises(ValueError, match=match) as info:
            Genotype.load(bad)
        assert "bad.json" in str(info.value)


def test_genotype_save_round_trip(tmp_path):
    path = tmp_path / "genotype.json"
    GENO_ALL.save(path)
    assert path.read_text() == GENO_ALL.to_json()  # the same text as to_json(), written atomically
    assert Genotype.load(path) == GENO_ALL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["genotype.json"]  # no temp file left
