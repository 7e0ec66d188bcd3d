"""Tracking store problems: a tracking server that does not answer, a read-only and a locked sqlite
store. Each stops the run with one line naming the store and what to do (before any training for a
server), or, opted in with tracking.fallback_to_local=true, logs to the local store instead."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import ROOT, RUN_PY, cli_env, error_lines, mlflow_client, only_run, run_cli
from servers import free_port

TINY = ("model=mlp12", "data.limit=300", "trainer.epochs=1", "tracking.log_model=false")


@pytest.mark.parametrize("multirun", [False, True])
def test_server_that_does_not_answer_stops_before_training(tmp_path, multirun):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    proc = run_cli(*(["-m"] if multirun else []), *TINY, f"tracking.uri={uri}", env={"MNISTLAB_ROOT": str(tmp_path)})
    elapsed = time.monotonic() - started
    lines = error_lines(proc)
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"error: tracking.uri='{uri}' does not answer") and "fallback_to_local=true" in lines[0]
    assert "Epoch 1" not in proc.stdout and elapsed < 60  # MLflow's own retries would take minutes
    assert not (tmp_path / "mlflow.db").exists()
    if not multirun:  # refused before the data loads, and no folder is left behind
        assert "MNIST from" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
        assert not list((tmp_path / "outputs").rglob("*.log")), list((tmp_path / "outputs").rglob("*"))


def test_fallback_to_local_store_trains_and_says_so(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    proc = run_cli(
        *TINY, f"tracking.uri={uri}", "tracking.fallback_to_local=true", env={"MNISTLAB_ROOT": str(tmp_path)}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    local = f"sqlite:///{tmp_path / 'mlflow.db'}"
    said = proc.stdout + proc.stderr
    assert "does not answer" in said and f"logging to {local} instead" in said
    assert f"mlflow ui --backend-store-uri {local}" in proc.stdout  # the summary points at where it went
    assert only_run(local).info.status == "FINISHED"


def test_read_only_store_is_named_without_a_traceback(tmp_path):
    from mnistlab.tracking.store import open_experiment

    store_dir = tmp_path / "store"
    store = f"sqlite:///{store_dir / 'mlflow.db'}"
    open_experiment(store, "mnistlab")  # a real store with the experiment in it, then made read-only
    (store_dir / "mlflow.db").chmod(0o444)
    store_dir.chmod(0o555)
    # root writes whatever the file mode says, unless it gives up that capability (util-linux's setpriv)
    drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []
    try:
        proc = subprocess.run(
            [*drop, sys.executable, str(RUN_PY), *TINY],
            cwd=ROOT,
            env=cli_env(store, {"MNISTLAB_ROOT": str(tmp_path)}),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        store_dir.chmod(0o755)
    lines = error_lines(proc)
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"error: tracking.uri='{store}'") and "is read-only" in lines[0], lines
    assert "Epoch 1" not in proc.stdout
    assert mlflow_client(store).search_runs(["1"]) == []


def test_locked_store_is_named_without_a_traceback(store):
    from mnistlab.tracking.store import open_experiment, sqlite_path

    open_experiment(store, "mnistlab")
    holder = sqlite3.connect(sqlite_path(store), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a write transaction
    try:
        proc = run_cli(*TINY, store=store, timeout=300)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    lines = error_lines(proc)
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"error: tracking.uri='{store}'") and "is locked by another process" in lines[0], lines
    assert "Epoch 1" not in proc.stdout
    assert mlflow_client(store).search_runs(["1"]) == []
