"""DARTS search: op space and genotypes, the supernet and the discrete network on one layout,
bilevel optimisation, the search loop."""
from dartsfast.search.checkpoint import CheckpointError
from dartsfast.search.config import SearchConfig
from dartsfast.search.loop import search
from dartsfast.search.outputs import SearchResult
from dartsfast.search.space import DEFAULT_OPS, Genotype, available_ops, derive_genotype, register_op
from dartsfast.search.supernet import ArchParams, BatchedCell, Cell, MixedOp, SearchModel, Supernet

__all__ = ["DEFAULT_OPS", "ArchParams", "BatchedCell", "Cell", "CheckpointError", "Genotype", "MixedOp", "SearchConfig",
           "SearchModel", "SearchResult", "Supernet", "available_ops", "derive_genotype", "register_op",
           "search"]
