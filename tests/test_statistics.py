"""The statistics behind comparisons, against answers known independently: closed formulas,
hand-counted binomial tails, hand-built prediction vectors with known discordant counts."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import stats

from mnistlab.reports import statistics
from mnistlab.reports.comparison import Group, Report, RunRow, build_groups

pytestmark = pytest.mark.fast  # make test-fast: no training, no subprocess runs of training


def wilson_by_formula(correct: int, total: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return centre - half, centre + half


@pytest.mark.parametrize("correct,total", [(9862, 10000), (9950, 10000), (10000, 10000), (0, 10), (7, 10)])
def test_wilson_interval_is_the_closed_formula(correct, total):
    assert statistics.wilson_interval(correct, total) == pytest.approx(wilson_by_formula(correct, total), abs=1e-12)


@pytest.mark.parametrize("correct,total", [(9862, 10000), (1, 3), (0, 10), (10, 10), (59_999, 60_000)])
@pytest.mark.parametrize("level", [0.95, 0.99, 0.5])
def test_wilson_interval_is_scipys_to_the_last_digits(correct, total, level):
    # closed form so that a run need not import scipy.stats; scipy's own answer is the reference
    ci = stats.binomtest(correct, total).proportion_ci(confidence_level=level, method="wilson")
    assert statistics.wilson_interval(correct, total, level) == pytest.approx((ci.low, ci.high), rel=1e-14, abs=1e-15)


def test_wilson_width_at_mnist_accuracies_is_what_the_issue_quotes():
    """About +-0.14 points at 99.5% and +-0.23 at 98.6% on 10,000 test images."""
    for accuracy, half_width in ((0.995, 0.0014), (0.986, 0.0023)):
        low, high = statistics.wilson_interval(round(accuracy * 10000), 10000)
        assert (high - low) / 2 == pytest.approx(half_width, abs=0.00006)


def test_mean_interval_is_students_t():
    # mean 2, sd 1, n 3: 2 +- t(0.975, 2) / sqrt(3), t(0.975, 2) = 4.302652729911275
    low, high = statistics.mean_interval([1.0, 2.0, 3.0])
    assert (low, high) == pytest.approx((2 - 4.302652729911275 / math.sqrt(3), 2 + 4.302652729911275 / math.sqrt(3)))
    assert statistics.mean_interval([0.98, 0.98]) == (0.98, 0.98)  # no spread, no NaN
    with pytest.raises(ValueError):
        statistics.mean_interval([0.98])


def test_mcnemar_is_the_exact_binomial_tail():
    # 10 images only A got right, 2 only B: p = 2 * P(X <= 2 | n=12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert statistics.mcnemar_p(10, 2) == pytest.approx(158 / 4096)
    assert statistics.mcnemar_p(2, 10) == pytest.approx(158 / 4096)
    assert statistics.mcnemar_p(5, 5) == 1.0 and statistics.mcnemar_p(0, 0) == 1.0


def test_agreement_counts_hand_built_predictions():
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    a = np.array([0, 1, 2, 3, 4, 5, 0, 0, 0, 9])  # wrong on 6, 7, 8
    b = np.array([0, 1, 2, 0, 0, 5, 6, 0, 0, 0])  # wrong on 3, 4, 7, 8, 9
    agreement = statistics.Agreement.of(labels, a, b)
    assert (agreement.both_right, agreement.only_a, agreement.only_b, agreement.both_wrong) == (4, 3, 1, 2)
    assert agreement.diff == pytest.approx(0.7 - 0.5)
    assert agreement.mcnemar_p == pytest.approx(2 * (1 + 4) / 16)  # 3 vs 1 of 4 discordant


def test_paired_bootstrap_interval_covers_the_difference_and_repeats():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 10000)
    a = np.where(rng.random(10000) < 0.99, labels, (labels + 1) % 10)
    b = np.where(rng.random(10000) < 0.98, labels, (labels + 1) % 10)
    diff = (a == labels).mean() - (b == labels).mean()
    low, high = statistics.paired_bootstrap_interval(labels, a, b)
    assert low < diff < high and high - low < 0.01
    assert (low, high) == statistics.paired_bootstrap_interval(labels, a, b)  # seeded
    assert statistics.paired_bootstrap_interval(labels, a, a) == (0.0, 0.0)


def test_holm_step_down():
    assert statistics.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert statistics.holm([0.2, None, 0.01]) == [pytest.approx(0.2), None, pytest.approx(0.02)]
    assert statistics.holm([0.6, 0.7]) == [pytest.approx(1.0), pytest.approx(1.0)]  # capped at 1


def test_welch_is_the_textbook_statistic():
    a, b = [0.990, 0.992, 0.991, 0.993], [0.985, 0.990, 0.980]
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    assert statistics.welch_p(a, b) == pytest.approx(2 * stats.t.sf(abs(t), df))
    assert statistics.welch_p([0.9, 0.9], [0.9, 0.9]) == 1.0


def test_single_run_against_seeds_is_a_prediction_interval_test():
    group = [0.990, 0.992, 0.994]
    # mean 0.992, sd 0.002: a value 2 sd * sqrt(1 + 1/3) away has t = 2 with 2 degrees of freedom
    value = 0.992 + 2 * 0.002 * math.sqrt(1 + 1 / 3)
    assert statistics.single_vs_group_p(value, group) == pytest.approx(2 * stats.t.sf(2, 2))


def test_seed_comparisons_paired_and_not():
    a, b = [0.990, 0.985, 0.992], [0.988, 0.984, 0.989]
    paired = statistics.compare_seeds(a, b, paired=True)
    d = np.subtract(a, b)
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert paired.test == "paired t" and paired.diff == pytest.approx(d.mean())
    assert paired.ci == pytest.approx((d.mean() - half, d.mean() + half))
    assert paired.p == pytest.approx(stats.ttest_rel(a, b).pvalue)
    welch = statistics.compare_seeds(a, b, paired=False)
    assert welch.test == "welch" and welch.p == pytest.approx(statistics.welch_p(a, b))


def row(run_id: str, name: str, accuracy: float, group: str, seed: int = 1, status: str = "FINISHED") -> RunRow:
    return RunRow(
        run_id=run_id,
        name=name,
        status=status,
        num_params=100,
        test_accuracy=accuracy,
        test_loss=0.1,
        train_time_s=1.0,
        group_id=group,
        seed=seed,
        test_images=10000,
    )


def test_groups_rank_by_mean_test_the_best_and_name_by_what_differs():
    rows = [
        row("a1", "model=cnn,seed=1", 0.990, "g-cnn", 1),
        row("a2", "model=cnn,seed=2", 0.992, "g-cnn", 2),
        row("a3", "model=cnn,seed=3", 0.991, "g-cnn", 3),
        row("b1", "model=dense,seed=1", 0.980, "g-dense", 1),
        row("b2", "model=dense,seed=2", 0.982, "g-dense", 2),
        row("c1", "model=tiny,seed=1", 0.975, "g-tiny", 1),
        row("d1", "model=broken,seed=1", None, "g-broken", 1, status="FAILED"),
    ]
    groups = build_groups(rows)
    assert [(g.name, g.n, g.rank) for g in groups] == [("model=cnn", 3, 1), ("model=dense", 2, 2), ("model=tiny", 1, 3)]
    cnn, dense, tiny = groups
    assert cnn.mean == pytest.approx(0.991) and cnn.sd == pytest.approx(0.001)
    assert cnn.ci == pytest.approx(statistics.mean_interval([0.990, 0.992, 0.991]))
    assert tiny.sd is None and tiny.ci == pytest.approx(statistics.wilson_interval(9750, 10000))
    raw = [statistics.welch_p(cnn.values, dense.values), statistics.single_vs_group_p(0.975, cnn.values)]
    assert (dense.p_raw, tiny.p_raw) == pytest.approx(raw)
    assert [dense.p, tiny.p] == pytest.approx(statistics.holm(raw))
    assert cnn.verdict == "best" and dense.test == "welch" and tiny.test == "single run vs seeds"
    assert dense.verdict.startswith("worse than #1 (p=" if dense.p < 0.05 else "tied with #1 (p=")
    assert tiny.replicate_command == "python run.py -m model=tiny 'seed=range(1,6)'"


def test_two_single_runs_are_tested_on_their_paired_predictions():
    labels = np.arange(10000) % 10
    wrong_a, wrong_b = np.zeros(10000, bool), np.zeros(10000, bool)
    wrong_a[:60], wrong_b[30:120] = True, True  # only A wrong: 30, only B wrong: 60, both: 30
    answers = {"a": np.where(wrong_a, (labels + 1) % 10, labels), "b": np.where(wrong_b, (labels + 1) % 10, labels)}
    rows = [row("a", "lr=0.1", 0.994, "ga"), row("b", "lr=0.2", 0.991, "gb")]
    best, other = build_groups(rows, predictions=lambda run_id: (labels, answers[run_id]))
    assert best.name == "lr=0.1" and other.test == "mcnemar"
    assert other.p == pytest.approx(stats.binomtest(30, 90, 0.5).pvalue)  # only B right: 30, only A right: 60
    untested = build_groups(rows, predictions=lambda run_id: None)[1]
    assert untested.p is None and untested.verdict.startswith("not tested (")


def test_groups_with_the_same_name_get_their_id():
    groups = build_groups([row("a", "mine", 0.99, "aaaaaa111111"), row("b", "mine", 0.98, "bbbbbb222222")])
    assert [g.name for g in groups] == ["mine [aaaaaa]", "mine [bbbbbb]"]
    assert isinstance(groups[0], Group)


@pytest.mark.parametrize("width", [80, 120])
def test_the_table_fits_the_terminal_and_keeps_what_a_reader_needs(width):
    """Long overrides (a README-style sweep of two configs x seeds) at 80 and 120 columns: every line
    fits, each group keeps its rank, n, mean and verdict, each run its short id; without a width
    (a pipe, a log) nothing is cut."""
    long_a = (
        "model=cnn_bn,optimizer=sgd,optimizer.lr=0.05,optimizer.momentum=0.9,scheduler=onecycle,data.augment.zoom=0.1"
    )
    long_b = "model=dense_bn,optimizer=adam,optimizer.lr=0.003,loss.label_smoothing=0.1,data.augment.rotation=10"
    rows = [
        row(f"{k}{'0' * 31}{seed}", f"{name},seed={seed}", acc + seed / 1e4, k, seed)
        for k, name, acc in (("a", long_a, 0.991), ("b", long_b, 0.985))
        for seed in (1, 2, 3)
    ]
    report = Report(rows)
    text = report.text(width)
    assert max(len(line) for line in text.splitlines()) <= width, text
    best, other = report.groups
    assert re.search(rf"^1  \S.*  3  {best.mean * 100:.2f}%  .*best$", text, flags=re.M), text
    assert re.search(rf"^2  \S.*  3  {other.mean * 100:.2f}%  .*{re.escape(other.verdict)}$", text, flags=re.M), text
    assert all(f" {r.run_id[:8]}" in text and r.run_id not in text for r in rows)
    assert "…" in text  # these names do not fit whole
    unlimited = report.text()
    assert long_a in unlimited and all(r.run_id in unlimited for r in rows)
