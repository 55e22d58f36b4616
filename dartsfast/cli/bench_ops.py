"""``dartsfast bench ops``: dispatched aten ops, host syncs and (CUDA) kernel launches of one
search step, for any configuration; ``--check`` holds the seed counts to benchmarks/budgets.json.

    dartsfast bench ops                               # seed configuration, orders 1 and 2
    dartsfast bench ops --config seed --layers 14 --channels 36 --device cuda --json ops.json
    dartsfast bench ops --check                       # exit 1 if a count rose above its budget

Counts are exact (the same code gives the same count on any machine, under any load) and do
not depend on the batch size, so the default batch is 2.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dartsfast._io import write_json
from dartsfast.bench import budgets as bench_budgets
from dartsfast.bench.opcount import CONFIGS, count_step, make_run
from dartsfast.cli._argtypes import positive_int
from dartsfast.rundir import check_output_file

DEFAULT_BUDGETS = Path("benchmarks") / "budgets.json"


def add_subparser(sub) -> None:
    o = sub.add_parser("ops", help="aten ops, host syncs and CUDA launches per search step (exact counts)")
    o.add_argument("--config", choices=tuple(CONFIGS), default="seed", help="network (default: seed)")
    o.add_argument("--orders", default="1,2", help="comma-separated bilevel orders (default 1,2)")
    o.add_argument("--batch-size", type=positive_int, default=2, help="batch (counts do not depend on it)")
    o.add_argument("--device", default="cpu", help="cpu or cuda[:i] (CUDA adds kernel launches)")
    o.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off")
    o.add_argument("--layers", type=positive_int, default=None)
    o.add_argument("--channels", type=positive_int, default=None)
    o.add_argument("--image-size", type=positive_int, default=None)
    o.add_argument("--ops", default=None, help="comma-separated candidate ops")
    o.add_argument("--no-edge-batching", dest="edge_batching", action="store_const", const=False, default=None,
                   help="count the per-edge supernet")
    o.add_argument("--json", type=Path, default=None, help="also write the counts as JSON")
    o.add_argument("--check", nargs="?", const=DEFAULT_BUDGETS, default=None, type=Path, metavar="BUDGETS",
                   help=f"compare with the budgets (default {DEFAULT_BUDGETS}); exit 1 if a count is above")
    o.set_defaults(handler=run)

    b = sub.add_parser("budgets", help="exact counts (ops by name, syncs, bytes, Triton launches) vs budgets.json")
    b.add_argument("--budgets", type=Path, default=DEFAULT_BUDGETS, help=f"budgets file (default {DEFAULT_BUDGETS})")
    b.add_argument("--update", action="store_true", help="write the measured counts as the new budgets")
    b.add_argument("--no-triton", dest="triton", action="store_false", help="skip the Triton launch counts")
    b.set_defaults(handler=run_budgets)


def _orders(text: str) -> list[int]:
    try:
        orders = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        orders = []
    if not orders or any(o not in (1, 2) for o in orders):
        raise ValueError(f"--orders {text!r}: give 1, 2 or 1,2")
    return orders


def run(args: argparse.Namespace) -> int:
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: no CUDA device is visible")
    if args.json is not None:
        check_output_file(args.json, "--json")
    overrides = dict(layers=args.layers, channels=args.channels, image_size=args.image_size,
                     ops=tuple(s.strip() for s in args.ops.split(",")) if args.ops else None,
                     edge_batching=args.edge_batching)
    custom = any(v is not None for v in overrides.values())
    budgets = _load_budgets(args.check) if args.check else None
    if budgets is not None and (custom or args.config != "seed" or args.amp != "off"):
        raise ValueError("--check holds the seed configuration (fp32, no overrides) to its budgets; "
                         "drop the other options")
    rows, over = [], []
    for order in _orders(args.orders):
        counts = count_step(make_run(args.config, order, args.amp, args.device, args.batch_size, **overrides),
                            launches=True)
        row = {"config": args.config, "order": order, "amp": args.amp, "device": args.device,
               "overrides": {k: v for k, v in overrides.items() if v is not None},
               "aten_ops": counts.aten_ops, "host_syncs": counts.host_syncs,
               "kernel_launches": counts.kernel_launches, "per_cell_forward": list(counts.per_cell_forward),
               "top_ops": dict(list(counts.by_op.items())[:12])}
        rows.append(row)
        launches = "" if counts.kernel_launches is None else f", {counts.kernel_launches} kernel launches"
        print(f"{args.config} order {order}: {counts.aten_ops} aten ops, {counts.host_syncs} host syncs{launches}; "
              f"per cell forward {list(counts.per_cell_forward)}")
        if budgets is not None:
            budget = budgets[f"seed/order{order}"]
            for key in ("aten_ops", "host_syncs"):
                if row[key] > budget[key]:
                    over.append(f"order {order}: {key} {row[key]} > budget {budget[key]}")
    if args.json is not None:
        write_json(str(args.json), {"kind": "op_counts", "rows": rows})
    for line in over:
        print(f"bench ops: OVER BUDGET {line}")
    if budgets is not None and not over:
        print(f"bench ops: within the budgets of {args.check}")
    return 1 if over else 0


def _load_budgets(path: Path) -> dict:
    try:
        return json.loads(path.read_text())["search_step"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"--check {path}: not a budgets file ({type(exc).__name__}: {exc})") from None


def run_budgets(args: argparse.Namespace) -> int:
    """``bench budgets``: exit 1 when a count rose above its budget, naming the aten ops that grew."""
    old = json.loads(args.budgets.read_text()) if args.budgets.exists() else {}
    if not args.update and not old:
        raise ValueError(f"--budgets {args.budgets}: no such file (make it with --update)")
    measured = bench_budgets.measure(triton=args.triton)
    if args.update:
        check_output_file(args.budgets, "--budgets")
        write_json(str(args.budgets), {"about": old.get("about", ""), **measured})
        print(f"bench budgets: {args.budgets} updated; commit it with the change that moved the counts")
        return 0
    rises, falls = bench_budgets.check(measured, old)
    for line in falls:
        print(f"bench budgets: below budget (lower it: --update) {line}")
    for line in rises:
        print(f"bench budgets: OVER BUDGET {line}")
    if not rises:
        print(f"bench budgets: within {args.budgets}")
    return 1 if rises else 0
