"""Benchmark history: an append-only JSON-lines file, one line per ``bench run --history``,
and a plot of one benchmark over the runs (commits).

Appending, not rewriting: each run adds one line with a single ``write`` on an O_APPEND
descriptor (then fsync), so concurrent CI jobs never interleave or drop each other's
lines and a crash can at worst leave a truncated *last* line — which the reader skips with
a warning instead of failing the whole history.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from dartsfast.bench.baselines import describe_key, record_key
from dartsfast.viz import save_figure

DEFAULT_HISTORY = "benchmarks/history.jsonl"
_KEEP = ("name", "params", "provider", "dtype", "layout", "device_class", "status", "median_s", "iqr_s",
         "planted_slowdown")


def history_entry(doc: dict) -> dict:
    """The compact line for one run: when, which commit, and each benchmark's numbers."""
    env = doc.get("environment", {})
    records = []
    for rec in doc["records"]:
        slim = {k: rec.get(k) for k in _KEEP}
        ratio = rec.get("ratio") or {}
        slim["ratio"] = ratio.get("value")
        slim["ratio_round_rel_sd"] = ratio.get("round_rel_sd")
        records.append(slim)
    return {"date": env.get("date", ""), "git_commit": env.get("git_commit", ""), "git_dirty": env.get("git_dirty"),
            "suite": doc.get("suite", ""), "device_class": doc.get("device_class", ""),
            "fingerprint": doc.get("fingerprint", ""), "records": records}


def append_history(path, doc: dict) -> None:
    """Append one line for ``doc`` (a ``bench run`` result) to the JSON-lines file ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(history_entry(doc), allow_nan=False, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_history(path) -> list[dict]:
    """The entries of a history file, oldest first; FileNotFoundError / ValueError name it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such history file (write one with `dartsfast bench run --history {path}`)")
    entries = []
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == len(lines):  # a run killed mid-append: lose that run, keep the history
                print(f"warning: {path}:{i}: truncated last line skipped", file=sys.stderr)
                continue
            raise ValueError(f"{path}:{i}: not a JSON line ({exc})") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("records"), list):
            raise ValueError(f"{path}:{i}: expected an object with 'records'")
        entries.append(entry)
    return entries


def series(entries: list[dict], name: str, device_class: str | None = None) -> dict:
    """{(benchmark label, device class): [(run index, commit, ratio, median_s), ...]}."""
    out: dict = {}
    for i, entry in enumerate(entries):
        for rec in entry["records"]:
            if rec.get("name") != name or rec.get("status") != "ok":
                continue
            cls = rec.get("device_class") or entry.get("device_class", "")
            if device_class and cls != device_class:
                continue
            label = describe_key(record_key(rec))
            out.setdefault((label, cls), []).append((i, entry.get("git_commit", "")[:8], rec.get("ratio"),
                                                     rec.get("median_s")))
    return out


def plot_history(entries: list[dict], name: str, path, device_class: str | None = None) -> int:
    """Plot benchmark ``name`` over the runs (x: run, labelled by commit) to a PNG; returns
    the number of points. Top: calibrated ratio (what compare gates on); bottom: median time."""
    data = series(entries, name, device_class)
    if not data:
        names = sorted({r.get("name") for e in entries for r in e["records"]})
        where = f" on device class {device_class}" if device_class else ""
        raise ValueError(f"no successful runs of {name!r}{where} in the history; "
                         f"it has: {', '.join(names) or 'nothing'}")
    import matplotlib  # heavy optional dependency: loaded only when a history is plotted

    matplotlib.use("Agg", force=False)  # no display on CI
    import matplotlib.pyplot as plt

    fig, (ax_ratio, ax_time) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    ticks = {}
    for (label, cls), points in sorted(data.items()):
        xs = [p[0] for p in points]
        ticks.update({p[0]: p[1] for p in points})
        ax_ratio.plot(xs, [p[2] for p in points], marker="o", markersize=3, label=f"{label} · {cls}")
        ax_time.plot(xs, [None if p[3] is None else p[3] * 1e3 for p in points], marker="o", markersize=3)
    ax_ratio.set_ylabel("time / calibration unit")
    ax_ratio.set_title(f"{name}: calibrated ratio (compared by `bench compare`) and median time")
    ax_ratio.legend(fontsize=7, loc="best")
    ax_time.set_ylabel("median ms")
    ax_time.set_xlabel("run (commit)")
    step = max(1, len(ticks) // 20)  # ≤ ~20 commit labels stay readable
    shown = sorted(ticks)[::step]
    ax_time.set_xticks(shown, [ticks[x] for x in shown], rotation=60, fontsize=7)
    for ax in (ax_ratio, ax_time):
        ax.grid(alpha=0.3)
    save_figure(fig, str(path))
    return sum(len(p) for p in data.values())
