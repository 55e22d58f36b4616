"""The random-search sampler draws only genotypes that DARTS derivation could produce, as
a seed says, and covers the whole space (issue 17)."""
import random
from collections import Counter

import pytest
import torch

from dartsfast.search.random_genotypes import GenotypeStream, sample_genotype, sample_genotypes
from dartsfast.search.space import DEFAULT_OPS, MULTIPLIER, NONE, STEPS, Genotype, derive_genotype, num_edges

CANDIDATES = tuple(op for op in DEFAULT_OPS if op != NONE)


def assert_derivable(genotype: Genotype, ops, steps: int = STEPS, multiplier: int = MULTIPLIER):
    """The constraints of derivation, written out from DARTS §2.4 rather than from the sampler:
    per node exactly two edges from two different earlier states, ops from the list but never
    'none', and the last ``multiplier`` states concatenated."""
    for cell, concat in ((genotype.normal, genotype.normal_concat), (genotype.reduce, genotype.reduce_concat)):
        assert len(cell) == 2 * steps
        for node in range(steps):
            (op_a, in_a), (op_b, in_b) = cell[2 * node], cell[2 * node + 1]
            assert in_a != in_b, f"node {node} reads state {in_a} twice"
            assert 0 <= in_a < 2 + node and 0 <= in_b < 2 + node
            for op in (op_a, op_b):
                assert op != NONE and op in ops
        assert list(concat) == list(range(2 + steps - multiplier, 2 + steps))


def test_derivation_itself_meets_the_constraints_the_sampler_is_checked_against():
    # The checker is only a fair reference if derive_genotype's own output passes it.
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        w = torch.rand(num_edges(), len(DEFAULT_OPS), generator=g).softmax(-1)
        assert_derivable(derive_genotype(w, w.flip(0), DEFAULT_OPS), DEFAULT_OPS)


@pytest.mark.parametrize("ops", [DEFAULT_OPS, ("skip_connect", "sep_conv_3x3", "max_pool_3x3", NONE)])
def test_every_sampled_genotype_is_derivable(ops):
    for genotype in sample_genotypes(300, seed=1, ops=ops):
        assert_derivable(genotype, ops)


def test_other_cell_shapes_follow_steps_and_multiplier():
    for genotype in sample_genotypes(50, seed=2, steps=3, multiplier=2):
        assert_derivable(genotype, DEFAULT_OPS, steps=3, multiplier=2)


def test_the_same_seed_gives_the_same_genotypes_and_another_seed_others():
    first, again, other = (sample_genotypes(20, seed=s) for s in (7, 7, 8))
    assert first == again
    assert first != other
    assert len(set(first) & set(other)) <= 1  # a space of ~10^14 genotypes: overlap is (almost) impossible


def test_genotypes_are_distinct_and_a_shorter_list_is_a_prefix():
    many = sample_genotypes(200, seed=3)
    assert len(set(many)) == 200
    assert sample_genotypes(50, seed=3) == many[:50]
    stream = GenotypeStream(3)
    assert [stream.next() for _ in range(50)] == many[:50]


def test_the_sampler_covers_every_op_and_every_input_of_every_node():
    genotypes = sample_genotypes(400, seed=4)
    ops = Counter(op for g in genotypes for cell in (g.normal, g.reduce) for op, _ in cell)
    assert set(ops) == set(CANDIDATES)
    # Uniform over 3 ops: each near 1/3 of the 6400 edges (a loose bound, no chi-square).
    assert all(0.28 < n / sum(ops.values()) < 0.39 for n in ops.values()), ops
    for node in range(STEPS):
        inputs = Counter(idx for g in genotypes for cell in (g.normal, g.reduce) for idx in
                         (cell[2 * node][1], cell[2 * node + 1][1]))
        assert set(inputs) == set(range(2 + node)), f"node {node} never read some state: {inputs}"
        pairs = {frozenset((cell[2 * node][1], cell[2 * node + 1][1])) for g in genotypes
                 for cell in (g.normal, g.reduce)}
        assert len(pairs) == (2 + node) * (1 + node) // 2  # every pair of distinct states occurs


def test_sampling_does_not_touch_torch_or_the_global_random_state():
    torch.manual_seed(0)
    random.seed(0)
    expected = (torch.rand(3), random.random())
    torch.manual_seed(0)
    random.seed(0)
    sample_genotypes(10, seed=5)
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def test_sample_genotype_with_a_given_rng():
    assert sample_genotype(random.Random(9)) == sample_genotype(random.Random(9))


def test_a_tiny_space_runs_out_of_distinct_genotypes_with_a_clear_error():
    # One op and one node: the two inputs in either order, per cell: 2 x 2 = 4 genotypes.
    assert len(sample_genotypes(4, seed=0, ops=("dsconv_3x3",), steps=1, multiplier=1)) == 4
    with pytest.raises(ValueError, match="distinct"):
        sample_genotypes(5, seed=0, ops=("dsconv_3x3",), steps=1, multiplier=1)
    assert len(sample_genotypes(5, seed=0, ops=("dsconv_3x3",), steps=1, multiplier=1, distinct=False)) == 5


@pytest.mark.parametrize("kwargs, phrase", [
    (dict(n=-1, seed=0), "n must be"),
    (dict(n=2.5, seed=0), "n must be"),
    (dict(n=2, seed=-1), "seed must be"),
    (dict(n=2, seed=0, ops=(NONE,)), "besides 'none'"),
    (dict(n=2, seed=0, ops=("dsconv_3x3", "warp")), "unknown op"),
    (dict(n=2, seed=0, ops=()), "empty"),
    (dict(n=2, seed=0, steps=0), "steps"),
    (dict(n=2, seed=0, multiplier=7), "multiplier"),
])
def test_bad_arguments_name_the_problem(kwargs, phrase):
    with pytest.raises(ValueError, match=phrase):
        sample_genotypes(**kwargs)
