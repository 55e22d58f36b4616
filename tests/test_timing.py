"""dartsfast.timing: quantile arithmetic, the CPU timer, the copy ceiling, the
environment record and argument errors (the CUDA path is covered under the `gpu` marker)."""
import json
import math
import time

import pytest
import torch

from dartsfast import timing

# The timer's public names as dartsfast.profiling published them (they live in dartsfast.timing).
from dartsfast.profiling import TimingStats, environment_info, measure_copy_bandwidth, time_fn


def test_stats_from_known_samples():
    # Linear interpolation between ranks: for 1..4 the quartiles sit at 1.75 and 3.25.
    s = TimingStats.from_samples([4.0, 1.0, 3.0, 2.0])
    assert (s.min, s.q25, s.median, s.q75, s.mean, s.n) == (1.0, 1.75, 2.5, 3.25, 2.5, 4)
    assert s.iqr == pytest.approx(1.5)
    assert s.samples == (4.0, 1.0, 3.0, 2.0)  # call order kept, for drift checks
    one = TimingStats.from_samples([0.5])
    assert (one.min, one.q25, one.median, one.q75, one.iqr) == (0.5, 0.5, 0.5, 0.5, 0.0)
    assert "samples" not in s.to_dict() and s.to_dict(samples=True)["samples"] == [4.0, 1.0, 3.0, 2.0]


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [-1.0], [float("inf")]])
def test_stats_reject_bad_samples(bad):
    with pytest.raises(ValueError, match="sample"):
        TimingStats.from_samples(bad)


class FakeClock:
    """Stands in for ``time`` inside dartsfast.timing: ``perf_counter`` reads a
    counter that only the timed functions advance, so every duration is known exactly and
    nothing depends on how busy the machine is."""

    def __init__(self, tick_s: float = 0.0):
        self.now, self.tick_s = 100.0, tick_s

    def perf_counter(self) -> float:
        self.now += self.tick_s  # tick_s > 0: every read advances (for code we cannot edit)
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timing, "time", fake)
    return fake


def test_cpu_timer_measures_what_it_times(clock):
    durations = iter([0.5, 0.25] + [0.003, 0.001, 0.002, 0.009, 0.004, 0.006, 0.005, 0.008, 0.007])

    def work():
        clock.advance(next(durations))

    s = time_fn(work, warmup=2, repeats=9, device="cpu")
    assert next(durations, None) is None  # 2 warm-up + 9 timed calls, no more
    # The warm-up calls (0.5 s, 0.25 s) are not in the stats; the timed ones are, in call order.
    assert s.samples == pytest.approx((0.003, 0.001, 0.002, 0.009, 0.004, 0.006, 0.005, 0.008, 0.007))
    assert (s.min, s.q25, s.median, s.q75, s.n) == pytest.approx((0.001, 0.003, 0.005, 0.007, 9))


def test_cpu_timer_on_the_real_clock():
    # Real sleeps: only what holds however loaded the machine is (sleep never returns early).
    s = time_fn(lambda: time.sleep(0.002), warmup=1, repeats=3, device="cpu")
    assert s.n == 3 and 0.002 <= s.min <= s.median <= s.q75 and math.isfinite(s.q75)


def test_min_time_extends_the_repeats(clock):
    # Warm-up estimate 1 ms per call: 30 ms of timing needs 30 calls.
    s = time_fn(lambda: clock.advance(0.001), warmup=1, repeats=3, min_time_s=0.03, device="cpu")
    assert s.n == 30
    slow = time_fn(lambda: clock.advance(0.1), warmup=1, repeats=3, min_time_s=0.03, device="cpu")
    assert slow.n == 3  # calls longer than min_time_s: the repeats asked for, no fewer
    capped = time_fn(lambda: None, warmup=1, repeats=2, min_time_s=10.0, device="cpu", max_repeats=50)
    assert capped.n == 50  # a call that takes no time would need infinitely many


def test_copy_bandwidth_counts_read_plus_write(monkeypatch):
    # Each clock read advances 1 ms, so every timed copy "takes" exactly 1 ms.
    monkeypatch.setattr(timing, "time", FakeClock(tick_s=1e-3))
    assert measure_copy_bandwidth("cpu", 4 << 20, warmup=1, repeats=5) == pytest.approx(2 * (4 << 20) / 1e-3)


def test_copy_bandwidth_on_the_real_clock():
    bw = measure_copy_bandwidth("cpu", 4 << 20, warmup=1, repeats=5)
    assert 0 < bw < math.inf


@pytest.mark.timing
def test_copy_bandwidth_on_cpu_is_plausible():
    bw = measure_copy_bandwidth("cpu", 4 << 20, warmup=1, repeats=5)
    # Any machine copies faster than 100 MB/s and slower than 10 TB/s (wall-clock: not in CI).
    assert 1e8 < bw < 1e13


def test_environment_info_is_a_json_record():
    info = environment_info("cpu")
    json.dumps(info)
    assert info["torch"] == torch.__version__ and info["device_type"] == "cpu"
    assert info["cpu_count"] >= 1 and info["cpu_model"] and info["machine"]
    assert len(info["git_commit"]) in (0, 40)  # empty outside a git checkout


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(fn=1), TypeError, "fn must be callable"),
    (dict(warmup=-1), ValueError, "warmup must be an int"),
    (dict(repeats=0), ValueError, "repeats must be an int"),
    (dict(repeats=2.5), ValueError, "repeats must be an int"),
    (dict(min_time_s=-1.0), ValueError, "min_time_s must be"),
    (dict(min_time_s=float("inf")), ValueError, "min_time_s must be"),
    (dict(device="tpu"), ValueError, "device must be"),
    (dict(device="meta"), ValueError, "device must be"),
    (dict(repeats=10, max_repeats=5), ValueError, "max_repeats must be"),
])
def test_bad_arguments_raise_clear_errors(kwargs, error, message):
    args = dict(fn=lambda: None, warmup=0, repeats=3, device="cpu") | kwargs
    with pytest.raises(error, match=message):
        time_fn(args.pop("fn"), **args)


def test_bad_copy_arguments():
    with pytest.raises(ValueError, match="nbytes must be"):
        measure_copy_bandwidth("cpu", 10)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            measure_copy_bandwidth("cuda")


@pytest.mark.gpu
def test_cuda_timer_and_copy_ceiling():
    x = torch.randn(1 << 24, device="cuda")
    s = time_fn(lambda: x.mul_(1.0), warmup=3, repeats=20, device="cuda")
    assert s.n == 20 and 0 < s.min <= s.median <= s.q75
    batch = time_fn(lambda: x.mul_(1.0), warmup=3, repeats=20, device="cuda", per_repeat=False)
    assert batch.n == 1 and batch.median > 0
    bw = measure_copy_bandwidth("cuda")
    # An in-place scale of 64 MiB moves 128 MiB: it cannot beat the copy ceiling by much.
    assert 2 * x.numel() * 4 / s.median < 1.2 * bw


def test_quantile_matches_linear_interpolation():
    assert timing.quantile([4, 1, 3, 2], 0.25) == 1.75 and timing.quantile([5], 0.02) == 5
    with pytest.raises(ValueError):
        timing.quantile([], 0.5)
