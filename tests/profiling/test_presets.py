"""profiling.presets: the EfficientNetV2-S / B0 stage tables at their input sizes, the seed
search's cell positions (derived by hand here from the DARTS geometry), user shapes."""
import pytest

from dartsfast.profiling import presets
from dartsfast.profiling.presets import BlockShape, parse_shape


def _row(s):
    return (s.stage, s.position, s.c_in, s.c_out, s.h, s.stride, s.exp_ratio, s.kernel, s.count)


def test_effnetv2_s_at_384():
    shapes = presets.effnetv2_s()
    # Stem 3×3 s2: 384 → 192. Paper Table 4: channels 24, 48, 64, 128, 160, 256; strides
    # 1, 2, 2, 2, 1, 2; layers 2, 4, 4, 6, 9, 15; Fused-MBConv1/4/4 then MBConv4/6/6.
    assert [_row(s) for s in shapes] == [
        ("stage1", "all", 24, 24, 192, 1, 1.0, 3, 2),
        ("stage2", "first", 24, 48, 192, 2, 4.0, 3, 1), ("stage2", "rest", 48, 48, 96, 1, 4.0, 3, 3),
        ("stage3", "first", 48, 64, 96, 2, 4.0, 3, 1), ("stage3", "rest", 64, 64, 48, 1, 4.0, 3, 3),
        ("stage4", "first", 64, 128, 48, 2, 4.0, 3, 1), ("stage4", "rest", 128, 128, 24, 1, 4.0, 3, 5),
        ("stage5", "first", 128, 160, 24, 1, 6.0, 3, 1), ("stage5", "rest", 160, 160, 24, 1, 6.0, 3, 8),
        ("stage6", "first", 160, 256, 24, 2, 6.0, 3, 1), ("stage6", "rest", 256, 256, 12, 1, 6.0, 3, 14),
    ]
    assert sum(s.count for s in shapes) == 40  # EfficientNetV2-S has 40 blocks
    assert {s.native for s in shapes if s.stage <= "stage3"} == {"fused_mbconv"}
    assert {s.native for s in shapes if s.stage >= "stage4"} == {"mbconv"}
    assert shapes[3].label == "effnetv2-s/stage3/first" and shapes[3].out_hw == (48, 48)


def test_effnet_b0_at_224_and_other_input_sizes():
    shapes = presets.effnet_b0()
    assert sum(s.count for s in shapes) == 16
    assert _row(shapes[0]) == ("stage1", "first", 32, 16, 112, 1, 1.0, 3, 1)
    assert _row(shapes[3]) == ("stage3", "first", 24, 40, 56, 2, 6.0, 5, 1)
    assert _row(shapes[-1]) == ("stage7", "first", 192, 320, 7, 1, 6.0, 3, 1)
    # Odd sizes round up like a padded stride-2 conv: 100 → 50 → 25 → 13 → 7 → 4.
    small = presets.effnetv2_s(100)
    assert [s.h for s in small if s.position in ("first", "all")] == [50, 50, 25, 13, 7, 7]
    assert presets.preset_shapes("effnetv2-s", 224)[0].h == 112


def test_seed_positions_follow_the_supernet():
    # C=16, 8 layers, 28×28: reduction cells 2 and 5 (layers//3, 2·layers//3) double C.
    # A normal cell has 14 stride-1 edges; a reduction cell 8 stride-2 edges from its two
    # inputs (4 nodes × 2) at the incoming resolution and 6 stride-1 edges after it.
    expected = {(16, 28, 1): 2 * 14, (32, 28, 2): 8, (32, 14, 1): 6 + 2 * 14,
                (64, 14, 2): 8, (64, 7, 1): 6 + 2 * 14}
    shapes = presets.seed()
    assert {(s.c_in, s.h, s.stride): s.count for s in shapes} == expected
    assert all(s.c_in == s.c_out and s.h == s.w and s.exp_ratio == 4.0 for s in shapes)
    assert sum(s.count for s in shapes) == 8 * 14
    # A 3-cell net on 8×8 images: reductions at cells 1 and 2.
    assert presets.cell_positions(4, 3, 8) == [(4, 8, 8, 1, 14), (8, 8, 8, 2, 8), (8, 4, 4, 1, 6),
                                              (16, 4, 4, 2, 8), (16, 2, 2, 1, 6)]


def test_parse_shape():
    s = parse_shape(" 48, 64,96,95 ,2,4.5")
    assert (s.c_in, s.c_out, s.h, s.w, s.stride, s.exp_ratio) == (48, 64, 96, 95, 2, 4.5)
    assert s.out_hw == (48, 48) and s.preset == "shape" and s.count == 1


@pytest.mark.parametrize("text, message", [
    ("48,64,96", "expected 6 comma-separated fields"),
    ("48,64,96,96,2,4,3", "got 7"),
    ("a,64,96,96,2,4", "C_in must be an integer, got 'a'"),
    ("48,64,0,96,2,4", "H must be ≥ 1, got 0"),
    ("48,64,96,96,3,4", "stride must be 1 or 2, got 3"),
    ("48,64,96,96,2,x", "exp must be a number, got 'x'"),
    ("48,64,96,96,2,-1", "exp must be > 0"),
    ("48,64,96,96,2,nan", "exp must be > 0"),
])
def test_bad_shapes_name_the_field(text, message):
    with pytest.raises(ValueError, match=message):
        parse_shape(text)


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown preset 'resnet50'; available: effnetv2-s, effnet-b0, seed"):
        presets.preset_shapes("resnet50")
    with pytest.raises(ValueError, match="unknown block"):
        presets.block_specs([BlockShape(8, 8, 4, 4, 1, 4.0)], ["mbconv", "convnext"])
    with pytest.raises(ValueError, match="input size"):
        presets.effnetv2_s(1)


def test_block_specs_build_every_block_at_every_shape():
    shapes = presets.effnetv2_s()[:3]
    specs = presets.block_specs(shapes, ["mbconv", "fused_mbconv"])
    assert [(s.block, s.shape) for s in specs] == [(b, sh) for sh in shapes for b in ("mbconv", "fused_mbconv")]
    # EfficientNetV2's SE: 0.25 in MBConv, none in Fused-MBConv; overridable.
    assert {s.block: s.se_ratio for s in specs} == {"mbconv": 0.25, "fused_mbconv": 0.0}
    assert presets.block_specs(shapes, ["fused_mbconv"], se={"fused_mbconv": 0.25})[0].se_ratio == 0.25
