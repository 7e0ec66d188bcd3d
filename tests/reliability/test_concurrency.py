"""Concurrency: 16 training runs written by 4 parallel workers lose nothing, into a fresh sqlite
store and into a real ``mlflow server``.

Proved for real, on the real MNIST files, with ``python run.py -m ...`` as a user types it:

* A, independent processes into one fresh sqlite file: four 4-job sweeps started at the same
  moment (``subprocess.Popen`` x 4), all against an ``mlflow.db`` that does not exist yet, so the
  four processes race to create its tables and then write 16 training runs (plus 4 sweep parents)
  side by side.
* B, joblib workers into a tracking server: one 16-job sweep with ``hydra/launcher=joblib
  hydra.launcher.n_jobs=4`` and ``tracking.uri=http://127.0.0.1:<port>`` of a real ``mlflow
  server`` (its own fresh sqlite backend), so four worker processes log through its REST API at once.

In both: the runs' start and end times show four of them open at the same moment (the writing
really overlapped); every process exits 0; all 16 training runs (and the sweep parents) are FINISHED; every
per-epoch curve of every run has exactly one point per epoch at steps 0..epochs-1 (none missing,
none doubled) and its latest value matches the last point; the final metrics are there; the number
of points read back through MLflow equals the expected total and the number of rows in the
database itself (no row doubled); "database is locked" (or any sqlite OperationalError) appears in
no process's output, no job log and not in the server's log; and the server answered every request
2xx (a 500 the client silently retried would otherwise pass unseen).
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, RUN_PY, cli_env, mlflow_client
from servers import log_tail, mlflow_server, stop_process_group

WORKERS = 4  # processes writing at the same time
JOBS_PER_WORKER = 4  # 16 training runs in all
RUNS = WORKERS * JOBS_PER_WORKER
EPOCHS = 3
# One point per epoch, at step = epoch (tracking.logger.RunLog.epoch): Keras's logs plus EpochHistory's two.
CURVES = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_time_s")
# One point each, logged once (runner.record): the image counts before training, the rest after.
FINALS = (
    "num_params",
    "test_loss",
    "test_accuracy",
    "train_time_s",
    "epochs_run",
    "time_per_epoch_s",
    "wall_time_s",
    "train_images",
    "val_images",
    "test_images",
    "test_accuracy_ci_low",
    "test_accuracy_ci_high",
    *(f"test_recall_{digit}" for digit in range(10)),
    *(f"time_{phase}_s" for phase in ("data", "imports", "store", "build", "record", "fit", "test", "log")),
)
STARTUP = "time_startup_s"  # logged by a process's first run only (a reused worker's later runs have none)
POINTS_PER_RUN = len(CURVES) * EPOCHS + len(FINALS)
# What a sweep's parent gets when it ends (sweeps.tracker.SweepTracker / reports.comparison.Report.summary).
PARENT_METRICS = (
    "best_test_accuracy",
    "best_test_loss",
    "runs_finished",
    "runs_failed",
    "configurations",
    "best_group_mean_test_accuracy",
    "groups_tied_with_best",
)
# Small and quick: the point is the writing, not the learning.
TRAIN = ("model=mlp12", "data.limit=300", f"trainer.epochs={EPOCHS}", "tracking.log_model=false")
LOCKED = ("database is locked", "OperationalError")
TIMEOUT = 600  # s, for a whole scenario: 1-2 min on the idle 2-core VM, 2-4 min while other jobs load it


def start(args: list[str], env: dict[str, str], logs: Path, name: str) -> tuple[subprocess.Popen, Path, Path]:
    """``python run.py <args>`` in its own process group, its stdout and stderr in files (four pipes
    read one after another could fill up and block a writer)."""
    out, err = logs / f"{name}.out", logs / f"{name}.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(RUN_PY), *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    return proc, out, err


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    """Exit codes; whatever still runs at the deadline (or when the test fails) is stopped by its pid."""
    deadline = time.monotonic() + timeout
    try:
        return [proc.wait(timeout=max(1.0, deadline - time.monotonic())) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                stop_process_group(proc, grace=5)


def assert_never_locked(files: list[Path]) -> None:
    """No process output, job log or server log mentions a locked database (nor any sqlite error)."""
    hits = []
    for path in files:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if any(word in line for word in LOCKED):
                hits.append(f"{path}:{number}: {line.strip()[:300]}")
    assert not hits, "\n".join(hits[:40])


def failed_requests(server_log: Path) -> tuple[int, list[str]]:
    """(requests the server answered, those not answered 2xx), from its access log. The one expected
    miss: the first look-up of the experiment, before the sweep creates it. A request the server
    failed (a locked database is a 500) and the client retried would otherwise go unnoticed."""
    requests = re.findall(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3})', server_log.read_text(errors="replace"))
    failed = [
        f"{method} {path} -> {code}"
        for method, path, code in requests
        if not code.startswith("2") and not (code == "404" and "/experiments/get-by-name" in path)
    ]
    return len(requests), failed


def check_runs(uri: str, parents: int) -> tuple[list, list, int]:
    """Read the store back through MLflow (at ``uri``: the sqlite file or the server's REST API):
    (parents, training runs, metric points counted). Asserts every run FINISHED and every point there."""
    client = mlflow_client(uri)
    experiment = client.get_experiment_by_name("mnistlab")
    assert experiment is not None, f"no experiment 'mnistlab' in {uri}"
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    sweeps = [r for r in runs if r.data.tags.get("mnistlab.role") == "sweep"]
    children = sorted(
        (r for r in runs if r.data.tags.get("mnistlab.role") != "sweep"), key=lambda r: int(r.data.params["seed"])
    )
    assert len(sweeps) == parents and len(children) == RUNS, [(r.info.run_name, r.info.status) for r in runs]
    not_finished = [
        (r.info.run_name, r.info.run_id, r.info.status, r.data.tags.get("failure_reason"))
        for r in runs
        if r.info.status != "FINISHED"
    ]
    assert not not_finished, not_finished
    assert [r.data.params["seed"] for r in children] == [str(seed) for seed in range(RUNS)]  # each job once
    parent_ids = {p.info.run_id for p in sweeps}
    for parent in sweeps:
        mine = [c for c in children if c.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert len(mine) == RUNS // parents, (parent.info.run_name, [c.info.run_name for c in mine])
        assert parent.data.metrics["runs_finished"] == len(mine) and parent.data.metrics["runs_failed"] == 0
        assert {c.data.tags["sweep_id"] for c in mine} == {parent.data.tags["sweep_id"]}
        assert sorted(int(c.data.tags["sweep.job"]) for c in mine) == list(range(len(mine)))
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == parent_ids

    counted, problems = 0, []
    for run in children:
        name = f"{run.info.run_name} ({run.info.run_id})"
        for key in CURVES:
            history = client.get_metric_history(run.info.run_id, key)
            counted += len(history)
            steps = sorted(point.step for point in history)
            if steps != list(range(EPOCHS)):
                problems.append(f"{name} {key}: steps {steps}, expected 0..{EPOCHS - 1}")
            elif run.data.metrics.get(key) != max(history, key=lambda p: p.step).value:
                problems.append(
                    f"{name} {key}: latest {run.data.metrics.get(key)} is not the last point's "
                    f"{max(history, key=lambda p: p.step).value}"
                )
        for key in FINALS:
            history = client.get_metric_history(run.info.run_id, key)
            counted += len(history)
            if [point.step for point in history] != [0]:
                problems.append(f"{name} {key}: {len(history)} points, expected 1 at step 0")
        if STARTUP in run.data.metrics:
            history = client.get_metric_history(run.info.run_id, STARTUP)
            counted += len(history)
            if len(history) != 1:
                problems.append(f"{name} {STARTUP}: {len(history)} points, expected 1")
        if run.data.metrics.get("epochs_run") != EPOCHS:
            problems.append(f"{name}: epochs_run {run.data.metrics.get('epochs_run')}, expected {EPOCHS}")
    assert not problems, "\n".join(problems)
    for parent in sweeps:
        for key in PARENT_METRICS:
            history = client.get_metric_history(parent.info.run_id, key)
            counted += len(history)
            assert len(history) == 1, (parent.info.run_name, key, history)
    return sweeps, children, counted


def rows_in_database(db: Path, run_ids: list[str]) -> tuple[int, list]:
    """(metric rows of these runs, any (run, key, step) stored more than once), read from the file itself."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        marks = ",".join("?" * len(run_ids))
        rows = connection.execute(f"SELECT count(*) FROM metrics WHERE run_uuid IN ({marks})", run_ids).fetchone()[0]
        doubled = connection.execute(
            f"SELECT run_uuid, key, step, count(*) FROM metrics WHERE run_uuid IN ({marks}) "
            "GROUP BY run_uuid, key, step HAVING count(*) > 1",
            run_ids,
        ).fetchall()
    return rows, doubled


def most_at_once(runs: list) -> int:
    """The largest number of these runs that were open (between start and end) at the same moment."""
    events = sorted([(r.info.start_time, 1) for r in runs] + [(r.info.end_time, -1) for r in runs])  # ends first
    open_runs = most = 0
    for _, change in events:
        open_runs += change
        most = max(most, open_runs)
    return most


def expected_points(parents: int, children: list) -> int:
    startups = sum(STARTUP in c.data.metrics for c in children)
    return RUNS * POINTS_PER_RUN + parents * len(PARENT_METRICS) + startups


def test_four_sweep_processes_write_into_one_fresh_sqlite_store(tmp_path, mnist_dir):
    """Four independent ``run.py -m`` processes, 4 jobs each, started together on an mlflow.db that
    does not exist yet: 16 runs FINISHED, every point of every curve there, no locked database."""
    db = tmp_path / "mlflow.db"
    store = f"sqlite:///{db}"
    assert not db.exists()
    logs = tmp_path / "logs"
    logs.mkdir()
    env = cli_env(store)  # MLFLOW_TRACKING_URI = the fresh file, MNISTLAB_ROOT = tmp_path
    started = time.monotonic()
    workers = [
        start(
            ["-m", *TRAIN, "seed=" + ",".join(str(w * JOBS_PER_WORKER + j) for j in range(JOBS_PER_WORKER))],
            env,
            logs,
            f"worker{w}",
        )
        for w in range(WORKERS)
    ]
    codes = wait_all([proc for proc, _, _ in workers], TIMEOUT)
    elapsed = time.monotonic() - started
    outputs = [path for _, out, err in workers for path in (out, err)]
    assert codes == [0] * WORKERS, "\n\n".join(
        f"worker {w} exited {code}:\n{log_tail(err)}"
        for w, (code, (_, _, err)) in enumerate(zip(codes, workers))
        if code
    )
    job_logs = sorted((tmp_path / "outputs" / "multiruns").glob("*/*/*.log"))
    assert len(job_logs) == RUNS, job_logs  # Hydra's log of each job, where the runner's warnings go
    assert_never_locked(outputs + job_logs)

    sweeps, children, counted = check_runs(store, parents=WORKERS)
    assert len({p.data.tags["sweep.dir"] for p in sweeps}) == WORKERS  # four sweeps, not one seen four times
    assert most_at_once(sweeps) == WORKERS  # the four sweeps were open at the same time
    assert most_at_once(children) == WORKERS  # and at some moment each had a training run open
    assert counted == expected_points(WORKERS, children)
    rows, doubled = rows_in_database(db, [r.info.run_id for r in sweeps + children])
    assert (rows, doubled) == (counted, [])
    print(f"\n4 processes x {JOBS_PER_WORKER} jobs into a fresh sqlite store: {elapsed:.1f} s, {counted} metric points")


def test_sixteen_joblib_jobs_write_through_a_real_mlflow_server(tmp_path, mnist_dir):
    """One 16-job sweep on 4 joblib workers, logging to ``mlflow server`` on 127.0.0.1 (fresh sqlite
    backend): 16 runs FINISHED, every point there through the API and in the server's database,
    nothing locked in the server's log, nothing fell back to a local store."""
    backend = tmp_path / "server" / "mlflow.db"
    backend.parent.mkdir()
    root = tmp_path / "root"  # MNISTLAB_ROOT: outputs/ here, and a local fallback store would be here
    root.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    with mlflow_server(
        f"sqlite:///{backend}", tmp_path / "server" / "artifacts", tmp_path / "server" / "server.log"
    ) as server:
        started = time.monotonic()
        proc, out, err = start(
            [
                "-m",
                *TRAIN,
                f"seed=range(0,{RUNS})",
                "hydra/launcher=joblib",
                f"hydra.launcher.n_jobs={WORKERS}",
                f"tracking.uri={server.url}",
            ],
            cli_env(env={"MNISTLAB_ROOT": str(root)}),
            logs,
            "sweep",
        )
        [code] = wait_all([proc], TIMEOUT)
        elapsed = time.monotonic() - started
        assert code == 0, f"sweep exited {code}:\n{log_tail(err)}"
        sweeps, children, counted = check_runs(server.url, parents=1)
        assert sweeps[0].data.tags["sweep.launcher"] == "JoblibLauncher"
        assert {c.data.params["trainer.threads_used"] for c in children} == {"1"}  # 2 cores / 4 jobs, at least 1
        assert counted == expected_points(1, children)
        assert len({c.data.tags["hydra.output_dir"] for c in children}) == RUNS
        assert most_at_once(children) == WORKERS  # four runs open at once, never more
        log_path = server.log_path
    job_logs = sorted((root / "outputs" / "multiruns").glob("*/*/*.log"))
    assert len(job_logs) == RUNS, job_logs
    assert_never_locked([out, err, log_path, *job_logs])
    answered, failed = failed_requests(log_path)
    assert answered > RUNS * 10 and not failed, (answered, failed[:40])  # the access log is there, all 2xx
    assert not (root / "mlflow.db").exists()  # everything went to the server, no fallback to a local store
    rows, doubled = rows_in_database(backend, [r.info.run_id for r in sweeps + children])  # server stopped
    assert (rows, doubled) == (counted, [])
    print(f"\n{RUNS} joblib jobs on {WORKERS} workers into mlflow server: {elapsed:.1f} s, {counted} metric points")
