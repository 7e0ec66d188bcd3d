"""The statistics behind every comparison: intervals for one run and for replicate seeds, the tests
between configurations, and the correction for testing several at once.

Numbers in, numbers out (no MLflow, no Keras); the distributions and tests are scipy.stats's
(one run's Wilson interval is reports.proportion's closed form).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

# one run's interval is computed without scipy (a run imports it); the comparisons take it from here
from mnistlab.reports.proportion import LEVEL, wilson_interval  # noqa: F401


def mean_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Student's t interval of the mean of replicate values (seeds); needs two or more."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        raise ValueError("a t interval needs at least two values")
    if x.std() == 0:  # identical values: scipy's interval would be (nan, nan)
        return float(x.mean()), float(x.mean())
    low, high = stats.t.interval(level, df=len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    return float(low), float(high)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test: do two configurations' seed results differ in mean?"""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.std() == 0 and y.std() == 0:  # no spread on either side: equal means tie, others differ surely
        return 1.0 if x.mean() == y.mean() else 0.0
    return float(stats.ttest_ind(x, y, equal_var=False).pvalue)


def single_vs_group_p(value: float, group: Sequence[float]) -> float:
    """Two-sided p-value that one run's ``value`` comes from the distribution ``group``'s seeds
    show: a t-test of a new observation against a sample (its prediction interval)."""
    x = np.asarray(group, dtype=float)
    n, sd = len(x), x.std(ddof=1)
    if sd == 0:
        return 1.0 if value == x.mean() else 0.0
    t = (value - x.mean()) / (sd * math.sqrt(1 + 1 / n))
    return float(2 * stats.t.sf(abs(t), df=n - 1))


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact McNemar test of two classifiers on the same test images: the two-sided binomial test
    of the discordant counts (images only A got right against images only B got right)."""
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    return float(stats.binomtest(only_a, discordant, 0.5).pvalue)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down correction of p-values tested together (None: not tested, left out).
    scipy.stats has Benjamini-Hochberg but not Holm, which controls the family-wise error."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Agreement:
    """Two classifiers' answers on the same test images."""

    both_right: int
    only_a: int
    only_b: int
    both_wrong: int

    @classmethod
    def of(cls, labels: np.ndarray, predicted_a: np.ndarray, predicted_b: np.ndarray) -> Agreement:
        a, b = predicted_a == labels, predicted_b == labels
        return cls(int(np.sum(a & b)), int(np.sum(a & ~b)), int(np.sum(~a & b)), int(np.sum(~a & ~b)))

    @property
    def total(self) -> int:
        return self.both_right + self.only_a + self.only_b + self.both_wrong

    @property
    def diff(self) -> float:
        """Accuracy of A minus accuracy of B."""
        return (self.only_a - self.only_b) / self.total

    @property
    def mcnemar_p(self) -> float:
        return mcnemar_p(self.only_a, self.only_b)


def paired_bootstrap_interval(
    labels: np.ndarray,
    predicted_a: np.ndarray,
    predicted_b: np.ndarray,
    level: float = LEVEL,
    resamples: int = 9999,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of accuracy(A) - accuracy(B), resampling test images (both
    models keep their answers to each image drawn: a paired bootstrap). Seeded: it repeats."""
    per_image = (predicted_a == labels).astype(np.int8) - (predicted_b == labels).astype(np.int8)
    if not per_image.any():
        return 0.0, 0.0
    result = stats.bootstrap(
        (per_image,),
        np.mean,
        n_resamples=resamples,
        confidence_level=level,
        method="percentile",
        batch=500,
        random_state=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


@dataclass(frozen=True)
class SeedTest:
    """Two configurations' seed results compared: the difference of means, its interval and p-value."""

    diff: float
    ci: tuple[float, float]
    p: float
    test: str  # "paired t" (the same seeds on both sides) or "welch"


def compare_seeds(a: Sequence[float], b: Sequence[float], paired: bool, level: float = LEVEL) -> SeedTest:
    """``paired``: a[i] and b[i] ran with the same seed, so the per-seed differences are tested."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired:
        d = x - y
        if d.std() == 0:
            return SeedTest(
                float(d.mean()), (float(d.mean()), float(d.mean())), 1.0 if d.mean() == 0 else 0.0, "paired t"
            )
        result = stats.ttest_rel(x, y)
        test = "paired t"
    else:
        if x.std() == 0 and y.std() == 0:
            diff = float(x.mean() - y.mean())
            return SeedTest(diff, (diff, diff), welch_p(x, y), "welch")
        result = stats.ttest_ind(x, y, equal_var=False)
        test = "welch"
    ci = result.confidence_interval(confidence_level=level)
    return SeedTest(float(x.mean() - y.mean()), (float(ci.low), float(ci.high)), float(result.pvalue), test)
