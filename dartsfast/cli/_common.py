"""Flags ``dartsfast search`` and ``dartsfast train`` share: data, size, precision, device, seed."""
from __future__ import annotations

import argparse

from dartsfast import backend
from dartsfast.cli._argtypes import non_negative_int, number, positive_int, seed
from dartsfast.config import IMAGE_MODES, MAX_SEED
from dartsfast.data import DATASETS
from dartsfast.runtime import AMP_MODES


def add_common(p: argparse.ArgumentParser, *, epochs: int, batch_size: int, layers: int, channels: int) -> None:
    """Flags shared by search and train: data, size, precision, device, seed, output."""
    p.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="digits is embedded (scikit-learn); fashion-mnist/cifar10 read --data-dir; "
                        "imagefolder: your own --data-dir D with D/train/<class>/<images> (+ test/ or val/)")
    p.add_argument("--data-dir", default=None, help="directory of the torchvision dataset files, or the image folder")
    p.add_argument("--download", action="store_true", help="let torchvision download the dataset")
    p.add_argument("--image-size", type=positive_int, default=None,
                   help="resize images to this side (imagefolder: shorter side resized, centre crop; "
                        "default min(32, the median shorter side))")
    p.add_argument("--image-mode", choices=IMAGE_MODES, default="auto",
                   help="imagefolder channels: auto (gray if all are, colour if all are), rgb or gray")
    p.add_argument("--data-memory-gb", type=number, default=None,
                   help="imagefolder: device memory the decoded set may take to stay resident (default "
                        "a quarter of the device's memory; 0 = always stream from the files)")
    p.add_argument("--data-workers", type=non_negative_int, default=None,
                   help="imagefolder streamed: DataLoader workers per iterator (default half the cores, 1-4)")
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
    p.add_argument("--seed", type=seed, default=0, help=f"random seed in [0, {MAX_SEED}]")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's, all cores; give each of several "
                        "runs sharing a machine its share, e.g. --threads 1 on 2 cores)")
    p.add_argument("--max-train-samples", type=positive_int, default=None,
                   help="use only the first N training samples (quick runs)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def common_settings(args: argparse.Namespace) -> dict:
    """The values of :func:`add_common`'s flags that SearchConfig and TrainConfig both take."""
    return dict(dataset=args.dataset, data_dir=args.data_dir, download=args.download, image_size=args.image_size,
                epochs=args.epochs, batch_size=args.batch_size, layers=args.layers, channels=args.channels,
                amp=args.amp, channels_last=args.channels_last, device=args.device, seed=args.seed,
                max_train_samples=args.max_train_samples, image_mode=args.image_mode,
                data_memory_gb=args.data_memory_gb, data_workers=args.data_workers)


def add_train_settings(p: argparse.ArgumentParser) -> None:
    """The training flags of ``dartsfast train``, with its defaults."""
    p.add_argument("--lr", type=number, default=0.025)
    p.add_argument("--weight-decay", type=number, default=3e-4)
    p.add_argument("--drop-path", type=number, default=0.2, help="drop-path probability (ramped up)")
    p.add_argument("--auxiliary", action="store_true", help="auxiliary head at 2/3 depth")
    p.add_argument("--cutout", type=int, default=0, help="cutout square side (0 = off)")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no random crop/flip")


def train_settings(args: argparse.Namespace) -> dict:
    """TrainConfig's fields from :func:`add_common`'s and :func:`add_train_settings`' flags."""
    return dict(common_settings(args), lr=args.lr, weight_decay=args.weight_decay, drop_path_prob=args.drop_path,
                auxiliary=args.auxiliary, cutout=args.cutout, augment=args.augment)
