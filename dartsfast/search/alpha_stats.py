"""How decided a search is, per epoch (history fields; issue 17).

Softmaxed alphas that stay near 1/K are a search that has not decided: the genotype
derived from them is the argmax of noise. These statistics say how far from that a
search is, and when its genotype stopped changing:

* ``entropy_*``: per edge, the entropy (nats) of its op weights; log K when uniform;
* ``derived_weight``: the mean weight of the op each derived edge keeps, over the
  derived edges of both cells (2 per node); 1/K when uniform, 1 when fully decided;
* ``parameter_free_ops``: derived edges, in both cells, whose op has no weights
  (skip_connect, pooling): DARTS's collapse shows as this count growing;
* ``genotype_changes``: derived edges that are new since the previous epoch's genotype
  (a node's two edges compared as a set: their order says only which is stronger).
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence

import torch

from dartsfast.search.space import Genotype, build_op, derived_edges


def edge_entropy(weights: torch.Tensor) -> list[float]:
    """Entropy in nats of each row of ``weights`` [edges, ops] (softmaxed: rows sum to 1)."""
    w = weights.detach().to("cpu", torch.float64)
    return (-(w * torch.log(w.clamp_min(1e-300))).sum(-1)).tolist()


def derived_edge_weights(weights: torch.Tensor, op_names: Sequence[str], steps: int) -> list[float]:
    """The weight of the op each derived edge keeps, in the genotype's edge order."""
    w = weights.detach().to("cpu", torch.float64)
    return [w[edge, op].item() for op, _, edge in derived_edges(w, op_names, steps)]


@functools.lru_cache(maxsize=None)
def is_parameter_free(op_name: str) -> bool:
    """Whether the op, as the trained network builds it (affine, stride 1), has no weights."""
    return not any(p.numel() for p in build_op(op_name, 4, 1, affine=True).parameters())


def count_parameter_free(genotype: Genotype) -> int:
    """Edges of both cells of ``genotype`` whose op has no weights."""
    return sum(is_parameter_free(op) for op, _ in genotype.normal + genotype.reduce)


def genotype_changes(genotype: Genotype, previous: Optional[Genotype]) -> int:
    """Edges (op, input) of both cells' nodes that ``previous``'s same node lacks (all of
    them when None). A node sums its two edges, so swapping their order changes nothing."""
    edges = genotype.normal + genotype.reduce
    if previous is None:
        return len(edges)
    before = previous.normal + previous.reduce
    return sum(len(set(edges[i:i + 2]) - set(before[i:i + 2])) for i in range(0, len(edges), 2))


def alpha_record(weights_normal: torch.Tensor, weights_reduce: torch.Tensor, op_names: Sequence[str],
                 genotype: Genotype, previous: Optional[Genotype]) -> dict:
    """The history fields above for one epoch's softmaxed alphas and derived genotype."""
    derived = (derived_edge_weights(weights_normal, op_names, genotype.steps)
               + derived_edge_weights(weights_reduce, op_names, genotype.steps))
    return {"entropy_normal": edge_entropy(weights_normal), "entropy_reduce": edge_entropy(weights_reduce),
            "derived_weight": sum(derived) / len(derived),
            "parameter_free_ops": count_parameter_free(genotype),
            "genotype_changes": genotype_changes(genotype, previous)}


def epoch_alpha_record(model, op_names: Sequence[str], genotype: Genotype, history: list, latency=None) -> dict:
    """A SearchModel's history fields for one epoch: softmaxed alphas (and PC-DARTS edge
    weights), the statistics above, and with a latency table (a
    :class:`~dartsfast.search.latency_term.LatencyTerm`) the expected and derived latency."""
    with torch.no_grad():
        wn, wr, en, er = model.arch()
    record = {"alphas_normal": wn.float().cpu().tolist(), "alphas_reduce": wr.float().cpu().tolist()}
    if en is not None:
        record.update(edges_normal=en.float().cpu().tolist(), edges_reduce=er.float().cpu().tolist())
    previous = Genotype.from_dict(history[-1]["genotype"]) if history else None
    record.update(alpha_record(wn, wr, op_names, genotype, previous))
    if latency is not None:
        record.update(latency.record(wn, wr, genotype))
    return record
