"""Sweeps end to end: ``python run.py -m ...`` in a subprocess on the real MNIST files, then the store
is read back: one parent run per sweep with its children nested, the ranked summary on the parent
matching what the children logged, failures recorded without stopping the others, parallel jobs
into a fresh store, and ``mnistlab compare`` on the result."""

from __future__ import annotations

import csv
import io
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, RUN_PY, SWEEP_EPOCHS, cli_env, error_lines, kill_if_running, mlflow_client, run_cli

CURVES = ("loss", "accuracy", "val_loss", "val_accuracy")
MNISTLAB = Path(sys.executable).parent / "mnistlab"  # the console script, installed beside python


def sweep_runs(store: str) -> tuple:
    """(parent, children in job order) of the only sweep in ``store``."""
    client = mlflow_client(store)
    experiment = client.get_experiment_by_name("mnistlab")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("mnistlab.role") == "sweep"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    children = sorted((r for r in runs if r is not parents[0]), key=lambda r: int(r.data.tags["sweep.job"]))
    return parents[0], children


def summary_csv(store: str, parent) -> list[dict]:
    text = mlflow_client(store).download_artifacts(parent.info.run_id, "summary/runs.csv")
    return list(csv.DictReader(io.StringIO(Path(text).read_text())))


def ranked(children) -> list:
    """What the summary must say: finished runs by test accuracy, then the others."""
    done = sorted((c for c in children if c.info.status == "FINISHED"), key=lambda c: -c.data.metrics["test_accuracy"])
    return done + [c for c in children if c.info.status != "FINISHED"]


def test_sweep_is_one_parent_run_with_a_child_per_job(small_sweep):
    parent, children = sweep_runs(small_sweep.store)
    sweep_id = parent.data.tags["sweep_id"]
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == f"sweep {sweep_id}: model"  # its time stamp and the swept key
    assert parent.data.tags["sweep.keys"] == "model"
    assert parent.data.params["model"] == "mlp12,dense512" and parent.data.params["data.limit"] == "500"

    assert [c.info.run_name for c in children] == [
        f"data.limit=500,model={m},trainer.epochs={SWEEP_EPOCHS}" for m in ("mlp12", "dense512")
    ]
    client = mlflow_client(small_sweep.store)
    for job, child in enumerate(children):
        tags = child.data.tags
        assert (tags["mlflow.parentRunId"], tags["sweep_id"], tags["sweep.job"]) == (
            parent.info.run_id,
            sweep_id,
            str(job),
        )
        assert child.info.status == "FINISHED"
        assert Path(tags["hydra.output_dir"]) == Path(parent.data.tags["sweep.dir"]) / str(job)
        for curve in CURVES:
            assert sorted(m.step for m in client.get_metric_history(child.info.run_id, curve)) == [0, 1]
    # the filter the README gives finds exactly the sweep
    found = client.search_runs([parent.info.experiment_id], f"tags.sweep_id = '{sweep_id}'")
    assert {r.info.run_id for r in found} == {parent.info.run_id, *(c.info.run_id for c in children)}


def test_sweep_summary_on_the_parent_matches_the_children(small_sweep):
    parent, children = sweep_runs(small_sweep.store)
    expected = ranked(children)
    table = summary_csv(small_sweep.store, parent)
    assert [row["run_id"] for row in table] == [c.info.run_id for c in expected]
    for row, child in zip(table, expected, strict=True):
        metrics = child.data.metrics
        assert row["run"] == child.info.run_name and row["status"] == "FINISHED"
        assert int(row["params"]) == int(metrics["num_params"])
        for key in ("test_accuracy", "test_loss", "train_time_s"):
            assert float(row[key]) == metrics[key], key

    best = expected[0]
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert parent.data.metrics["best_test_accuracy"] == best.data.metrics["test_accuracy"]
    assert parent.data.metrics["runs_finished"] == 2 and parent.data.metrics["runs_failed"] == 0

    client = mlflow_client(small_sweep.store)
    markdown = Path(client.download_artifacts(parent.info.run_id, "summary/runs.md")).read_text()
    assert all(c.info.run_id in markdown for c in children)
    png = Path(client.download_artifacts(parent.info.run_id, "summary/comparison.png")).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000

    # the same ranking printed in the terminal, best first
    printed = small_sweep.proc.stdout
    positions = [printed.index(c.info.run_id, printed.index("ranked by test accuracy")) for c in expected]
    assert positions == sorted(positions)
    assert f"tags.sweep_id = '{parent.data.tags['sweep_id']}'" in printed


def test_failed_jobs_do_not_stop_the_sweep_and_are_summarised(store):
    """Job 1 diverges (NaN loss), job 2 has an invalid learning rate: both FAILED with their reason,
    job 0 FINISHED, the summary lists all three, and the sweep exits non-zero."""
    proc = run_cli(
        "-m",
        "model=mlp12",
        "optimizer=sgd",
        "optimizer.lr=0.01,1e12,-1",
        "data.limit=500",
        "trainer.epochs=2",
        "tracking.log_model=false",
        store=store,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = error_lines(proc)
    assert any(line.startswith("error: job 1 (") and "training diverged: loss is nan" in line for line in lines)
    assert any(line.startswith("error: job 2 (") and "optimizer.lr=-1.0: must be > 0" in line for line in lines)
    assert lines[-1].startswith("error: sweep ") and "2 of 3 jobs did not finish" in lines[-1]

    parent, children = sweep_runs(store)
    assert [c.info.status for c in children] == ["FINISHED", "FAILED", "FAILED"]
    assert "training diverged" in children[1].data.tags["failure_reason"]
    assert "lower optimizer.lr" in children[1].data.tags["failure_reason"]
    assert "must be > 0" in children[2].data.tags["failure_reason"]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert "test_accuracy" not in children[1].data.metrics  # stopped at once: never evaluated
    assert parent.info.status == "FAILED" and parent.data.tags["failure_reason"] == "2 of 3 jobs did not finish"

    table = summary_csv(store, parent)
    assert [row["run_id"] for row in table] == [c.info.run_id for c in ranked(children)]
    assert [row["status"] for row in table] == ["FINISHED", "FAILED", "FAILED"]
    assert all(row["failure_reason"] for row in table[1:]) and not table[0]["failure_reason"]
    assert parent.data.tags["best_run_id"] == children[0].info.run_id
    assert "FAILED" in proc.stdout and children[1].info.run_id in proc.stdout


def test_parallel_sweep_of_the_preset_into_a_fresh_store(tmp_path):
    """experiment=compare_models (9 jobs) on 4 joblib workers into an mlflow.db that does not exist
    yet: every child FINISHED with every metric point, threads shared out between the jobs."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_cli(
        "-m",
        "experiment=compare_models",
        "data.limit=300",
        "trainer.epochs=2",
        "tracking.log_model=false",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=4",
        store=store,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    parent, children = sweep_runs(store)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.launcher"] == "JoblibLauncher"
    assert parent.data.tags["sweep.keys"] == "model,optimizer"
    assert len(children) == 9 and {c.info.status for c in children} == {"FINISHED"}
    combos = {(c.data.params["model.name"], c.data.params["optimizer.name"]) for c in children}
    assert combos == {(m, o) for m in ("dense", "cnn", "tiny_cnn") for o in ("adam", "sgd", "rmsprop")}

    from mnistlab.train.runtime import resolve_threads

    client = mlflow_client(store)
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["preset"] == "compare_models"
        assert child.data.params["trainer.threads_used"] == str(resolve_threads("auto", 4))
        for curve in CURVES:
            points = client.get_metric_history(child.info.run_id, curve)
            assert sorted(m.step for m in points) == [0, 1], (child.info.run_name, curve)
            assert all(math.isfinite(m.value) for m in points)
    assert len({c.data.tags["hydra.output_dir"] for c in children}) == 9
    assert [row["run_id"] for row in summary_csv(store, parent)] == [c.info.run_id for c in ranked(children)]
    # the workers started before the parent run and loaded TensorFlow before their first job: no
    # job's run paid for the imports (seconds)
    assert max(c.data.metrics["time_imports_s"] for c in children) < 1.0


def test_processes_opening_a_fresh_store_at_once_all_get_it(tmp_path):
    """Four processes create the same new mlflow.db at the same moment (parallel sweeps, jobs of a
    sweep whose store was removed): without a lock, MLflow's table creation breaks most of them."""
    opener = "import sys; from mnistlab.tracking import store; print(store.open_experiment(sys.argv[1], 'mnistlab'))"
    for attempt in range(2):
        store = f"sqlite:///{tmp_path / str(attempt) / 'mlflow.db'}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", opener, store], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(4)
        ]
        results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
        assert [(code, out.strip()) for code, out, _ in results] == [(0, "1")] * 4, [err[-500:] for *_, err in results]


def test_a_config_error_shared_by_every_job_stops_the_sweep_before_it_starts(store):
    proc = run_cli("-m", "model=mlp12,dense512", "trainer.epochs=0", store=store)
    assert proc.returncode == 2
    assert error_lines(proc) == ["error: trainer.epochs=0: must be >= 1"]
    assert not Path(store[len("sqlite:///") :]).exists()  # nothing was opened, nothing recorded


def test_a_sweep_hydra_refuses_leaves_no_parent_run(store):
    """A job's option that does not exist is found by Hydra after the parent run was created."""
    proc = run_cli("-m", "model=mlp12,nosuch", "data.limit=500", store=store)
    assert proc.returncode == 2
    assert error_lines(proc)[-1].startswith("error: In 'config': Could not find 'model/nosuch'")
    client = mlflow_client(store)
    assert client.search_runs([client.get_experiment_by_name("mnistlab").experiment_id]) == []


@pytest.mark.parametrize(
    "launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]], ids=["basic", "joblib"]
)
def test_ctrl_c_ends_the_sweep_parent_and_running_children_killed(store, launcher):
    """Ctrl-C in a terminal reaches the whole process group: the sweep process and its workers."""
    proc = subprocess.Popen(
        [
            sys.executable,
            str(RUN_PY),
            "-m",
            "model=dense512",
            "seed=1,2,3",
            "data.limit=2000",
            "trainer.epochs=200",
            "tracking.log_model=false",
            *launcher,
        ],
        cwd=ROOT,
        env=cli_env(store),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        multiruns = Path(cli_env(store)["MNISTLAB_ROOT"]) / "outputs" / "multiruns"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until a job has logged an epoch
            time.sleep(1)
            if not list(multiruns.glob("*/sweep.json")):  # the sweep has not created the store yet; a client
                continue  # would race it creating the tables
            client = mlflow_client(store)
            experiment_id = client.get_experiment_by_name("mnistlab").experiment_id
            if client.search_runs([experiment_id], "metrics.val_accuracy > 0"):
                break
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        kill_if_running(proc)
    assert proc.returncode == 130, stderr[-2000:]
    assert "error: interrupted" in stderr
    parent, children = sweep_runs(store)
    assert parent.info.status == "KILLED" and "stopped before all its jobs ended" in parent.data.tags["failure_reason"]
    assert len(children) == (2 if launcher else 1)  # the jobs that had started; none is left RUNNING
    assert {c.info.status for c in children} == {"KILLED"}
    assert any(client.get_metric_history(c.info.run_id, "val_accuracy") for c in children)  # epochs kept
    assert [row["status"] for row in summary_csv(store, parent)] == ["KILLED"] * len(children)


def test_compare_command_ranks_what_the_store_holds(small_sweep, tmp_path):
    parent, children = sweep_runs(small_sweep.store)
    expected = ranked(children)
    out = tmp_path / "plots"
    proc = subprocess.run(
        [str(MNISTLAB), "compare", "--uri", small_sweep.store, "--sweep", "last", "--out", str(out)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if any(c.info.run_id in line for c in children)]
    assert [row[-1] for row in rows] == [c.info.run_id for c in expected]  # ranked as the store says
    for row, child in zip(rows, expected, strict=True):  # #, run, status, config #, seed, test acc, run id
        assert row[0] == str(expected.index(child) + 1) and row[2] == "FINISHED"
        assert row[4] == child.data.params["seed"]
        assert row[5] == f"{child.data.metrics['test_accuracy']:.2%}"
    assert f"wrote {out}/" in proc.stdout
    for png in ("test_accuracy.png", "val_accuracy_curves.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG")
    assert [r["run_id"] for r in csv.DictReader((out / "runs.csv").open())] == [c.info.run_id for c in expected]

    # python -m mnistlab compare, filtered by a params filter: one run; the parent never shows up
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnistlab",
            "compare",
            "--uri",
            small_sweep.store,
            "--filter",
            "params.`model.name` = 'mlp12'",
            "--out",
            str(tmp_path / "one"),
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("1 runs in experiment 'mnistlab'")
    assert children[0].info.run_id in proc.stdout and parent.info.run_id not in proc.stdout


@pytest.mark.parametrize(
    "args,phrase",
    [
        (["--filter", "params.`model.name` = 'resnet'"], "no runs in experiment 'mnistlab' match"),
        (["--sweep", "20000101-000000-0000"], "no runs in experiment 'mnistlab' match \"tags.sweep_id"),
        (["--experiment", "nope"], "--experiment 'nope': no such experiment"),
        (["--filter", "params.x = y"], "--filter 'params.x = y': "),
    ],
)
def test_compare_says_clearly_when_nothing_matches(small_sweep, tmp_path, args, phrase):
    proc = subprocess.run(
        [str(MNISTLAB), "compare", "--uri", small_sweep.store, "--out", str(tmp_path), *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert proc.returncode in (1, 2) and proc.stdout == ""
    assert len(error_lines(proc)) == 1 and error_lines(proc)[0].startswith("error: ") and phrase in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_compare_without_a_store_does_not_create_one(tmp_path):
    proc = subprocess.run(
        [str(MNISTLAB), "compare"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=cli_env(env={"MNISTLAB_ROOT": str(tmp_path)}),
        timeout=120,
    )
    assert proc.returncode == 1
    assert error_lines(proc) == [
        f"error: no MLflow store at {tmp_path / 'mlflow.db'} (mlflow.db of $MNISTLAB_ROOT): run `python run.py` first, "
        "or pass --uri (or set MLFLOW_TRACKING_URI)"
    ]
    assert not (tmp_path / "mlflow.db").exists()
