"""Datasets as device-resident tensors, and a data pipeline that never leaves the device.

At DARTS search shapes (16-channel cells on 28-32 px images) a step is launch-bound
(DESIGN §4): a host-side DataLoader with per-image PIL transforms and worker processes
is the bottleneck users complain about (GPUs 8-25% busy). So every dataset is decoded
once into normalised float32 tensors, moved to the device once (CIFAR-10 train is 614 MB
in fp32), and batches are drawn with ``randperm`` + ``index_select`` on that device;
augmentation is batched tensor arithmetic seeded by a ``torch.Generator``.

Datasets (``DATASETS``):
  ``digits``         scikit-learn's bundled 8x8 digits (1797 images, no download) upsampled.
  ``fashion-mnist``  torchvision's FashionMNIST layout in ``data_dir`` (idx files, checked by ``files``).
  ``cifar10``        torchvision's CIFAR10 layout in ``data_dir`` (pickles read safely by ``files``).
  ``synthetic``      seeded class-prototype images + noise (tests, benchmarks).
  ``imagefolder``    the user's own ``D/train/<class>/...`` (+ ``test/`` or ``val/``) image folder,
                     device-resident when its decoded set fits the data budget, else streamed.

Modules: ``datasets`` (loading, the train/val split), ``files`` (reading and checking
the dataset files, a ValueError naming a bad one), ``augment`` (batched crop, flip,
cutout), ``batches`` (``DeviceBatches``); for image folders ``folders`` (scan and checks),
``decode`` (PIL decoding, statistics), ``imagefolder`` (the source, resident or streamed),
``stream`` (``StreamedBatches``), ``splits`` (resident / streamed sample sets) and
``sources`` (a run's train and test sets); their public names are importable from here.
"""
from dartsfast.data.augment import Augment, cutout, default_augment, random_crop_flip
from dartsfast.data.batches import DeviceBatches
from dartsfast.data.datasets import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DATASETS,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    ImageDataset,
    load_dataset,
    make_synthetic,
    split_indices,
    split_train_val,
)
from dartsfast.data.folders import FolderScan, scan_image_folder
from dartsfast.data.imagefolder import ImageFolderSource
from dartsfast.data.sources import RunData, open_run_data
from dartsfast.data.splits import StreamSplit, TensorSplit
from dartsfast.data.stream import StreamedBatches

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "DATASETS", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "Augment",
           "DeviceBatches", "FolderScan", "ImageDataset", "ImageFolderSource", "RunData", "StreamSplit",
           "StreamedBatches", "TensorSplit", "cutout", "default_augment", "load_dataset", "make_synthetic",
           "open_run_data", "random_crop_flip", "scan_image_folder", "split_indices", "split_train_val"]
