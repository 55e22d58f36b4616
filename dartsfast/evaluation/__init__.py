"""Does the search beat random? A random-search baseline and an evaluation protocol.

- :mod:`.random_search` — :func:`random_search`: genotypes drawn under derivation's
  constraints, each trained briefly on the search's weights half and scored on its
  validation half, the best kept, within a :class:`Budget` of epochs and/or seconds.
- :mod:`.protocol` — :func:`evaluate_genotypes`: each genotype trained from scratch over
  several seeds; test accuracy mean ± sample sd, parameters, multiply-adds, latency.
- :mod:`.references` — named reference genotypes (``ref:all-dsconv`` ...) and genotype
  arguments by name or file; :mod:`.costs` — parameter, multiply-add and latency counts;
  :mod:`.report` — evaluation.json / .md / .png; :mod:`.data` — the data loaded once and
  the search's train/validation split; :mod:`.scoring` — one training run, scored.
"""
from dartsfast.evaluation.costs import count_multiply_adds, count_parameters, measure_latency
from dartsfast.evaluation.protocol import Evaluation, GenotypeEvaluation, evaluate_genotypes
from dartsfast.evaluation.random_search import Budget, RandomSearchResult, random_search
from dartsfast.evaluation.references import (
    REF_PREFIX,
    REFERENCE_GENOTYPES,
    reference_genotype,
    resolve_genotype,
    resolve_genotypes,
)
from dartsfast.evaluation.scoring import Score, train_and_score

__all__ = ["REFERENCE_GENOTYPES", "REF_PREFIX", "Budget", "Evaluation", "GenotypeEvaluation", "RandomSearchResult",
           "Score", "count_multiply_adds", "count_parameters", "evaluate_genotypes", "measure_latency",
           "random_search", "reference_genotype", "resolve_genotype", "resolve_genotypes", "train_and_score"]
