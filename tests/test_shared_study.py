"""Beyond one machine, here with processes standing in for machines: one Optuna study on a real
PostgreSQL shared by three search workers, all of them tracking into a real ``mlflow server``
backed by PostgreSQL with proxied artifacts; one worker is killed with SIGKILL mid-trial.

A throwaway PostgreSQL cluster (tests/postgres.py) and the server (tests/servers.py) live for this
module and are stopped by their pids, also when a test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import RUN_PY, cli_env
from postgres import postgres_cluster
from servers import mlflow_server

WORKERS, N_TRIALS = 3, 5
EPOCHS = 2
SEARCH = (
    "hparams_search=tiny_cnn_optuna",
    "data.limit=500",
    f"trainer.epochs={EPOCHS}",
    "trainer.verbose=0",
    "hydra.sweeper.pruner=null",
    f"hydra.sweeper.n_trials={N_TRIALS}",
)


@pytest.fixture(scope="module")
def cluster():
    with postgres_cluster() as pg:
        yield pg


@pytest.fixture(scope="module")
def server(cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow_server")
    with mlflow_server(cluster.create_database("mlflow"), folder / "artifacts", folder / "server.log") as srv:
        yield srv


def _worker(store: str, root: Path, *extra: str) -> subprocess.Popen:
    env = cli_env(env={"MNISTLAB_ROOT": str(root), "MLFLOW_TRACKING_URI": store})
    return subprocess.Popen(
        [sys.executable, str(RUN_PY), "-m", *SEARCH, *extra],
        env=env,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_workers_share_one_study_and_one_server_and_a_killed_worker_loses_only_its_trial(
    cluster, server, tmp_path, mnist_dir
):
    storage = cluster.create_database("optuna")
    experiment = "shared-search"  # new on the server: every worker creates it at the same moment
    extra = (f"hydra.sweeper.storage={storage}", f"tracking.experiment={experiment}")
    root = tmp_path  # the machines share a folder (outputs/); the study and the runs are on the servers
    workers = [_worker(server.url, root, *extra) for _ in range(WORKERS)]
    victim = workers[0]
    try:
        # kill the first worker once it is training a trial of its own
        deadline = time.monotonic() + 300
        study = None
        while True:
            assert time.monotonic() < deadline, "no trial of the first worker started training"
            assert victim.poll() is None, victim.stdout.read()[-3000:]
            if study is None:
                try:
                    study = optuna.load_study(study_name="tiny_cnn_optuna", storage=storage)
                except KeyError:  # not created yet
                    time.sleep(0.5)
                    continue
            mine = [
                t
                for t in study.get_trials(states=(TrialState.RUNNING,))
                if (t.user_attrs.get("owner") or {}).get("pid") == victim.pid and _training(root, t.number)
            ]
            if mine:
                killed = mine[0]
                break
            time.sleep(0.3)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        outputs = [w.communicate(timeout=600)[0] for w in workers[1:]]
    finally:
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGKILL)
                w.wait(timeout=30)
    for w, output in zip(workers[1:], outputs):
        assert w.returncode == 0, output[-3000:]

    trials = optuna.load_study(study_name="tiny_cnn_optuna", storage=storage).trials
    # numbered without gaps or duplicates, the target reached, overshoot at most workers - 1
    assert [t.number for t in trials] == list(range(len(trials)))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert N_TRIALS <= len(complete) <= N_TRIALS + WORKERS - 1
    # the killed worker lost only its in-flight trial: FAIL, then its parameters ran again
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [killed.number]
    assert "died" in trials[killed.number].user_attrs["fail_reason"]
    retried = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert len(retried) == 1 and retried[0].params == killed.params and retried[0].state == TrialState.COMPLETE
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # three workers did not replay one another's samples
    sampled = [tuple(sorted(t.params.items())) for t in trials if "retry_of" not in t.user_attrs]
    assert len(set(sampled)) == len(sampled)

    # the server got every run, in the experiment they named (none fell into Default), every epoch's
    # metric points, and the artifacts through its proxy
    runs = server.post_json("/api/2.0/mlflow/runs/search", {"experiment_ids": ["0"], "max_results": 100})
    assert not runs.get("runs"), "runs landed in the Default experiment"
    exp = server.get_json("/api/2.0/mlflow/experiments/get-by-name", experiment_name=experiment)["experiment"]
    found = server.post_json(
        "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 200}
    )["runs"]
    children = {int(_tag(r, "optuna.trial")): r for r in found if _tag(r, "optuna.trial") is not None}
    assert sorted(children) == [t.number for t in trials]
    for trial in complete:
        run = children[trial.number]
        assert run["info"]["status"] == "FINISHED" and _tag(run, "optuna.state") == "COMPLETE"
        history = server.get_json(
            "/api/2.0/mlflow/metrics/get-history", run_id=run["info"]["run_id"], metric_key="val_accuracy"
        )["metrics"]
        assert sorted(m["step"] for m in history) == list(range(EPOCHS))
        assert history[-1]["value"] == pytest.approx(trial.value)
        listed = server.get_json("/api/2.0/mlflow/artifacts/list", run_id=run["info"]["run_id"]).get("files", [])
        assert {"learning_curves.png", "confusion_matrix.png", "config.yaml"} <= {f["path"] for f in listed}
    dead = children[killed.number]
    assert dead["info"]["status"] == "KILLED" and _tag(dead, "optuna.state") == "FAIL"
    parents = [r for r in found if _tag(r, "mnistlab.role") == "sweep"]
    assert 1 <= len(parents) <= WORKERS  # one per worker, or shared when a worker found another's
    assert all(_tag(r, "mlflow.parentRunId") in {p["info"]["run_id"] for p in parents} for r in children.values())


def _training(root: Path, number: int) -> bool:
    log = root / "outputs" / "hparams_search" / "tiny_cnn_optuna" / f"trial-{number:04d}" / "run.log"
    return log.is_file() and "MLflow run" in log.read_text(errors="replace")


def _tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["data"].get("tags", []) if t["key"] == key), None)
