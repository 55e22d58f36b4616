"""``dartsfast bench ab`` and ``dartsfast bench accept``: the regression gate that needs no
stored baseline — base and head timed side by side, interleaved, in one job.

    dartsfast bench ab --base origin/main                       # head: the working tree
    dartsfast bench ab --base-file benchmarks/baselines/base-ref --out build/bench/ab.json
    dartsfast bench accept --reason "dwconv_se 8% slower: exact BN statistics (#123)"

Exit status: 0 no significant regression; 1 a significant regression; 2 bad input or a run
that cannot be judged (a side that does not run, benchmarks missing, erroring or not
comparable, nothing compared), naming the problem.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from dartsfast._io import atomic_write, write_json
from dartsfast.bench import ab, ab_stats
from dartsfast.cli._argtypes import fraction, name_list, positive_float, positive_int
from dartsfast.rundir import check_output_file

BASE_REF_FILE = Path("benchmarks") / "baselines" / "base-ref"


def add_subparsers(sub) -> None:
    a = sub.add_parser("ab", help="time base and head side by side (A B B A); exit 1 on a significant regression",
                       description=__doc__.split("\n\n")[0])
    which = a.add_mutually_exclusive_group(required=True)
    which.add_argument("--base", help="commit, branch or tag to compare with (e.g. origin/main)")
    which.add_argument("--base-file", type=Path, help=f"read the base commit from this file (e.g. {BASE_REF_FILE})")
    a.add_argument("--head", default=ab.WORKTREE,
                   help="commit to judge, or 'worktree' (default): the working tree, uncommitted changes included")
    a.add_argument("--suite", choices=("quick", "full"), default="quick")
    a.add_argument("--rounds", type=positive_int, default=2, help="A B B A rounds (default 2: 4 processes per side)")
    a.add_argument("--escalate-rounds", type=int, default=ab.ESCALATE_ROUNDS,
                   help="at most this many more rounds, of them only and "
                        f"{ab.ESCALATE_STEP} at a time until decided, for benchmarks slower than "
                        f"{ab_stats.UNDECIDED_FRACTION:g} x --min-effect but within the noise "
                        f"(default {ab.ESCALATE_ROUNDS}; 0: judge on the first rounds alone)")
    a.add_argument("--pairs-scale", type=positive_float, default=1.0, help="scale every benchmark's pair count")
    a.add_argument("--only", type=name_list, default=[], help="comma-separated benchmark names (default: all)")
    a.add_argument("--min-effect", type=fraction, default=ab_stats.DEFAULT_MIN_EFFECT,
                   help="smallest slowdown that fails, whatever the noise (fraction; default 0.06)")
    a.add_argument("--json", action="store_true", help="print the report as JSON instead of Markdown")
    a.add_argument("--out", type=Path, default=None, help="write the report here (JSON) and beside it as .md")
    for flag, what in (("--allow-missing", "benchmarks of base missing from head"),
                       ("--allow-errors", "benchmarks that errored on a side"),
                       ("--allow-incomparable", "benchmarks whose definition changed (calibration units)")):
        a.add_argument(flag, action="store_true", help=f"pass although there are {what} (default: exit 2)")
    a.set_defaults(handler=run_ab)

    c = sub.add_parser("accept", help="move the CI gate's base commit (base-ref) forward to HEAD, with a reason")
    c.add_argument("--reason", required=True, help="why the change of speed is intended (kept in the file)")
    c.add_argument("--ref", default="HEAD", help="the new base commit (default HEAD)")
    c.add_argument("--file", type=Path, default=None, help=f"base-ref file (default <repo>/{BASE_REF_FILE})")
    c.set_defaults(handler=accept)


def run_ab(args: argparse.Namespace) -> int:
    if args.out is not None:
        check_output_file(args.out, "--out")
    repo = ab.repo_root()
    base = args.base if args.base is not None else ab.read_base_ref(args.base_file)
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json else (lambda s: print(s, flush=True))
    report = ab.run_ab(repo, base, args.head, suite=args.suite, rounds=args.rounds, pairs_scale=args.pairs_scale,
                       only=tuple(args.only), min_effect=args.min_effect, escalate_rounds=args.escalate_rounds,
                       allow=dict(allow_missing=args.allow_missing, allow_errors=args.allow_errors,
                                  allow_incomparable=args.allow_incomparable), log=log)
    markdown = ab_stats.format_markdown(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(str(args.out), report)
        atomic_write(str(args.out.with_suffix(".md")), lambda f: f.write(markdown.encode()))
    print(json.dumps(report, indent=1) if args.json else "\n" + markdown)
    for line in report["problems"]:
        print(f"bench ab: CANNOT PASS: {line}", file=sys.stderr)
    return report["exit"]


def accept(args: argparse.Namespace) -> int:
    repo = ab.repo_root()
    commit = ab.resolve(repo, args.ref)
    reason = " ".join(args.reason.split())
    if not reason:
        raise ValueError("--reason: say why the change of speed is intended")
    path = args.file or repo / BASE_REF_FILE
    try:
        old = ab.read_base_ref(path) if path.exists() else None
    except ab.ABError:
        old = None  # a file without a commit yet
    subject = ab.git(repo, "log", "-1", "--format=%s", commit)
    text = ("# Base commit of the CI benchmark gate: .ci/run runs `dartsfast bench ab --base-file` on this file.\n"
            "# Move it with `dartsfast bench accept --reason ...` when a change of speed is intended, and\n"
            "# commit the file with a message that explains the change.\n"
            f"{commit}\n"
            f"# accepted {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M:%SZ}"
            f"{f' (was {old})' if old else ''}: {reason}\n# that commit: {subject}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(str(path), lambda f: f.write(text.encode()))
    print(f"bench accept: {path} → {commit[:12]} ({subject}); commit it with a message that explains why:\n"
          f"  git add {path} && git commit -m 'Benchmark base moves to {commit[:12]}: {reason}'")
    return 0
