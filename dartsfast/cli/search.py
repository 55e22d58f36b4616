"""``dartsfast search``: DARTS search; writes genotype.json, history.json, plots, checkpoint.pt
(and, with a latency table, latency.json: the found network's measured latency beside the
table's prediction, :mod:`dartsfast.evaluation.search_latency`)."""
from __future__ import annotations

import argparse
import os

from dartsfast.cli._argtypes import non_negative_int, number, op_list, positive_int
from dartsfast.cli._common import add_common, common_settings
from dartsfast.evaluation.search_latency import LATENCY_FILE, final_latency, write_final_latency
from dartsfast.search import DEFAULT_OPS, SearchConfig, available_ops, search
from dartsfast.search.config import COMPILE_BACKENDS
from dartsfast.search.latency_term import LATENCY_FORMS
from dartsfast.search.recompute import MEMORY_MODES
from dartsfast.timing import num_threads


def add_parser(subparsers) -> argparse.ArgumentParser:
    s = subparsers.add_parser("search", help="DARTS search; writes genotype.json, history.json, plots, checkpoint.pt",
                              description="Differentiable architecture search over a supernet of the chosen ops.")
    add_common(s, epochs=50, batch_size=64, layers=8, channels=16)
    s.add_argument("--ops", type=op_list, default=tuple(DEFAULT_OPS),
                   help=f"comma-separated candidate ops (default {','.join(DEFAULT_OPS)}; "
                        f"available: {','.join(available_ops())})")
    s.add_argument("--order", type=int, choices=(1, 2), default=1, help="1 = first order, 2 = unrolled")
    s.add_argument("--partial-channels", type=positive_int, default=1, help="PC-DARTS K (1 = off)")
    s.add_argument("--edge-batching", action=argparse.BooleanOptionalAction, default=None,
                   help="compute the edges leaving each cell state together (default: on CUDA only; README)")
    s.add_argument("--compile", nargs="?", const="inductor", default=None, choices=COMPILE_BACKENDS,
                   help="torch.compile the supernet (default backend inductor; aot_eager: trace only)")
    s.add_argument("--cuda-graph", action=argparse.BooleanOptionalAction, default=None,
                   help="capture the step in one CUDA graph (default: wherever it can be; "
                        "--cuda-graph also says why when it cannot)")
    s.add_argument("--memory", choices=MEMORY_MODES, default="fast",
                   help="fast: keep every activation for backward; lean: recompute each cell in "
                        "backward (same results, a fraction of the memory; README)")
    s.add_argument("--train-fraction", type=number, default=0.5, help="share of the training set for weights")
    s.add_argument("--w-lr", type=number, default=0.025, help="weights' SGD learning rate")
    s.add_argument("--alpha-lr", type=number, default=3e-4,
                   help="alphas' Adam learning rate (DARTS's 3e-4 suits its ~20,000 steps; a search of a few "
                        "hundred steps needs ~1e-2 for the alphas to decide: README)")
    s.add_argument("--warmup-epochs", type=non_negative_int, default=0,
                   help="epochs that train only the weights before the alphas move (PC-DARTS)")
    s.add_argument("--beta-decay", type=number, default=0.0, metavar="LAMBDA",
                   help="beta-decay regularisation of the alphas against collapse into parameter-free "
                        "ops (beta-DARTS), ramped 0 -> LAMBDA over the epochs (25 over 50 epochs is the "
                        "paper's code); 0 = off")
    s.add_argument("--latency-lut", default=None, metavar="FILE|auto",
                   help="latency lookup table (dartsfast profile --lut) whose expected latency joins the "
                        "architecture loss; auto: build it for this device at the start, kept in OUT")
    s.add_argument("--latency-weight", type=number, default=0.0, metavar="LAMBDA",
                   help="weight of the latency term (0: latency only reported in history.json)")
    s.add_argument("--latency-target", type=number, default=None, metavar="MS",
                   help="target latency in ms (constraint: penalise only above it; fbnet: the reference)")
    s.add_argument("--latency-form", choices=LATENCY_FORMS, default="proxyless",
                   help="proxyless: + lambda*E[ms]; constraint: + lambda*(1+mu)*relu(x), x=(D-T)/T, D the derived "
                        "network's latency; fbnet: loss*(E/ref)^lambda")
    s.add_argument("--latency-dual-lr", type=number, default=1.0, metavar="ETA",
                   help="constraint: step size of the multiplier that grows while the found network is over "
                        "the target and shrinks below it (dual ascent); 0 = lambda alone (default 1)")
    s.add_argument("--force-latency-lut", action="store_true",
                   help="use a table measured for another device, dtype, layout or space anyway")
    s.add_argument("--final-latency", action=argparse.BooleanOptionalAction, default=True,
                   help=f"with --latency-lut: time the found network at the end, beside the table's prediction, "
                        f"into OUT/{LATENCY_FILE} (default on)")
    s.add_argument("--augment", action="store_true", help="on-device crop (+ flip for cifar10) during search")
    s.add_argument("--synthetic-size", type=positive_int, default=2048, help="samples of --dataset synthetic")
    s.add_argument("--out", default="runs/search", help="output directory")
    s.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    s.add_argument("--overwrite", action="store_true", help="start afresh even if OUT has a checkpoint")
    s.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    s.set_defaults(handler=run)
    return s


def run(args: argparse.Namespace) -> int:
    config = SearchConfig(
        **common_settings(args), ops=args.ops, order=args.order, backend=args.backend,
        train_fraction=args.train_fraction, augment=args.augment, w_lr=args.w_lr, alpha_lr=args.alpha_lr,
        warmup_epochs=args.warmup_epochs, beta_decay=args.beta_decay,
        latency_lut=args.latency_lut, latency_weight=args.latency_weight, latency_target_ms=args.latency_target,
        latency_form=args.latency_form, latency_dual_lr=args.latency_dual_lr, latency_force=args.force_latency_lut,
        partial_channels=args.partial_channels, edge_batching=args.edge_batching, compile=args.compile,
        cuda_graph=args.cuda_graph, memory=args.memory, synthetic_size=args.synthetic_size, out=args.out,
        resume=args.resume, overwrite=args.overwrite, progress=args.progress, plots=args.plots)
    with num_threads(args.threads):
        result = search(config)
    last = result.history[-1]
    print(f"genotype ({args.out}/genotype.json):")
    print(result.genotype.to_json())
    print(f"search: {len(result.history)} epochs, final val acc {last['val_acc']:.4f}, "
          f"{last['images_per_s']:.0f} img/s")
    if result.latency is not None and args.final_latency and int(os.environ.get("RANK", "0")) == 0:
        with num_threads(args.threads):  # the threads the table was measured with
            record = final_latency(result)
        path = write_final_latency(args.out, record)
        print(f"latency ({path}): measured {record['measured_ms']:.3f} ms, predicted {record['predicted_ms']:.3f} ms "
              f"(constant {record['constant_ms']:.3f} ms), measured/predicted {record['ratio']:.3f}")
    return 0
