"""Continuing a grid sweep that died: a real 4-job sweep SIGKILLed (the whole process group, as a
reboot or a lost node would end it) after its second job finished and the third checkpointed an
epoch, then `mnistlab continue`. The finished jobs keep their runs and get no new epochs, the third
resumes in its own run, the fourth runs; one parent, one summary."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, RUN_PY, cli_env, error_lines, kill_if_running, mlflow_client, start_run_py
from test_sweeps import summary_csv

SWEEP = ["model=mlp12", "seed=1,2,3,4", "data.limit=2000", "trainer.epochs=6", "trainer.verbose=0"]
SWEEP += ["tracking.log_model=false"]
MNISTLAB = Path(sys.executable).parent / "mnistlab"


def runs_of(store: str) -> tuple:
    """(the sweep parents, the children a continue has not superseded, by job number)."""
    client = mlflow_client(store)
    experiment = client.get_experiment_by_name("mnistlab")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    parents = [r for r in runs if r.data.tags.get("mnistlab.role") == "sweep"]
    children = [r for r in runs if r not in parents and "sweep.superseded" not in r.data.tags]
    return parents, sorted(children, key=lambda r: int(r.data.tags["sweep.job"]))


def continue_(store: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(MNISTLAB), "continue", *args], cwd=ROOT, capture_output=True, text=True, env=cli_env(store), timeout=600
    )


@pytest.mark.parametrize(
    "launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]], ids=["basic", "joblib"]
)
def test_a_killed_sweep_continues_where_it_stopped(store, launcher):
    mlflow_client(store).search_experiments()  # the store's tables, made before the sweep and this test both open it
    proc = start_run_py("-m", *SWEEP, *launcher, store=store)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            _, children = runs_of(store)
            running = [c.info.status for c in children][:3] == ["FINISHED", "FINISHED", "RUNNING"]
            if running and mlflow_client(store).get_metric_history(children[2].info.run_id, "val_accuracy"):
                break  # the third job has a checkpoint (an epoch is logged once it is checkpointed)
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.2)
        else:
            raise AssertionError("the sweep did not reach its third job")
        os.killpg(proc.pid, signal.SIGSTOP)  # frozen as it is: alive, and no job moves on meanwhile
        refused = continue_(store)  # the sweep is still running: a continue is refused, nothing changes
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert error_lines(refused)[-1].endswith(
            f"that sweep is still running (process {proc.pid}); wait for it to end, or stop it first"
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        kill_if_running(proc)
    [parent], before = runs_of(store)
    assert parent.info.status == "RUNNING"  # SIGKILL: nothing could end it
    done = {
        c.info.run_id: len(mlflow_client(store).get_metric_history(c.info.run_id, "val_accuracy")) for c in before[:2]
    }

    # another command is not a continue of that sweep
    folder = Path(parent.data.tags["sweep.dir"])
    other = subprocess.run(
        [
            sys.executable,
            str(RUN_PY),
            "-m",
            *SWEEP[:1],
            "seed=1,2,3,5",
            *SWEEP[2:],
            *launcher,
            f"hydra.sweep.dir={folder}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=cli_env(store),
        timeout=300,
    )
    assert other.returncode == 2
    assert "this command does not continue that sweep: its job 3 was" in error_lines(other)[-1]

    proc = continue_(store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    parents, children = runs_of(store)
    assert [p.info.run_id for p in parents] == [parent.info.run_id]  # the same parent, not a second
    assert parents[0].info.status == "FINISHED" and parents[0].data.tags["sweep.continued"] == "1"
    assert [c.data.tags["sweep.job"] for c in children] == ["0", "1", "2", "3"]
    assert all(c.info.status == "FINISHED" for c in children)
    for run_id, epochs in done.items():  # the finished jobs: their own runs, no new epoch
        assert run_id in {c.info.run_id for c in children}
        assert len(mlflow_client(store).get_metric_history(run_id, "val_accuracy")) == epochs == 6
        assert f"FINISHED before, in run {run_id}: skipped" in proc.stdout
    # the third job, killed mid-training: its own run continued from its checkpoint, each epoch once
    assert children[2].info.run_id == before[2].info.run_id
    steps = [m.step for m in mlflow_client(store).get_metric_history(children[2].info.run_id, "val_accuracy")]
    assert sorted(steps) == list(range(6))
    assert len(summary_csv(store, parents[0])) == 4  # one summary, every job once
    assert "4 runs in 1 configuration" in proc.stdout  # seeds 1-4 of one configuration
