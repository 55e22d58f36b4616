"""Genotypes drawn uniformly from the search space, under the constraints of DARTS derivation.

:func:`~dartsfast.search.space.derive_genotype` gives every intermediate node two edges
from two *distinct* earlier states (the two cell inputs or an earlier node), each with
an op other than 'none', and concatenates the last ``multiplier`` states. A random-search
baseline is only a fair comparison if its genotypes come from that same set, so the
sampler draws exactly there: for node i, two distinct inputs out of the 2 + i states,
uniformly, and for each edge one op out of the non-'none' candidates, uniformly.

The draws use :class:`random.Random` seeded by the caller, not torch's generators, so
the same seed gives the same genotypes on any device and torch version.
"""
from __future__ import annotations

import random
from typing import Sequence

from dartsfast._validate import is_int
from dartsfast.search.space import DEFAULT_OPS, MULTIPLIER, NONE, STEPS, Genotype, check_op_names

# Drawing many distinct genotypes of a tiny space (one candidate op, one node) runs out of
# new ones; give up after this many draws in a row that were all repeats, and say so.
_DRAWS_PER_GENOTYPE = 200


def candidate_ops(ops: Sequence[str]) -> tuple[str, ...]:
    """The ops a derived edge may carry: ``ops`` without 'none' (checked as the search checks them)."""
    return tuple(op for op in check_op_names(ops) if op != NONE)


def _check_shape(steps: int, multiplier: int) -> None:
    if not is_int(steps) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not is_int(multiplier) or not 1 <= multiplier <= steps + 2:
        raise ValueError(f"multiplier must be an int in [1, steps + 2 = {steps + 2}], got {multiplier!r}")


def sample_cell(rng: random.Random, ops: Sequence[str], steps: int = STEPS) -> tuple[tuple[str, int], ...]:
    """One cell's edges: for node i, two distinct inputs in 0..1+i, each with an op from ``ops``.

    ``ops`` must already be the candidates (no 'none'); see :func:`candidate_ops`.
    """
    edges = []
    for node in range(steps):
        # rng.sample draws without replacement: the two inputs are distinct, as derivation's top-2.
        for state in rng.sample(range(2 + node), 2):
            edges.append((rng.choice(ops), state))
    return tuple(edges)


def sample_genotype(rng: random.Random, ops: Sequence[str] = DEFAULT_OPS, steps: int = STEPS,
                    multiplier: int = MULTIPLIER) -> Genotype:
    """One genotype: a random normal and a random reduction cell, concatenating the last
    ``multiplier`` states (as derivation does). ``ops`` may include 'none' (it is never drawn)."""
    _check_shape(steps, multiplier)
    candidates = candidate_ops(ops)
    concat = tuple(range(2 + steps - multiplier, 2 + steps))
    normal = sample_cell(rng, candidates, steps)
    reduce = sample_cell(rng, candidates, steps)
    return Genotype(normal, concat, reduce, concat)


def sample_genotypes(n: int, seed: int, ops: Sequence[str] = DEFAULT_OPS, steps: int = STEPS,
                     multiplier: int = MULTIPLIER, *, distinct: bool = True) -> list[Genotype]:
    """``n`` genotypes drawn with ``random.Random(seed)``.

    ``distinct``: redraw a genotype already drawn, so a search budget is not spent training
    the same network twice (ValueError when the space runs out of new ones). The first k of
    ``sample_genotypes(n, seed)`` are ``sample_genotypes(k, seed)`` for k <= n, and
    :class:`GenotypeStream` yields the same list one at a time.
    """
    if not is_int(n) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    stream = GenotypeStream(seed, ops, steps, multiplier, distinct=distinct)
    return [stream.next() for _ in range(n)]


class GenotypeStream:
    """Genotypes one at a time, for a search whose count the budget decides as it goes:
    the k-th genotype is the k-th of ``sample_genotypes(n, seed, ...)`` for any n ≥ k."""

    def __init__(self, seed: int, ops: Sequence[str] = DEFAULT_OPS, steps: int = STEPS,
                 multiplier: int = MULTIPLIER, *, distinct: bool = True) -> None:
        if not is_int(seed) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        _check_shape(steps, multiplier)
        candidate_ops(ops)  # a bad op list fails here, not at the first draw
        self._rng = random.Random(seed)
        self._args = (tuple(ops), steps, multiplier)
        self._distinct = bool(distinct)
        self._seen: set[Genotype] = set()

    def next(self) -> Genotype:
        for _ in range(_DRAWS_PER_GENOTYPE):
            genotype = sample_genotype(self._rng, *self._args)
            if not self._distinct or genotype not in self._seen:
                self._seen.add(genotype)
                return genotype
        raise ValueError(f"no new genotype in this space after {len(self._seen)} distinct ones "
                         f"(ops {candidate_ops(self._args[0])}, {self._args[1]} nodes)")
