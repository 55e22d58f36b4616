"""Does the streamed image-folder path keep up with a search step? (issue 16, item 2)

Writes a CIFAR-10-like folder (32x32 RGB PNG, ``--images`` of them over 10 classes:
prototype colour field + noise) to a temporary directory, runs a short search on it with
the streamed path (``data_memory_gb=0``: DataLoader workers decode every batch) and then
the same search device-resident, and reports per epoch the host time the steps waited
for batches (``data_wait_s``) against the epoch's stepping time (``train_time_s``).
Target: data_wait_s <= 10% of train_time_s on the streamed path.

    python benchmarks/bench_streaming.py --out benchmarks/results/2026-11-30-cpu-streaming/streaming.json

The JSON holds both runs' per-epoch records (timing fields only), the settings, the
versions, the CPU count and the other processes busy on the machine when it started.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # benchmark this checkout even without `pip install -e .`
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from dartsfast.search import SearchConfig, search  # noqa: E402

KEYS = ("epoch", "epoch_time_s", "train_time_s", "data_wait_s", "images_per_s", "skipped_images", "val_acc")


def write_folder(root: Path, images: int, classes: int = 10, side: int = 32, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    protos = rng.uniform(40, 215, (classes, 4, 4, 3))
    for i in range(images):
        c = i % classes
        field = np.asarray(Image.fromarray(protos[c].astype(np.uint8)).resize((side, side), Image.BILINEAR))
        pixels = np.clip(field + rng.normal(0, 40, (side, side, 3)), 0, 255).astype(np.uint8)
        path = root / "train" / f"class_{c}" / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)


def busy_processes() -> list[str]:
    """Other processes using the CPU when the benchmark starts (ps, top 5 by %CPU)."""
    try:
        out = subprocess.run(["ps", "-eo", "pcpu,args", "--sort=-pcpu"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()[1:]
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip()[:160] for line in out[:7] if "ps -eo" not in line and "bench_streaming" not in line][:5]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="JSON file for the results")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers per iterator (default: auto)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    others = busy_processes()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_folder(Path(tmp), args.images)
        made = time.perf_counter() - t0
        for name, memory_gb in (("streamed", 0), ("resident", None)):
            config = SearchConfig(dataset="imagefolder", data_dir=tmp, data_memory_gb=memory_gb,
                                  data_workers=args.workers, image_size=32, layers=args.layers,
                                  channels=args.channels, batch_size=args.batch_size, epochs=args.epochs,
                                  augment=True, device="cpu", progress=False, plots=False)
            history = search(config).history
            runs[name] = [{k: r[k] for k in KEYS} for r in history]
            for r in runs[name]:
                r["wait_share"] = r["data_wait_s"] / r["train_time_s"]
                print(f"{name:9s} epoch {r['epoch']}: train {r['train_time_s']:.1f} s, data wait "
                      f"{r['data_wait_s']:.3f} s ({100 * r['wait_share']:.2f}%), {r['images_per_s']:.1f} img/s")
    doc = {"benchmark": "bench_streaming", "settings": vars(args), "folder_written_s": made,
           "steps_per_epoch": (args.images - args.images // 10) // 2 // args.batch_size,
           "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
           "python": platform.python_version(), "machine": platform.machine(), "busy_at_start": others,
           "runs": runs, "target": "streamed data_wait_s <= 0.10 * train_time_s every epoch",
           "met": all(r["wait_share"] <= 0.10 for r in runs["streamed"])}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"target met: {doc['met']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
