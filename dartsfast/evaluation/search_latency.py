"""The found network's measured latency beside the table's prediction, at the end of a
hardware-aware search (issue 18): ``OUT/latency.json``.

The prediction is the latency table's sum for the derived genotype
(:meth:`~dartsfast.search.latency_term.LatencyTerm.genotype_latency_ms`): the table's
constant (stem, the cells' preprocessing, node sums, classifier) plus, for every kept edge
of every cell, its op's entry at that cell position and, unless the op is an identity, the
table's per-op overhead (``per_op_ms``, included in ``ops_ms``). The measurement builds the same
network with ``dartsfast train``'s builder (:class:`~dartsfast.train.DiscreteNetwork`)
**at the search's own layers, channels and image size** (the table is keyed by the
supernet's positions, so a network trained at other sizes would be another network than
the one predicted) and times it with the project's timer (:func:`dartsfast.timing.time_fn`)
exactly as the table timed each op (:func:`~dartsfast.search.latency_lut.timed_call`): the
table's mode (inference: eval mode, no_grad; batch 1 for ``auto``), dtype, layout and batch,
on the search's device, with torch's current thread count. Timings are medians over
``repeats`` calls, at least ``min_time_s`` seconds of them.

Record (``final_latency``): ``predicted_ms``, ``constant_ms``, ``ops_ms``, ``per_op_ms``, ``measured_ms``
(median) with ``measured_q25_ms``/``measured_q75_ms`` and ``calls``, ``ratio`` =
measured / predicted, ``error`` = predicted / measured − 1, the ``genotype`` and what was
measured (``mode``, ``batch``, ``dtype``, ``layout``, ``device``, ``threads``, ``channels``,
``layers``, ``input_shape``, ``num_classes``, ``lut``).
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import torch

from dartsfast._io import write_json
from dartsfast._validate import is_int
from dartsfast.search import SearchResult
from dartsfast.search.latency_lut import DTYPES, timed_call
from dartsfast.search.latency_term import LatencyTerm
from dartsfast.search.space import Genotype
from dartsfast.timing import TimingStats, time_fn
from dartsfast.train import DiscreteNetwork

LATENCY_FILE = "latency.json"
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
MODES = ("inference", "training")


def predicted_latency(term: LatencyTerm, genotype: Genotype) -> dict:
    """The table's prediction for ``genotype``'s network: ``predicted_ms`` = ``constant_ms`` + ``ops_ms``."""
    total = term.genotype_latency_ms(genotype)
    per_op = 1e3 * float(term.header.get("per_op_s") or 0.0)
    return {"predicted_ms": total, "constant_ms": term.const_ms, "ops_ms": total - term.const_ms,
            "per_op_ms": per_op}


def _setting(header: dict, name: str, allowed) -> object:
    value = header.get(name)
    if value not in allowed:
        raise ValueError(f"latency table header {name} {value!r} cannot be measured; expected one of "
                         f"{', '.join(map(str, allowed))}")
    return value


def measure_network(genotype: Genotype, *, channels: int, layers: int, input_shape: Sequence[int],
                    num_classes: int, header: dict, device, warmup: int = 5, repeats: int = 50,
                    min_time_s: float = 0.5) -> TimingStats:
    """Seconds per call of ``genotype``'s discrete network, timed as the table ``header`` says
    (mode, batch, dtype, layout). Leaves the global RNG as it was."""
    if not isinstance(genotype, Genotype):
        raise TypeError(f"genotype must be a Genotype, got {type(genotype).__name__}")
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(is_int(s) and s >= 1 for s in shape):
        raise ValueError(f"input_shape must be one image's (C, H, W) as positive ints, got {input_shape!r}")
    mode = _setting(header, "mode", MODES)
    dtype = DTYPES[_setting(header, "dtype", DTYPES)]
    fmt = LAYOUTS[_setting(header, "layout", LAYOUTS)]
    batch = header.get("batch", 1)
    if not is_int(batch) or batch < 1:
        raise ValueError(f"latency table header batch {batch!r} must be a positive int")
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        net = DiscreteNetwork(genotype, channels, num_classes, layers, shape[0])
        step = timed_call(net, shape[0], shape[1], shape[2], batch, device, dtype, fmt, mode)
        return time_fn(step, warmup=warmup, repeats=repeats, min_time_s=min_time_s, device=device)


def final_latency(result: SearchResult, genotype: Optional[Genotype] = None, device=None, *, warmup: int = 5,
                  repeats: int = 50, min_time_s: float = 0.5) -> dict:
    """The ``final_latency`` record of a search run with a latency table (see the module
    docstring). ``genotype``: default the search's derived one; ``device``: default the
    search's (where its table was measured)."""
    term = result.latency
    if term is None:
        raise ValueError("final_latency needs a search run with a latency table (SearchConfig.latency_lut / "
                         "--latency-lut): there is no prediction to compare with")
    genotype = result.genotype if genotype is None else genotype
    config = result.config
    if device is None:
        device = next(result.model.parameters()).device
    record = {"genotype": genotype.to_dict(), **predicted_latency(term, genotype)}
    stats = measure_network(genotype, channels=config.channels, layers=config.layers,
                            input_shape=result.input_shape, num_classes=result.num_classes, header=term.header,
                            device=device, warmup=warmup, repeats=repeats, min_time_s=min_time_s)
    measured = 1e3 * stats.median
    record.update(measured_ms=measured, measured_q25_ms=1e3 * stats.q25, measured_q75_ms=1e3 * stats.q75,
                  calls=stats.n, ratio=measured / record["predicted_ms"] if record["predicted_ms"] > 0 else None,
                  error=record["predicted_ms"] / measured - 1 if measured > 0 else None,
                  mode=term.header["mode"], batch=term.header.get("batch", 1), dtype=term.header["dtype"],
                  layout=term.header["layout"], device=str(device), threads=torch.get_num_threads(),
                  channels=config.channels, layers=config.layers, input_shape=list(result.input_shape),
                  num_classes=result.num_classes, lut=config.latency_lut)
    return record


def write_final_latency(out: str, record: dict) -> str:
    """``OUT/latency.json`` = {"final_latency": record}, atomically; returns its path."""
    if not isinstance(out, str) or not os.path.isdir(out):
        raise ValueError(f"latency output directory {out!r} does not exist")
    path = os.path.join(out, LATENCY_FILE)
    write_json(path, {"final_latency": record})
    return path
