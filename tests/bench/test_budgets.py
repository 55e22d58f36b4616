"""Deterministic budgets beside the timings (issue 19): ops by name per search step and per op
call, bytes allocated per step, Triton launches per op; a rise fails naming what grew."""
import json
from pathlib import Path

import torch

from dartsfast.bench import budgets
from dartsfast.cli import main
from dartsfast.search.loop import SearchRun

BUDGETS_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "budgets.json"
BUDGETS = json.loads(BUDGETS_FILE.read_text())


def test_an_op_added_to_a_step_is_caught_with_its_name(monkeypatch):
    before = {"search_step": {"tiny/order1": budgets.step_counts(1, config="tiny")}}
    step = SearchRun.step

    def one_more_op(self, *args, **kwargs):
        torch.neg(torch.ones(2))  # the op a careless change adds to every step
        return step(self, *args, **kwargs)

    monkeypatch.setattr(SearchRun, "step", one_more_op)
    after = {"search_step": {"tiny/order1": budgets.step_counts(1, config="tiny")}}
    rises, falls = budgets.check(after, before)
    assert falls == [] and len(rises) == 1
    assert "search_step tiny/order1: aten_ops" in rises[0] and "(+2)" in rises[0]
    assert "aten.neg 0 → 1 (+1)" in rises[0] and "aten.ones 0 → 1 (+1)" in rises[0]
    low, high = before["search_step"]["tiny/order1"]["aten_ops"], after["search_step"]["tiny/order1"]["aten_ops"]
    assert budgets.check(before, after) == ([], [f"search_step tiny/order1: aten_ops {low} < budget {high}"])


def test_more_bytes_or_launches_fail_and_unbudgeted_counts_are_named():
    budget = {"step_memory": {"x": {"allocated_bytes": 100}}, "triton_launches": {"op": {"launches": 5}}}
    got = {"step_memory": {"x": {"allocated_bytes": 120}},
           "triton_launches": {"op": {"launches": 6}, "new": {"launches": 1}}}
    rises, _ = budgets.check(got, budget)
    assert rises == ["step_memory x: allocated_bytes 120 > budget 100 (+20)",
                     "triton_launches op: launches 6 > budget 5 (+1)",
                     "triton_launches new: no budget (add it: dartsfast bench budgets --update)"]


def test_op_calls_stay_within_their_budgets():
    rises, _ = budgets.check({"op_call": budgets.op_call_counts()}, BUDGETS)
    assert rises == []


def test_step_memory_and_triton_launches_stay_within_their_budgets():
    measured = {"step_memory": {"tiny/order1": budgets.step_bytes(1)}}
    if BUDGETS.get("triton_launches"):
        measured["triton_launches"] = budgets.triton_launch_counts()
    rises, _ = budgets.check(measured, BUDGETS)
    assert rises == []


def test_the_seed_step_ops_by_name_stay_within_their_budget():
    rises, _ = budgets.check({"search_step": {"seed/order1": budgets.step_counts(1)}}, BUDGETS)
    assert rises == []


def test_counts_are_exact_run_to_run():
    assert budgets.step_bytes(1) == budgets.step_bytes(1)
    assert budgets.op_call_counts(["dwconv_se/forward"]) == budgets.op_call_counts(["dwconv_se/forward"])


def test_cli_budgets_without_a_file_exits_2(tmp_path, capsys):
    assert main(["bench", "budgets", "--budgets", str(tmp_path / "none.json")]) == 2
    assert "no such file" in capsys.readouterr().err
