"""PNG charts of a profile: latency per stage for both blocks, and the roofline.

matplotlib is imported lazily with the Agg backend. Figures are written atomically at
exactly ``size`` pixels (width, height): no ``bbox_inches="tight"``, which would change
the size; the layout engine keeps labels inside the canvas instead.
"""
from __future__ import annotations

from typing import Sequence

from dartsfast._io import atomic_write
from dartsfast.profiling.report import BLOCK_LABELS, stage_latencies

DEFAULT_SIZE = (1200, 700)
DPI = 100
IMPL_COLORS = {"eager": "tab:blue", "fused": "tab:green", "compile": "tab:orange"}
BLOCK_MARKERS = {"mbconv": "o", "fused_mbconv": "s", "dsconv": "^"}
BLOCK_HATCH = {"mbconv": "", "fused_mbconv": "//", "dsconv": ".."}


def _pyplot():
    import matplotlib  # heavy optional dependency: loaded only when a plot is drawn

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def check_size(size) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"plot size must be (width, height) in pixels, got {size!r}") from None
    if not (50 <= w <= 10000 and 50 <= h <= 10000):
        raise ValueError(f"plot size must be 50–10000 pixels a side, got {w}x{h}")
    return w, h


def parse_size(text: str) -> tuple[int, int]:
    """'1200x700' → (1200, 700)."""
    parts = str(text).lower().split("x")
    if len(parts) != 2:
        raise ValueError(f"plot size must look like 1200x700 (width x height pixels), got {text!r}")
    try:
        return check_size((int(parts[0]), int(parts[1])))
    except ValueError:
        raise ValueError(f"plot size must look like 1200x700 (width x height pixels), got {text!r}") from None


def _figure(size, ncols: int = 1):
    plt = _pyplot()
    w, h = check_size(size)
    fig, axes = plt.subplots(1, ncols, figsize=(w / DPI, h / DPI), dpi=DPI, layout="constrained", squeeze=False)
    return plt, fig, axes[0]


def _save(plt, fig, path: str) -> None:
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))
    finally:
        plt.close(fig)


def _ok(records):
    return [r for r in records if r["status"] == "ok"]


def _pick(records, dtype, layout, batch):
    """The records of one (dtype, layout, batch), defaulting to the first one timed."""
    ok = _ok(records)
    if not ok:
        return []
    first = ok[0]
    dtype, layout, batch = dtype or first["dtype"], layout or first["layout"], batch or first["batch"]
    return [r for r in records if (r["dtype"], r["layout"], r["batch"]) == (dtype, layout, batch)]


def plot_stage_latency(records: Sequence[dict], path: str, *, size=DEFAULT_SIZE, dtype: str | None = None,
                       layout: str | None = None, batch: int | None = None) -> None:
    """Grouped bars: latency of every stage (Σ count × median) per block and impl, one panel
    per mode, for one dtype / layout / batch (default: the first timed)."""
    chosen = _pick(records, dtype, layout, batch)
    lat = stage_latencies(chosen)
    modes = list(dict.fromkeys(r["mode"] for r in chosen)) or ["(no records)"]
    plt, fig, axes = _figure(size, len(modes))
    for ax, mode in zip(axes, modes):
        groups = [(g, v) for g, v in lat.items() if g[4] == mode]
        stages = list(dict.fromkeys(f"{g[0]}\n{g[1]}" for g, _ in groups))
        series = list(dict.fromkeys(key for _, v in groups for key in v))
        width = 0.8 / max(1, len(series))
        for j, (block, impl) in enumerate(series):
            xs, ys = [], []
            for i, stage in enumerate(stages):
                for g, v in groups:
                    if f"{g[0]}\n{g[1]}" == stage and (block, impl) in v:
                        xs.append(i - 0.4 + width * (j + 0.5))
                        ys.append(v[(block, impl)] * 1e3)
            ax.bar(xs, ys, width, color=IMPL_COLORS.get(impl, "gray"), hatch=BLOCK_HATCH.get(block, ""),
                   edgecolor="black", linewidth=0.5, label=f"{BLOCK_LABELS.get(block, block)} {impl}")
        ax.set_xticks(range(len(stages)), stages, fontsize=8)
        ax.set_ylabel("stage latency (ms, Σ count × median)")
        if any(v for _, v in groups):
            ax.set_yscale("log")
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no stage with every position timed", ha="center", transform=ax.transAxes)
        first = chosen[0] if chosen else {}
        ax.set_title(f"{mode}: {first.get('dtype', '')} {first.get('layout', '')} batch {first.get('batch', '')}"
                     f" on {first.get('device', '')[:40]}", fontsize=9)
        ax.grid(axis="y", alpha=0.3, which="both")
    _save(plt, fig, path)


def plot_roofline(records: Sequence[dict], ceilings: dict, path: str, *, size=DEFAULT_SIZE) -> None:
    """Every timed record as a point (arithmetic intensity, achieved TFLOP/s) under the
    measured roofs min(matmul ceiling, intensity × copy bandwidth), one per dtype."""
    plt, fig, axes = _figure(size)
    ax = axes[0]
    ok = _ok(records)
    for r in ok:
        filled = r["mode"] == "training"
        color = IMPL_COLORS.get(r["impl"], "gray")
        ax.scatter(r["arithmetic_intensity"], r["tflops_per_s"], marker=BLOCK_MARKERS.get(r["block"], "x"),
                   s=36, facecolors=color if filled else "none", edgecolors=color, linewidths=1.2)
    intensities = [r["arithmetic_intensity"] for r in ok] or [1.0, 100.0]
    lo, hi = min(intensities) / 4, max(intensities) * 4
    bandwidth = ceilings.get("bandwidth_bytes_per_s")
    styles = iter(("-", "--", ":", "-."))
    for dtype, peak in (ceilings.get("compute_flops_per_s") or {}).items():
        if not peak or not bandwidth:
            continue
        xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
        ax.plot(xs, [min(peak, x * bandwidth) / 1e12 for x in xs], "k", linestyle=next(styles, "-"),
                linewidth=1, label=f"roof {dtype}: {peak / 1e12:.1f} TFLOP/s, {bandwidth / 1e9:.0f} GB/s")
    for block, marker in BLOCK_MARKERS.items():
        if any(r["block"] == block for r in ok):
            ax.scatter([], [], marker=marker, facecolors="none", edgecolors="k", label=BLOCK_LABELS[block])
    for impl, color in IMPL_COLORS.items():
        if any(r["impl"] == impl for r in ok):
            ax.scatter([], [], marker="o", color=color, label=f"{impl} (filled: training)")
    ax.set_xscale("log")
    if ok and all(r["tflops_per_s"] > 0 for r in ok):
        ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / minimum byte)")
    ax.set_ylabel("achieved TFLOP/s")
    device = ok[0]["device"] if ok else ""
    ax.set_title(f"roofline on {device[:60]}: {len(ok)} block measurements", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    _save(plt, fig, path)
