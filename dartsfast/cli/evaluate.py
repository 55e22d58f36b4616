"""``dartsfast evaluate``: train genotypes over several seeds; test accuracy mean ± sd, size, cost."""
from __future__ import annotations

import argparse
import contextlib

from dartsfast import backend
from dartsfast.cli._argtypes import positive_int, seed
from dartsfast.cli._common import add_common, add_train_settings, train_settings
from dartsfast.evaluation import REF_PREFIX, REFERENCE_GENOTYPES, evaluate_genotypes
from dartsfast.evaluation.report import markdown_table
from dartsfast.timing import num_threads
from dartsfast.train import TrainConfig

_REFS = ", ".join(REF_PREFIX + name for name in REFERENCE_GENOTYPES)


def add_parser(subparsers) -> argparse.ArgumentParser:
    e = subparsers.add_parser(
        "evaluate", help="train genotypes over several seeds: test accuracy mean ± sd, params, multiply-adds",
        description="Train each genotype from scratch --seeds times with train's settings; write "
                    "evaluation.json, evaluation.md (a table) and evaluation.png into --out.")
    e.add_argument("genotypes", nargs="+", metavar="GENOTYPE",
                   help=f"a genotype.json (or a directory holding one), or a reference: {_REFS}")
    add_common(e, epochs=20, batch_size=96, layers=8, channels=16)
    add_train_settings(e)
    e.add_argument("--seeds", type=positive_int, default=3, help="training runs per genotype")
    # The same value as --seed: training seeds are SEED .. SEED + seeds - 1.
    e.add_argument("--seed-base", dest="seed", type=seed, default=argparse.SUPPRESS,
                   help="the first training seed (same as --seed; default 0)")
    e.add_argument("--max-test-samples", type=positive_int, default=None,
                   help="score on only the first N test samples (quick runs)")
    e.add_argument("--latency", action="store_true",
                   help="also time one inference-mode forward on the run's device")
    e.add_argument("--latency-batch", type=positive_int, default=1, help="images per timed forward")
    e.add_argument("--out", default="runs/evaluation",
                   help="directory for evaluation.json, evaluation.md and evaluation.png")
    e.set_defaults(handler=run)
    return e


def run(args: argparse.Namespace) -> int:
    config = TrainConfig(**train_settings(args), max_test_samples=args.max_test_samples)
    use = backend.use_backend(args.backend) if args.backend else contextlib.nullcontext()
    with use, num_threads(args.threads):
        evaluation = evaluate_genotypes(args.genotypes, config, seeds=args.seeds, latency=args.latency,
                                        latency_batch=args.latency_batch, out=args.out, progress=args.progress)
    print(markdown_table(evaluation.to_dict()), end="")
    print(f"files: {args.out}/evaluation.json, evaluation.md, evaluation.png")
    return 0
