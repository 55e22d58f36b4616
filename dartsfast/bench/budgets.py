"""Deterministic budgets beside the timings (issue 19): counts that no noise touches, compared
exactly with ``benchmarks/budgets.json`` — a rise fails and names what grew.

- ``search_step``: per bilevel order of the seed configuration's ``SearchRun.step``
  (:mod:`dartsfast.bench.opcount`, batch 2): aten ops by name and host syncs.
- ``step_memory``: bytes one step of the tiny configuration allocates at batch 2
  (:mod:`dartsfast.bench.live_memory`; they depend on the batch, hence the fixed one).
- ``op_call``: aten ops by name and host syncs of one call of each quick-suite benchmark
  (the ops and blocks at the quick sizes, the torch reference paths that run on a CPU).
- ``triton_launches``: Triton kernel launches of one call of each fused op through its
  Triton kernels, counted on a CPU with the Triton interpreter (``TRITON_INTERPRET=1``, in
  a child process: Triton reads it on import); empty where triton is not installed.

Every count is taken after one warm-up call (optimiser state, autotuning, caches), so it is
what every further call does.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from dartsfast import backend
from dartsfast.bench.live_memory import allocation_stats
from dartsfast.bench.opcount import OpCounter, count_step, make_run
from dartsfast.bench.suites import suite
from dartsfast.timing import num_threads

STEP_BATCH = 2
MEMORY_CONFIG = "tiny"
# Fused ops whose Triton launches are counted (quick-suite benchmarks of the ops themselves).
TRITON_BENCHMARKS = ("weighted_sum/forward", "weighted_sum/backward", "dwconv_se/forward",
                     "dwconv_se/forward+backward")
_TRITON_CHILD = r"""
import json, sys
import torch
from triton.runtime import interpreter
launches = []
run = interpreter.InterpretedFunction.run
def counted(self, *args, grid, warmup, **kwargs):
    if not warmup:
        launches.append(self.__name__)
    return run(self, *args, grid=grid, warmup=warmup, **kwargs)
interpreter.InterpretedFunction.run = counted
from dartsfast import backend
from dartsfast.bench.suites import suite
out = {}
with backend.use_backend("triton"):
    for spec in suite("quick"):
        if spec.name not in sys.argv[1].split(","):
            continue
        sizes = {k: (min(v, 1 << 12) if k == "M" else min(v, 2) if k == "N" else v) for k, v in spec.sizes.items()}
        fn, _ = spec.build(torch.device("cpu"), spec.dtype, spec.layout, **sizes)
        fn()
        launches.clear()
        fn()
        out[spec.name] = {"launches": len(launches), "kernels": sorted(set(launches))}
print(json.dumps(out))
"""


def _op_counts(counter: OpCounter) -> dict:
    return {"aten_ops": counter.ops, "host_syncs": counter.syncs, "by_op": dict(sorted(counter.by_op.items()))}


def count_call(fn) -> dict:
    """Aten ops (by name) and host syncs of one call of ``fn`` after a warm-up call."""
    fn()
    with OpCounter() as counter:
        fn()
    return _op_counts(counter)


def op_call_counts(names=()) -> dict:
    """``op_call``: one call of each quick-suite benchmark (or those in ``names``)."""
    out = {}
    with num_threads(1), backend.use_backend("torch"):
        for spec in suite("quick"):
            if names and spec.name not in names:
                continue
            fn, _ = spec.build(torch.device("cpu"), spec.dtype, spec.layout, **spec.sizes)
            out[spec.name] = count_call(fn)
    return out


def step_counts(order: int, config: str = "seed", **overrides) -> dict:
    """``search_step``: aten ops and host syncs of one search step of ``config`` at batch 2."""
    counts = count_step(make_run(config, order, batch_size=STEP_BATCH, **overrides))
    return {"aten_ops": counts.aten_ops, "host_syncs": counts.host_syncs, "by_op": dict(sorted(counts.by_op.items()))}


def step_bytes(order: int, config: str = MEMORY_CONFIG) -> dict:
    """``step_memory``: bytes one search step of ``config`` allocates (batch 2). The sum of
    allocations is exact run to run; the peak of live bytes is not (measured on the seed
    step: two equal steps differed), so it is not budgeted. The tiny network: the profiler
    needs ~5 min for a seed step on one core, ~1 s for this one."""
    run = make_run(config, order, batch_size=STEP_BATCH)
    sums = [torch.zeros(()) for _ in range(3)]
    run.step(*sums)
    return {"allocated_bytes": allocation_stats(lambda: run.step(*sums))[1]}


def triton_launch_counts(names=TRITON_BENCHMARKS) -> dict:
    """``triton_launches``: {benchmark: launches} through the Triton interpreter; {} without triton."""
    try:
        import importlib.util
        if importlib.util.find_spec("triton") is None:
            return {}
    except (ImportError, ValueError):
        return {}
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", _TRITON_CHILD, ",".join(names)], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"counting Triton launches failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(orders=(1, 2), triton: bool = True) -> dict:
    """Every budgeted count, in the layout of ``benchmarks/budgets.json``."""
    return {"search_step": {f"seed/order{o}": step_counts(o) for o in orders},
            "step_memory": {f"{MEMORY_CONFIG}/order{o}": step_bytes(o) for o in orders},
            "op_call": op_call_counts(),
            "triton_launches": triton_launch_counts() if triton else {}}


def _rises(where: str, got: dict, budget: dict) -> list[str]:
    out = []
    for key in ("aten_ops", "host_syncs", "allocated_bytes", "launches"):
        if key in got and key in budget and got[key] > budget[key]:
            grew = ""
            if key == "aten_ops" and "by_op" in budget:
                ops = [f"{op} {budget['by_op'].get(op, 0)} → {n} (+{n - budget['by_op'].get(op, 0)})"
                       for op, n in got["by_op"].items() if n > budget["by_op"].get(op, 0)]
                grew = "; grew: " + ", ".join(ops) if ops else ""
            out.append(f"{where}: {key} {got[key]} > budget {budget[key]} (+{got[key] - budget[key]}){grew}")
    return out


def check(measured: dict, budgets: dict) -> tuple[list[str], list[str]]:
    """(rises, falls): every count above its budget, naming the aten ops that grew (fails), and
    every count below it (lower the budget in the commit that lowers the count)."""
    rises, falls = [], []
    for section, entries in measured.items():
        for name, got in entries.items():
            budget = (budgets.get(section) or {}).get(name)
            where = f"{section} {name}"
            if budget is None:
                rises.append(f"{where}: no budget (add it: dartsfast bench budgets --update)")
                continue
            rises += _rises(where, got, budget)
            falls += [f"{where}: {k} {got[k]} < budget {budget[k]}" for k in budget
                      if isinstance(budget[k], int) and isinstance(got.get(k), int) and got[k] < budget[k]]
    return rises, falls
