"""Figures logged with each run. Figure objects, not pyplot: no global state, no display needed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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


def comparison_figure(rows: Sequence[Any], labels: Sequence[str], curves: Mapping[str, Sequence[float]],
                      title: str, panels: str = "both") -> Figure:
    """Test accuracy per run as bars (ranked, best on top; runs without a score marked as such)
    and every run's validation accuracy per epoch, overlaid; ``labels`` name the rows.
    ``panels``: ``both`` side by side, or only ``bars`` or ``curves``."""
    height = max(4.0, 0.32 * len(rows) + 1.5)
    fig = Figure(figsize=(14 if panels == "both" else 8, height), layout="constrained")
    fig.suptitle(title, fontsize=10, wrap=True)
    colours = [f"C{i % 10}" for i in range(len(rows))]  # one colour per run in both panels
    if panels == "both":
        bars, lines = fig.subplots(1, 2, width_ratios=[1.2, 1])
    else:
        bars = lines = fig.subplots()
    if panels in ("both", "bars"):
        _accuracy_bars(bars, rows, labels, colours)
    if panels in ("both", "curves"):
        _validation_curves(lines, rows, labels, curves, colours)
    return fig


def _accuracy_bars(ax: Any, rows: Sequence[Any], labels: Sequence[str], colours: Sequence[str]) -> None:
    positions = np.arange(len(rows))[::-1]  # rank 1 at the top
    scores = [row.test_accuracy if row.scored else 0.0 for row in rows]
    ax.barh(positions, scores, color=colours)
    ax.set_yticks(positions, [_short(label) for label in labels], fontsize=8)
    scored = [s for s, row in zip(scores, rows, strict=True) if row.scored]
    low = min(scored) if scored else 0.0  # zoom in on the differences, leaving room below the worst
    ax.set_xlim(max(0.0, low - (1 - low) * 0.5 - 0.005) if scored else 0.0, 1.0)
    for y, score, row in zip(positions, scores, rows, strict=True):
        label = f"{score:.2%}" if row.scored else row.status
        ax.text(score if row.scored else ax.get_xlim()[0], y, f" {label}", va="center", fontsize=8)
    ax.set(xlabel="test accuracy", title="test accuracy (ranked)")
    ax.grid(axis="x", alpha=0.3)


def _validation_curves(ax: Any, rows: Sequence[Any], labels: Sequence[str], curves: Mapping[str, Sequence[float]],
                       colours: Sequence[str]) -> None:
    for row, label, colour in zip(rows, labels, colours, strict=True):
        values = curves.get(row.run_id)
        if values:
            style = "-o" if row.scored else "--x"
            ax.plot(range(1, len(values) + 1), values, style, color=colour, markersize=3, label=_short(label))
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy per epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    if curves and len(rows) <= 20:
        ax.legend(fontsize=7)


def _short(name: str, limit: int = 60) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
