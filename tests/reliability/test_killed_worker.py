"""A joblib sweep whose worker process is SIGKILLed (as the OOM killer or `kill -9` would): that job
alone fails, with the reason; its sibling finishes, the jobs not yet started run, the summary lists
every job and the sweep exits non-zero. A real 4-job sweep on 2 workers, a real SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import error_lines, kill_if_running, start_run_py
from test_sweeps import summary_csv, sweep_runs


def test_a_killed_worker_fails_its_job_and_the_sweep_goes_on(store):
    root = Path(store[len("sqlite:///") :]).parent
    proc = start_run_py(
        "-m",
        "model=mlp12",
        "seed=1,2,3,4",
        "data.limit=2000",
        "trainer.epochs=12",
        "trainer.verbose=0",
        "tracking.log_model=false",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        store=store,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            sweeps = list(root.glob("outputs/multiruns/*"))
            if sweeps and (sweeps[0] / "0" / "checkpoints" / "last.json").is_file():
                break
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.1)
        worker = int((sweeps[0] / ".workers" / "job-0.pid").read_text())
        os.kill(worker, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        kill_if_running(proc)
    assert proc.returncode == 1, stderr[-3000:]
    parent, children = sweep_runs(store)
    assert [c.info.status for c in children] == ["FAILED", "FINISHED", "FINISHED", "FINISHED"]
    assert children[0].data.tags["failure_reason"] == "its worker process was killed (signal 9)"
    assert parent.info.status == "FAILED" and parent.data.tags["failure_reason"] == "1 of 4 jobs did not finish"
    assert {row["status"] for row in summary_csv(store, parent)} == {"FAILED", "FINISHED"}
    assert len(summary_csv(store, parent)) == 4
    lines = error_lines(subprocess.CompletedProcess(proc.args, 1, stdout, stderr))
    assert any(
        line.startswith("error: job 0 (") and line.endswith("its worker process was killed (signal 9)")
        for line in lines
    ), lines
    assert lines[-1].endswith("1 of 4 jobs did not finish (job 0 FAILED; the table above says why)")


def test_a_lost_job_is_a_failed_job_for_hydra(tmp_path, capsys):
    """What the joblib and SLURM launchers return for a lost job: FAILED with the reason, and a value
    Hydra's basic sweeper can read without raising (it reads every result, and would stop the sweep)."""
    import math

    from hydra.core.utils import JobStatus

    from mnistlab.sweeps.lost import LostJob, lost_job

    result = lost_job(tmp_path, 3, ["seed=4"], "its worker process was killed (signal 9)", "run")
    assert result.status == JobStatus.FAILED
    assert isinstance(result.return_value, LostJob) and math.isnan(result.return_value)
    assert result.return_value.reason == "its worker process was killed (signal 9)"
    assert capsys.readouterr().err == "error: job 3 (seed=4): its worker process was killed (signal 9)\n"
