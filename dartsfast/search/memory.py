"""A lower bound on a run's memory, checked before anything is built or loaded.

A size far beyond the machine (``--channels 100000``, ``--image-size 10000``,
``--synthetic-size 10**9``) used to end minutes later in an allocator traceback. The bound
here counts only what a run cannot avoid holding at once:

* the decoded dataset, float32 (``samples x channels x side**2``);
* the stem's output and, for every cell, the output of each parametrised candidate op on
  each edge, which the weighted sum's backward keeps (``batch x C_cell x side_cell**2``
  each; PC-DARTS runs the ops on ``C / K`` channels).

Weights, optimiser state, gradients and every intermediate activation inside an op come
on top, so real use is several times more (seed configuration: bound 0.75 GiB, measured
peak RSS 10.5 GB, issue 16); a run refused here could never have fitted.
"""
from __future__ import annotations

from typing import Optional

import torch

from dartsfast.config import DATASET_SHAPES
from dartsfast.runtime import device_memory_bytes  # noqa: F401 (re-exported: tests, callers)
from dartsfast.search.layout import reduction_layers
from dartsfast.search.space import NONE, num_edges

_FLOAT32 = 4
_STEM_MULTIPLIER = 3  # the stem's width in units of the first cell's channels (layout.build_cells)
_GiB = 2**30


def dataset_shape(name: str, image_size: Optional[int], synthetic_size: int) -> tuple[int, int, int]:
    """(samples, channels, side) the named dataset decodes to."""
    samples, channels, side = DATASET_SHAPES[name]
    if name == "imagefolder":  # unknown before the scan, and maybe streamed: no dataset term
        return 0, channels, (image_size or side)
    return (synthetic_size if samples is None else samples), channels, (image_size or side)


def minimum_bytes(*, batch_size: int, channels: int, layers: int, side: int, samples: int, in_channels: int,
                  ops_per_edge: int, edges_per_cell: int, partial_channels: int = 1,
                  lean: bool = False) -> dict[str, int]:
    """The bound's parts in bytes: ``dataset`` and ``activations``. ``lean``: one cell's
    candidate outputs alive at a time (lean memory mode), not every cell's."""
    stem = batch_size * _STEM_MULTIPLIER * channels * side * side
    reducing = reduction_layers(layers)
    c, s = channels, side
    per_cell = []
    for i in range(layers):
        if i in reducing:
            c, s = 2 * c, (s + 1) // 2
        per_cell.append(edges_per_cell * ops_per_edge * batch_size * max(1, c // partial_channels) * s * s)
    activations = stem + (max(per_cell) if lean else sum(per_cell))
    return {"dataset": samples * in_channels * side * side * _FLOAT32, "activations": activations * _FLOAT32}


def check_run_fits(config, device: torch.device, dataset=None, *, ops_per_edge: int, edges_per_cell: int,
                   partial_channels: int = 1, lean: bool = False) -> None:
    """:func:`check_fits` for a RunConfig (search or train); ``dataset``: a preloaded ImageDataset."""
    if dataset is not None:
        samples = dataset.train_x.shape[0] + dataset.test_x.shape[0]
        in_channels, side = dataset.in_channels, dataset.image_size
    else:
        samples, in_channels, side = dataset_shape(config.dataset, config.image_size,
                                                   getattr(config, "synthetic_size", 2048))
    parts = minimum_bytes(batch_size=config.batch_size, channels=config.channels, layers=config.layers,
                          side=side, samples=samples, in_channels=in_channels, ops_per_edge=ops_per_edge,
                          edges_per_cell=edges_per_cell, partial_channels=partial_channels, lean=lean)
    check_fits(parts, device, "lower --batch-size, --channels, --layers or --image-size"
               + (" or --synthetic-size" if config.dataset == "synthetic" and dataset is None else ""))


def check_search_fits(config, device: torch.device, dataset=None) -> None:
    """The bound for a SearchConfig: every edge of a cell keeps the output of each candidate
    but 'none' and 'skip_connect' (which keep nothing of their own): of every cell in fast
    memory mode, of one cell at a time in lean mode."""
    kept = sum(op not in (NONE, "skip_connect") for op in config.ops)
    check_run_fits(config, device, dataset, ops_per_edge=kept, edges_per_cell=num_edges(),
                   partial_channels=config.partial_channels, lean=config.memory == "lean")


def check_fits(parts: dict[str, int], device: torch.device, hint: str) -> None:
    """ValueError when the bound alone exceeds the device's memory, with the estimate."""
    need, have = sum(parts.values()), device_memory_bytes(device)
    if need > have:
        detail = ", ".join(f"{k} {v / _GiB:.1f} GiB" for k, v in parts.items())
        raise ValueError(f"this run needs at least {need / _GiB:.1f} GiB ({detail}; weights and "
                         f"optimiser state come on top) but the {device.type} device has "
                         f"{have / _GiB:.1f} GiB; {hint}")
