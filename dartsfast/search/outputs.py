"""A search's files in its output directory: which checkpoint to resume, and one epoch's writes.

``checkpoint.pt`` (everything to continue bit for bit), ``history.json`` (one record per
epoch) and ``genotype.json`` (the latest derived genotype), each written atomically.
"""
from __future__ import annotations

import os
from typing import Optional

from dartsfast._io import write_json
from dartsfast.search.checkpoint import CheckpointError, checkpoint_path, load_checkpoint, save_checkpoint
from dartsfast.search.config import SearchConfig
from dartsfast.search.space import GENOTYPE_FILE, Genotype

HISTORY_FILE = "history.json"


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
