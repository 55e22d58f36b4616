"""Ops per search step as a CI budget (issue 14): exact counts, so no timing noise."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dartsfast.bench.opcount import OpCounter, count_step, make_run

BUDGETS = json.loads((Path(__file__).resolve().parents[2] / "benchmarks" / "budgets.json").read_text())


@pytest.mark.parametrize("order", [1, 2])
def test_seed_step_stays_within_its_op_budget(order):
    budget = BUDGETS["search_step"][f"seed/order{order}"]
    counts = count_step(make_run("seed", order, batch_size=2))
    top = ", ".join(f"{name} {n}" for name, n in list(counts.by_op.items())[:8])
    assert counts.host_syncs <= budget["host_syncs"], f"host syncs in the step: {counts.host_syncs}; ops: {top}"
    assert counts.aten_ops <= budget["aten_ops"], (
        f"order {order}: {counts.aten_ops} aten ops per step, budget {budget['aten_ops']} "
        f"(benchmarks/budgets.json); most dispatched: {top}")


def test_counts_do_not_depend_on_the_batch():
    """The budget is counted at a small batch; the claim that makes that valid."""
    small, large = (count_step(make_run("tiny", 1, batch_size=b)) for b in (2, 8))
    assert small.aten_ops == large.aten_ops and small.by_op == large.by_op


def test_counter_sees_every_op_and_every_sync():
    x = torch.randn(3)
    with OpCounter() as counter:
        y = torch.relu(x) + 1
        float(y.sum())  # .item()-like: one host sync
    assert counter.syncs == 1
    assert counter.by_op["aten.relu"] == 1 and counter.by_op["aten.add"] == 1 and counter.by_op["aten.sum"] == 1
    assert counter.ops == sum(counter.by_op.values()) >= 4
