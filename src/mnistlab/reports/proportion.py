"""The interval of one run's test accuracy, in closed form.

Every run computes it, so it stays free of scipy: importing scipy.stats costs a run about a
second. Its formula is scipy's (``binomtest(...).proportion_ci(method="wilson")``, Newcombe 1998),
which the tests check it against.
"""

from __future__ import annotations

import math
from statistics import NormalDist

LEVEL = 0.95  # every interval in mnistlab is a 95% one


def wilson_interval(correct: int, total: int, level: float = LEVEL) -> tuple[float, float]:
    """The Wilson score interval of an accuracy of ``correct`` out of ``total`` (one run's test set)."""
    z = NormalDist().inv_cdf(0.5 + 0.5 * level)
    p = correct / total
    denom = 2 * (total + z**2)
    center = (2 * total * p + z**2) / denom
    delta = z / denom * math.sqrt(4 * total * p * (1 - p) + z**2)
    low = 0.0 if correct == 0 else center - delta
    high = 1.0 if correct == total else center + delta
    return low, high
