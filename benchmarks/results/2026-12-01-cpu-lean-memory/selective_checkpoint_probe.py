"""Step times, peak RSS and peak live bytes of the seed step in one memory mode.

    DARTSFAST_LEAN_SAVE={dense_conv,all_conv} python selective_checkpoint_probe.py {fast,lean}

(the variable is read by selective_checkpoint_variant.diff, applied to the tree). One JSON line.
"""
import json
import os
import resource
import sys
import time

sys.path.insert(0, "/work/main")
import torch  # noqa: E402

from dartsfast.bench.live_memory import peak_live_bytes  # noqa: E402
from dartsfast.bench.opcount import make_run  # noqa: E402

torch.set_num_threads(2)
run = make_run("seed", order=1, batch_size=None, memory=sys.argv[1], edge_batching=False)
sums = [torch.zeros(()) for _ in range(3)]
run.step(*sums)
times = []
for _ in range(2):
    t0 = time.perf_counter()
    run.step(*sums)
    times.append(time.perf_counter() - t0)
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
live_mb = peak_live_bytes(lambda: run.step(*sums)) / 2**20
print(json.dumps({"mode": sys.argv[1], "save": os.environ.get("DARTSFAST_LEAN_SAVE", ""), "step_s": times,
                  "peak_rss_mb": rss_mb, "peak_live_mb": live_mb}), flush=True)
