"""A run's end is not cut by a signal: real runs, real signals, and the real sqlite store held
locked by the test for a moment, so that the run's own writes wait exactly when the signals land.

* A second Ctrl-C while the run is being marked KILLED: it waits, and the run ends KILLED.
* SIGTERM during the final writes (after the test set was evaluated): the run completes FINISHED,
  every final metric logged once, and the process says that the signal came after the end.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from conftest import error_lines, mlflow_client
from reliability.test_interrupt_resume import newest_output_dir, start, the_run


@contextmanager
def store_locked(db: Path):
    """The database locked for writing by this test (another process's writes wait on it)."""
    connection = sqlite3.connect(db, timeout=30, isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def wait_for(condition, proc, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def epochs_logged(db: Path, run_name: str) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
            row = connection.execute(
                "SELECT count(*) FROM metrics m JOIN runs r ON m.run_uuid = r.run_uuid "
                "WHERE r.name = ? AND m.key = 'val_accuracy'",
                (run_name,),
            ).fetchone()
    except sqlite3.OperationalError as exc:  # the file is there, its tables not yet: the run is creating them
        if "no such table" in str(exc):
            return 0
        raise
    return row[0]


def test_a_second_ctrl_c_while_the_run_is_marked_killed_waits(store):
    db = Path(store[len("sqlite:///") :])
    before = set(db.parent.glob("outputs/runs/*"))
    proc = start(
        store,
        "model=mlp12",
        "data.limit=2000",
        "trainer.epochs=40",
        "tracking.log_model=false",
        "tracking.run_name=twice-interrupted",
    )
    try:
        wait_for(
            lambda: (
                (newest_output_dir(store, before) or Path("/nowhere")).joinpath("checkpoints", "last.json").is_file()
            ),
            proc,
        )
        with store_locked(db):  # the run's KILLED mark waits here, and the second Ctrl-C lands meanwhile
            proc.send_signal(signal.SIGINT)
            time.sleep(0.7)
            proc.send_signal(signal.SIGINT)
            time.sleep(0.7)
        _, stderr = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == 130, stderr[-3000:]
    run = the_run(store, "twice-interrupted")
    assert run.info.status == "KILLED" and run.data.tags["failure_reason"] == "interrupted"


def test_sigterm_during_the_final_writes_completes_the_run(store):
    db = Path(store[len("sqlite:///") :])
    proc = start(store, "model=mlp12", "data.limit=1000", "trainer.epochs=2", "tracking.run_name=ending")
    try:
        wait_for(lambda: db.is_file() and epochs_logged(db, "ending") == 2, proc)
        with store_locked(db):  # the test set is evaluated meanwhile; the first final write waits here
            time.sleep(2.5)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
        _, stderr = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == 143, stderr[-3000:]
    run = the_run(store, "ending")
    assert run.info.status == "FINISHED" and "failure_reason" not in run.data.tags
    client = mlflow_client(store)
    for key in ("test_accuracy", "test_loss", "wall_time_s", "test_accuracy_ci_low"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 1, key
    assert run.outputs.model_outputs  # the model was logged
    line = error_lines(subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr))[-1]
    assert line == (
        f"error: terminated (SIGTERM); it came after run {run.info.run_id} had finished: the run is "
        "complete and FINISHED"
    )
    output_dir = Path(run.data.tags["hydra.output_dir"])
    assert not (output_dir / "checkpoints" / "last.json").exists()  # nothing left to resume
