"""``dartsfast random-search``: the random baseline of a search, at the same budget."""
from __future__ import annotations

import argparse
import contextlib

from dartsfast import backend
from dartsfast.cli._argtypes import number, op_list, positive_float, positive_int
from dartsfast.cli._common import add_common, add_train_settings, train_settings
from dartsfast.evaluation import Budget, random_search
from dartsfast.search import DEFAULT_OPS
from dartsfast.timing import num_threads
from dartsfast.train import TrainConfig


def add_parser(subparsers) -> argparse.ArgumentParser:
    r = subparsers.add_parser(
        "random-search", help="random-search baseline: sample genotypes, train each briefly, keep the best",
        description="Sample genotypes of the search space (two distinct inputs per node, no 'none'), train "
                    "each on the search's training half, keep the best by validation accuracy; writes "
                    "genotype.json and history.json into --out. Give a budget: --budget-epochs, --samples "
                    "(with --epochs-per-sample) and/or --budget-seconds.")
    # --epochs is the epochs per sample here; None lets the budget decide it.
    add_common(r, epochs=None, batch_size=64, layers=8, channels=16)
    r.add_argument("--epochs-per-sample", dest="epochs", type=positive_int, default=argparse.SUPPRESS,
                   help="training epochs of each sample (same as --epochs; default: --budget-epochs / "
                        "--samples when both are given, else 1)")
    r.add_argument("--samples", type=positive_int, default=None, help="genotypes to sample and train")
    r.add_argument("--budget-epochs", type=positive_int, default=None,
                   help="total training epochs, split evenly over the samples")
    r.add_argument("--budget-seconds", type=positive_float, default=None,
                   help="wall seconds from the start (data loading included); no sample starts that "
                        "would not fit")
    r.add_argument("--ops", type=op_list, default=tuple(DEFAULT_OPS),
                   help=f"comma-separated candidate ops, as search's (default {','.join(DEFAULT_OPS)}; "
                        "'none' is never sampled)")
    r.add_argument("--train-fraction", type=number, default=0.5,
                   help="share of the training set for the weights, as search's (the rest scores the samples)")
    r.add_argument("--synthetic-size", type=positive_int, default=2048, help="samples of --dataset synthetic")
    add_train_settings(r)
    r.add_argument("--out", default="runs/random-search", help="directory for genotype.json and history.json")
    r.set_defaults(handler=run)
    return r


def run(args: argparse.Namespace) -> int:
    budget = Budget(samples=args.samples, epochs_per_sample=args.epochs, total_epochs=args.budget_epochs,
                    seconds=args.budget_seconds)
    _, epochs = budget.plan()
    config = TrainConfig(**dict(train_settings(args), epochs=epochs))
    use = backend.use_backend(args.backend) if args.backend else contextlib.nullcontext()
    with use, num_threads(args.threads):
        result = random_search(config, budget, ops=args.ops, train_fraction=args.train_fraction,
                               synthetic_size=args.synthetic_size, out=args.out, progress=args.progress)
    print(f"best of {len(result.history)} samples ({result.epochs_per_sample} epoch(s) each, "
          f"{result.elapsed_s:.0f} s): sample {result.best['sample']}, val accuracy "
          f"{100 * result.best['val_acc']:.2f}%; genotype in {args.out}/genotype.json")
    print(result.genotype.to_json())
    return 0
