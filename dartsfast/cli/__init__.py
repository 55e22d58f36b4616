"""The ``dartsfast`` command (also ``python -m dartsfast``).

    dartsfast search --dataset digits --epochs 10 --out runs/digits
    dartsfast train --genotype runs/digits/genotype.json --out runs/digits/train

Usage errors — bad flags or values, unknown op names, a missing data directory, an
unusable checkpoint — print ``dartsfast <command>: error: ...`` and exit with status 2
(argparse's convention); a search that diverges exits with 1.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from typing import Callable, Optional, Sequence

from dartsfast import backend
from dartsfast._argtypes import number, positive_int
from dartsfast.data import DATASETS
from dartsfast.runtime import AMP_MODES
from dartsfast.search.space import DEFAULT_OPS, available_ops, check_op_names

EXIT_USAGE = 2
EXIT_FAILURE = 1

# Subcommands that live next to their code: each module defines
# ``add_parser(subparsers) -> argparse.ArgumentParser`` and sets ``handler`` (args -> exit code)
# with ``set_defaults``. Imported when the parser is built.
_SUBCOMMAND_MODULES: tuple = ("dartsfast.profiling.profile_command", "dartsfast.profiling.bench_command")


def _op_list(text: str) -> tuple:
    try:
        return check_op_names(tuple(s.strip() for s in text.split(",") if s.strip()))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_common(p: argparse.ArgumentParser, *, epochs: int, batch_size: int, layers: int, channels: int) -> None:
    """Flags shared by search and train: data, size, precision, device, seed, output."""
    p.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="digits is embedded (scikit-learn); fashion-mnist/cifar10 read --data-dir")
    p.add_argument("--data-dir", default=None, help="directory of the torchvision dataset files")
    p.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    p.add_argument("--image-size", type=positive_int, default=None, help="resize images to this side")
    p.add_argument("--epochs", type=positive_int, default=epochs)
    p.add_argument("--batch-size", type=positive_int, default=batch_size)
    p.add_argument("--layers", type=positive_int, default=layers, help="cells in the network")
    p.add_argument("--channels", type=positive_int, default=channels, help="channels of the first cell")
    p.add_argument("--amp", choices=AMP_MODES, default="off", help="autocast dtype (fp16 adds a GradScaler)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC activations (default: on for CUDA)")
    p.add_argument("--backend", choices=backend.BACKENDS, default=None,
                   help="fused-op implementation (default: $DARTSFAST_BACKEND or auto)")
    p.add_argument("--device", default="auto", help="'auto' (CUDA if visible), 'cpu', 'cuda:1', ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-train-samples", type=positive_int, default=None,
                   help="use only the first N training samples (quick runs)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dartsfast", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("search", help="DARTS search; writes genotype.json, history.json, plots, checkpoint.pt",
                       description="Differentiable architecture search over a supernet of the chosen ops.")
    _add_common(s, epochs=50, batch_size=64, layers=8, channels=16)
    s.add_argument("--ops", type=_op_list, default=tuple(DEFAULT_OPS),
                   help=f"comma-separated candidate ops (default {','.join(DEFAULT_OPS)}; "
                        f"available: {','.join(available_ops())})")
    s.add_argument("--order", type=int, choices=(1, 2), default=1, help="1 = first order, 2 = unrolled")
    s.add_argument("--partial-channels", type=positive_int, default=1, help="PC-DARTS K (1 = off)")
    s.add_argument("--train-fraction", type=number, default=0.5, help="share of the training set for weights")
    s.add_argument("--w-lr", type=number, default=0.025, help="weights' SGD learning rate")
    s.add_argument("--alpha-lr", type=number, default=3e-4, help="alphas' Adam learning rate")
    s.add_argument("--augment", action="store_true", help="on-device crop (+ flip for cifar10) during search")
    s.add_argument("--synthetic-size", type=positive_int, default=2048, help="samples of --dataset synthetic")
    s.add_argument("--out", default="runs/search", help="output directory")
    s.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    s.add_argument("--overwrite", action="store_true", help="start afresh even if OUT has a checkpoint")
    s.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    s.set_defaults(handler=_run_search)

    t = sub.add_parser("train", help="train the network of a genotype from scratch and report test accuracy",
                       description="Train the discrete network a genotype describes (DARTS evaluation).")
    t.add_argument("--genotype", required=True, help="genotype.json (or the search directory holding it)")
    _add_common(t, epochs=20, batch_size=96, layers=8, channels=16)
    t.add_argument("--lr", type=number, default=0.025)
    t.add_argument("--weight-decay", type=number, default=3e-4)
    t.add_argument("--drop-path", type=number, default=0.2, help="drop-path probability (ramped up)")
    t.add_argument("--auxiliary", action="store_true", help="auxiliary head at 2/3 depth")
    t.add_argument("--cutout", type=int, default=0, help="cutout square side (0 = off)")
    t.add_argument("--no-augment", dest="augment", action="store_false", help="no random crop/flip")
    t.add_argument("--out", default=None, help="directory for model.pt and train_history.json")
    t.set_defaults(handler=_run_train)
    for module in _SUBCOMMAND_MODULES:
        importlib.import_module(module).add_parser(sub)
    return parser


def _run_search(args: argparse.Namespace) -> int:
    from dartsfast.search.config import SearchConfig
    from dartsfast.search.loop import search

    config = SearchConfig(
        dataset=args.dataset, data_dir=args.data_dir, download=args.download, image_size=args.image_size,
        epochs=args.epochs, batch_size=args.batch_size, layers=args.layers, channels=args.channels,
        ops=args.ops, order=args.order, amp=args.amp, channels_last=args.channels_last,
        backend=args.backend, seed=args.seed, train_fraction=args.train_fraction, augment=args.augment,
        w_lr=args.w_lr, alpha_lr=args.alpha_lr, partial_channels=args.partial_channels,
        device=args.device, max_train_samples=args.max_train_samples, synthetic_size=args.synthetic_size,
        out=args.out, resume=args.resume, overwrite=args.overwrite, progress=args.progress, plots=args.plots)
    result = search(config)
    last = result.history[-1]
    print(f"genotype ({args.out}/genotype.json):")
    print(result.genotype.to_json())
    print(f"search: {len(result.history)} epochs, final val acc {last['val_acc']:.4f}, "
          f"{last['images_per_s']:.0f} img/s")
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from dartsfast.train import TrainConfig, train

    config = TrainConfig(
        dataset=args.dataset, data_dir=args.data_dir, download=args.download, image_size=args.image_size,
        epochs=args.epochs, batch_size=args.batch_size, channels=args.channels, layers=args.layers,
        lr=args.lr, weight_decay=args.weight_decay, drop_path_prob=args.drop_path, auxiliary=args.auxiliary,
        cutout=args.cutout, augment=args.augment, amp=args.amp, channels_last=args.channels_last,
        device=args.device, seed=args.seed, max_train_samples=args.max_train_samples, out=args.out)
    use = backend.use_backend(args.backend) if args.backend else contextlib.nullcontext()
    with use:
        result = train(args.genotype, config, progress=args.progress)
    print(f"test accuracy: {result.test_acc:.4f} ({100 * result.test_acc:.2f}%)"
          + (f"; model and history in {args.out}" if args.out else ""))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    from dartsfast.search.checkpoint import CheckpointError

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


if __name__ == "__main__":
    sys.exit(main())
