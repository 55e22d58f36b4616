"""``dartsfast train``: train the network of a genotype from scratch and report test accuracy."""
from __future__ import annotations

import argparse
import contextlib

from dartsfast import backend
from dartsfast.cli._common import add_common, add_train_settings, train_settings
from dartsfast.timing import num_threads
from dartsfast.train import TrainConfig, train


def add_parser(subparsers) -> argparse.ArgumentParser:
    t = subparsers.add_parser("train", help="train the network of a genotype from scratch and report test accuracy",
                              description="Train the discrete network a genotype describes (DARTS evaluation).")
    t.add_argument("--genotype", required=True, help="genotype.json (or the search directory holding it)")
    add_common(t, epochs=20, batch_size=96, layers=8, channels=16)
    add_train_settings(t)
    t.add_argument("--out", default=None, help="directory for model.pt and train_history.json")
    t.set_defaults(handler=run)
    return t


def run(args: argparse.Namespace) -> int:
    config = TrainConfig(**train_settings(args), out=args.out)
    use = backend.use_backend(args.backend) if args.backend else contextlib.nullcontext()
    with use, num_threads(args.threads):
        result = train(args.genotype, config, progress=args.progress)
    print(f"test accuracy: {result.test_acc:.4f} ({100 * result.test_acc:.2f}%)"
          + (f"; model and history in {args.out}" if args.out else ""))
    return 0
