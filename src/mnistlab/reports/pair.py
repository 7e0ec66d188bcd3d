"""Two runs, or two configurations' seeds, compared head to head on the same test images
(``mnistlab compare --pair A B``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mnistlab.reports import statistics
from mnistlab.reports.comparison import ALPHA, Group, Predictions, RunRow, aligned, p_text, paired_predictions
from mnistlab.reports.evaluation import PREDICTIONS_ARTIFACT


class UnknownSide(ValueError):
    """A run id or group that ``--pair`` cannot find among the compared runs."""


@dataclass(frozen=True)
class Side:
    """One side of a pair: a single run, or a configuration group's runs."""

    spec: str  # as the user gave it
    group: Group

    @property
    def runs(self) -> list[RunRow]:
        return self.group.runs

    def record(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "name": self.group.name,
            "group": self.group.group_id,
            "n": self.group.n,
            "run_ids": [r.run_id for r in self.runs],
            "seeds": [r.seed for r in self.runs],
            "mean": self.group.mean,
        }


def side(spec: str, groups: Sequence[Group]) -> Side:
    """A run id (or a unique prefix of one), a group id (or prefix), or a group's name as the table shows it."""
    for group in groups:
        if spec == group.name or spec == group.group_id:
            return Side(spec, group)
        for run in group.runs:
            if run.run_id == spec:
                return Side(spec, Group(group.group_id, [run], group.metric, group.name))
    prefixed = [(g, r) for g in groups for r in g.runs if r.run_id.startswith(spec)] if len(spec) >= 6 else []
    prefixed_groups = [g for g in groups if g.group_id.startswith(spec)] if len(spec) >= 4 else []
    if len(prefixed) == 1 and not prefixed_groups:
        group, run = prefixed[0]
        return Side(spec, Group(group.group_id, [run], group.metric, group.name))
    if len(prefixed_groups) == 1 and not prefixed:
        return Side(spec, prefixed_groups[0])
    names = ", ".join(repr(g.name) for g in groups[:8]) + (", ..." if len(groups) > 8 else "")
    raise UnknownSide(
        f"--pair {spec!r}: no finished run or configuration of that id or name among the runs "
        f"compared (configurations: {names or 'none'})"
    )


@dataclass
class Pair:
    """Two runs (or two configurations' seeds) compared head to head on the same test images."""

    a: Side
    b: Side
    predictions: Predictions | None = None
    agreement: statistics.Agreement | None = field(init=False, default=None)
    mcnemar_p: float | None = field(init=False, default=None)
    diff: float = field(init=False, default=math.nan)
    diff_ci: tuple[float, float] | None = field(init=False, default=None)
    p: float | None = field(init=False, default=None)
    test: str = field(init=False, default="")
    seeds: list[dict[str, Any]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        a, b = self.a.runs, self.b.runs
        if len(a) == 1 and len(b) == 1:
            self._runs(a[0], b[0])
        else:
            self._groups(a, b)

    def _runs(self, a: RunRow, b: RunRow) -> None:
        self.diff = a.test_accuracy - b.test_accuracy
        self.test = "mcnemar"
        paired = paired_predictions(a, b, self.predictions)
        if paired is None:
            self.test = ""
            return
        labels, first, second = paired
        self.agreement = statistics.Agreement.of(labels, first, second)
        self.p = self.mcnemar_p = self.agreement.mcnemar_p
        self.diff = self.agreement.diff
        self.diff_ci = statistics.paired_bootstrap_interval(labels, first, second)

    def _groups(self, a: list[RunRow], b: list[RunRow]) -> None:
        by_seed_b = {}
        for run in b:
            by_seed_b.setdefault(run.seed, run)
        matched = [
            (run, by_seed_b[run.seed])
            for run in {r.seed: r for r in reversed(a)}.values()
            if run.seed is not None and run.seed in by_seed_b
        ]
        for first, second in sorted(matched, key=lambda pair: pair[0].seed):
            entry = {
                "seed": first.seed,
                "a_run": first.run_id,
                "b_run": second.run_id,
                "a": first.test_accuracy,
                "b": second.test_accuracy,
                "diff": first.test_accuracy - second.test_accuracy,
                "counts": None,
                "mcnemar_p": None,
            }
            paired = paired_predictions(first, second, self.predictions)
            if paired is not None:
                agreement = statistics.Agreement.of(*paired)
                entry.update(counts=_counts(agreement), mcnemar_p=agreement.mcnemar_p)
            self.seeds.append(entry)
        x, y = [r.test_accuracy for r in a], [r.test_accuracy for r in b]
        if len(a) > 1 and len(b) > 1:
            fully_paired = len(matched) == len(a) == len(b) and len(matched) > 1
            if fully_paired:
                x, y = [e["a"] for e in self.seeds], [e["b"] for e in self.seeds]
            result = statistics.compare_seeds(x, y, paired=fully_paired)
            self.diff, self.diff_ci, self.p, self.test = result.diff, result.ci, result.p, result.test
        else:
            single, several = (x[0], y) if len(a) == 1 else (y[0], x)
            self.diff = float(np.mean(x) - np.mean(y))
            self.p, self.test = statistics.single_vs_group_p(single, several), "single run vs seeds"

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a.record(),
            "b": self.b.record(),
            "metric": "test_accuracy",
            "counts": _counts(self.agreement) if self.agreement else None,
            "mcnemar_p": self.mcnemar_p,
            "diff": self.diff,
            "diff_ci95": list(self.diff_ci) if self.diff_ci else None,
            "diff_ci_method": {
                "mcnemar": "paired bootstrap over test images",
                "paired t": "paired t over seeds",
                "welch": "Welch t over seeds",
            }.get(self.test),
            "p": self.p,
            "test": self.test or None,
            "seeds": self.seeds,
        }

    def text(self) -> str:
        lines = [f"A: {self._describe(self.a)}", f"B: {self._describe(self.b)}", ""]
        if self.agreement is not None:
            g = self.agreement
            lines += aligned(
                ["", "B right", "B wrong"],
                [["A right", f"{g.both_right:,}", f"{g.only_a:,}"], ["A wrong", f"{g.only_b:,}", f"{g.both_wrong:,}"]],
                numeric={1, 2},
            )
            lines += [
                "",
                f"exact McNemar test: {p_text(g.mcnemar_p)} ({g.only_a + g.only_b:,} images where "
                f"only one of them is right: {g.only_a:,} only A, {g.only_b:,} only B)",
            ]
        elif len(self.a.runs) == 1 and len(self.b.runs) == 1:
            lines.append(
                f"no paired test: a run without {PREDICTIONS_ARTIFACT} (logged by runs since mnistlab "
                "records predictions)"
            )
        if self.seeds and (len(self.a.runs) > 1 or len(self.b.runs) > 1):
            rows = [
                [
                    str(e["seed"]),
                    f"{e['a']:.2%}",
                    f"{e['b']:.2%}",
                    f"{e['diff'] * 100:+.2f}",
                    "-" if e["counts"] is None else str(e["counts"]["only_a"]),
                    "-" if e["counts"] is None else str(e["counts"]["only_b"]),
                    "-" if e["mcnemar_p"] is None else p_text(e["mcnemar_p"])[2:],
                ]
                for e in self.seeds
            ]
            lines += [
                "per seed (the same seed on both sides):",
                *aligned(
                    ["seed", "A", "B", "A-B", "only A", "only B", "McNemar p"], rows, numeric={0, 1, 2, 3, 4, 5, 6}
                ),
                "",
            ]
        ci = f", 95% interval [{self.diff_ci[0] * 100:+.2f}, {self.diff_ci[1] * 100:+.2f}]" if self.diff_ci else ""
        how = {
            "mcnemar": " (paired bootstrap over test images)",
            "paired t": " (paired t-test over seeds)",
            "welch": " (Welch's t-test over seeds)",
            "single run vs seeds": " (a single run against the seeds)",
        }
        lines.append(f"accuracy A - B: {self.diff * 100:+.2f} points{ci}{how.get(self.test, '')}")
        if self.p is not None:
            verdict = "distinguishable" if self.p < ALPHA else "not distinguishable"
            lines.append(f"{p_text(self.p)}: {verdict} at {ALPHA}")
        return "\n".join(lines)

    @staticmethod
    def _describe(s: Side) -> str:
        if len(s.runs) == 1:
            return f"{s.group.name}, run {s.runs[0].run_id}, {s.runs[0].test_accuracy:.2%}"
        seeds = ",".join(str(r.seed) for r in s.runs)
        return f"{s.group.name}, {len(s.runs)} runs (seeds {seeds}), mean {s.group.mean:.2%}"


def _counts(agreement: statistics.Agreement) -> dict[str, int]:
    return {
        "both_right": agreement.both_right,
        "only_a": agreement.only_a,
        "only_b": agreement.only_b,
        "both_wrong": agreement.both_wrong,
    }
