"""The ``dartsfast`` command (also ``python -m dartsfast``).

    dartsfast search --dataset digits --epochs 10 --out runs/digits
    dartsfast train --genotype runs/digits/genotype.json --out runs/digits/train
    dartsfast profile --preset effnetv2-s --out prof.json
    dartsfast bench run --suite quick --out new.json

Usage errors — bad flags or values, unknown op names, a missing data directory, an
unusable checkpoint — print ``dartsfast <command>: error: ...`` and exit with status 2
(argparse's convention); a search that diverges exits with 1.

Each subcommand is one module of this package (:mod:`.search`, :mod:`.train`,
:mod:`.profile`, :mod:`.bench`) defining ``add_parser(subparsers)``, which sets ``handler``
(args → exit code) with ``set_defaults``; this module builds the parser and maps exceptions
to exit statuses.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

from dartsfast import backend
from dartsfast.cli import bench, profile, search, train
from dartsfast.search import CheckpointError

EXIT_USAGE = 2
EXIT_FAILURE = 1
SUBCOMMANDS = (search, train, profile, bench)  # in the order `dartsfast --help` lists them


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dartsfast", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except FloatingPointError as e:  # a diverged run is a failure, not bad input
        print(f"dartsfast {args.command}: failed: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except (ValueError, FileNotFoundError, CheckpointError, backend.BackendUnavailableError) as e:
        print(f"dartsfast {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"dartsfast {args.command}: interrupted (files of finished epochs are kept)", file=sys.stderr)
        return 130
