"""Latency lookup table (LUT) of a search space, for a hardware-aware search (FBNet / ProxylessNAS
style): every candidate op timed at every cell position of a Supernet.

    lut = build_lut(("dsconv_3x3", "mbconv_3x3", "none"), channels=16, layers=8, image_size=28,
                    device="cuda", dtype="bfloat16", layout="channels_last")
    save_lut("lut.json", lut)
    lut = load_lut("lut.json", device="cuda", dtype="bfloat16")   # warns if measured elsewhere
                                                                   # (a search refuses it: latency_match)
    lut.latency("mbconv_3x3", 32, 32, 14, 14, 1)                   # seconds

File (JSON)::

    {"schema": "dartsfast.lut/1",
     "header": {device_name, device_type, dtype, layout, mode, batch, torch, triton, cuda,
                driver, git_commit, date, space, channels, layers, image_size, warmup, repeats,
                constant_s, constant_iqr_s, per_op_s, per_op_probes, in_channels, num_classes},
     "entries": {"op|C_in|C_out|H|W|stride|dtype|layout|device":
                 {op, c_in, c_out, h, w, stride, count, median_s, iqr_s, n, measured}}}

Ops run as the search builds them (``build_op(name, C, stride, affine=False)``; MBConv's
middle fused when possible, under the current backend). ``none`` is never run by a MixedOp,
so its entries hold 0 s with ``measured: false``.

``constant_s`` is what a whole discrete network runs besides its ops (stem, the cells'
preprocessing, node sums, concatenations, pooling, classifier), timed in the same mode on
the network with every op a free placeholder (:mod:`dartsfast.search.latency_constant`), for
``in_channels`` input channels and ``num_classes`` classes (the search passes its dataset's;
``dartsfast profile --lut`` measures 3 and 10). A network's prediction is ``constant_s``
plus its ops' entries. Tables without it (older files) count it as 0.

``per_op_s`` is the cost of an op instance that its entry misses: the entry times the op
alone on one input over and over, while in the network every op reads a new tensor with
its own weights. :func:`per_op_overhead` measures it on whole networks of one op each
(``per_op_probes``); a prediction adds it once per op that is not an identity
(:func:`is_identity`). On this project's 2-core CPU at the digits shape (batch 1,
inference) it measured 1.6 µs per op (probes' estimates −6.6 to +6.8 µs): an op costs in a
network what it costs alone (benchmarks/results/2026-12-01-cpu-latency-sweep-per-op). It
is there for devices where that does not hold.
None under PC-DARTS, whose entries are for C/K channels and so predict no discrete network.

It lives in the search layer because the search reads it (its latency term); ``dartsfast
profile --lut`` builds it through :mod:`dartsfast.profiling.lut`, which re-exports this.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import statistics
import warnings
from typing import Sequence

import torch
import torch.nn as nn

from dartsfast._io import write_json
from dartsfast.search.latency_constant import op_instances, skeleton_genotype, skeleton_network
from dartsfast.search.network import DiscreteNetwork
from dartsfast.search.positions import cell_positions, edge_positions
from dartsfast.search.space import STEPS, build_op, check_op_names, num_edges
from dartsfast.timing import environment_info, time_fn

SCHEMA = "dartsfast.lut/1"
NONE = "none"
# The dtypes a table is measured in, by the names its header and keys use (the same names as
# the profiler's ceilings, dartsfast.profiling.ceilings.DTYPES).
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_ENTRY_FIELDS = ("op", "c_in", "c_out", "h", "w", "stride", "count", "median_s", "iqr_s", "n", "measured")


def lut_key(op: str, c_in: int, c_out: int, h: int, w: int, stride: int, dtype: str, layout: str,
            device: str) -> str:
    return f"{op}|{c_in}|{c_out}|{h}|{w}|{stride}|{dtype}|{layout}|{device}"


@dataclasses.dataclass
class Lut:
    header: dict
    entries: dict

    def key(self, op: str, c_in: int, c_out: int, h: int, w: int, stride: int) -> str:
        hd = self.header
        return lut_key(op, c_in, c_out, h, w, stride, hd["dtype"], hd["layout"], hd["device_name"])

    def latency(self, op: str, c_in: int, c_out: int, h: int, w: int, stride: int) -> float:
        """Median seconds of ``op`` at that position; KeyError naming what the LUT holds."""
        key = self.key(op, c_in, c_out, h, w, stride)
        if key not in self.entries:
            ops = sorted({e["op"] for e in self.entries.values()})
            raise KeyError(f"no LUT entry for {op} {c_in}->{c_out} {h}x{w} stride {stride}; "
                           f"the LUT has ops {ops} at {len(self.entries) // max(1, len(ops))} positions")
        return self.entries[key]["median_s"]

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "header": self.header, "entries": self.entries}


def build_lut(ops: Sequence[str], *, channels: int = 16, layers: int = 8, image_size: int = 28,
              device="cpu", dtype: str = "float32", layout: str = "nchw", mode: str = "inference",
              batch: int = 1, warmup: int = 3, repeats: int = 20, partial_channels: int = 1,
              in_channels: int = 3, num_classes: int = 10, progress: bool = False) -> Lut:
    """Time every op of ``ops`` at every cell position of a Supernet(channels, layers) fed
    ``image_size``² images, and the network's constant part (``constant_s``, for
    ``in_channels`` × ``num_classes``). ``mode`` "inference" (forward, eval BN) or "training"
    (forward + backward of a random output gradient)."""
    from tqdm.auto import tqdm  # heavy optional dependency: only a LUT build draws a bar

    ops = check_op_names(ops)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    if layout not in ("nchw", "channels_last"):
        raise ValueError(f"unknown layout {layout!r}; expected nchw or channels_last")
    if mode not in ("inference", "training"):
        raise ValueError(f"unknown mode {mode!r}; expected inference or training")
    device = torch.device(device)
    env = environment_info(device)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    positions = cell_positions(channels, layers, image_size, partial_channels=partial_channels)
    entries = {}
    todo = [(op, pos) for pos in positions for op in ops]
    for op, (c, h, w, stride, count) in tqdm(todo, disable=not progress, desc="lut", unit="op", leave=False):
        key = lut_key(op, c, c, h, w, stride, dtype, layout, env["device_name"])
        entry = dict(op=op, c_in=c, c_out=c, h=h, w=w, stride=stride, count=count,
                     median_s=0.0, iqr_s=0.0, n=0, measured=False)
        if op != NONE:
            stats = time_fn(timed_call(build_op(op, c, stride, affine=False), c, h, w, batch, device,
                                     DTYPES[dtype], fmt, mode),
                            warmup=warmup, repeats=repeats, device=device)
            entry.update(median_s=stats.median, iqr_s=stats.iqr, n=stats.n, measured=True)
        entries[key] = entry
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        skeleton = skeleton_network(channels, layers, in_channels, num_classes)
    # The whole network's constant: one call per repeat like an op, but 5x the repeats
    # (it is a single number every prediction includes).
    const = time_fn(timed_call(skeleton, in_channels, image_size, image_size, batch, device, DTYPES[dtype], fmt, mode),
                    warmup=warmup, repeats=5 * repeats, device=device)
    header = {k: env.get(k, "") for k in ("device_name", "device_type", "torch", "triton", "cuda", "driver",
                                         "git_commit", "date")}
    header.update(dtype=dtype, layout=layout, mode=mode, batch=batch, space=list(ops), channels=channels,
                  layers=layers, image_size=image_size, partial_channels=partial_channels,
                  warmup=warmup, repeats=repeats, constant_s=const.median, constant_iqr_s=const.iqr,
                  in_channels=in_channels, num_classes=num_classes, per_op_s=None, per_op_probes={})
    lut = Lut(header, entries)
    if partial_channels == 1:
        per_op, probes = per_op_overhead(lut, device=device, fmt=fmt, warmup=warmup, repeats=5 * repeats)
        header.update(per_op_s=per_op, per_op_probes=probes)
    return lut


@functools.lru_cache(maxsize=None)
def is_identity(op: str, stride: int) -> bool:
    """Whether ``op`` at ``stride`` is no module call at all (skip_connect at stride 1): it costs
    neither an entry nor :func:`per_op_overhead`. (16 channels: any op builds with them.)"""
    return isinstance(build_op(op, 16, stride, affine=False), nn.Identity)


def entries_sum_s(lut: Lut, genotype, cells) -> float:
    """Σ of ``lut``'s entries over the kept edges of ``genotype`` in every cell (``cells``:
    :func:`~dartsfast.search.positions.edge_positions`); KeyError for a missing one."""
    total = 0.0
    for cell in cells:
        for e, (op, j) in enumerate(genotype.reduce if cell.reduction else genotype.normal):
            c, h, w, stride = cell.edges[num_edges(e // 2) + j]  # node e // 2's input j
            total += lut.latency(op, c, c, h, w, stride)
    return total


def per_op_overhead(lut: Lut, *, device, fmt, warmup: int, repeats: int) -> tuple[float, dict]:
    """Seconds a whole network spends per op instance beyond its ops' entries and the constant.

    For every op of the space but ``none``, the discrete network whose every node takes that
    op from both cell inputs is timed as the table times (:func:`timed_call`); its residual
    measured − constant − Σ entries, over its op instances, is one estimate, and the median
    of the estimates is the table's ``per_op_s``. It can be negative where a device runs a
    network's ops overlapped. Returns (per_op_s, {op: {measured_s, entries_s, instances}})."""
    hd = lut.header
    cells = edge_positions(hd["channels"], hd["layers"], hd["image_size"])
    probes, estimates = {}, []
    for op in hd["space"]:
        if op == NONE:
            continue
        genotype = skeleton_genotype(STEPS, op)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            net = DiscreteNetwork(genotype, hd["channels"], hd["num_classes"], hd["layers"], hd["in_channels"])
        instances = op_instances(net)
        stats = time_fn(timed_call(net, hd["in_channels"], hd["image_size"], hd["image_size"], hd["batch"], device,
                                   DTYPES[hd["dtype"]], fmt, hd["mode"]), warmup=warmup, repeats=repeats, device=device)
        entries = entries_sum_s(lut, genotype, cells)
        probes[op] = dict(measured_s=stats.median, entries_s=entries, instances=instances)
        if instances:
            estimates.append((stats.median - hd["constant_s"] - entries) / instances)
    return (statistics.median(estimates) if estimates else 0.0), probes


def timed_call(module, c, h, w, batch, device, dtype, fmt, mode):
    """What the table times for ``module`` fed [batch, c, h, w] (seeded random input): in
    "inference" one forward under no_grad in eval mode, in "training" forward + backward of
    a random output gradient. Also the measurement of a whole network against the table."""
    torch.manual_seed(0)
    module = module.to(device=device, dtype=dtype).to(memory_format=fmt)
    x = torch.randn(batch, c, h, w, device=device, dtype=dtype).contiguous(memory_format=fmt)
    if mode == "inference":
        module.eval()

        def infer():
            with torch.no_grad():
                return module(x)
        return infer
    module.train()
    x.requires_grad_(True)
    grad = torch.randn_like(module(x))
    params = [p for p in module.parameters() if p.requires_grad]

    def train():
        out = module(x)
        return torch.autograd.grad(out, [x, *params], grad)
    return train


def save_lut(path: str, lut: Lut) -> None:
    write_json(path, lut.to_dict())


def check_lut(data, path) -> Lut:
    """A LUT from parsed JSON ``data``; ValueError naming ``path`` and what is malformed."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path} is not a latency LUT: schema {found!r}, expected {SCHEMA!r}")
    header, entries = data.get("header"), data.get("entries")
    if not isinstance(header, dict) or not isinstance(entries, dict):
        raise ValueError(f"{path}: a LUT needs a 'header' object and an 'entries' object")
    missing = [k for k in ("device_name", "dtype", "layout") if k not in header]
    if missing:
        raise ValueError(f"{path}: LUT header lacks {missing}")
    for key, entry in entries.items():
        if not isinstance(entry, dict) or any(f not in entry for f in _ENTRY_FIELDS):
            raise ValueError(f"{path}: LUT entry {key!r} lacks fields; expected {_ENTRY_FIELDS}")
    return Lut(header, entries)


def load_lut(path: str, *, device=None, dtype: str | None = None, layout: str | None = None) -> Lut:
    """Read a LUT; ``warnings.warn`` when it was measured on another device, dtype or layout
    than those given (None: not checked) — its latencies would not transfer."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    lut = check_lut(data, path)
    hd = lut.header
    mismatches = []
    if device is not None:
        name = environment_info(torch.device(device))["device_name"]
        if name != hd["device_name"]:
            mismatches.append(f"device {hd['device_name']!r} (this run: {name!r})")
    if dtype is not None and str(dtype).replace("torch.", "") != hd["dtype"]:
        mismatches.append(f"dtype {hd['dtype']} (this run: {str(dtype).replace('torch.', '')})")
    if layout is not None and layout != hd["layout"]:
        mismatches.append(f"layout {hd['layout']} (this run: {layout})")
    if mismatches:
        warnings.warn(f"latency LUT {path} was measured for {', '.join(mismatches)}: its latencies may not "
                      "hold here; re-run `dartsfast profile --lut` on this device and dtype", UserWarning,
                      stacklevel=2)
    return lut
