"""Hardware-aware search on this machine (issue 18): a sweep of the latency weight λ with one
shared latency table, and a run with a latency target.

The first search (λ = the first weight, 0 by default) builds the table with
``--latency-lut auto`` (inference, batch 1, this CPU, the run's threads, the stem /
preprocessing / classifier constant included); every later search reads that file. Each
found network is then built at the search's own size and timed exactly as the table timed
its ops (:func:`dartsfast.evaluation.search_latency.final_latency`), beside the table's
prediction. Accuracy is the search's final validation accuracy (the supernet's, on the
alphas' half of the training set): cheap, and the same for every run.

Checks (issue 18's targets): measured latency falls monotonically as λ grows; at the largest
λ it is ≤ 0.6× the λ = 0 network's; median |predicted / measured − 1| ≤ 15%; Kendall τ of
predicted vs measured ≥ 0.8 over the sweep's networks; the target run's measured latency
within 10% of the target or below it. Writes sweep.json, sweep.md and sweep.png (accuracy
vs measured latency, predicted vs measured) atomically into --out.

Run under the machine's timing lock; on 2 cores the default sweep takes ~15 minutes:

    flock /tmp/dartsfast-timing.lock python benchmarks/latency_sweep.py
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time

import harness  # noqa: F401  (puts this checkout on sys.path)

from dartsfast._io import atomic_write, write_json
from dartsfast.evaluation.search_latency import final_latency, measure_network, write_final_latency
from dartsfast.search import SearchConfig, search
from dartsfast.search.checkpoint import CHECKPOINT_FILE
from dartsfast.search.latency_setup import AUTO_FILE
from dartsfast.search.space import Genotype
from dartsfast.timing import environment_info, num_threads

DEFAULT_OPS = "dsconv_3x3,mbconv_3x3,fused_mbconv_3x3,skip_connect,none"
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "2026-12-01-cpu-latency-sweep")


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's τ-b of two equally long lists (scipy's when installed)."""
    try:
        from scipy.stats import kendalltau
    except ImportError:
        kendalltau = None
    if kendalltau is not None:
        return float(kendalltau(a, b).statistic)
    concordant = discordant = ties_a = ties_b = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif (da > 0) == (db > 0):
                concordant += 1
            else:
                discordant += 1
    n0 = concordant + discordant
    return (concordant - discordant) / (((n0 + ties_a) * (n0 + ties_b)) ** 0.5 or 1.0)


def run_one(args, out: str, lut: str, weight: float, form: str = "proxyless", target=None) -> dict:
    config = SearchConfig(dataset=args.dataset, epochs=args.epochs, warmup_epochs=args.warmup_epochs,
                          alpha_lr=args.alpha_lr, layers=args.layers, channels=args.channels,
                          batch_size=args.batch_size, ops=tuple(args.ops.split(",")), seed=args.seed, device="cpu",
                          latency_lut=lut, latency_weight=weight, latency_form=form, latency_target_ms=target,
                          out=out, overwrite=True, progress=False, plots=False)
    t0 = time.perf_counter()
    with num_threads(args.threads):
        result = search(config)
        search_s = time.perf_counter() - t0
        record = final_latency(result, repeats=args.repeats, min_time_s=args.min_time_s)
    write_final_latency(out, record)
    os.remove(os.path.join(out, CHECKPOINT_FILE))  # 10 MB, and no run here is resumed
    last = result.history[-1]
    genotype = record["genotype"]
    kept = [op for op, _ in genotype["normal"] + genotype["reduce"]]
    return {"weight": weight, "form": form, "target_ms": target, "val_acc": last["val_acc"],
            "expected_latency_ms": last["expected_latency_ms"], "predicted_ms": record["predicted_ms"],
            "measured_ms": record["measured_ms"], "error": record["error"],
            "ops_kept": {op: kept.count(op) for op in sorted(set(kept))}, "genotype": genotype,
            "end_of_search_measured_ms": record["measured_ms"], "input_shape": record["input_shape"],
            "num_classes": record["num_classes"], "search_s": search_s, "out": os.path.relpath(out, args.out)}


def conv_ops(genotype: dict, layers: int) -> int:
    """Op instances of the network that are not identities (skip_connect at stride 1) or 'none'."""
    reducing = {layers // 3, 2 * layers // 3}
    total = 0
    for i in range(layers):
        kind = "reduce" if i in reducing else "normal"
        for op, j in genotype[kind]:
            total += op != "none" and not (op == "skip_connect" and (kind == "normal" or j >= 2))
    return total


def remeasure(args, runs: list[dict], header: dict) -> None:
    """Time every distinct network again, interleaved: ``rounds`` passes over all of them, so
    that load changing over the sweep's minutes falls on all alike; ``measured_ms`` is the
    median of a network's per-round medians."""
    distinct = {json.dumps(r["genotype"], sort_keys=True): r for r in runs}
    rounds: dict[str, list[float]] = {k: [] for k in distinct}
    with num_threads(args.threads):
        for _ in range(args.rounds):
            for key, r in distinct.items():
                stats = measure_network(Genotype.from_dict(r["genotype"]), channels=args.channels,
                                        layers=args.layers, input_shape=r["input_shape"], num_classes=r["num_classes"],
                                        header=header, device="cpu", repeats=max(1, args.repeats // args.rounds),
                                        min_time_s=args.min_time_s / args.rounds)
                rounds[key].append(1e3 * stats.median)
    for r in runs:
        per_round = rounds[json.dumps(r["genotype"], sort_keys=True)]
        r.update(measured_ms=statistics.median(per_round), measured_min_ms=min(per_round),
                 measured_max_ms=max(per_round), measured_rounds_ms=per_round,
                 error=r["predicted_ms"] / statistics.median(per_round) - 1,
                 conv_ops=conv_ops(r["genotype"], args.layers))


def checks(sweep: list[dict], target_run) -> dict:
    measured = [r["measured_ms"] for r in sweep]
    predicted = [r["predicted_ms"] for r in sweep]
    every = sweep + ([target_run] if target_run else [])
    errors = [abs(r["predicted_ms"] / r["measured_ms"] - 1) for r in every]
    out = {
        "monotone": all(b <= a for a, b in zip(measured, measured[1:])),
        "largest_over_zero": measured[-1] / measured[0],
        "median_abs_error": statistics.median(errors),
        "max_abs_error": max(errors),
        "kendall_tau": kendall_tau(predicted, measured),
        "distinct_networks": len({str(r["genotype"]) for r in sweep}),
    }
    # What the table misses, per op instance that is not an identity: least squares through 0
    # of measured - predicted on that count (in-sample), and the error left after adding it.
    n = [r["conv_ops"] for r in every]
    resid = [r["measured_ms"] - r["predicted_ms"] for r in every]
    per_op = sum(a * b for a, b in zip(n, resid)) / max(1, sum(a * a for a in n))
    out["per_op_residual_ms"] = per_op
    out["median_abs_error_with_per_op"] = statistics.median(
        abs((r["predicted_ms"] + per_op * r["conv_ops"]) / r["measured_ms"] - 1) for r in every)
    out["largest_over_zero_ok"] = out["largest_over_zero"] <= 0.6
    out["median_abs_error_ok"] = out["median_abs_error"] <= 0.15
    out["kendall_tau_ok"] = out["kendall_tau"] >= 0.8
    if target_run:
        out["target_ratio"] = target_run["measured_ms"] / target_run["target_ms"]
        out["target_ok"] = out["target_ratio"] <= 1.10
    return out


def markdown(doc: dict) -> str:
    s, c = doc["settings"], doc["checks"]
    lines = [f"# Latency sweep: hardware-aware search on {s['dataset']} ({doc['environment']['device_name']})", "",
             f"{s['layers']} cells, {s['channels']} channels, ops {s['ops']}, {s['epochs']} epochs "
             f"({s['warmup_epochs']} warm-up), alpha lr {s['alpha_lr']}, seed {s['seed']}, {s['threads']} thread(s); "
             f"table built by the first search (`auto`: inference, batch 1), constant "
             f"{doc['constant_ms']:.3f} ms, per-op overhead {doc.get('per_op_ms', 0.0) * 1e3:.1f} µs "
             "(in every prediction).", "",
             "Measured: median of the per-round medians of an interleaved pass over all networks after the "
             f"searches ({s['rounds']} rounds; range of the rounds in brackets); at end of search: the one "
             "measurement `final_latency` made right after that search.", "",
             "| λ | form | target ms | expected ms (mixture) | predicted ms | measured ms (round range) "
             "| at end of search ms | pred/meas − 1 | conv ops | val acc | ops kept (of 16) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in doc["sweep"] + ([doc["target_run"]] if doc["target_run"] else []):
        ops = ", ".join(f"{k} {v}" for k, v in r["ops_kept"].items())
        target = "" if r["target_ms"] is None else f"{r['target_ms']:.3f}"
        lines.append(f"| {r['weight']:g} | {r['form']} | {target} | {r['expected_latency_ms']:.3f} | "
                     f"{r['predicted_ms']:.3f} | {r['measured_ms']:.3f} ({r['measured_min_ms']:.3f}–"
                     f"{r['measured_max_ms']:.3f}) | {r['end_of_search_measured_ms']:.3f} | {r['error']:+.1%} | "
                     f"{r['conv_ops']} | {r['val_acc']:.4f} | {ops} |")
    lines += ["", "| check | value | target | met |", "|---|---:|---|---|",
              f"| measured latency falls as λ grows | {'yes' if c['monotone'] else 'no'} | monotone | "
              f"{'yes' if c['monotone'] else 'no'} |",
              f"| largest λ / λ = 0, measured | {c['largest_over_zero']:.3f} | ≤ 0.6 | "
              f"{'yes' if c['largest_over_zero_ok'] else 'no'} |",
              f"| median \\|pred/meas − 1\\| (all runs) | {c['median_abs_error']:.1%} | ≤ 15% | "
              f"{'yes' if c['median_abs_error_ok'] else 'no'} |",
              f"| Kendall τ, predicted vs measured (sweep) | {c['kendall_tau']:.3f} | ≥ 0.8 | "
              f"{'yes' if c['kendall_tau_ok'] else 'no'} |"]
    if "target_ratio" in c:
        lines.append(f"| target run: measured / target | {c['target_ratio']:.3f} | ≤ 1.10 | "
                     f"{'yes' if c['target_ok'] else 'no'} |")
    lines.append(f"| per non-identity op, measured − predicted left (fit) | {c['per_op_residual_ms'] * 1e3:.1f} µs | "
                 f"| median error with it: {c['median_abs_error_with_per_op']:.1%} (in-sample) |")
    lines.append(f"\n{c['distinct_networks']} distinct networks among the {len(doc['sweep'])} sweep runs; "
                 f"total {doc['total_s']:.0f} s.")
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = doc["sweep"] + ([doc["target_run"]] if doc["target_run"] else [])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot([r["measured_ms"] for r in doc["sweep"]], [100 * r["val_acc"] for r in doc["sweep"]], "o-")
    for r in doc["sweep"]:
        ax1.annotate(f"λ={r['weight']:g}", (r["measured_ms"], 100 * r["val_acc"]), textcoords="offset points",
                     xytext=(4, 4), fontsize=8)
    if doc["target_run"]:
        t = doc["target_run"]
        ax1.plot([t["measured_ms"]], [100 * t["val_acc"]], "s", color="C3", label=f"target {t['target_ms']:.2f} ms")
        ax1.axvline(t["target_ms"], color="C3", ls=":", lw=1)
        ax1.legend(fontsize=8)
    ax1.set_xlabel("measured latency (ms, batch 1)")
    ax1.set_ylabel("search validation accuracy (%)")
    ax1.set_title("accuracy vs latency")
    pm = [r["predicted_ms"] for r in runs] + [r["measured_ms"] for r in runs]
    ax2.plot([r["predicted_ms"] for r in runs], [r["measured_ms"] for r in runs], "o")
    lo, hi = min(pm) * 0.9, max(pm) * 1.1
    ax2.plot([lo, hi], [lo, hi], "k--", lw=1, label="measured = predicted")
    ax2.set_xlabel("predicted latency (ms, table)")
    ax2.set_ylabel("measured latency (ms)")
    ax2.set_title(f"prediction (Kendall τ {doc['checks']['kendall_tau']:.2f})")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--ops", default=DEFAULT_OPS)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--alpha-lr", type=float, default=0.1)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads for the searches, the table and timing")
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.3, 1.0, 3.0, 10.0],
                   help="proxyless λ values, ascending; the first builds the shared table")
    p.add_argument("--target-ms", type=float, default=None,
                   help="the target run's target (default: halfway between the λ = 0 and the largest-λ network)")
    p.add_argument("--target-weight", type=float, default=1.0, help="λ of the constraint-form target run")
    p.add_argument("--no-target", dest="target", action="store_false")
    p.add_argument("--repeats", type=int, default=100, help="timed calls per network, at least (all rounds)")
    p.add_argument("--min-time-s", type=float, default=1.0, help="seconds of timed calls per network (all rounds)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved passes over the networks at the end")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--remeasure-only", action="store_true",
                   help="no searches: time the networks of OUT/sweep.json again (--rounds, --min-time-s, "
                        "--repeats) and write OUT/remeasured.{json,md} beside it, e.g. when the sweep's own "
                        "rounds fell in a burst of load")
    args = p.parse_args()
    if args.remeasure_only:
        return remeasure_saved(args)
    if args.weights != sorted(args.weights) or len(args.weights) < 2:
        p.error(f"--weights must be at least two ascending values, got {args.weights}")
    os.makedirs(os.path.join(args.out, "runs"), exist_ok=True)
    t0 = time.perf_counter()
    sweep, lut = [], "auto"
    for weight in args.weights:
        out = os.path.join(args.out, "runs", f"lambda_{weight:g}")
        sweep.append(run_one(args, out, lut, weight))
        lut = os.path.join(args.out, "runs", f"lambda_{args.weights[0]:g}", AUTO_FILE)
        r = sweep[-1]
        print(f"λ={weight:g}: predicted {r['predicted_ms']:.3f} ms, measured {r['measured_ms']:.3f} ms, "
              f"val acc {r['val_acc']:.4f}, ops {r['ops_kept']} ({r['search_s']:.0f} s)", flush=True)
    target_run = None
    if args.target:
        target = args.target_ms or (sweep[0]["measured_ms"] + sweep[-1]["measured_ms"]) / 2
        target_run = run_one(args, os.path.join(args.out, "runs", "target"), lut, args.target_weight,
                             form="constraint", target=target)
        print(f"target {target:.3f} ms: predicted {target_run['predicted_ms']:.3f} ms, measured "
              f"{target_run['measured_ms']:.3f} ms, val acc {target_run['val_acc']:.4f}", flush=True)
    with open(lut) as fh:
        header = json.load(fh)["header"]
    constant = 1e3 * header["constant_s"]
    per_op = 1e3 * float(header.get("per_op_s") or 0.0)
    remeasure(args, sweep + ([target_run] if target_run else []), header)
    doc = {"settings": {k: v for k, v in vars(args).items() if k != "out"}, "environment": environment_info("cpu"),
           "lut": os.path.relpath(lut, args.out), "constant_ms": constant,
           "per_op_ms": per_op, "sweep": sweep, "target_run": target_run,
           "total_s": time.perf_counter() - t0}
    doc["checks"] = checks(sweep, target_run)
    write_report(doc, args.out, "sweep")
    plot(doc, os.path.join(args.out, "sweep.png"))


def write_report(doc: dict, out: str, name: str) -> None:
    write_json(os.path.join(out, f"{name}.json"), doc)
    text = markdown(doc)
    atomic_write(os.path.join(out, f"{name}.md"), lambda f: f.write(text.encode()))
    print(text)


def remeasure_saved(args) -> None:
    """``--remeasure-only``: the saved sweep's networks timed again under this call's rounds;
    the searches' settings (layers, channels, threads) come from the saved document."""
    with open(os.path.join(args.out, "sweep.json")) as fh:
        doc = json.load(fh)
    settings = argparse.Namespace(**{**doc["settings"], "rounds": args.rounds, "repeats": args.repeats,
                                     "min_time_s": args.min_time_s})
    with open(os.path.join(args.out, doc["lut"])) as fh:
        header = json.load(fh)["header"]
    t0 = time.perf_counter()
    remeasure(settings, doc["sweep"] + ([doc["target_run"]] if doc["target_run"] else []), header)
    doc.update(settings=vars(settings), environment=environment_info("cpu"), total_s=time.perf_counter() - t0)
    doc["checks"] = checks(doc["sweep"], doc["target_run"])
    write_report(doc, args.out, "remeasured")
    plot(doc, os.path.join(args.out, "remeasured.png"))


if __name__ == "__main__":
    main()
