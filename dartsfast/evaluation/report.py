"""An evaluation's files, from its JSON form: evaluation.json, evaluation.md, evaluation.png.

Everything here reads the dict :meth:`dartsfast.evaluation.protocol.Evaluation.to_dict`
gives (the content of evaluation.json), so a report can be redrawn from a saved file.
All three are written atomically (:func:`dartsfast._io.atomic_write`).
"""
from __future__ import annotations

import os
from typing import Optional

from dartsfast._io import atomic_write, write_json
from dartsfast.viz import save_figure

EVALUATION_JSON = "evaluation.json"
EVALUATION_MD = "evaluation.md"
EVALUATION_PNG = "evaluation.png"


def write_evaluation_json(out: str, evaluation: dict) -> None:
    write_json(os.path.join(out, EVALUATION_JSON), evaluation)


def write_evaluation_files(out: str, evaluation: dict) -> None:
    """All three files into the directory ``out`` (which must exist)."""
    write_evaluation_json(out, evaluation)
    text = markdown_table(evaluation).encode()
    atomic_write(os.path.join(out, EVALUATION_MD), lambda f: f.write(text))
    plot_accuracies(evaluation, os.path.join(out, EVALUATION_PNG))


def format_count(n: Optional[int]) -> str:
    """12345678 -> '12.35M', 4321 -> '4.32k', 12 -> '12'."""
    if n is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f}{suffix}"
    return str(n)


def format_accuracy(mean: Optional[float], sd: Optional[float]) -> str:
    """'98.61 ± 0.42' in percent; a single run has no sd ('98.61 (one seed)')."""
    if mean is None:
        return "-"
    if sd is None:
        return f"{100 * mean:.2f} (one seed)"
    return f"{100 * mean:.2f} ± {100 * sd:.2f}"


def _latency(latency: Optional[dict]) -> str:
    if not latency:
        return "-"
    return f"{latency['median_ms']:.2f} ms (batch {latency['batch']}, {latency['device']})"


def markdown_table(evaluation: dict) -> str:
    """One row per genotype: test accuracy mean ± sample sd over the seeds, size, cost."""
    data = evaluation["dataset"]
    config = evaluation["train_config"]
    seeds = evaluation["seeds"]
    lines = [
        f"Test accuracy (%) on {data['name']} ({data['test']} test images), mean ± sample sd over "
        f"seeds {seeds[0]}..{seeds[-1]}; {config['layers']} cells, {config['channels']} channels, "
        f"{config['epochs']} epochs, batch {config['batch_size']}. Multiply-adds: conv and linear layers, "
        "one image, eval mode.",
        "",
        "| genotype | seeds | test acc (%) | params | multiply-adds | latency |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for e in evaluation["genotypes"]:
        label = e["label"].replace("|", "\\|")
        lines.append(f"| {label} | {len(e['test_acc'])} | {format_accuracy(e['test_acc_mean'], e['test_acc_sd'])} "
                     f"| {format_count(e['params'])} | {format_count(e['multiply_adds'])} | {_latency(e['latency'])} |")
    return "\n".join(lines) + "\n"


def plot_accuracies(evaluation: dict, path: str) -> None:
    """Test accuracy per genotype: each seed's run as a dot, the mean with a ± sd bar."""
    import matplotlib  # lazy: heavy and optional

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    entries = evaluation["genotypes"]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(entries) + 1.5), 4))
    for i, e in enumerate(entries):
        accs = [100 * a for a in e["test_acc"]]
        # Dots side by side (fixed offsets, no random jitter) so repeated values stay visible.
        offsets = [(k - (len(accs) - 1) / 2) * 0.06 for k in range(len(accs))]
        ax.scatter([i - 0.12 + o for o in offsets], accs, s=18, color="tab:blue", alpha=0.7,
                   label="one seed" if i == 0 else None, zorder=3)
        if accs:
            sd = 100 * e["test_acc_sd"] if e["test_acc_sd"] is not None else 0.0
            ax.errorbar([i + 0.12], [100 * e["test_acc_mean"]], yerr=[sd], fmt="s", color="black",
                        capsize=4, label="mean ± sd" if i == 0 else None, zorder=4)
    ax.set_xticks(range(len(entries)))
    ax.set_xticklabels([_short(e["label"]) for e in entries], rotation=20, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{evaluation['dataset']['name']}: test accuracy over {len(evaluation['seeds'])} seed(s)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    save_figure(fig, path)


def _short(label: str, width: int = 28) -> str:
    return label if len(label) <= width else "…" + label[-(width - 1):]
