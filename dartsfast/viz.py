"""Plots of a search: alphas per epoch, the final alphas per edge, loss and accuracy curves.

matplotlib is imported lazily with the Agg backend (no display needed, e.g. on CI), and
every PNG is written atomically like the other result files.
"""
from __future__ import annotations

import os
from typing import Sequence

from dartsfast._io import atomic_write
from dartsfast.cell_plots import alphas_gif, draw_genotype

ALPHAS_PNG = "alphas.png"
EDGES_PNG = "alphas_final.png"
CURVES_PNG = "curves.png"
GENOTYPE_PNG = "genotype.png"   # the last epoch's derived cells as graphs
ALPHAS_GIF = "alphas.gif"       # both cells' alphas, one frame per epoch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str, dpi: int = 110) -> None:
    """Write ``fig`` as PNG to ``path`` atomically and close it."""
    plt = _pyplot()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)


def _mean_over_edges(history: Sequence[dict], key: str) -> list[list[float]]:
    """[epoch][op]: the softmaxed alpha of each op averaged over a cell's edges."""
    rows = []
    for record in history:
        edges = record[key]
        rows.append([sum(e[k] for e in edges) / len(edges) for k in range(len(edges[0]))])
    return rows


def plot_alphas(history: Sequence[dict], ops: Sequence[str], path: str) -> None:
    """Mean softmaxed alpha per op over the epochs, normal and reduction cells side by side."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, key, title in ((axes[0], "alphas_normal", "normal cell"), (axes[1], "alphas_reduce", "reduction cell")):
        rows = _mean_over_edges(history, key)
        for k, name in enumerate(ops):
            ax.plot(epochs, [row[k] for row in rows], marker="o", markersize=3, label=name)
        ax.set_title(f"{title}: softmax(α) averaged over edges")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("weight")
    axes[1].legend(fontsize=8, loc="best")
    save_figure(fig, path)


def plot_final_alphas(record: dict, ops: Sequence[str], path: str) -> None:
    """Heat maps [edge × op] of the last epoch's softmaxed alphas."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * len(record["alphas_normal"]) + 2))
    for ax, key, title in ((axes[0], "alphas_normal", "normal"), (axes[1], "alphas_reduce", "reduce")):
        image = ax.imshow(record[key], aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(ops)), ops, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("edge")
        ax.set_title(f"{title} cell, epoch {record['epoch']}")
        fig.colorbar(image, ax=ax)
    save_figure(fig, path)


def plot_curves(history: Sequence[dict], path: str) -> None:
    """Loss and accuracy per epoch (train = weight-step batches, val = the alpha half)."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
    for split in ("train", "val"):
        ax_loss.plot(epochs, [r[f"{split}_loss"] for r in history], marker="o", markersize=3, label=split)
        ax_acc.plot(epochs, [r[f"{split}_acc"] for r in history], marker="o", markersize=3, label=split)
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path)


def plot_search(history: Sequence[dict], ops: Sequence[str], out: str) -> list[str]:
    """All search plots into directory ``out``; returns the paths written."""
    if not history:
        raise ValueError("plot_search needs at least one epoch of history")
    paths = [os.path.join(out, name) for name in (ALPHAS_PNG, EDGES_PNG, CURVES_PNG)]
    plot_alphas(history, ops, paths[0])
    plot_final_alphas(history[-1], ops, paths[1])
    plot_curves(history, paths[2])
    paths.append(os.path.join(out, ALPHAS_GIF))
    alphas_gif(history, ops, paths[-1])
    if history[-1].get("genotype") is not None:  # a history of an older version may lack it
        paths.append(os.path.join(out, GENOTYPE_PNG))
        draw_genotype(history[-1]["genotype"], paths[-1])
    return paths
