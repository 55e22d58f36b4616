"""The search space: candidate-op registry, the Genotype, and genotype derivation.

An op constructor takes ``(channels, stride, affine)`` and returns a module mapping
[N, C, H, W] → [N, C, H/stride, W/stride]. Users add ops with :func:`register_op`.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import numbers
import os
import re
from typing import Callable, Sequence, Union

import torch
import torch.nn as nn

from dartsfast._io import write_json
from dartsfast._validate import existing_file
from dartsfast.nn import DSConv, FusedMBConv, MBConv
from dartsfast.nn.classic import DilConv, FactorizedReduce, PoolBN, SepConv, Zero

OpConstructor = Callable[[int, int, bool], nn.Module]
PathLike = Union[str, "os.PathLike[str]"]
GENOTYPE_FILE = "genotype.json"  # what a search writes, and what a directory given to Genotype.load holds

NONE = "none"
# The seed experiment's space (Fashion-MNIST DSConv/MBConv/Fused-MBConv search).
DEFAULT_OPS = ("dsconv_3x3", "mbconv_3x3", "fused_mbconv_3x3", NONE)
# The original DARTS space (Liu et al. 2019), where the collapse into parameter-free ops
# (skip_connect, pooling) was observed.
DARTS_OPS = (NONE, "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
             "dil_conv_3x3", "dil_conv_5x5")
STEPS = 4            # intermediate nodes per cell
MULTIPLIER = 4       # nodes concatenated into the cell output
MBCONV_EXPANSION = 4.0
FUSED_MBCONV_EXPANSION = 4.0

_OPS: dict[str, OpConstructor] = {}


def register_op(name: str, constructor: OpConstructor | None = None, *, replace: bool = False):
    """Register ``constructor(channels, stride, affine) -> nn.Module`` as candidate ``name``.

    Usable as ``register_op("my_op", fn)`` or as a decorator ``@register_op("my_op")``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"op name must be a non-empty str, got {name!r}")

    def add(fn: OpConstructor) -> OpConstructor:
        if name in _OPS and not replace:
            raise ValueError(f"op {name!r} is already registered (pass replace=True to override)")
        _OPS[name] = fn
        return fn

    return add(constructor) if constructor is not None else add


def available_ops() -> tuple[str, ...]:
    return tuple(_OPS)


def check_op_names(names: Sequence[str]) -> tuple[str, ...]:
    """Validate a candidate list: known, unique, not empty, at least one op besides 'none'."""
    names = tuple(names)
    if not names:
        raise ValueError("the op list is empty")
    unknown = [n for n in names if _lookup(n) is None]
    if unknown:
        raise ValueError(f"unknown op(s) {', '.join(map(repr, unknown))}; available: {', '.join(_OPS)} "
                         "(and EfficientNetV2 variants such as mbconv_5x5_e6, fused_mbconv_3x3_e2, dsconv_5x5)")
    if len(set(names)) != len(names):
        raise ValueError(f"the op list has duplicates: {names}")
    if all(n == NONE for n in names):
        raise ValueError("the op list needs at least one op besides 'none'")
    return names


def build_op(name: str, channels: int, stride: int, affine: bool) -> nn.Module:
    constructor = _lookup(name)
    if constructor is None:
        raise ValueError(f"unknown op {name!r}; available: {', '.join(_OPS)}")
    return constructor(channels, stride, affine)


# EfficientNetV2-family variants named by kernel and expansion, e.g. mbconv_5x5_e6,
# fused_mbconv_3x3_e2, dsconv_5x5: the name carries the parameters, so a genotype that
# uses one rebuilds exactly the same block in `dartsfast train`.
_FAMILY = re.compile(r"(dsconv|mbconv|fused_mbconv)_([357])x\2(?:_e(\d+(?:\.\d+)?))?")
MAX_EXPANSION = 8.0


def _lookup(name: str) -> OpConstructor | None:
    """The registered constructor of ``name``, or one for a family variant, or None."""
    if not isinstance(name, str):
        return None
    if name in _OPS:
        return _OPS[name]
    match = _FAMILY.fullmatch(name)
    if match is None:
        return None
    family, k, expansion = match.group(1), int(match.group(2)), match.group(3)
    if family == "dsconv":
        if expansion is not None:
            return None  # a depthwise-separable conv has no expansion
        return lambda c, stride, affine: DSConv(c, c, k, stride, se_ratio=0.25, noskip=True)
    ratio = float(expansion) if expansion is not None else (
        MBCONV_EXPANSION if family == "mbconv" else FUSED_MBCONV_EXPANSION)
    if not 1.0 <= ratio <= MAX_EXPANSION:
        return None
    if family == "mbconv":
        return lambda c, stride, affine: MBConv(c, c, k, stride, exp_ratio=ratio, se_ratio=0.25, noskip=True)
    return lambda c, stride, affine: FusedMBConv(c, c, k, stride, exp_ratio=ratio, se_ratio=0.0, noskip=True)


def _bn(affine: bool):
    return functools.partial(nn.BatchNorm2d, affine=affine)


# EfficientNetV2 blocks as DARTS candidates: no internal residual (the node sum and the
# skip_connect candidate own the identity path). Their own BN stays affine: the fused
# MBConv middle computes an affine BatchNorm.
register_op(NONE, lambda c, stride, affine: Zero(stride))
register_op("skip_connect", lambda c, stride, affine: nn.Identity() if stride == 1
            else FactorizedReduce(c, c, affine))
register_op("max_pool_3x3", lambda c, stride, affine: PoolBN("max", c, stride, affine=False, with_bn=not affine))
register_op("avg_pool_3x3", lambda c, stride, affine: PoolBN("avg", c, stride, affine=False, with_bn=not affine))
register_op("sep_conv_3x3", lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine))
register_op("sep_conv_5x5", lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine))
register_op("dil_conv_3x3", lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine))
register_op("dil_conv_5x5", lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine))
register_op("dsconv_3x3", lambda c, stride, affine: DSConv(c, c, 3, stride, se_ratio=0.25, noskip=True))
register_op("mbconv_3x3", lambda c, stride, affine: MBConv(
    c, c, 3, stride, exp_ratio=MBCONV_EXPANSION, se_ratio=0.25, noskip=True))
register_op("fused_mbconv_3x3", lambda c, stride, affine: FusedMBConv(
    c, c, 3, stride, exp_ratio=FUSED_MBCONV_EXPANSION, se_ratio=0.0, noskip=True))


def num_edges(steps: int = STEPS) -> int:
    """Edges of a cell: node i (0-based) has 2 + i inputs (two cell inputs + earlier nodes)."""
    return sum(2 + i for i in range(steps))


# ----------------------------------------------------------------------------- Genotype

def _state_index(where: str, value: object) -> int:
    # Strict: a genotype file saying 1.7, "1" or true is not silently read as state 1 (a
    # different architecture than the one written down would be trained).
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"genotype {where} has {value!r} ({type(value).__name__}) where a state index "
                         "(a non-negative int) belongs")
    return int(value)


def _edge(kind: str, e: int, edge: object) -> tuple[str, int]:
    if not isinstance(edge, (tuple, list)) or len(edge) != 2:
        raise ValueError(f"genotype {kind} edge {e} is {edge!r}; expected a pair [op, input_index]")
    op, idx = edge
    if not isinstance(op, str):
        raise ValueError(f"genotype {kind} edge {e} names op {op!r}; expected an op name (str)")
    return op, _state_index(f"{kind} edge {e}", idx)


@dataclasses.dataclass(frozen=True)
class Genotype:
    """A discrete cell pair: for each intermediate node, two ``(op, input_index)`` edges.

    Input index 0 and 1 are the cell inputs (outputs of the two previous cells), 2 + i
    is intermediate node i. ``*_concat`` lists the states concatenated into the output.
    """

    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[str, int], ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        for kind in ("normal", "reduce"):
            edges = tuple(_edge(kind, e, edge) for e, edge in enumerate(getattr(self, kind)))
            concat = tuple(_state_index(f"{kind}_concat", i) for i in getattr(self, f"{kind}_concat"))
            object.__setattr__(self, kind, edges)
            object.__setattr__(self, f"{kind}_concat", concat)
            if len(edges) % 2:
                raise ValueError(f"genotype {kind} cell has {len(edges)} edges; expected two per node")
            for e, (op, idx) in enumerate(edges):
                node = e // 2
                if _lookup(op) is None:
                    raise ValueError(f"genotype {kind} cell uses unknown op {op!r}; available: {', '.join(_OPS)}")
                if not 0 <= idx < 2 + node:
                    raise ValueError(f"genotype {kind} edge {e} takes input {idx}, but node {node} "
                                     f"can only read states 0..{1 + node}")
            steps = len(edges) // 2
            if not concat or any(not 0 <= i < 2 + steps for i in concat):
                raise ValueError(f"genotype {kind}_concat {concat} must name states 0..{1 + steps}")

    @property
    def steps(self) -> int:
        return len(self.normal) // 2

    def to_dict(self) -> dict:
        return {"normal": [list(e) for e in self.normal], "normal_concat": list(self.normal_concat),
                "reduce": [list(e) for e in self.reduce], "reduce_concat": list(self.reduce_concat)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> "Genotype":
        missing = {"normal", "normal_concat", "reduce", "reduce_concat"} - set(data)
        if missing:
            raise ValueError(f"genotype is missing field(s): {', '.join(sorted(missing))}")
        try:
            return cls(tuple(tuple(e) for e in data["normal"]), tuple(data["normal_concat"]),
                       tuple(tuple(e) for e in data["reduce"]), tuple(data["reduce_concat"]))
        except (TypeError, ValueError) as e:
            raise ValueError(f"malformed genotype: {e}") from e

    @classmethod
    def from_json(cls, text: str) -> "Genotype":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"genotype is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise ValueError("genotype JSON must be an object")
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: PathLike) -> "Genotype":
        """Read a ``genotype.json`` (as written by :meth:`save` or ``to_json()``); a directory
        means ``path/genotype.json``. FileNotFoundError / ValueError name the file."""
        path = existing_file(path, GENOTYPE_FILE, "genotype")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError as e:
            raise ValueError(f"genotype file {path} is not UTF-8 text: {e}") from e
        try:
            return cls.from_json(text)
        except ValueError as e:
            raise ValueError(f"genotype file {path}: {e}") from e

    def save(self, path: PathLike) -> None:
        """Write this genotype as indented JSON to the file ``path``, atomically."""
        write_json(os.fspath(path), self.to_dict())


def derived_edges(weights: torch.Tensor, op_names: Sequence[str], steps: int) -> list[tuple[int, int, int]]:
    """DARTS's derivation (§2.4): per node, the 2 incoming edges whose strongest non-'none'
    op weighs most, each with that op. Returns ``(op_index, input_index, edge_row)`` triples,
    two per node in node order, the stronger edge first."""
    w = weights.detach().to("cpu", torch.float64)
    candidates = [k for k, name in enumerate(op_names) if name != NONE]
    edges, start = [], 0
    for node in range(steps):
        n_inputs = 2 + node
        rows = w[start:start + n_inputs]
        strength = [max(rows[j, k].item() for k in candidates) for j in range(n_inputs)]
        # Stable order: stronger first, ties broken by the lower input index.
        best_inputs = sorted(range(n_inputs), key=lambda j: (-strength[j], j))[:2]
        for j in best_inputs:
            k_best = max(candidates, key=lambda k: (rows[j, k].item(), -k))
            edges.append((k_best, j, start + j))
        start += n_inputs
    return edges


def _derive_cell(weights: torch.Tensor, op_names: Sequence[str], steps: int) -> tuple[tuple[str, int], ...]:
    return tuple((op_names[k], j) for k, j, _ in derived_edges(weights, op_names, steps))


def derive_genotype(weights_normal: torch.Tensor, weights_reduce: torch.Tensor, op_names: Sequence[str],
                    steps: int = STEPS, multiplier: int = MULTIPLIER) -> Genotype:
    """The discrete architecture from softmaxed alphas of shape [num_edges(steps), len(op_names)]."""
    op_names = check_op_names(op_names)
    expected = (num_edges(steps), len(op_names))
    for name, w in (("weights_normal", weights_normal), ("weights_reduce", weights_reduce)):
        if tuple(w.shape) != expected:
            raise ValueError(f"{name} has shape {tuple(w.shape)}; expected {expected}")
    concat = tuple(range(2 + steps - multiplier, 2 + steps))
    return Genotype(_derive_cell(weights_normal, op_names, steps), concat,
                    _derive_cell(weights_reduce, op_names, steps), concat)
