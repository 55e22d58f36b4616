"""Benchmark-regression tracking: the suites ``dartsfast bench run`` times (each benchmark
interleaved with a calibration workload), the statistics ``bench compare`` gates on,
baselines made of several runs, and the JSON-lines history.

    runner     run_suite: time a suite, return its result document
    suites     which benchmarks, at what sizes (quick: CPU/CI; full: GPUs)
    stats      compare two documents: thresholds, verdicts, the Markdown table
    baselines  benchmark identity across runs; merge runs into a baseline
    history    append-only history file and its plot

Records and documents follow :mod:`dartsfast.records`; the timer is :mod:`dartsfast.timing`.
The command line is :mod:`dartsfast.cli.bench`.
"""
