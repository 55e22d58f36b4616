"""Named reference genotypes of the default search space, and genotype arguments by name or file.

A search result means little alone; these put it beside fixed, documented architectures
of the same space (``dartsfast.search.space.DEFAULT_OPS``: dsconv_3x3, mbconv_3x3,
fused_mbconv_3x3, none):

``all-dsconv``, ``all-mbconv``, ``all-fused-mbconv``
    One op on every edge of both cells, wired as a chain: node i (0-based) reads the two
    states just before it, i.e. states i and i + 1 (node 0 reads the two cell inputs,
    node 1 reads input 1 and node 0, ...); the output concatenates the four intermediate
    nodes (states 2..5), as a derived genotype does.
``seed-fmnist``
    The seed experiment's published Fashion-MNIST result (50 epochs, second order, 93.04%
    search-validation accuracy), as recorded in the project's field notes, with its op
    names translated into this space: its ``sep_conv_3x3`` (the DARTS separable conv it
    called DSConv) is ``dsconv_3x3``, its ``mb_conv_3x3`` is ``mbconv_3x3`` and its
    ``fused_mb_conv_3x3`` is ``fused_mbconv_3x3``. Its wiring and op choices are kept
    exactly; the blocks are dartsfast's (SiLU, SE in DSConv/MBConv, expansion 4, a dense
    fused 3x3), not the seed code's (ReLU6, no SE, expansion 3, a grouped "fused" conv), so
    its accuracy here is not the seed's 93.04%.

On the command line a genotype is ``ref:NAME`` for one of these, or the path of a
genotype.json (or of a directory holding one), e.g. ``runs/digits/genotype.json``.
"""
from __future__ import annotations

import os
from typing import Sequence, Union

from dartsfast.search.space import GENOTYPE_FILE, STEPS, Genotype

REF_PREFIX = "ref:"
_CONCAT = tuple(range(2, 2 + STEPS))


def _chain(op: str) -> Genotype:
    cell = tuple((op, state) for node in range(STEPS) for state in (node, node + 1))
    return Genotype(cell, _CONCAT, cell, _CONCAT)


_SEED_FMNIST = Genotype(
    normal=(("dsconv_3x3", 1), ("dsconv_3x3", 0), ("dsconv_3x3", 2), ("dsconv_3x3", 1),
            ("dsconv_3x3", 1), ("dsconv_3x3", 3), ("dsconv_3x3", 1), ("dsconv_3x3", 2)),
    normal_concat=_CONCAT,
    reduce=(("fused_mbconv_3x3", 0), ("mbconv_3x3", 1), ("fused_mbconv_3x3", 1), ("dsconv_3x3", 2),
            ("mbconv_3x3", 2), ("mbconv_3x3", 3), ("dsconv_3x3", 3), ("dsconv_3x3", 0)),
    reduce_concat=_CONCAT)

REFERENCE_GENOTYPES: dict[str, Genotype] = {
    "all-dsconv": _chain("dsconv_3x3"),
    "all-mbconv": _chain("mbconv_3x3"),
    "all-fused-mbconv": _chain("fused_mbconv_3x3"),
    "seed-fmnist": _SEED_FMNIST,
}

GenotypeSpec = Union[str, "os.PathLike[str]", Genotype, tuple]


def reference_genotype(name: str) -> Genotype:
    """The reference genotype called ``name`` (with or without the ``ref:`` prefix)."""
    if not isinstance(name, str):
        raise TypeError(f"a reference genotype name is a str, got {type(name).__name__}")
    key = name[len(REF_PREFIX):] if name.startswith(REF_PREFIX) else name
    if key not in REFERENCE_GENOTYPES:
        raise ValueError(f"unknown reference genotype {key!r}; known: "
                         + ", ".join(REF_PREFIX + k for k in REFERENCE_GENOTYPES))
    return REFERENCE_GENOTYPES[key]


def resolve_genotype(spec: GenotypeSpec) -> tuple[str, Genotype]:
    """``(label, genotype)`` of one genotype argument.

    ``spec``: ``"ref:NAME"``; a path to a genotype.json or a directory holding one (label:
    the path as given); a Genotype (label ``genotype``); or a ``(label, Genotype)`` pair.
    A missing file is a FileNotFoundError, a damaged one a ValueError, both naming it.
    """
    if isinstance(spec, Genotype):
        return "genotype", spec
    if isinstance(spec, tuple):
        if len(spec) != 2 or not isinstance(spec[0], str) or not isinstance(spec[1], Genotype):
            raise TypeError(f"a labelled genotype is a (str, Genotype) pair, got {spec!r}")
        return spec
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise TypeError(f"a genotype is 'ref:NAME', a genotype.json path, a Genotype or a (label, Genotype) "
                        f"pair; got {type(spec).__name__}")
    if spec.startswith(REF_PREFIX):
        return spec, reference_genotype(spec)
    if not os.path.exists(spec) and spec in REFERENCE_GENOTYPES:
        raise FileNotFoundError(f"genotype file {spec} not found; for the reference genotype "
                                f"write {REF_PREFIX}{spec}")
    if not os.path.exists(spec):
        raise FileNotFoundError(f"genotype file {spec} not found (give a {GENOTYPE_FILE}, a directory "
                                f"holding one, or one of {', '.join(REF_PREFIX + k for k in REFERENCE_GENOTYPES)})")
    return spec, Genotype.load(spec)


def resolve_genotypes(specs: Sequence[GenotypeSpec]) -> list[tuple[str, Genotype]]:
    """:func:`resolve_genotype` of each; ValueError for none at all or a label given twice."""
    if isinstance(specs, (str, Genotype)) or not isinstance(specs, Sequence):
        raise TypeError("genotypes must be a list of genotype arguments")
    if not specs:
        raise ValueError("no genotypes to evaluate: give at least one genotype.json or ref:NAME "
                         f"(known: {', '.join(REF_PREFIX + k for k in REFERENCE_GENOTYPES)})")
    resolved = [resolve_genotype(s) for s in specs]
    labels = [label for label, _ in resolved]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"genotype(s) listed twice: {', '.join(repeated)}; list each once "
                         "(--seeds sets the repeats)")
    return resolved
