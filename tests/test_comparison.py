"""Comparisons end to end on a real 2-configuration x 3-seed sweep: the grouped table the sweep
prints and logs to its parent, ``mnistlab compare --json`` and ``--pair``, all checked against
numbers computed here from what the children logged (their metrics and their test predictions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import cli_env, mlflow_client, run_cli
from mnistlab.reports.comparison import p_text

MNISTLAB = Path(sys.executable).parent / "mnistlab"
MODELS = ("mlp12", "dense512")


def compare(store: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(MNISTLAB), "compare", "--uri", store, *args],
        env=cli_env(store),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def seed_sweep(tmp_path_factory, mnist_dir):
    store = f"sqlite:///{tmp_path_factory.mktemp('seed_sweep') / 'mlflow.db'}"
    proc = run_cli(
        "-m",
        f"model={','.join(MODELS)}",
        "seed=1,2,3",
        "data.limit=500",
        "trainer.epochs=2",
        "tracking.log_model=false",
        store=store,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = mlflow_client(store)
    runs = client.search_runs([client.get_experiment_by_name("mnistlab").experiment_id])
    parent = next(r for r in runs if r.data.tags.get("mnistlab.role") == "sweep")
    children = [r for r in runs if r is not parent]
    return store, proc, parent, children


def by_model(children) -> dict[str, list]:
    return {
        m: sorted((c for c in children if c.data.params["model.name"] == m), key=lambda c: int(c.data.params["seed"]))
        for m in MODELS
    }


def expected_groups(children) -> list[dict]:
    """Mean, sd and t interval per model from the children's logged test accuracies, best first."""
    groups = []
    for model, runs in by_model(children).items():
        values = np.array([r.data.metrics["test_accuracy"] for r in runs])
        low, high = stats.t.interval(0.95, df=len(values) - 1, loc=values.mean(), scale=stats.sem(values))
        groups.append(
            {
                "name": f"model={model}",
                "n": 3,
                "mean": values.mean(),
                "sd": values.std(ddof=1),
                "ci95": [low, high],
                "min": values.min(),
                "max": values.max(),
                "values": values,
                "run_ids": {r.info.run_id for r in runs},
                "group": runs[0].data.tags["mnistlab.group"],
            }
        )
    return sorted(groups, key=lambda g: -g["mean"])


def check_groups(got: list[dict], children) -> None:
    want = expected_groups(children)
    assert [g["name"] for g in got] == [g["name"] for g in want]
    for g, w in zip(got, want, strict=True):
        assert (g["n"], g["group"], set(g["run_ids"])) == (w["n"], w["group"], w["run_ids"])
        for key in ("mean", "sd", "min", "max"):
            assert g[key] == pytest.approx(w[key], abs=1e-12), key
        assert g["ci95"] == pytest.approx(w["ci95"], abs=1e-12)
    best, other = want
    p = stats.ttest_ind(best["values"], other["values"], equal_var=False).pvalue  # one comparison: Holm leaves it
    assert got[0]["tied_with_best"] is True and got[0]["p_vs_best"] is None
    assert got[1]["p_vs_best"] == pytest.approx(p) and got[1]["test_vs_best"] == "welch"
    assert got[1]["tied_with_best"] is bool(p >= 0.05)
    assert got[1]["verdict"] == f"{'tied with' if p >= 0.05 else 'worse than'} #1 ({p_text(p)})"


def test_the_sweep_prints_and_logs_the_grouped_table(seed_sweep):
    store, proc, parent, children = seed_sweep
    assert len(children) == 6 and {c.info.status for c in children} == {"FINISHED"}
    # the seeds of a configuration share one group tag, the two configurations differ
    assert len({c.data.tags["mnistlab.group"] for c in children}) == 2

    client = mlflow_client(store)
    logged = json.loads(Path(client.download_artifacts(parent.info.run_id, "summary/comparison.json")).read_text())
    check_groups(logged["groups"], children)
    groups_csv = pd.read_csv(client.download_artifacts(parent.info.run_id, "summary/groups.csv"))
    assert list(groups_csv["name"]) == [g["name"] for g in logged["groups"]]
    assert groups_csv["mean"].tolist() == pytest.approx([g["mean"] for g in logged["groups"]])
    assert parent.data.tags["best_group"] == logged["groups"][0]["group"]
    assert parent.data.metrics["best_group_mean_test_accuracy"] == pytest.approx(logged["groups"][0]["mean"])
    assert parent.data.metrics["configurations"] == 2

    # the terminal shows the same rows: name, n, mean, the interval, the verdict
    table = proc.stdout[proc.stdout.index("configurations, ranked by mean test accuracy") :]
    for rank, g in enumerate(logged["groups"], start=1):
        line = next(line for line in table.splitlines() if line.startswith(f"{rank} "))
        assert g["name"] in line and f"{g['mean']:.2%}" in line and g["verdict"] in line
        assert f"[{g['ci95'][0] * 100:.2f}, {g['ci95'][1] * 100:.2f}]" in line
    assert "Welch's t-test over seeds" in table


def test_compare_json_returns_the_groups(seed_sweep):
    store, _, _, children = seed_sweep
    proc = compare(store, "--sweep", "last", "--json")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)  # nothing else on stdout
    check_groups(document["groups"], children)
    assert {r["run_id"] for r in document["runs"]} == {c.info.run_id for c in children}
    assert all(r["seed"] in (1, 2, 3) for r in document["runs"])


def test_pair_of_runs_is_mcnemar_on_their_predictions(seed_sweep):
    store, _, _, children = seed_sweep
    first, second = by_model(children)["mlp12"][0], by_model(children)["dense512"][0]
    proc = compare(store, "--pair", first.info.run_id, second.info.run_id, "--json")
    assert proc.returncode == 0, proc.stderr
    pair = json.loads(proc.stdout)

    client = mlflow_client(store)
    answers = [
        pd.read_parquet(client.download_artifacts(r.info.run_id, "predictions/test.parquet")) for r in (first, second)
    ]
    right_a, right_b = ((f["predicted"] == f["label"]).to_numpy() for f in answers)
    only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    assert pair["counts"] == {
        "both_right": int((right_a & right_b).sum()),
        "only_a": only_a,
        "only_b": only_b,
        "both_wrong": int((~right_a & ~right_b).sum()),
    }
    assert pair["mcnemar_p"] == pytest.approx(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue, rel=1e-12)
    diff = right_a.mean() - right_b.mean()
    assert pair["diff"] == pytest.approx(diff)
    assert pair["diff"] == pytest.approx(first.data.metrics["test_accuracy"] - second.data.metrics["test_accuracy"])
    low, high = pair["diff_ci95"]
    assert low < diff < high

    text = compare(store, "--pair", first.info.run_id, second.info.run_id).stdout
    assert "exact McNemar test" in text and f"{only_a:,} only A, {only_b:,} only B" in text


def test_pair_of_configurations_compares_seed_by_seed(seed_sweep):
    store, _, _, children = seed_sweep
    proc = compare(store, "--pair", "model=dense512", "model=mlp12", "--json")
    assert proc.returncode == 0, proc.stderr
    pair = json.loads(proc.stdout)
    a, b = by_model(children)["dense512"], by_model(children)["mlp12"]
    accuracy = lambda runs: [r.data.metrics["test_accuracy"] for r in runs]  # noqa: E731
    assert [s["seed"] for s in pair["seeds"]] == [1, 2, 3]
    assert [s["diff"] for s in pair["seeds"]] == pytest.approx(np.subtract(accuracy(a), accuracy(b)))
    assert pair["test"] == "paired t"
    assert pair["p"] == pytest.approx(stats.ttest_rel(accuracy(a), accuracy(b)).pvalue)
    assert all(s["mcnemar_p"] is not None for s in pair["seeds"])


def test_runs_without_the_group_tag_group_by_their_params(seed_sweep):
    """A store written before runs were tagged: the same groups, computed from the logged params."""
    store, _, _, children = seed_sweep
    from mnistlab.reports.comparison import RunRow

    client = mlflow_client(store)
    run = children[0]
    client.delete_tag(run.info.run_id, "mnistlab.group")
    untagged = client.get_run(run.info.run_id)
    try:
        assert "mnistlab.group" not in untagged.data.tags
        assert RunRow.of(untagged).group_id == run.data.tags["mnistlab.group"]
    finally:
        client.set_tag(run.info.run_id, "mnistlab.group", run.data.tags["mnistlab.group"])


def test_pair_refuses_what_it_cannot_find(seed_sweep):
    store, *_ = seed_sweep
    proc = compare(store, "--pair", "model=nosuch", "model=mlp12")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --pair 'model=nosuch': no finished run or configuration")
    assert "model=dense512" in proc.stderr and len(proc.stderr.splitlines()) == 1
