"""Runs side by side: read them from the MLflow store, rank them, and render the table and figure.

One place for it, used by a sweep's summary (logged to its parent run) and by ``mnistlab compare``.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Sequence

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from mnistlab.sweep import ROLE_TAG, SWEEP_ROLE, Sweep

_ITEM = re.compile(r",(?=[\w.+~/@-]+=)")  # the commas that separate override_dirname's key=value items
CURVE = "val_accuracy"  # the per-epoch curve the figure overlays
COLUMNS = ("rank", "run", "status", "params", "test_accuracy", "test_loss", "train_time_s", "run_id")


@dataclass(frozen=True)
class RunRow:
    """One run as the comparison shows it; metrics are None when the run did not log them."""

    run_id: str
    name: str
    status: str
    num_params: int | None
    test_accuracy: float | None
    test_loss: float | None
    train_time_s: float | None
    job: str | None = None  # number of the job in its sweep
    failure_reason: str = ""
    start_time: int = 0

    @classmethod
    def of(cls, run: Run) -> RunRow:
        metrics, tags = run.data.metrics, run.data.tags
        params = metrics.get("num_params")
        # a trial an Optuna pruner stopped early finished, but is not comparable with the others
        status = "PRUNED" if tags.get("optuna.state") == "PRUNED" else run.info.status
        return cls(run_id=run.info.run_id, name=run.info.run_name or run.info.run_id, status=status,
                   num_params=int(params) if params is not None else None,
                   test_accuracy=metrics.get("test_accuracy"), test_loss=metrics.get("test_loss"),
                   train_time_s=metrics.get("train_time_s"), job=tags.get("sweep.job"),
                   failure_reason=tags.get("failure_reason") or (
                       f"pruned by Optuna after epoch {tags.get('optuna.pruned_at_epoch', '?')}"
                       if status == "PRUNED" else ""),
                   start_time=run.info.start_time or 0)

    @property
    def scored(self) -> bool:
        return self.status == "FINISHED" and self.test_accuracy is not None and math.isfinite(self.test_accuracy)


def common_overrides(rows: Sequence[RunRow]) -> list[str]:
    """``key=value`` items that every run's name shares (a sweep's fixed overrides)."""
    if len(rows) < 2:
        return []
    items = [_ITEM.split(row.name) for row in rows]
    shared = set(items[0]).intersection(*items[1:])
    return [item for item in items[0] if item in shared]


def short_names(rows: Sequence[RunRow]) -> dict[str, str]:
    """Run names without the shared items, so that what differs between runs stands out."""
    shared = set(common_overrides(rows))
    return {row.run_id: ",".join(i for i in _ITEM.split(row.name) if i not in shared) or row.name for row in rows}


def rank(rows: Iterable[RunRow]) -> list[RunRow]:
    """Finished runs by test accuracy (best first; ties: fewer parameters, then earlier), then the rest."""
    def key(row: RunRow) -> tuple:
        if row.scored:
            return (0, -row.test_accuracy, row.num_params or 0, row.start_time)
        return (1, 0.0, 0, row.start_time)

    return sorted(rows, key=key)


def find_runs(client: MlflowClient, experiment_ids: Sequence[str], filter_string: str = "",
              max_results: int = 1000) -> list[RunRow]:
    """The runs that match, ranked; sweep parents are left out (their children are the runs)."""
    runs = client.search_runs(list(experiment_ids), filter_string, max_results=max_results)
    return rank(RunRow.of(run) for run in runs if run.data.tags.get(ROLE_TAG) != SWEEP_ROLE)


def sweep_rows(client: MlflowClient, sweep: Sweep) -> list[RunRow]:
    return find_runs(client, [sweep.experiment_id], sweep.runs_filter)


def val_curves(client: MlflowClient, rows: Sequence[RunRow]) -> dict[str, list[float]]:
    """Each run's validation-accuracy history, in step order."""
    curves = {}
    for row in rows:
        history = sorted(client.get_metric_history(row.run_id, CURVE), key=lambda m: m.step)
        if history:
            curves[row.run_id] = [m.value for m in history]
    return curves


@dataclass
class Report:
    """A ranked table and its figure, for a terminal, a folder, or a parent run's artifacts."""

    rows: list[RunRow]
    curves: dict[str, list[float]] = field(default_factory=dict)
    title: str = "runs"

    def records(self) -> list[dict[str, Any]]:
        return [{"rank": i, "run": row.name, "status": row.status, "params": row.num_params,
                 "test_accuracy": row.test_accuracy, "test_loss": row.test_loss,
                 "train_time_s": row.train_time_s, "run_id": row.run_id, "job": row.job,
                 "failure_reason": row.failure_reason} for i, row in enumerate(self.rows, start=1)]

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(self.records()[0]) if self.rows else list(COLUMNS),
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.records())
        return out.getvalue()

    def markdown(self) -> str:
        header = ["rank", "run", "status", "params", "test accuracy", "test loss", "train time (s)", "run id"]
        lines = [f"# {self.title}\n", *self._notes(), "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for cells in self._cells():
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        names = short_names(self.rows)
        lines += [f"\n{row.status} `{names[row.run_id]}`: {row.failure_reason}" for row in self.rows
                  if row.failure_reason]
        return "\n".join(lines) + "\n"

    def text(self) -> str:
        """An aligned table for a terminal; failure reasons below it."""
        header = ("#", "run", "status", "params", "test acc", "test loss", "train s", "run id")
        table = [header, *self._cells()]
        widths = [max(len(cells[i]) for cells in table) for i in range(len(header))]
        numeric = {0, 3, 4, 5, 6}
        lines = ["  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
                 .rstrip() for cells in table]
        names = short_names(self.rows)
        lines += [f"  {row.status} {names[row.run_id]}: {row.failure_reason}" for row in self.rows
                  if row.failure_reason]
        return "\n".join([*self._notes(), *lines])

    def figure(self, panels: str = "both"):
        """Bars of test accuracy and overlaid validation curves (``panels``: both, bars, curves)."""
        from mnistlab import plots

        names = short_names(self.rows)
        labels = [names[row.run_id] for row in self.rows]
        return plots.comparison_figure(self.rows, labels, self.curves, "\n".join([self.title, *self._notes()]),
                                       panels=panels)

    def write_to(self, folder: Path) -> list[Path]:
        """The table (CSV, Markdown) and one PNG per panel, each readable on its own."""
        folder.mkdir(parents=True, exist_ok=True)
        written = [folder / "runs.csv", folder / "runs.md", folder / "test_accuracy.png", folder / "val_accuracy.png"]
        written[0].write_text(self.csv())
        written[1].write_text(self.markdown())
        self.figure("bars").savefig(written[2], dpi=100)
        self.figure("curves").savefig(written[3], dpi=100)
        return written

    def log_to(self, client: MlflowClient, run_id: str) -> None:
        """Table, figure and the best run on a run (a sweep's parent), so its page is not empty."""
        client.log_text(run_id, self.csv(), "summary/runs.csv")
        client.log_text(run_id, self.markdown(), "summary/runs.md")
        client.log_figure(run_id, self.figure(), "summary/comparison.png")
        scored = [row for row in self.rows if row.scored]
        client.log_metric(run_id, "runs_finished", len(scored))
        client.log_metric(run_id, "runs_failed", len(self.rows) - len(scored))
        if scored:
            best = scored[0]
            client.set_tag(run_id, "best_run_id", best.run_id)
            client.set_tag(run_id, "best_run_name", best.name)
            client.log_metric(run_id, "best_test_accuracy", best.test_accuracy)
            if best.test_loss is not None:
                client.log_metric(run_id, "best_test_loss", best.test_loss)

    def _notes(self) -> list[str]:
        common = common_overrides(self.rows)
        return [f"all runs: {', '.join(common)}"] if common else []

    def _cells(self) -> Iterable[list[str]]:
        names = short_names(self.rows)
        for i, row in enumerate(self.rows, start=1):
            yield [str(i), names[row.run_id], row.status, _fmt(row.num_params, "{:,}"),
                   _fmt(row.test_accuracy, "{:.4f}"), _fmt(row.test_loss, "{:.4f}"), _fmt(row.train_time_s, "{:.1f}"),
                   row.run_id]


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else spec.format(value)
