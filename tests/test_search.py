"""Hyperparameter search (``-m hparams_search=...``, this project's Optuna sweeper): real searches
through ``python run.py`` into a sqlite study and a sqlite MLflow store, a real SIGKILL mid-trial
and the rerun that continues the study, pruning, failures; the search-space syntax and the
sweeper's failure rules on their own (the latter with a stand-in launcher: no training).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from optuna.trial import TrialState

from conftest import RUN_PY, cli_env, error_lines, mlflow_client
from mnistlab.core.errors import ConfigError
from mnistlab.sweeps.search import RETRY_OF, Search, SearchStopped, Settings
from mnistlab.sweeps.space import parse
from mnistlab.sweeps.trial import PRUNED_AT

# tiny trials: 500 images, 2 epochs of the tiny cnn, ~3 s each once TensorFlow is loaded
TINY = (
    "hparams_search=tiny_cnn_optuna",
    "data.limit=500",
    "trainer.epochs=2",
    "trainer.verbose=0",
    "tracking.log_model=false",
)


def search(*args: str, store: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RUN_PY), "-m", *args], capture_output=True, text=True, env=cli_env(store), timeout=timeout
    )


def study(root: Path, name: str = "tiny_cnn_optuna") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{root / 'optuna.db'}")


def children(store: str) -> list:
    client = mlflow_client(store)
    experiment = client.get_experiment_by_name("mnistlab")
    return [r for r in client.search_runs([experiment.experiment_id]) if "optuna.trial" in r.data.tags]


def parent(store: str):
    client = mlflow_client(store)
    experiment = client.get_experiment_by_name("mnistlab")
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get("mnistlab.role") == "sweep"]
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def test_a_search_runs_its_trials_logs_them_and_a_rerun_tops_it_up_with_pruning(tmp_path, mnist_dir):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = search(*TINY, "hydra.sweeper.n_trials=4", "hydra.sweeper.pruner=null", store=store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 4
    # each trial is an MLflow child run of the search's parent, tagged with its number, state and params
    kids = {int(r.data.tags["optuna.trial"]): r for r in children(store)}
    top = parent(store)
    assert sorted(kids) == [0, 1, 2, 3]
    for number, run in kids.items():
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == top.info.run_id
        assert run.data.tags["optuna.state"] == "COMPLETE" and run.data.tags["optuna.study"] == "tiny_cnn_optuna"
        params = trials[number].params
        assert {k: run.data.tags[f"optuna.param.{k}"] for k in params} == {k: str(v) for k, v in params.items()}
        # the objective Optuna got is the run's validation accuracy (the test set plays no part)
        assert trials[number].value == pytest.approx(run.data.metrics["val_accuracy"])
        assert (
            tmp_path / "outputs" / "hparams_search" / "tiny_cnn_optuna" / f"trial-{number:04d}" / "run.log"
        ).is_file()  # its own folder, named after its number
    # the parent: the best trial, all trials, Optuna's two plots
    best = max(trials, key=lambda t: t.value)
    assert top.info.status == "FINISHED" and top.data.tags["optuna.best_trial"] == str(best.number)
    assert top.data.metrics["best_val_accuracy"] == pytest.approx(best.value)
    client = mlflow_client(store)
    listed = {a.path for a in client.list_artifacts(top.info.run_id, "optuna")}
    assert listed == {
        "optuna/best_trial.json",
        "optuna/trials.csv",
        "optuna/optimization_history.png",
        "optuna/param_importances.png",
    }
    for png in ("optimization_history", "param_importances"):
        assert (
            Path(client.download_artifacts(top.info.run_id, f"optuna/{png}.png", str(tmp_path))).read_bytes()[:4]
            == b"\x89PNG"
        )

    # later: the same command with n_trials=5 adds one trial, in the same study and parent run; this
    # one is deliberately bad (a learning rate below 1e-7 learns nothing) and the median pruner, with
    # the four trials above as its reference, stops it after its first epoch
    pruner = "hydra.sweeper.pruner={_target_:optuna.pruners.MedianPruner,n_startup_trials:2,n_warmup_steps:0}"
    proc = search(*TINY, "hydra.sweeper.n_trials=5", pruner, "optimizer.lr=tag(log,interval(1e-8,1e-7))", store=store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4 + [TrialState.PRUNED]
    assert trials[4].user_attrs[PRUNED_AT] == 1 and list(trials[4].intermediate_values) == [1]
    pruned = {int(r.data.tags["optuna.trial"]): r for r in children(store)}[4]
    assert pruned.data.tags["optuna.state"] == "PRUNED" and pruned.data.tags["optuna.pruned_at_epoch"] == "1"
    assert len(client.get_metric_history(pruned.info.run_id, "val_accuracy")) == 1  # trainer.epochs=2
    assert parent(store).info.run_id == top.info.run_id  # the same parent, FINISHED again
    assert parent(store).info.status == "FINISHED"
    assert "PRUNED" in proc.stdout and "pruned by Optuna after epoch 1" in proc.stdout  # the summary says so
    # mnistlab compare ranks the trials like any sweep's runs: the four complete ones, then the pruned one
    mnistlab = Path(sys.executable).parent / "mnistlab"
    proc = subprocess.run(
        [str(mnistlab), "compare", "--uri", store, "--sweep", "last", "--out", str(tmp_path / "cmp")],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ranked = [line.split()[-1] for line in proc.stdout.splitlines() if re.search(r"^\d+ .* [0-9a-f]{32}$", line)]
    by_value = sorted(trials[:4], key=lambda t: -t.value)
    run_of = {int(r.data.tags["optuna.trial"]): r.info.run_id for r in children(store)}
    assert ranked[-1] == run_of[4] and len(ranked) == 5
    assert set(ranked[:4]) == {run_of[t.number] for t in by_value}  # (ranked by test accuracy, not by the objective)


def test_a_killed_search_continues_where_it_stopped(tmp_path, mnist_dir):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = (*TINY, "data.limit=2000", "trainer.epochs=3", "hydra.sweeper.n_trials=4", "hydra.sweeper.pruner=null")
    folder = tmp_path / "outputs" / "hparams_search" / "tiny_cnn_optuna"
    proc = subprocess.Popen(
        [sys.executable, str(RUN_PY), "-m", *args],
        env=cli_env(store),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not _training(folder / "trial-0001" / "run.log"):  # trial 1 has started its epochs
            assert proc.poll() is None and time.monotonic() < deadline, "the search ended before trial 1 trained"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    before = {path: path.read_bytes() for path in folder.glob("trial-*/*") if path.is_file()}
    killed = study(tmp_path).trials[1]
    assert killed.state == TrialState.RUNNING  # as the dead process left it

    proc = search(*args, store=store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = study(tmp_path).trials
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(finished) == 4  # exactly n_trials, the killed one not counted
    assert trials[1].state == TrialState.FAIL and "died" in trials[1].user_attrs["fail_reason"]
    retry = next(t for t in trials if t.user_attrs.get(RETRY_OF) == 1)
    assert retry.params == killed.params and retry.state == TrialState.COMPLETE
    sampled = [json.dumps(t.params, sort_keys=True) for t in trials if RETRY_OF not in t.user_attrs]
    assert len(set(sampled)) == len(sampled)  # the rerun's sampler did not replay the first run's samples
    for path, content in before.items():  # nothing the first run wrote was overwritten
        assert path.read_bytes() == content, path
    assert sorted(p.name for p in folder.glob("trial-*")) == [f"trial-{t.number:04d}" for t in trials]
    runs = {int(r.data.tags["optuna.trial"]): r for r in children(store)}
    assert runs[1].info.status == "KILLED" and runs[1].data.tags["optuna.state"] == "FAIL"
    assert {runs[t.number].info.status for t in finished} == {"FINISHED"}
    assert parent(store).info.status == "FINISHED"


def _training(log: Path) -> bool:
    return log.is_file() and "MLflow run" in log.read_text(errors="replace")


def test_a_search_whose_trials_keep_failing_stops_after_max_failures(tmp_path, mnist_dir):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # a dropout rate above 1 in every trial's search space: each job refuses its config
    proc = search(
        *TINY,
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.max_failures=1",
        "model.layers.4.rate=interval(1.5, 2.0)",
        store=store,
    )
    assert proc.returncode == 1
    assert error_lines(proc)[-1] == (
        "error: search 'tiny_cnn_optuna' stopped after 2 failed trials (more than "
        "hydra.sweeper.max_failures): 0 of 3 trials finished; rerun the same command "
        "to continue"
    )
    trials = study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    assert all("dropout rate must be a number in [0, 1)" in t.user_attrs["fail_reason"] for t in trials)
    assert {r.data.tags["optuna.state"] for r in children(store)} == {"FAIL"}
    assert parent(store).info.status == "FAILED"


# ---------------------------------------------------------------------------------------------
# The sweeper's rules on their own: a stand-in launcher returns what jobs return


def _job(value=None, error: Exception | None = None) -> JobReturn:
    job = JobReturn()
    job.status = JobStatus.FAILED if error else JobStatus.COMPLETED
    job._return_value = error if error else value
    return job


def _search(tmp_path: Path, outcomes: list, **settings) -> tuple[Search, list[list[str]]]:
    launched: list[list[str]] = []

    def launch(batch: list[list[str]], first: int) -> list[JobReturn]:
        launched.extend(batch)
        return [outcomes.pop(0) for _ in batch]

    space = parse({"optimizer.lr": "tag(log, interval(1e-4, 1e-1))", "seed": 3}, [])
    conf = Settings(
        study_name="rules",
        storage=f"sqlite:///{tmp_path / 'optuna.db'}",
        sampler={"_target_": "optuna.samplers.TPESampler", "seed": 1},
        **settings,
    )
    conf.check()
    return Search(conf, space, str(tmp_path), tmp_path / "sweep", launch), launched


@pytest.mark.fast
def test_raising_and_nan_trials_fail_with_their_reason_and_the_search_goes_on(tmp_path):
    outcomes = [
        _job(error=RuntimeError("boom")),
        _job(0.9),
        _job(float("nan")),
        _job(float("inf")),
        _job(None),
        _job(0.8),
        _job("abc"),
        _job(0.7),
    ]
    runner, launched = _search(tmp_path, outcomes, n_trials=3, max_failures=5)
    result = runner.run()
    trials = study(tmp_path, "rules").trials
    assert [t.state.name for t in trials] == [
        "FAIL",
        "COMPLETE",
        "FAIL",
        "FAIL",
        "FAIL",
        "COMPLETE",
        "FAIL",
        "COMPLETE",
    ]
    reasons = [t.user_attrs.get("fail_reason") for t in trials]
    assert reasons[0] == "RuntimeError: boom" and reasons[2] == "the objective is nan"
    assert reasons[3] == "the objective is inf" and "returned no val_accuracy" in reasons[4]
    assert reasons[6] == "the job returned 'abc', not a number"
    assert result.reached and result.finished == 3 and result.failed_here == 5 and result.problem() is None
    assert [line for line in launched[0] if not line.startswith("optimizer.lr=")] == [
        "seed=3",
        "hydra.sweep.subdir=trial-0000",
    ]
    link_file = tmp_path / "sweep" / "trial-0007" / "optuna_trial.json"
    link = json.loads(link_file.read_text())
    assert link["number"] == 7 and link["params"] == trials[7].params
    assert link_file.stat().st_mode & 0o777 == 0o600  # it holds the storage URL, password and all


@pytest.mark.fast
def test_one_failure_more_than_max_failures_stops_the_search(tmp_path):
    runner, _ = _search(
        tmp_path, [_job(0.5), _job(float("nan")), _job(error=ValueError("x")), _job(0.9)], n_trials=3, max_failures=1
    )
    with pytest.raises(SearchStopped, match="stopped after 2 failed trials") as stopped:
        runner.run()  # no mnistlab sweep callback in this process to report it: the search raises
    assert "1 of 3 trials finished" in str(stopped.value)
    assert [t.state.name for t in study(tmp_path, "rules").trials] == ["COMPLETE", "FAIL", "FAIL"]
    assert (runner.failed_here, runner.launched) == (2, 3)


@pytest.mark.fast
def test_n_jobs_asks_a_batch_and_never_more_than_the_study_needs(tmp_path):
    runner, launched = _search(tmp_path, [_job(v) for v in np.linspace(0.1, 0.5, 5)], n_trials=5, n_jobs=2)
    runner.run()
    assert len(launched) == 5 and len(study(tmp_path, "rules").trials) == 5  # batches of 2, 2, then 1


@pytest.mark.fast
@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the orphan is asked outside Study.optimize
def test_a_trial_whose_heartbeat_stopped_on_another_host_is_failed_and_retried(tmp_path, monkeypatch):
    """Another machine's worker died mid-trial: its pid means nothing here, its heartbeat tells."""
    from mnistlab.sweeps import optuna_adapter as search_module

    monkeypatch.setattr(search_module, "HEARTBEAT_S", 1)
    monkeypatch.setattr(search_module, "GRACE_S", 2)
    runner, _ = _search(tmp_path, [_job(0.5), _job(0.6)], n_trials=2)
    study_ = optuna.create_study(
        study_name="rules", storage=search_module.open_storage(runner.storage_url), direction="maximize"
    )
    orphan = study_.ask(parse({"optimizer.lr": "tag(log, interval(1e-4, 1e-1))"}, []).distributions())
    orphan.set_user_attr("owner", {"host": "another-machine", "pid": 1, "started": "1"})
    study_._storage.record_heartbeat(orphan._trial_id)
    time.sleep(3)  # longer than the grace period
    result = runner.run()
    trials = study(tmp_path, "rules").trials
    assert trials[0].state == TrialState.FAIL and "no heartbeat" in trials[0].user_attrs["fail_reason"]
    assert trials[1].user_attrs[RETRY_OF] == 0 and trials[1].params == orphan.params
    assert result.reached and [t.state for t in trials[1:]] == [TrialState.COMPLETE] * 2


@pytest.mark.parametrize(
    "params,message",
    [
        ({"x": "glob(*)"}, "glob() is not a search space"),
        ({"x": "tag(log, interval(0, 1))"}, "a log scale needs a start > 0"),
        ({"x": "interval(2, 1)"}, "the start must be below the end"),
        ({"x": "range(5, 1)"}, "is empty"),
        ({"x": "tag(int, interval(1.5, 4))"}, "whole-number ends"),
        ({"x": "tag(exp, interval(1, 4))"}, "unknown tag 'exp'"),
        ({"x": "choice(1, 1)"}, "a value appears twice"),
        ({"seed": "3"}, "nothing to search"),
    ],
)
@pytest.mark.fast
def test_bad_search_spaces_are_refused_naming_the_key(params, message):
    with pytest.raises(ConfigError) as info:
        parse(params, [])
    assert message in str(info.value)


@pytest.mark.fast
def test_search_space_syntax_becomes_optuna_distributions():
    space = parse(
        {
            "a": "tag(log, interval(1e-4, 1e-2))",
            "b": "interval(0.0, 0.5)",
            "c": "tag(int, interval(16, 96))",
            "d": "choice(32, 64)",
            "e": "range(2, 6)",
            "f": "range(0.0, 1.0, 0.25)",
            "g": "choice(adam, sgd)",
        },
        ["seed=7", "d=choice(64, 128)"],
    )  # the command line wins over the preset
    dist = space.distributions()
    assert dist["a"] == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    assert dist["b"] == optuna.distributions.FloatDistribution(0.0, 0.5)
    assert dist["c"] == optuna.distributions.IntDistribution(16, 96)
    assert dist["d"] == optuna.distributions.CategoricalDistribution((64, 128))
    assert dist["e"] == optuna.distributions.IntDistribution(2, 5)
    assert dist["f"] == optuna.distributions.FloatDistribution(0.0, 0.75, step=0.25)
    assert space.fixed == ["seed=7"]
    assert space.overrides({"g": "adam", "a": 0.001, "d": 64}) == ["seed=7", "g=adam", "a=0.001", "d=64"]


def test_the_pareto_preset_records_a_two_objective_study_and_its_front(tmp_path, mnist_dir):
    """hparams_search=tiny_cnn_pareto, 3 tiny trials: accuracy against parameters, the front on the
    parent run, its runs tagged, and `mnistlab compare` saying which they are."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = search(*TINY[1:], "hparams_search=tiny_cnn_pareto", "hydra.sweeper.n_trials=3", store=store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    kept = study(tmp_path, "tiny_cnn_pareto")
    assert [d.name for d in kept.directions] == ["MAXIMIZE", "MINIMIZE"]
    trials = [t for t in kept.trials if t.state == TrialState.COMPLETE]
    runs = {int(r.data.tags["optuna.trial"]): r for r in children(store)}
    for trial in trials:  # the values are the runs' own final val_accuracy and num_params
        metrics = runs[trial.number].data.metrics
        assert trial.values == [metrics["val_accuracy"], metrics["num_params"]]
    front = {t.number for t in kept.best_trials}
    assert {n for n, r in runs.items() if r.data.tags.get("optuna.pareto_front") == "true"} == front
    sweep = parent(store)
    assert sweep.data.tags["optuna.objectives"] == "val_accuracy,num_params"
    client = mlflow_client(store)
    table = Path(client.download_artifacts(sweep.info.run_id, "optuna/pareto_front.csv")).read_text().splitlines()
    assert table[0] == "trial,val_accuracy,num_params,params" and len(table) == 1 + len(front)
    assert Path(client.download_artifacts(sweep.info.run_id, "optuna/pareto_front.png")).read_bytes()[:4] == b"\x89PNG"
    compare = subprocess.run(
        [str(Path(sys.executable).parent / "mnistlab"), "compare", "--uri", store, "--sweep", "last", "--json"],
        capture_output=True,
        text=True,
        env=cli_env(store),
        timeout=120,
    )
    assert compare.returncode == 0, compare.stderr[-2000:]
    marked = {r["run_id"] for r in json.loads(compare.stdout)["runs"] if r["pareto_front"]}
    assert marked == {runs[n].info.run_id for n in front}
