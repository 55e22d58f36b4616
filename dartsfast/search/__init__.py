"""DARTS search: op space and genotypes, supernet, bilevel optimisation, the search loop."""
from dartsfast.search.space import DEFAULT_OPS, Genotype, available_ops, derive_genotype, register_op
from dartsfast.search.supernet import ArchParams, Cell, MixedOp, SearchModel, Supernet

__all__ = ["DEFAULT_OPS", "ArchParams", "Cell", "Genotype", "MixedOp", "SearchModel", "Supernet",
           "available_ops", "derive_genotype", "register_op"]
