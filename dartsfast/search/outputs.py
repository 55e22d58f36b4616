"""A search's files in its output directory: which checkpoint to resume, and one epoch's writes;
and what a search returns (:class:`SearchResult`).

``checkpoint.pt`` (everything to continue bit for bit), ``history.json`` (one record per
epoch) and ``genotype.json`` (the latest derived genotype), each written atomically.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from dartsfast._io import write_json
from dartsfast.search.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, save_checkpoint
from dartsfast.search.config import SearchConfig
from dartsfast.search.latency_term import LatencyTerm
from dartsfast.search.space import GENOTYPE_FILE, Genotype
from dartsfast.search.supernet import SearchModel

HISTORY_FILE = "history.json"


@dataclass
class SearchResult:
    """``genotype``: derived from the final alphas; ``history``: one record per epoch (see
    :func:`search`); ``model``: the SearchModel (supernet + alphas) after the last epoch."""

    genotype: Genotype
    history: list
    model: SearchModel
    config: SearchConfig
    out: Optional[str] = None
    start_epoch: int = 0  # epochs already done when this call began (> 0 after a resume)
    # For the end-of-search latency measurement (evaluation.search_latency); None without a table:
    latency: Optional[LatencyTerm] = None
    input_shape: tuple = (3, 32, 32)  # one image (C, H, W) of the searched data
    num_classes: int = 10


def resume_state(config: SearchConfig) -> Optional[dict]:
    """The checkpoint to resume from (or None); never starts afresh over one unasked."""
    if config.out is None:
        return None
    path = checkpoint_path(config.out)
    if config.resume:
        if not os.path.exists(path):
            raise ValueError(f"resume=True (--resume) but there is no checkpoint at {path}; "
                             "drop --resume to start a new search there")
        return load_checkpoint(path, config)
    if os.path.exists(path) and not config.overwrite:
        raise CheckpointError(f"{path} exists from an earlier search; pass resume=True (--resume) to "
                              "continue it, overwrite=True (--overwrite) to start afresh, or another out")
    return None


def write_epoch_files(out: str, history: list, genotype: Genotype, state: Optional[dict] = None) -> None:
    """``state`` (the checkpoint) first: it holds the history, so a run killed between the
    writes resumes and rewrites the other two (loop._search_in) rather than having a
    history.json whose last epoch no checkpoint can continue."""
    if state is not None:
        save_checkpoint(checkpoint_path(out), state)
    write_json(os.path.join(out, HISTORY_FILE), history)
    genotype.save(os.path.join(out, GENOTYPE_FILE))
