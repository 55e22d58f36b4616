"""Summarize a directory of real ``bench ab`` runs made by its ``real_runs.sh``: per kind
(A/A, planted 10%, planted 20%) how many runs, how many flagged (exit 1), how many were
escalated and flagged after it, the rounds given, the seconds per run; then every run whose
outcome is wrong for its kind (a flagged A/A, an unflagged plant, an exit 2).

    python benchmarks/results/2026-12-01-cpu-bench-ab/summarize_real_runs.py DIR
"""
import json
import statistics
import sys

KINDS = {"aa": "A/A, full quick suite", "p10": "planted 10%", "p20": "planted 20%"}


def _wrong(kind: str, report: dict) -> str:
    rows = [r for r in report["rows"] if r.get("change") is not None
            and (r["verdict"] == "regression" or "planted" in r.get("note", ""))]
    detail = "; ".join(f"{r['benchmark'][:40]} {100 * r['change']:+.1f}% under/over {100 * r['threshold']:.1f}%, "
                       f"spread {100 * r['spread']:.1f}%, {r['n_head']} a side" for r in rows)
    return f"exit {report['exit']}: {detail}"


def main(directory: str) -> None:
    with open(f"{directory}/runs.jsonl") as fh:
        runs = [json.loads(line) for line in fh if line.startswith("{")]
    print("| kind | runs | flagged | escalated (then flagged) | rounds given | seconds per run |")
    print("|---|---:|---:|---:|---|---|")
    wrong = []
    for kind, label in KINDS.items():
        mine = [r for r in runs if r["kind"] == kind]
        if not mine:
            continue
        escalated = flagged_after = 0
        rounds, seconds = [], []  # the report's own seconds: the driver's include waiting for the lock
        for run in mine:
            with open(f"{directory}/run-{run['round']}-{kind}.json") as fh:
                report = json.load(fh)
            seconds.append(report["seconds"])
            if report["escalated"]:
                escalated += 1
                flagged_after += report["exit"] == 1
                steps = report.get("escalation") or [{"rounds": report["escalate_rounds"]}]  # before 4087df4: one step
                rounds.append(sum(step["rounds"] for step in steps))
            if report["exit"] == 2 or (kind == "aa") == (report["exit"] == 1):
                wrong.append(f"{kind} run {run['round']}: {_wrong(kind, report)}")
        flagged = sum(r["exit"] == 1 for r in mine)
        print(f"| {label} | {len(mine)} | **{flagged}** | {escalated} ({flagged_after}) "
              f"| {', '.join(map(str, sorted(rounds))) or '–'} "
              f"| {min(seconds):.0f}-{max(seconds):.0f} (median {statistics.median(seconds):.0f}) |")
    print()
    for line in wrong:
        print("-", line)


if __name__ == "__main__":
    main(sys.argv[1])
