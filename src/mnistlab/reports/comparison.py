"""Runs side by side: read from the MLflow store, grouped by configuration (replicate seeds are one
group), ranked with their uncertainty, tested against the best, and rendered as tables, JSON and
a figure.

One place for it, used by a sweep's (and a search's) summary, logged to its parent run, and by
``mnistlab compare``. The statistics themselves are in ``reports.statistics``; reading runs from
the store and logging a report to a run are ``tracking``'s.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shlex
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.config.groups import GROUP_TAG, group_id
from mnistlab.core.text import plural
from mnistlab.data.mnist import MNIST_TEST_IMAGES, MNIST_TRAIN_IMAGES
from mnistlab.reports import figures, statistics
from mnistlab.reports.evaluation import PREDICTIONS_ARTIFACT

_ITEM = re.compile(r",(?=[\w.+~/@-]+=)")  # the commas that separate override_dirname's key=value items
CURVE = "val_accuracy"  # the per-epoch curve the figure draws
ALPHA = 0.05  # below this (after Holm's correction) a group is distinguishable from the best
COLUMNS = ("rank", "run", "status", "params", "test_accuracy", "test_loss", "train_time_s", "run_id")

#: (labels, predicted classes) of a run's test images, or None when it logged no predictions
Predictions = Callable[[str], "tuple[np.ndarray, np.ndarray] | None"]


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
    group_id: str = ""
    seed: int | None = None
    val_accuracy: float | None = None  # the last epoch's
    test_images: int | None = None
    val_images: int | None = None
    test_ci: tuple[float, float] | None = None  # as the run logged it
    pareto_front: bool | None = None  # a multi-objective search's trial: on its Pareto front or not

    @classmethod
    def of(cls, run: Any) -> RunRow:
        """From an MLflow run record (``mlflow.entities.Run``: its info, metrics, params and tags)."""
        metrics, tags, params = run.data.metrics, run.data.tags, run.data.params
        num_params = metrics.get("num_params")
        # a trial an Optuna pruner stopped early finished, but is not comparable with the others
        status = "PRUNED" if tags.get("optuna.state") == "PRUNED" else run.info.status
        seed = params.get("seed")
        ci = (
            (metrics["test_accuracy_ci_low"], metrics["test_accuracy_ci_high"])
            if "test_accuracy_ci_low" in metrics and "test_accuracy_ci_high" in metrics
            else None
        )
        return cls(
            run_id=run.info.run_id,
            name=run.info.run_name or run.info.run_id,
            status=status,
            num_params=int(num_params) if num_params is not None else None,
            test_accuracy=metrics.get("test_accuracy"),
            test_loss=metrics.get("test_loss"),
            train_time_s=metrics.get("train_time_s"),
            job=tags.get("sweep.job"),
            failure_reason=tags.get("failure_reason")
            or (
                f"pruned by Optuna after epoch {tags.get('optuna.pruned_at_epoch', '?')}" if status == "PRUNED" else ""
            ),
            start_time=run.info.start_time or 0,
            # runs logged before the tag: the same id, from the params they logged
            group_id=tags.get(GROUP_TAG) or group_id(params),
            seed=int(seed) if seed is not None and seed.isdigit() else None,
            val_accuracy=metrics.get("val_accuracy"),
            test_images=_count(metrics, "test_images", _mnist_images(params, "test")),
            val_images=_count(metrics, "val_images", _mnist_images(params, "val")),
            test_ci=ci,
            pareto_front={"true": True, "false": False}.get(tags.get("optuna.pareto_front", "")),
        )

    def value(self, metric: str) -> float | None:
        return getattr(self, metric)

    def scored(self, metric: str = "test_accuracy") -> bool:
        value = self.value(metric)
        return self.status == "FINISHED" and value is not None and math.isfinite(value)

    def interval(self, metric: str) -> tuple[float, float] | None:
        """The 95% Wilson interval of this run's accuracy on its ``metric``'s images."""
        if metric == "test_accuracy" and self.test_ci is not None:
            return self.test_ci
        total = self.test_images if metric == "test_accuracy" else self.val_images
        value = self.value(metric)
        if not total or value is None:
            return None
        return statistics.wilson_interval(round(value * total), total)


def _count(metrics: dict, key: str, default: int | None) -> int | None:
    return int(metrics[key]) if key in metrics else default


def _mnist_images(params: dict, split: str) -> int | None:
    """How many test or validation images a run logged before it recorded the counts used."""
    if params.get("data.name", "mnist") != "mnist":
        return None
    if split == "test":
        return MNIST_TEST_IMAGES
    try:
        return round(MNIST_TRAIN_IMAGES * float(params.get("data.val_split", "nan")))
    except ValueError:
        return None


def common_overrides(names: Iterable[str]) -> list[str]:
    """``key=value`` items that every one of ``names`` shares (a sweep's fixed overrides)."""
    items = [_ITEM.split(name) for name in names]
    if len(items) < 2:
        return []
    shared = set(items[0]).intersection(*items[1:])
    return [item for item in items[0] if item in shared]


def short_names(rows: Sequence[RunRow]) -> dict[str, str]:
    """Run names without the shared items, so that what differs between runs stands out."""
    shared = set(common_overrides(row.name for row in rows))
    return {row.run_id: ",".join(i for i in _ITEM.split(row.name) if i not in shared) or row.name for row in rows}


def rank(rows: Iterable[RunRow], metric: str = "test_accuracy") -> list[RunRow]:
    """Finished runs by ``metric`` (best first; ties: fewer parameters, then earlier), then the rest."""

    def key(row: RunRow) -> tuple:
        if row.scored(metric):
            return (0, -row.value(metric), row.num_params or 0, row.start_time)
        return (1, 0.0, 0, row.start_time)

    return sorted(rows, key=key)


@dataclass
class Group:
    """Runs of one configuration (replicate seeds), with its spread and how it compares with the best."""

    group_id: str
    runs: list[RunRow]  # scored runs, best first
    metric: str
    name: str = ""
    rank: int = 0
    p_raw: float | None = None  # the test against the best group, before Holm's correction
    p: float | None = None  # after it
    test: str | None = None  # which test gave p
    untested: str = ""  # why there is no p (no predictions to pair)

    @property
    def values(self) -> list[float]:
        return [run.value(self.metric) for run in self.runs]

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def sd(self) -> float | None:
        return float(np.std(self.values, ddof=1)) if self.n > 1 else None

    @property
    def ci(self) -> tuple[float, float] | None:
        """Student t over seeds; a group of one: that run's Wilson interval."""
        return statistics.mean_interval(self.values) if self.n > 1 else self.runs[0].interval(self.metric)

    @property
    def tied_with_best(self) -> bool | None:
        if self.rank == 1:
            return True
        return None if self.p is None else self.p >= ALPHA

    @property
    def verdict(self) -> str:
        if self.rank == 1:
            return "best"
        if self.p is None:
            return f"not tested ({self.untested})"
        return f"{'tied with' if self.tied_with_best else 'worse than'} #1 ({p_text(self.p)})"

    @property
    def overrides(self) -> list[str] | None:
        """The command-line overrides its runs were named after, seed left out (None: a custom name)."""
        items = [i for i in _ITEM.split(self.runs[0].name) if not i.startswith("seed=")]
        if items == ["defaults"]:
            return []
        return items if all("=" in i for i in items) else None

    @property
    def replicate_command(self) -> str:
        overrides = self.overrides
        if overrides is None:
            return f"its config with seed=range(1,6) (run {self.runs[0].run_id})"
        return shlex.join(["python", "run.py", "-m", *overrides, "seed=range(1,6)"])

    def record(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "name": self.name,
            "group": self.group_id,
            "run_ids": [run.run_id for run in self.runs],
            "seeds": [run.seed for run in self.runs],
            "n": self.n,
            "mean": self.mean,
            "sd": self.sd,
            "ci95": list(self.ci) if self.ci else None,
            "ci_method": "t" if self.n > 1 else "wilson",
            "min": min(self.values),
            "max": max(self.values),
            "p_vs_best": self.p,
            "p_vs_best_uncorrected": self.p_raw,
            "test_vs_best": self.test,
            "tied_with_best": self.tied_with_best,
            "verdict": self.verdict,
        }


def p_text(p: float) -> str:
    """p=0.41, p=0.003, p=2e-05; p<1e-16 below what a float's rounding can tell apart from 0."""
    if p < 1e-16:
        return "p<1e-16"
    return f"p={p:.2g}" if p >= 0.001 else f"p={p:.0e}"


def build_groups(
    rows: Sequence[RunRow], metric: str = "test_accuracy", predictions: Predictions | None = None
) -> list[Group]:
    """The scored runs by configuration, ranked by mean (ties: fewer parameters, then earlier), each
    tested against the best: Welch's t-test when both have several seeds, the exact McNemar test
    on their paired test predictions when both are single runs, a single run against a group's
    seeds otherwise; p-values corrected together (Holm)."""
    by_group: dict[str, list[RunRow]] = {}
    for row in rank(rows, metric):
        if row.scored(metric):
            by_group.setdefault(row.group_id, []).append(row)
    groups = [Group(gid, runs, metric) for gid, runs in by_group.items()]
    groups.sort(key=lambda g: (-g.mean, g.runs[0].num_params or 0, min(r.start_time for r in g.runs)))
    _name(groups, shared=set(common_overrides(row.name for row in rows)))
    for i, group in enumerate(groups, start=1):
        group.rank = i
    if not groups:
        return groups
    best = groups[0]
    for group in groups[1:]:
        group.p_raw, group.test, group.untested = _test_against(best, group, metric, predictions)
    for group, p in zip(groups[1:], statistics.holm([g.p_raw for g in groups[1:]]), strict=True):
        group.p = p
    return groups


def _test_against(
    best: Group, other: Group, metric: str, predictions: Predictions | None
) -> tuple[float | None, str | None, str]:
    if best.n > 1 and other.n > 1:
        return statistics.welch_p(best.values, other.values), "welch", ""
    if best.n > 1 or other.n > 1:
        single, several = (other, best) if best.n > 1 else (best, other)
        return statistics.single_vs_group_p(single.values[0], several.values), "single run vs seeds", ""
    if metric != "test_accuracy":
        return None, None, f"one run each, and McNemar needs test predictions; run seeds for {metric}"
    paired = paired_predictions(best.runs[0], other.runs[0], predictions)
    if paired is None:
        return None, None, f"a run without {PREDICTIONS_ARTIFACT}"
    labels, a, b = paired
    return statistics.Agreement.of(labels, a, b).mcnemar_p, "mcnemar", ""


def paired_predictions(
    a: RunRow, b: RunRow, predictions: Predictions | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The two runs' predicted classes on the same test images, or None."""
    if predictions is None:
        return None
    first, second = predictions(a.run_id), predictions(b.run_id)
    if first is None or second is None or not np.array_equal(first[0], second[0]):
        return None
    return first[0], first[1], second[1]


def _name(groups: Sequence[Group], shared: set[str]) -> None:
    """A group is named by the overrides its runs share (seed left out) that neither every group
    nor every run compared has (``shared``: those, printed once above the table)."""
    shared_by_runs = [
        common_overrides(run.name for run in g.runs) if g.n > 1 else _ITEM.split(g.runs[0].name) for g in groups
    ]
    own = [[i for i in items if not i.startswith("seed=")] for items in shared_by_runs]
    everywhere = shared | (set(own[0]).intersection(*own[1:]) if len(own) > 1 else set())
    names = [
        ",".join(i for i in items if i not in everywhere)
        or ("all runs" if len(groups) == 1 else ",".join(items) or "defaults")
        for items in own
    ]
    for group, name in zip(groups, names, strict=True):
        group.name = name if names.count(name) == 1 else f"{name} [{group.group_id[:6]}]"


@dataclass
class Report:
    """Grouped and ranked runs with their intervals and tests, for a terminal, a folder, JSON, or a
    parent run's artifacts."""

    rows: list[RunRow]
    curves: dict[str, list[float]] = field(default_factory=dict)  # run id -> validation accuracy per epoch
    title: str = "runs"
    metric: str = "test_accuracy"
    predictions: Predictions | None = None
    groups: list[Group] = field(init=False)

    def __post_init__(self) -> None:
        self.rows = rank(self.rows, self.metric)
        self.groups = build_groups(self.rows, self.metric, self.predictions)

    @property
    def group_of(self) -> dict[str, Group]:
        return {g.group_id: g for g in self.groups}

    def records(self) -> list[dict[str, Any]]:
        """One per run, ranked by the metric."""
        groups = self.group_of
        records = []
        for i, row in enumerate(self.rows, start=1):
            group = groups.get(row.group_id)
            ci = row.interval("test_accuracy") if row.scored() else None
            records.append(
                {
                    "rank": i,
                    "run": row.name,
                    "status": row.status,
                    "params": row.num_params,
                    "test_accuracy": row.test_accuracy,
                    "test_loss": row.test_loss,
                    "train_time_s": row.train_time_s,
                    "run_id": row.run_id,
                    "job": row.job,
                    "failure_reason": row.failure_reason,
                    "seed": row.seed,
                    "group": row.group_id,
                    "group_rank": group.rank if group else None,
                    "test_accuracy_ci_low": ci[0] if ci else None,
                    "test_accuracy_ci_high": ci[1] if ci else None,
                    "val_accuracy": row.val_accuracy,
                    "pareto_front": row.pareto_front,
                }
            )
        return records

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "metric": self.metric,
            "alpha": ALPHA,
            "common": common_overrides(row.name for row in self.rows),
            "groups": [g.record() for g in self.groups],
            "runs": self.records(),
        }

    def csv(self) -> str:
        return _csv(self.records(), COLUMNS)

    def groups_csv(self) -> str:
        records = [
            {
                **r,
                "run_ids": " ".join(r["run_ids"]),
                "seeds": " ".join(map(str, r["seeds"])),
                "ci95_low": r["ci95"][0] if r["ci95"] else None,
                "ci95_high": r["ci95"][1] if r["ci95"] else None,
            }
            for r in (g.record() for g in self.groups)
        ]
        for r in records:
            del r["ci95"]
        return _csv(records, ("rank", "name", "group", "n", "mean", "sd"))

    def markdown(self) -> str:
        lines = [
            f"# {self.title}\n",
            *self._notes(),
            "",
            f"## Configurations, ranked by mean {self._metric_words}\n",
            _markdown_table(self._group_header(), self._group_cells()),
            "",
            *self._explanation(),
            "",
            "## Runs\n",
            _markdown_table(self._run_header(), self._run_cells()),
        ]
        lines += [f"\n{row.status} `{name}`: {row.failure_reason}" for row, name in self._failures()]
        return "\n".join(lines) + "\n"

    def text(self, width: int | None = None) -> str:
        """Aligned tables for a terminal: configurations, then runs; failure reasons below them.
        ``width``: the terminal's columns; names are cut (``…``) and run ids shortened to fit, the
        full values being in ``--json`` and the CSV files. None: no limit."""
        wrap = _wrapper(width)
        groups = (
            [
                f"configurations, ranked by mean {self._metric_words}:",
                *fitted(self._group_header(), list(self._group_cells()), {0, 2, 3, 4}, width, name=1, optional=[6]),
                *(line for text in self._explanation() for line in wrap(f"  {text}")),
            ]
            if self.groups
            else [f"configurations: none, no run finished with a {self._metric_words}"]
        )
        runs = list(self._run_cells())
        if width is not None:
            runs = [[*cells[:-1], cells[-1][:SHORT_ID]] for cells in runs]
        lines = [*(line for n in self._notes() for line in wrap(n)), *groups, "runs:"]
        lines += fitted(self._run_header(), runs, {0, 3, 5}, width, name=1)
        lines += [
            line for row, name in self._failures() for line in wrap(f"  {row.status} {name}: {row.failure_reason}")
        ]
        front = [str(i) for i, row in enumerate(self.rows, start=1) if row.pareto_front]
        if front:
            lines += wrap(f"on the search's Pareto front (tag optuna.pareto_front): runs #{', #'.join(front)}")
        return "\n".join(lines)

    def figure(self, panels: str = "both"):
        """Each group's mean with its interval as an error bar, and its validation curves as a band."""
        curves: dict[str, list[list[float]]] = {}
        for group in self.groups:
            curves[group.group_id] = [self.curves[r.run_id] for r in group.runs if r.run_id in self.curves]
        return figures.comparison_figure(
            self.groups,
            [g.name for g in self.groups],
            curves,
            "\n".join([self.title, *self._notes()]),
            metric=self.metric,
            panels=panels,
        )

    def write_to(self, folder: Path) -> list[Path]:
        """The tables (CSV, Markdown), the JSON, and one PNG per panel, each readable on its own."""
        folder.mkdir(parents=True, exist_ok=True)
        written = [
            folder / name
            for name in (
                "runs.csv",
                "groups.csv",
                "runs.md",
                "comparison.json",
                f"{self.metric}.png",
                "val_accuracy_curves.png",
            )
        ]
        written[0].write_text(self.csv())
        written[1].write_text(self.groups_csv())
        written[2].write_text(self.markdown())
        written[3].write_text(json.dumps(self.to_json(), indent=2) + "\n")
        self.figure("points").savefig(written[4], dpi=100)
        self.figure("curves").savefig(written[5], dpi=100)
        return written

    def summary(self) -> tuple[dict[str, str], dict[str, Any], dict[str, float], dict[str, str]]:
        """What a sweep's parent run gets: (texts, figures, metrics, tags) by artifact path or name."""
        texts = {
            "summary/runs.csv": self.csv(),
            "summary/groups.csv": self.groups_csv(),
            "summary/runs.md": self.markdown(),
            "summary/comparison.json": json.dumps(self.to_json(), indent=2) + "\n",
        }
        scored = [row for row in self.rows if row.scored()]
        metrics = {
            "runs_finished": len(scored),
            "runs_failed": len(self.rows) - len(scored),
            "configurations": len(self.groups),
        }
        tags = {}
        if scored:
            best = scored[0]
            tags.update(best_run_id=best.run_id, best_run_name=best.name)
            metrics["best_test_accuracy"] = best.test_accuracy
            if best.test_loss is not None:
                metrics["best_test_loss"] = best.test_loss
        if self.groups:
            top = self.groups[0]
            tags.update(best_group=top.group_id, best_group_name=top.name[:5000])
            metrics[f"best_group_mean_{self.metric}"] = top.mean
            metrics["groups_tied_with_best"] = sum(1 for g in self.groups if g.tied_with_best)
        return texts, {"summary/comparison.png": self.figure()}, metrics, tags

    @property
    def _metric_words(self) -> str:
        return self.metric.replace("_", " ")

    def _notes(self) -> list[str]:
        common = common_overrides(row.name for row in self.rows)
        return [f"all runs: {', '.join(common)}"] if common else []

    def _explanation(self) -> list[str]:
        """How to read the table: the intervals, the tests, and what a single run cannot say."""
        if not self.groups:
            return []
        tests = {g.test for g in self.groups if g.test}
        words = {
            "welch": "Welch's t-test over seeds",
            "mcnemar": "the exact McNemar test on paired test predictions",
            "single run vs seeds": "a t-test of a single run against a group's seeds",
        }
        lines = ["95% intervals: Student t over a configuration's seeds; Wilson for a single run."]
        if tests:
            lines.append(
                f"p vs #1: {'; '.join(words[t] for t in sorted(tests))}; Holm-corrected for "
                f"{plural(len(self.groups) - 1, 'comparison')}; tied: p >= {ALPHA}."
            )
        singles = [g for g in self.groups if g.n == 1]
        if singles:
            lines.append(
                f"{plural(len(singles), 'configuration')} ran once: the spread over seeds is unknown. Replicate:"
            )
            lines += [f"  {g.replicate_command}" for g in singles[:3]]
            if len(singles) > 3:
                lines.append(f"  ... and {len(singles) - 3} more (or add sweep=seeds to the sweep)")
        return lines

    def _group_header(self) -> list[str]:
        return ["#", "configuration", "n", "mean", "sd", "95% interval", "min-max", "vs #1"]

    def _group_cells(self) -> Iterable[list[str]]:
        for g in self.groups:
            ci = f"[{g.ci[0]:.2%}, {g.ci[1]:.2%}]".replace("%", "") if g.ci else "-"
            spread = f"{min(g.values):.2%}-{max(g.values):.2%}".replace("%", "") if g.n > 1 else "-"
            sd = f"{g.sd * 100:.2f}" if g.sd is not None else "-"
            yield [str(g.rank), g.name, str(g.n), f"{g.mean:.2%}", sd, ci, spread, g.verdict]

    def _run_header(self) -> list[str]:
        return ["#", "run", "status", "config #", "seed", self._metric_words.replace("accuracy", "acc"), "run id"]

    def _run_cells(self) -> Iterable[list[str]]:
        names, groups = short_names(self.rows), self.group_of
        for i, row in enumerate(self.rows, start=1):
            group = groups.get(row.group_id)
            value = row.value(self.metric)
            yield [
                str(i),
                names[row.run_id],
                row.status,
                str(group.rank) if group else "-",
                "-" if row.seed is None else str(row.seed),
                "-" if value is None else f"{value:.2%}",
                row.run_id,
            ]

    def _failures(self) -> list[tuple[RunRow, str]]:
        names = short_names(self.rows)
        return [(row, names[row.run_id]) for row in self.rows if row.failure_reason]


SHORT_ID = 8  # run ids in a width-limited table: enough to find the run (mnistlab compare --pair takes them)
MIN_NAME = 12


def _csv(records: list[dict[str, Any]], default_columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(records[0]) if records else list(default_columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in rows]
    return "\n".join(lines)


def fitted(
    header: Sequence[str],
    rows: list[list[str]],
    numeric: set[int],
    width: int | None,
    name: int,
    optional: Sequence[int] = (),
) -> list[str]:
    """``aligned``, within ``width`` columns: the ``optional`` columns dropped first, then the
    ``name`` column cut to what is left (at least MIN_NAME characters), ending in an ellipsis."""
    header, rows = list(header), [list(r) for r in rows]
    lines = aligned(header, rows, numeric)
    if width is None or max(map(len, lines)) <= width:
        return lines
    for column in sorted(optional, reverse=True):
        del header[column]
        rows = [r[:column] + r[column + 1 :] for r in rows]
        numeric = {i - (i > column) for i in numeric if i != column}
        name -= name > column
    lines = aligned(header, rows, numeric)
    excess = max(map(len, lines)) - width
    if excess > 0:
        room = max(MIN_NAME, max(len(r[name]) for r in [header, *rows]) - excess)
        rows = [
            [*r[:name], r[name] if len(r[name]) <= room else r[name][: room - 1] + "…", *r[name + 1 :]] for r in rows
        ]
        lines = aligned(header, rows, numeric)
    return lines


def _wrapper(width: int | None) -> Callable[[str], list[str]]:
    """Lines of prose wrapped to ``width``, keeping their indent (a command is never broken)."""
    if width is None:
        return lambda text: [text]

    def wrap(text: str) -> list[str]:
        indent = text[: len(text) - len(text.lstrip())]
        return textwrap.wrap(
            text, width, subsequent_indent=indent + "  ", break_long_words=False, break_on_hyphens=False
        ) or [text]

    return wrap


def aligned(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> list[str]:
    table = [list(header), *rows]
    widths = [max(len(cells[i]) for cells in table) for i in range(len(header))]
    return [
        "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
        for cells in table
    ]
