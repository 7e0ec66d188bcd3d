"""Figures logged with each run. Figure objects, not pyplot: no global state, no display needed."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

if TYPE_CHECKING:
    from mnistlab.reports.evaluation import Misclassified


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


def confusion_figure(counts: np.ndarray, title: str, class_names: Sequence[str] | None = None) -> Figure:
    """counts[true, predicted] as a heat map, the classes named by ``class_names`` (default: their numbers)."""
    fig = Figure(figsize=(7, 6.5), layout="constrained")
    fig.suptitle(title, fontsize=10, wrap=True)  # run names can be long
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax)
    classes = range(counts.shape[0])
    ax.set(
        xticks=classes,
        yticks=classes,
        xlabel="predicted",
        ylabel="true",
        title=f"{np.trace(counts) / counts.sum():.2%} of {counts.sum():,} test images correct",
    )
    if class_names is not None and list(class_names) != [str(i) for i in classes]:
        ax.set_xticklabels(class_names, rotation=45, ha="right", fontsize=8)
        ax.set_yticklabels(class_names, fontsize=8)
    threshold = counts.max() / 2
    for (row, col), n in np.ndenumerate(counts):  # inside the axes: the layout need not measure them
        color = "white" if n > threshold else "black"
        ax.text(col, row, str(n), ha="center", va="center", fontsize=8, color=color, in_layout=False)
    return fig


def misclassified_figure(shown: Misclassified, title: str) -> Figure:
    """The misclassified test images ``shown`` in a grid, each labelled true -> predicted. One
    image of tiles on one axes: 64 axes of their own took seconds to lay out and save."""
    columns = 8
    rows = max(1, math.ceil(len(shown.numbers) / columns))
    height, width = shown.images.shape[1:3]
    label = max(6, height // 3)  # a band above each tile for its label
    cell_h, cell_w = height + label, width + 2
    mosaic = np.zeros((rows * cell_h, columns * cell_w))  # 0: white under gray_r
    fig = Figure(figsize=(columns * 1.1, rows * 1.25 + 0.6), layout="constrained")
    first = f", the first {len(shown.numbers)} shown" if len(shown.numbers) < shown.wrong else ""
    fig.suptitle(
        f"{title}\n{shown.wrong:,} of {shown.total:,} test images misclassified{first} (true -> predicted)",
        fontsize=9,
        wrap=True,
    )
    ax = fig.subplots()
    ax.set_axis_off()
    for k, (image, number, true, predicted) in enumerate(
        zip(shown.images, shown.numbers, shown.labels, shown.predicted, strict=True)
    ):
        top, left = (k // columns) * cell_h + label, (k % columns) * cell_w + 1
        mosaic[top : top + height, left : left + width] = image.reshape(height, width)
        label_text = f"#{number}: {true} -> {predicted}"  # in its tile's band: no layout to measure it for
        ax.text(left + width / 2, top - 1, label_text, ha="center", va="bottom", fontsize=7, in_layout=False)
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    return fig


def comparison_figure(
    groups: Sequence[Any],
    labels: Sequence[str],
    curves: Mapping[str, Sequence[Sequence[float]]],
    title: str,
    metric: str = "test_accuracy",
    panels: str = "both",
) -> Figure:
    """Each configuration group's mean ``metric`` as a point with its 95% interval as an error bar
    (ranked, best on top; tied with the best filled, distinguishable hollow), and each group's
    validation accuracy per epoch: the mean over its runs, with a band from their min to max.
    ``curves`` maps a group id to its runs' curves; ``panels``: ``both``, ``points`` or ``curves``."""
    height = max(4.0, 0.34 * len(groups) + 1.6)
    fig = Figure(figsize=(14 if panels == "both" else 8, height), layout="constrained")
    fig.suptitle(title, fontsize=10, wrap=True)
    colours = [f"C{i % 10}" for i in range(len(groups))]  # one colour per group in both panels
    if panels == "both":
        points, lines = fig.subplots(1, 2, width_ratios=[1.2, 1])
    else:
        points = lines = fig.subplots()
    if panels in ("both", "points"):
        _interval_points(points, groups, labels, colours, metric)
    if panels in ("both", "curves"):
        _validation_bands(lines, groups, labels, curves, colours)
    return fig


def _interval_points(
    ax: Any, groups: Sequence[Any], labels: Sequence[str], colours: Sequence[str], metric: str
) -> None:
    positions = np.arange(len(groups))[::-1]  # rank 1 at the top
    for y, group, colour in zip(positions, groups, colours, strict=True):
        low, high = group.ci if group.ci is not None else (group.mean, group.mean)
        tied = group.rank == 1 or group.tied_with_best is not False
        ax.errorbar(
            group.mean,
            y,
            xerr=[[group.mean - low], [high - group.mean]],
            fmt="o",
            color=colour,
            markerfacecolor=colour if tied else "white",
            capsize=4,
            markersize=7,
        )
        ax.text(high, y, f"  {group.mean:.2%}" + (f" (n={group.n})" if group.n > 1 else ""), va="center", fontsize=8)
    ax.set_yticks(positions, [_short(label) for label in labels], fontsize=8)
    if groups:
        lows = [g.ci[0] if g.ci else g.mean for g in groups]
        highs = [g.ci[1] if g.ci else g.mean for g in groups]
        span = max(highs) - min(lows) or 0.002
        ax.set_xlim(min(lows) - 0.1 * span, max(highs) + 0.35 * span)  # room for the labels on the right
        ax.set_ylim(-0.7, len(groups) - 0.3)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set(
        xlabel=f"{metric.replace('_', ' ')}: mean and 95% interval",
        title=f"{metric.replace('_', ' ')} (ranked; hollow: distinguishable from #1)",
    )
    ax.grid(axis="x", alpha=0.3)


def _validation_bands(
    ax: Any,
    groups: Sequence[Any],
    labels: Sequence[str],
    curves: Mapping[str, Sequence[Sequence[float]]],
    colours: Sequence[str],
) -> None:
    drawn = 0
    for group, label, colour in zip(groups, labels, colours, strict=True):
        runs = [list(c) for c in curves.get(group.group_id, []) if len(c)]
        if not runs:
            continue
        epochs = min(len(c) for c in runs)  # runs stopped early shorten the band
        values = np.array([c[:epochs] for c in runs])
        x = np.arange(1, epochs + 1)
        ax.plot(x, values.mean(axis=0), "-o", color=colour, markersize=3, label=_short(label))
        if len(runs) > 1:
            ax.fill_between(x, values.min(axis=0), values.max(axis=0), color=colour, alpha=0.2)
        drawn += 1
    ax.set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy per epoch (mean; band: min-max)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    if drawn and len(groups) <= 20:
        ax.legend(fontsize=7)


def _short(name: str, limit: int = 60) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
