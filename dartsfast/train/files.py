"""The files of a training run: ``model.pt`` (weights, genotype, config) and ``train_history.json``.

Both are written atomically; ``model.pt`` holds only tensors and plain containers, so
:func:`load_model` reads it with ``weights_only=True`` and never runs pickled code.
"""
from __future__ import annotations

import json
import os
import pickle
from typing import Any

import torch

from dartsfast._io import atomic_write, torch_bytes
from dartsfast._validate import existing_file
from dartsfast.search.network import DiscreteNetwork
from dartsfast.search.space import Genotype, PathLike
from dartsfast.train.config import TrainConfig

MODEL_FILE = "model.pt"
HISTORY_FILE = "train_history.json"
_FORMAT_VERSION = 1


def load_genotype(path: PathLike) -> Genotype:
    """Thin alias of :meth:`Genotype.load <dartsfast.search.Genotype.load>`, kept for old callers."""
    return Genotype.load(path)


def save_history(out: str, history: list) -> None:
    """``out/train_history.json``; non-strict JSON, so a diverged epoch's NaN loss is kept."""
    data = json.dumps(history, indent=2).encode()
    atomic_write(os.path.join(out, HISTORY_FILE), lambda f: f.write(data))


def save_model(out: str, model: DiscreteNetwork, genotype: Genotype, config: TrainConfig,
               num_classes: int, in_channels: int, test_acc: float) -> None:
    """``out/model.pt``: what :func:`load_model` needs to rebuild the network, and how it was trained."""
    payload = {
        "format_version": _FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "genotype": genotype.to_dict(),
        "config": config.to_dict(),
        "model_args": {"channels": config.channels, "num_classes": num_classes, "layers": config.layers,
                       "in_channels": in_channels, "auxiliary": config.auxiliary},
        "test_acc": test_acc,
    }
    data = torch_bytes(payload)  # a full disk is then OSError(ENOSPC), not torch's RuntimeError
    atomic_write(os.path.join(out, MODEL_FILE), lambda f: f.write(data))


def load_model(path: PathLike, map_location: Any = "cpu") -> DiscreteNetwork:
    """Rebuild the network saved by :func:`train` (``path`` = model.pt or its directory), in eval mode.

    The saved ``genotype`` and ``config`` are attached as ``model.genotype`` and
    ``model.train_config`` (a dict)."""
    path = existing_file(path, MODEL_FILE, "model")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
        genotype = Genotype.from_dict(payload["genotype"])
        model = DiscreteNetwork(genotype, **payload["model_args"])
        model.load_state_dict(payload["state_dict"])
    except (pickle.UnpicklingError, RuntimeError, KeyError, TypeError, ValueError, EOFError,
            AttributeError, IndexError) as e:
        raise ValueError(f"model file {path} is corrupt or not a dartsfast model: {e}") from e
    model.train_config = payload.get("config", {})
    return model.eval()
