"""Minor page faults, user and system time of two seed steps after a warm-up step.

    python page_faults_probe.py {fast,lean} [tuned]

"tuned": glibc mallopt(M_MMAP_THRESHOLD, 256 MiB) and mallopt(M_TRIM_THRESHOLD, 1 GiB)
before torch is imported (see README section 4). Prints one JSON line.
"""
import ctypes
import json
import resource
import sys
import time

sys.path.insert(0, "/work/main")
if len(sys.argv) > 2 and sys.argv[2] == "tuned":
    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    libc.mallopt(M_MMAP_THRESHOLD, 256 << 20)  # large blocks from the heap, not fresh mappings
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)  # keep freed heap top instead of returning it

import torch  # noqa: E402  (after mallopt: torch's allocations must see the settings)

from dartsfast.bench.opcount import make_run  # noqa: E402

torch.set_num_threads(2)
run = make_run("seed", order=1, batch_size=None, memory=sys.argv[1], edge_batching=False)
sums = [torch.zeros(()) for _ in range(3)]
run.step(*sums)
out = []
for _ in range(2):
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    run.step(*sums)
    t = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out.append({"s": round(t, 2), "minflt": r1.ru_minflt - r0.ru_minflt,
                "sys_s": round(r1.ru_stime - r0.ru_stime, 2), "user_s": round(r1.ru_utime - r0.ru_utime, 2)})
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"mode": sys.argv[1:], "steps": out, "rss_mb": rss_mb}), flush=True)
