"""mnistlab's Optuna sweeper in a Hydra app that is not mnistlab (tests/apps/plain_search.py: no
``root_dir``, no mnistlab callback, a task that returns a number), held to what users of the
official hydra-optuna-sweeper rely on. Real subprocesses, real Optuna studies in sqlite; no
TensorFlow, so each case takes seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import IntDistribution

from conftest import cli_env

APP = Path(__file__).parent / "apps" / "plain_search.py"


def search(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(APP), "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=300,
    )


def study(tmp_path: Path) -> optuna.Study:
    """The study the search kept: without root_dir, in the app's working directory."""
    return optuna.load_study(study_name="mnistlab", storage=f"sqlite:///{tmp_path / 'optuna.db'}")


def test_an_app_without_root_dir_keeps_its_study_in_its_working_directory(tmp_path):
    proc = search(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = study(tmp_path).trials
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    assert all(t.value == t.params["x"] * 10 + t.params["y"] for t in trials)


@pytest.mark.parametrize("sampler", ["GridSampler", "BruteForceSampler"])
def test_a_grid_search_ends_at_its_grid_and_exits_0(tmp_path, sampler):
    """2 x 2 grid from the params, n_trials 10: capped at 4, each point once, no Study.stop crash."""
    proc = search(tmp_path, f"hydra.sweeper.sampler._target_=optuna.samplers.{sampler}", "hydra.sweeper.n_trials=10")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Study.stop" not in proc.stderr
    points = sorted((t.params["x"], t.params["y"]) for t in study(tmp_path).trials)
    assert points == [(1, 1), (1, 2), (2, 1), (2, 2)]


def test_a_search_stopped_by_max_failures_exits_non_zero_with_the_reason(tmp_path):
    proc = search(tmp_path, "fail=true", "hydra.sweeper.max_failures=1")
    assert proc.returncode != 0
    assert "stopped after 2 failed trials" in proc.stderr, proc.stderr[-3000:]
    assert [t.state.name for t in study(tmp_path).trials] == ["FAIL", "FAIL"]


def test_prefixed_keys_keep_their_prefix(tmp_path):
    """+z: a key the config lacks; each trial's override must add it, not set a missing key."""
    proc = search(tmp_path, "+z=choice(100,200)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = study(tmp_path).trials
    assert {t.params["z"] for t in trials} <= {100, 200}
    assert all(t.value == t.params["x"] * 10 + t.params["y"] + t.params["z"] for t in trials)
    overrides = [yaml.safe_load(p.read_text()) for p in (tmp_path / "sweep").glob("trial-*/.hydra/overrides.yaml")]
    assert overrides and all(any(o.startswith("+z=") for o in job) for job in overrides)


def test_int_intervals_are_integer_distributions(tmp_path):
    proc = search(tmp_path, "y=int(interval(1,5))", "+z=tag(log,int(interval(1,64)))")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trial = study(tmp_path).trials[0]
    assert trial.distributions["y"] == IntDistribution(1, 5)
    assert trial.distributions["z"] == IntDistribution(1, 64, log=True)
    assert all(isinstance(t.params["y"], int) and isinstance(t.params["z"], int) for t in study(tmp_path).trials)


def test_shuffle_is_refused_not_ignored(tmp_path):
    proc = search(tmp_path, "x=shuffle(1,2)")
    assert proc.returncode != 0
    assert "shuffle() orders a grid sweep's jobs" in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "optuna.db").exists() or not study(tmp_path).trials


def test_optimization_results_yaml_holds_the_best_trial(tmp_path):
    proc = search(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    best = study(tmp_path).best_trial
    assert results == {"name": "optuna", "best_params": best.params, "best_value": best.value}


def test_a_custom_search_space_suggests_conditional_keys(tmp_path):
    proc = search(
        tmp_path,
        "hydra.sweeper.custom_search_space=plain_search.extend",
        "+w=0",
        "hydra.sweeper.n_trials=6",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = study(tmp_path).trials
    assert {t.params["x"] for t in trials} == {1, 2}
    for trial in trials:
        assert ("w" in trial.params) == (trial.params["x"] == 2)
        assert trial.value == trial.params["x"] * 10 + trial.params["y"] + trial.params.get("w", 0)


def test_a_custom_search_space_that_cannot_be_imported_is_one_line(tmp_path):
    proc = search(tmp_path, "hydra.sweeper.custom_search_space=plain_search.nope")
    assert proc.returncode != 0
    assert "hydra.sweeper.custom_search_space='plain_search.nope': cannot import it" in proc.stderr, proc.stderr


def test_a_multi_objective_search_keeps_its_pareto_front(tmp_path):
    proc = search(tmp_path, "hydra.sweeper.direction=[maximize,minimize]", "+pair=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    kept = study(tmp_path)
    assert [d.name for d in kept.directions] == ["MAXIMIZE", "MINIMIZE"]
    front = {t.number for t in kept.best_trials}
    assert front and all(len(t.values) == 2 for t in kept.trials)
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert results["name"] == "optuna" and "best_params" not in results
    assert sorted(s["values"] for s in results["solutions"]) == sorted(kept.trials[n].values for n in front)


def test_a_multi_objective_search_refuses_a_pruner(tmp_path):
    proc = search(tmp_path, "hydra.sweeper.direction=[maximize,minimize]", "+pair=true", "+hydra.sweeper.pruner=median")
    assert proc.returncode != 0
    assert "Optuna prunes single-objective studies only" in proc.stderr, proc.stderr[-2000:]
