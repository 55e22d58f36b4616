"""peak_live_bytes against allocations whose sizes the test chooses at random."""
import random

import pytest
import torch

from dartsfast.bench.live_memory import peak_live_bytes


def test_the_peak_is_the_most_bytes_alive_at_once():
    rng = random.Random()
    sizes = [rng.randrange(1, 3_000_000) for _ in range(6)]  # float32 elements
    kept_outside = []

    def work():
        alive, peak_elements = [], 0
        for i, n in enumerate(sizes):
            alive.append(torch.empty(n))
            peak_elements = max(peak_elements, sum(t.numel() for t in alive))
            if i % 2:  # free the oldest every other step, so the peak is not simply the sum
                alive.pop(0)
        kept_outside.append(peak_elements)

    measured = peak_live_bytes(work)
    # torch's CPU allocator rounds nothing: each tensor allocates exactly 4 * n bytes.
    assert measured == 4 * kept_outside[0]


def test_tensors_alive_before_the_call_do_not_count():
    before = torch.empty(4_000_000)  # 16 MB alive throughout
    assert peak_live_bytes(lambda: torch.empty(1000) + 1) <= 3 * 4000
    del before


def test_a_device_it_cannot_measure_is_named():
    with pytest.raises(ValueError, match="meta"):
        peak_live_bytes(lambda: None, "meta")
