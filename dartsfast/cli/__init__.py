"""The ``dartsfast`` command (also ``python -m dartsfast``).

    dartsfast search --dataset digits --epochs 10 --out runs/digits
    dartsfast train --genotype runs/digits/genotype.json --out runs/digits/train
    dartsfast profile --preset effnetv2-s --out prof.json
    dartsfast bench run --suite quick --out new.json

Exit statuses:

    0  done
    1  the run failed on its own terms: the search or training diverged (non-finite loss)
    2  bad usage or input: flags, values, op names, genotype, dataset or checkpoint files,
       an --out that is a file or is in use by another run, sizes that cannot fit in memory
    3  I/O or environment: disk full, permissions, read-only file system, out of memory
    4  an internal error (a bug in dartsfast: please report it with the --debug traceback)

Each failure prints one line, ``dartsfast <command>: error: ...``, naming the path or
size and what to do; ``--debug`` (or DARTSFAST_DEBUG=1) adds the traceback.

Each subcommand is one module of this package (:mod:`.search`, :mod:`.train`,
:mod:`.profile`, :mod:`.bench`) defining ``add_parser(subparsers)``, which sets ``handler``
(args → exit code) with ``set_defaults``; this module builds the parser and maps exceptions
to exit statuses.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from typing import Callable, Optional, Sequence

from dartsfast import backend
from dartsfast.cli import bench, evaluate, profile, random_search, search, train
from dartsfast.search import CheckpointError

EXIT_FAILURE, EXIT_USAGE, EXIT_ENVIRONMENT, EXIT_INTERNAL = 1, 2, 3, 4
SUBCOMMANDS = (search, random_search, train, evaluate, profile, bench)  # in the order `dartsfast --help` lists them


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dartsfast", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__[__doc__.index("Exit statuses"):__doc__.index("Each subcommand")],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", default=os.environ.get("DARTSFAST_DEBUG") == "1",
                        help="print the traceback of a failure (also DARTSFAST_DEBUG=1)")
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
    except KeyboardInterrupt:
        print(f"dartsfast {args.command}: interrupted (files of finished epochs are kept)", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 -- every failure becomes one line and a status
        status, message = exit_status(e)
        if args.debug:
            traceback.print_exc()
        print(f"dartsfast {args.command}: {'failed' if status == EXIT_FAILURE else 'error'}: {message}",
              file=sys.stderr)
        return status


def exit_status(e: BaseException) -> tuple[int, str]:
    """(exit status, one-line message) for an exception a command raised."""
    if isinstance(e, FloatingPointError):  # a diverged run is a failure, not bad input
        return EXIT_FAILURE, str(e)
    if isinstance(e, (ValueError, FileNotFoundError, CheckpointError, backend.BackendUnavailableError)):
        return EXIT_USAGE, str(e)
    if isinstance(e, OSError):
        return EXIT_ENVIRONMENT, describe_os_error(e)
    if isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and _is_out_of_memory(e)):
        return EXIT_ENVIRONMENT, (f"out of memory ({_first_line(e)}); lower --batch-size, --channels, "
                                  "--layers or --image-size, or free memory")
    return EXIT_INTERNAL, (f"internal error {type(e).__name__}: {_first_line(e)} (a bug in dartsfast; "
                           "rerun with --debug and report the traceback)")


_ADVICE = {errno.ENOSPC: "free space on that disk or pick another --out",
           errno.EDQUOT: "free space within your quota or pick another --out",
           errno.EROFS: "the file system is read-only; pick another --out",
           errno.EACCES: "check its permissions or pick another path",
           errno.EPERM: "check its permissions or pick another path",
           errno.EISDIR: "it is a directory; give a file name",
           errno.ENOTDIR: "a part of the path is a file, not a directory; pick another path"}


def describe_os_error(e: OSError) -> str:
    """'<what happened>: <path>; <what to do>'."""
    what = e.strerror or _first_line(e)
    path = f": {e.filename}" if e.filename else ""
    advice = _ADVICE.get(e.errno, "check the path and the machine, then try again")
    return f"{what}{path}; {advice}"


def _is_out_of_memory(e: RuntimeError) -> bool:
    # torch.OutOfMemoryError (CUDA) subclasses RuntimeError; the CPU allocator raises a plain
    # RuntimeError "[enforce fail at alloc_cpu.cpp] ... DefaultCPUAllocator: can't allocate memory".
    text = str(e)
    return type(e).__name__ == "OutOfMemoryError" or "can't allocate memory" in text or "out of memory" in text


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
