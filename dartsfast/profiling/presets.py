"""Block shapes to profile: EfficientNetV2-S and EfficientNet-B0 stages, the seed search's
cell positions, and user shapes (``--shape C_in,C_out,H,W,stride,exp``).

A :class:`BlockShape` is one block position of a network: in/out channels, input
resolution, stride, expansion, kernel and how many times that exact block runs (``count``).
A stage of ``r`` repeats gives two positions: the *first* block (stride s, C_in → C_out,
at the stage's input resolution) and the *rest* (stride 1, C_out → C_out, at its output
resolution) with count r − 1; both identical (stride 1, C_in == C_out) merge into one.
So a stage's latency is Σ count × latency over its positions.

Every block type asked for is built at every shape (:func:`block_specs`): that is how the
MBConv-vs-Fused-MBConv comparison of EfficientNetV2 §3.2 / Table 3 is made per stage.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

from dartsfast.search.positions import cell_positions  # moved down for the search; re-exported

BLOCKS = ("mbconv", "fused_mbconv", "dsconv")
PRESETS = ("effnetv2-s", "effnet-b0", "seed")

# Input sizes the networks are evaluated at: EfficientNetV2-S 384 (Table 7, train up to 300,
# eval 384), EfficientNet-B0 224; the seed search ran on 28×28 Fashion-MNIST.
DEFAULT_INPUT_SIZE = {"effnetv2-s": 384, "effnet-b0": 224, "seed": 28}
# The stems of both networks are a 3×3 stride-2 conv, so stage 1 sees input_size / 2.
STEM_STRIDE = 2

# SE as each block type has it in EfficientNetV2: MBConv 0.25 of the block's input
# channels; Fused-MBConv none (the paper drops SE from the fused stages); DSConv 0.25 (B0's stage 1).
DEFAULT_SE = {"mbconv": 0.25, "fused_mbconv": 0.0, "dsconv": 0.25}

# (stage, native block, expansion, kernel, stride, out channels, repeats): the paper's Table 4.
EFFNETV2_S = (
    (1, "fused_mbconv", 1, 3, 1, 24, 2),
    (2, "fused_mbconv", 4, 3, 2, 48, 4),
    (3, "fused_mbconv", 4, 3, 2, 64, 4),
    (4, "mbconv", 4, 3, 2, 128, 6),
    (5, "mbconv", 6, 3, 1, 160, 9),
    (6, "mbconv", 6, 3, 2, 256, 15),
)
EFFNETV2_S_STEM = 24
# EfficientNet-B0, Tan & Le 2019 Table 1 (stage 1 is MBConv1, i.e. timm's DSConv).
EFFNET_B0 = (
    (1, "mbconv", 1, 3, 1, 16, 1),
    (2, "mbconv", 6, 3, 2, 24, 2),
    (3, "mbconv", 6, 5, 2, 40, 2),
    (4, "mbconv", 6, 3, 2, 80, 3),
    (5, "mbconv", 6, 5, 1, 112, 3),
    (6, "mbconv", 6, 5, 2, 192, 4),
    (7, "mbconv", 6, 3, 1, 320, 1),
)
EFFNET_B0_STEM = 32

# The seed search (Fashion-MNIST DSConv/MBConv/Fused-MBConv, DARTS geometry).
SEED_CHANNELS, SEED_LAYERS, SEED_IMAGE_SIZE, SEED_EXPANSION = 16, 8, 28, 4.0


@dataclasses.dataclass(frozen=True)
class BlockShape:
    """One block position. ``h``, ``w`` are the block's *input* resolution."""

    c_in: int
    c_out: int
    h: int
    w: int
    stride: int
    exp_ratio: float
    kernel: int = 3
    count: int = 1          # how many blocks of exactly this shape run at this position
    preset: str = "shape"   # effnetv2-s | effnet-b0 | seed | shape
    stage: str = ""         # the comparison groups positions by (preset, stage)
    position: str = ""      # first | rest | (seed) cell position
    native: str = ""        # the block type the network itself uses here ('' = none)

    @property
    def out_hw(self) -> tuple[int, int]:
        """Output resolution with 'same' padding: (H − 1) // stride + 1."""
        return (self.h - 1) // self.stride + 1, (self.w - 1) // self.stride + 1

    @property
    def label(self) -> str:
        parts = [self.preset, self.stage, self.position]
        return "/".join(p for p in parts if p)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """A block type at a shape, with its SE ratio: everything needed to build the module."""

    block: str
    shape: BlockShape
    se_ratio: float

    @property
    def label(self) -> str:
        return f"{self.block}@{self.shape.label}"


def _out(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


def _check_input_size(input_size: int) -> int:
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 2:
        raise ValueError(f"input size must be an int ≥ 2, got {input_size!r}")
    return input_size


def stage_shapes(preset: str, table: Sequence[tuple], stem_channels: int, input_size: int) -> list[BlockShape]:
    """The positions of every stage of a stage table at ``input_size`` (see the module docstring)."""
    size = _out(_check_input_size(input_size), STEM_STRIDE)
    c_in = stem_channels
    shapes = []
    for stage, native, exp, k, stride, c_out, repeats in table:
        common = dict(exp_ratio=float(exp), kernel=k, preset=preset, stage=f"stage{stage}", native=native)
        first = BlockShape(c_in, c_out, size, size, stride, position="first", **common)
        size = _out(size, stride)
        rest = BlockShape(c_out, c_out, size, size, 1, count=repeats - 1, position="rest", **common)
        if repeats > 1 and (first.c_in, first.h, first.stride) == (rest.c_in, rest.h, rest.stride):
            shapes.append(dataclasses.replace(first, count=repeats, position="all"))
        else:
            shapes.append(first)
            if repeats > 1:
                shapes.append(rest)
        c_in = c_out
    return shapes


def effnetv2_s(input_size: int = DEFAULT_INPUT_SIZE["effnetv2-s"]) -> list[BlockShape]:
    return stage_shapes("effnetv2-s", EFFNETV2_S, EFFNETV2_S_STEM, input_size)


def effnet_b0(input_size: int = DEFAULT_INPUT_SIZE["effnet-b0"]) -> list[BlockShape]:
    return stage_shapes("effnet-b0", EFFNET_B0, EFFNET_B0_STEM, input_size)


def seed(channels: int = SEED_CHANNELS, layers: int = SEED_LAYERS,
         image_size: int = SEED_IMAGE_SIZE) -> list[BlockShape]:
    """The seed search's cell positions as C → C blocks (expansion 4, kernel 3)."""
    return [BlockShape(c, c, h, w, s, SEED_EXPANSION, count=n, preset="seed",
                       stage=f"C{c}-{h}x{w}-s{s}", position="edges")
            for c, h, w, s, n in cell_positions(channels, layers, image_size)]


def preset_shapes(name: str, input_size: int | None = None) -> list[BlockShape]:
    """Shapes of preset ``name``; ``input_size`` overrides the default resolution."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    size = DEFAULT_INPUT_SIZE[name] if input_size is None else input_size
    if name == "effnetv2-s":
        return effnetv2_s(size)
    if name == "effnet-b0":
        return effnet_b0(size)
    return seed(image_size=size)


SHAPE_FORMAT = "C_in,C_out,H,W,stride,exp (e.g. 48,64,96,96,2,4)"


def parse_shape(text: str) -> BlockShape:
    """A user shape ``C_in,C_out,H,W,stride,exp``; ValueError naming the bad field otherwise."""
    fields = [f.strip() for f in str(text).split(",")]
    if len(fields) != 6:
        raise ValueError(f"--shape {text!r}: expected 6 comma-separated fields {SHAPE_FORMAT}, got {len(fields)}")
    names = ("C_in", "C_out", "H", "W", "stride")
    values = []
    for name, field in zip(names, fields[:5]):
        try:
            value = int(field)
        except ValueError:
            raise ValueError(f"--shape {text!r}: {name} must be an integer, got {field!r}") from None
        if value < 1:
            raise ValueError(f"--shape {text!r}: {name} must be ≥ 1, got {value}")
        values.append(value)
    if values[4] not in (1, 2):
        raise ValueError(f"--shape {text!r}: stride must be 1 or 2, got {values[4]}")
    try:
        exp = float(fields[5])
    except ValueError:
        raise ValueError(f"--shape {text!r}: exp must be a number, got {fields[5]!r}") from None
    if not 0 < exp < 1e4:
        raise ValueError(f"--shape {text!r}: exp must be > 0, got {fields[5]}")
    c_in, c_out, h, w, stride = values
    return BlockShape(c_in, c_out, h, w, stride, exp, stage=",".join(fields), position="")


def parse_list(text: str, allowed: Sequence[str], what: str, aliases: dict | None = None) -> tuple[str, ...]:
    """A comma list of names from ``allowed`` (``aliases`` map other spellings); ValueError otherwise."""
    aliases = aliases or {}
    names = [aliases.get(n.strip().lower(), n.strip().lower()) for n in str(text).split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if not names or unknown:
        bad = ", ".join(map(repr, unknown)) or "(empty list)"
        raise ValueError(f"unknown {what} {bad}; available: {', '.join(allowed)}")
    return tuple(dict.fromkeys(names))  # unique, order kept


def parse_se(text: str) -> dict:
    """'fused_mbconv=0.25,mbconv=0' → {block: SE ratio}; ValueError naming the bad entry."""
    out = {}
    for item in (t.strip() for t in str(text).split(",") if t.strip()):
        block, sep, value = item.partition("=")
        block = block.strip().lower()
        if not sep or block not in BLOCKS:
            raise ValueError(f"--se {text!r}: expected BLOCK=RATIO entries with BLOCK one of {', '.join(BLOCKS)}, "
                             f"got {item!r}")
        try:
            ratio = float(value)
        except ValueError:
            raise ValueError(f"--se {text!r}: {value.strip()!r} is not a number") from None
        if not 0 <= ratio <= 1:
            raise ValueError(f"--se {text!r}: an SE ratio must be in [0, 1], got {ratio}")
        out[block] = ratio
    return out


def block_specs(shapes: Iterable[BlockShape], blocks: Sequence[str] = ("mbconv", "fused_mbconv"),
                se: dict | None = None) -> list[BlockSpec]:
    """Every block type of ``blocks`` at every shape (shape-major order)."""
    blocks = parse_list(",".join(blocks), BLOCKS, "block(s)")
    se = {**DEFAULT_SE, **(se or {})}
    return [BlockSpec(b, shape, se[b]) for shape in shapes for b in blocks]
