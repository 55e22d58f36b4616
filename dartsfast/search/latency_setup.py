"""A search's latency table: the user's file or one built for this run (``auto``), checked
against the run before the first step, and turned into its :class:`LatencyTerm`.

A table measured for another device, dtype, layout or space, or lacking a position the
supernet runs an op at, would steer the search by latencies that do not hold here, so it
is refused (ValueError naming every difference) unless ``latency_force`` (then a warning,
and missing entries count as 0 ms). A table measured in "training" or "inference" mode is
accepted either way; the history records which.

``auto`` times every op at every position on this device, in this run's dtype and
layout, in inference mode at batch 1 (the deployed network's latency), and keeps it as
``OUT/latency_lut.json``; a run (``--resume`` or a fresh start) that finds a matching table
there reuses it instead of rebuilding, so a resumed search reads the same latencies. The
table also holds the network's constant part (stem, preprocessing, classifier:
:mod:`dartsfast.search.latency_constant`) for the dataset's input channels and classes, and
the per-op overhead (:func:`~dartsfast.search.latency_lut.per_op_overhead`); a cached table
without either, or measured for other ones, is rebuilt.
"""
from __future__ import annotations

import os
import warnings
from typing import Optional, Sequence

import torch
import torch.distributed as dist

from dartsfast.search import distributed
from dartsfast.search.config import SearchConfig
from dartsfast.search.latency_lut import NONE, Lut, build_lut, load_lut, save_lut
from dartsfast.search.latency_term import LatencyTerm, constant_ms, latency_matrices
from dartsfast.search.positions import CellEdges, edge_positions
from dartsfast.timing import environment_info

AUTO = "auto"
AUTO_FILE = "latency_lut.json"
# What ``auto`` measures. Module constants, not settings, so that tests can make the build
# cheap; 3 + 20 calls of a batch-1 op per position is a few seconds for the default space.
AUTO_MODE, AUTO_BATCH, AUTO_WARMUP, AUTO_REPEATS = "inference", 1, 3, 20
AMP_DTYPES = {"off": "float32", "bf16": "bfloat16", "fp16": "float16"}
_SHOW_MISSING = 8  # entries named in a refusal; the rest are counted


def run_layout(channels_last: bool) -> str:
    return "channels_last" if channels_last else "nchw"


def lut_differences(lut: Lut, *, device_name: str, dtype: str, layout: str, ops: Sequence[str],
                    cells: Sequence[CellEdges]) -> list[str]:
    """What keeps ``lut`` from describing this run, one phrase each (empty: it matches)."""
    hd, diffs = lut.header, []
    for field, want in (("device_name", device_name), ("dtype", dtype), ("layout", layout)):
        if hd.get(field) != want:
            diffs.append(f"{field.replace('_name', '')} {hd.get(field)!r} (this run: {want!r})")
    space = hd.get("space")
    have = set(space) if isinstance(space, list) else {e["op"] for e in lut.entries.values()}
    lacking = [op for op in ops if op != NONE and op not in have]
    if lacking:
        diffs.append(f"space lacks op(s) {', '.join(lacking)} (extra ops are fine)")
    if not any(d.startswith(("device", "dtype", "layout")) for d in diffs):
        # Keys name device, dtype and layout: with those differing every entry would be missing.
        _, _, missing = latency_matrices(lut, cells, [op for op in ops if op in have])
        if missing:
            shown = "; ".join(missing[:_SHOW_MISSING])
            more = f" and {len(missing) - _SHOW_MISSING} more" if len(missing) > _SHOW_MISSING else ""
            diffs.append(f"positions: no entry for {shown}{more}")
    return diffs


def _check(lut: Lut, source: str, force: bool, **run) -> Lut:
    diffs = lut_differences(lut, **run)
    if diffs:
        what = f"latency LUT {source} does not match this search: {'; '.join(diffs)}"
        if not force:
            raise ValueError(f"{what}. Build one for it (--latency-lut auto, or `dartsfast profile --lut` "
                             "with this device, dtype, layout and space) or pass --force-latency-lut")
        warnings.warn(f"{what}; used anyway (latency_force; missing entries count as 0 ms)", UserWarning,
                      stacklevel=3)
    if lut.header.get("mode") not in ("inference", "training"):
        lut.header["mode"] = "unknown"
    return lut


def _auto_lut(config: SearchConfig, device: torch.device, ctx, run: dict, image_size: int, in_channels: int,
              num_classes: int) -> Lut:
    path = None if config.out is None else os.path.join(config.out, AUTO_FILE)
    shape = dict(in_channels=in_channels, num_classes=num_classes)

    def build(progress: bool = False) -> Lut:
        return build_latency_lut(config, device, run["dtype"], run["layout"], image_size, progress, **shape)

    def cached() -> Optional[Lut]:
        if path is None or not os.path.exists(path):
            return None
        try:
            lut = load_lut(path)
        except ValueError:
            return None  # unreadable: rebuilt below, and replaced
        # A table from before the constant or the per-op overhead existed under-predicts networks.
        complete = "constant_s" in lut.header and "per_op_s" in lut.header
        same_constant = complete and all(lut.header.get(k) == v for k, v in shape.items())
        return lut if same_constant and not lut_differences(lut, **run) else None

    lut = cached() if ctx.is_main else None
    if lut is None and ctx.is_main:
        lut = build(config.progress)
        if path is not None:
            save_lut(path, lut)
    distributed.barrier(ctx)
    if not ctx.is_main:  # the main rank's table when it saved one; the term is broadcast anyway
        lut = cached() or build()
    return lut


def build_latency_lut(config: SearchConfig, device: torch.device, dtype: str, layout: str, image_size: int,
                      progress: bool = False, *, in_channels: int = 3, num_classes: int = 10) -> Lut:
    """The ``auto`` table of this search's space and geometry (the constant for ``in_channels``
    × ``num_classes``); leaves the RNG as it was."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return build_lut([op for op in config.ops], channels=config.channels, layers=config.layers,
                         image_size=image_size, device=device, dtype=dtype, layout=layout, mode=AUTO_MODE,
                         batch=AUTO_BATCH, warmup=AUTO_WARMUP, repeats=AUTO_REPEATS,
                         partial_channels=config.partial_channels, in_channels=in_channels,
                         num_classes=num_classes, progress=progress)


def latency_term_for(config: SearchConfig, device: torch.device, channels_last: bool, image_size: int,
                     ctx, in_channels: int = 3, num_classes: int = 10) -> Optional[LatencyTerm]:
    """The run's LatencyTerm on ``device`` (None without ``latency_lut``); refuses a mismatched table.
    ``in_channels``, ``num_classes``: the dataset's, for the constant of an ``auto`` table."""
    if config.latency_lut is None:
        return None
    cells = edge_positions(config.channels, config.layers, image_size, config.partial_channels)
    run = dict(device_name=environment_info(device)["device_name"], dtype=AMP_DTYPES[config.amp],
               layout=run_layout(channels_last), ops=config.ops, cells=cells)
    if config.latency_lut == AUTO:
        lut = _auto_lut(config, device, ctx, run, image_size, in_channels, num_classes)
    else:
        lut = load_lut(config.latency_lut)
    lut = _check(lut, config.latency_lut, config.latency_force, **run)
    normal, reduce, _ = latency_matrices(lut, cells, config.ops)
    const = torch.tensor([constant_ms(lut)], dtype=torch.float64)
    if ctx.enabled:  # every rank must add the same term after the all-reduce, or the alphas drift apart
        both = torch.cat([normal.reshape(-1), reduce.reshape(-1), const]).to(device)
        dist.broadcast(both, src=0)
        both = both.cpu()
        n = normal.numel()
        normal, reduce, const = both[:n].view_as(normal), both[n:2 * n].view_as(reduce), both[2 * n:]
    term = LatencyTerm(normal, reduce, config.ops, const_ms=float(const[0]), weight=config.latency_weight,
                       form=config.latency_form, target_ms=config.latency_target_ms, mode=lut.header["mode"],
                       dual_lr=config.latency_dual_lr)
    term.header = dict(lut.header)
    return term.to(device)
