"""Figures logged with each run. Figure objects, not pyplot: no global state, no display needed."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def learning_curves(history: dict[str, list[float]], title: str) -> Figure:
    """Loss and accuracy per epoch, training against validation."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    fig.suptitle(title, fontsize=10, wrap=True)
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy"), strict=True):
        for prefix, label, style in (("", "train", "-o"), ("val_", "validation", "-s")):
            values = history.get(prefix + metric)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=label)
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(labels * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)


def confusion_figure(counts: np.ndarray, title: str) -> Figure:
    fig = Figure(figsize=(7, 6.5), layout="constrained")
    fig.suptitle(title, fontsize=10, wrap=True)  # run names can be long
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax)
    classes = range(counts.shape[0])
    ax.set(xticks=classes, yticks=classes, xlabel="predicted", ylabel="true",
           title=f"{np.trace(counts) / counts.sum():.2%} of {counts.sum():,} test images correct")
    threshold = counts.max() / 2
    for (row, col), n in np.ndenumerate(counts):
        ax.text(col, row, str(n), ha="center", va="center", fontsize=8,
                color="white" if n > threshold else "black")
    return fig
