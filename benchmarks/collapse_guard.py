"""The collapse guard's effect: the same DARTS search on the classic 8-op space with and
without β-DARTS's beta-decay regularisation, in one run.

Per epoch and per setting: how many of the derived genotype's 16 edges are parameter-free
(skip_connect, pooling: DARTS's collapse), the mean weight of the derived edges' ops, the
mean edge entropy, the validation accuracy and the derived genotype. Writes JSON and a
Markdown table (atomically) to --out.

    python benchmarks/collapse_guard.py --epochs 12 --beta-decay 0 10 --out results/collapse.json
"""
from __future__ import annotations

import argparse
import statistics
import time

import harness  # noqa: F401  (puts this checkout on sys.path)

from dartsfast._io import atomic_write, write_json
from dartsfast.search import SearchConfig, search
from dartsfast.search.space import DARTS_OPS
from dartsfast.timing import environment_info, num_threads

FIELDS = ("epoch", "parameter_free_ops", "derived_weight", "mean_entropy", "val_acc", "genotype")


def run_one(args, beta_decay: float) -> list[dict]:
    config = SearchConfig(dataset=args.dataset, epochs=args.epochs, layers=args.layers, channels=args.channels,
                          batch_size=args.batch_size, ops=DARTS_OPS, alpha_lr=args.alpha_lr,
                          warmup_epochs=args.warmup_epochs, beta_decay=beta_decay, seed=args.seed,
                          device="cpu", progress=False, plots=False)
    history = search(config).history
    return [{"epoch": r["epoch"], "parameter_free_ops": r["parameter_free_ops"],
             "derived_weight": r["derived_weight"],
             "mean_entropy": statistics.fmean(r["entropy_normal"] + r["entropy_reduce"]),
             "val_acc": r["val_acc"], "genotype": r["genotype"]} for r in history]


def markdown(doc: dict) -> str:
    lines = [f"# Collapse guard: beta-decay on the DARTS space ({doc['settings']['dataset']})", "",
             "| beta-decay λ | epoch | parameter-free edges (of 16) | derived weight | mean entropy | val acc |",
             "|---|---|---|---|---|---|"]
    for run in doc["runs"]:
        for r in run["history"]:
            lines.append(f"| {run['beta_decay']:g} | {r['epoch']} | {r['parameter_free_ops']} | "
                         f"{r['derived_weight']:.3f} | {r['mean_entropy']:.3f} | {r['val_acc']:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--alpha-lr", type=float, default=1e-2)
    p.add_argument("--warmup-epochs", type=int, default=0)
    p.add_argument("--beta-decay", type=float, nargs="+", default=[0.0, 10.0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    doc = {"settings": {k: v for k, v in vars(args).items() if k != "out"}, "ops": list(DARTS_OPS),
           "machine": environment_info(), "runs": []}
    with num_threads(args.threads):
        for lam in args.beta_decay:
            t0 = time.perf_counter()
            doc["runs"].append({"beta_decay": lam, "history": run_one(args, lam), "seconds": time.perf_counter() - t0})
            write_json(args.out, doc)  # each finished setting is kept if a later one is killed
    text = markdown(doc)
    atomic_write(args.out.removesuffix(".json") + ".md", lambda f: f.write(text.encode()))
    print(text)


if __name__ == "__main__":
    main()
