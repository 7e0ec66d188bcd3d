"""Interrupt and resume, with real signals sent to a real ``python run.py``.

Ctrl-C (SIGINT) and SIGTERM end the MLflow run KILLED and say how to resume; SIGKILL cannot be
caught and leaves the run RUNNING, which resume then finishes. A resumed run continues the same
MLflow run from the epoch after its last checkpoint: every epoch is in MLflow exactly once, and the
result (every per-epoch metric, the test scores and the final weights) is the one an uninterrupted
run of the same seed gets.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, RUN_PY, cli_env, error_lines, mlflow_client, run_cli

EPOCHS = 4
# dropout (tiny_cnn) and augmentation: both draw random numbers every step, which a resume must continue
EXACT = (
    "model=tiny_cnn",
    "data.limit=6000",
    f"trainer.epochs={EPOCHS}",
    "data.augment.rotation=10",
    "trainer.batch_size=64",
)
PER_EPOCH = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_time_s")


def start(store: str, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(RUN_PY), *overrides],
        cwd=ROOT,
        env=cli_env(store),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def newest_output_dir(store: str, before: set[Path]) -> Path | None:
    runs = set(Path(store[len("sqlite:///") :]).parent.glob("outputs/runs/*")) - before
    return max(runs, default=None)


def interrupt_after_first_checkpoint(store: str, sig: int, *overrides: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Start a run, send ``sig`` once its first epoch is checkpointed (so, during epoch 2 or later)."""
    before = set(Path(store[len("sqlite:///") :]).parent.glob("outputs/runs/*"))
    proc = start(store, *overrides)
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            folder = newest_output_dir(store, before)
            if folder is not None and (folder / "checkpoints" / "last.json").is_file():
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before its first checkpoint: {proc.communicate()[1][-3000:]}"
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), folder


def the_run(store: str, name: str):
    client = mlflow_client(store)
    runs = client.search_runs(
        [client.get_experiment_by_name("mnistlab").experiment_id], f"attributes.run_name = '{name}'"
    )
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def steps(store: str, run_id: str, metric: str = "loss") -> list[int]:
    return sorted(m.step for m in mlflow_client(store).get_metric_history(run_id, metric))


def histories(store: str, run_id: str) -> dict[str, list[float]]:
    client = mlflow_client(store)
    return {
        name: [m.value for m in sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)]
        for name in PER_EPOCH
        if name != "epoch_time_s"
    }


def test_ctrl_c_then_resume_by_run_id_equals_an_uninterrupted_run(store):
    reference = run_cli(*EXACT, "tracking.run_name=reference", store=store)
    assert reference.returncode == 0, reference.stderr[-3000:]

    proc, folder = interrupt_after_first_checkpoint(store, signal.SIGINT, *EXACT, "tracking.run_name=interrupted")
    run = the_run(store, "interrupted")
    run_id = run.info.run_id
    lines = error_lines(proc)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[-1].startswith("error: interrupted; epoch") and f"python run.py resume={run_id}" in lines[-1]
    assert run.info.status == "KILLED" and run.data.tags["failure_reason"] == "interrupted"
    done = json.loads((folder / "checkpoints" / "last.json").read_text())["epochs_done"]
    assert 1 <= done < EPOCHS
    # an epoch's point reaches MLflow only after its checkpoint: at most the checkpoint's epochs are there
    logged = steps(store, run_id)
    assert logged == list(range(len(logged))) and len(logged) in (done, done - 1)

    resumed = run_cli(f"resume={run_id}", store=store)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"MLflow run  {run_id}" in resumed.stdout and "tiny_cnn" in resumed.stdout
    run = the_run(store, "interrupted")
    assert run.info.status == "FINISHED" and "failure_reason" not in run.data.tags
    assert run.data.tags["resumed"] == "1" and run.data.tags["resumed.after_epoch"] == str(done)
    for name in PER_EPOCH:
        assert steps(store, run_id, name) == list(range(EPOCHS)), name  # each epoch once, none missing
    assert run.data.metrics["epochs_run"] == EPOCHS
    assert not (folder / "checkpoints" / "last.json").exists()  # FINISHED: nothing left to resume

    ref = the_run(store, "reference")
    assert histories(store, run_id) == histories(store, ref.info.run_id)
    for name in ("test_accuracy", "test_loss"):
        assert run.data.metrics[name] == ref.data.metrics[name], name
    import mlflow.keras

    mlflow.set_tracking_uri(store)
    resumed_weights = mlflow.keras.load_model(f"runs:/{run_id}/model").get_weights()
    reference_weights = mlflow.keras.load_model(f"runs:/{ref.info.run_id}/model").get_weights()
    assert len(resumed_weights) == len(reference_weights)
    for got, expected in zip(resumed_weights, reference_weights):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("sig,code,resume_by", [(signal.SIGTERM, 143, "output_dir"), (signal.SIGKILL, -9, "run_id")])
def test_terminated_or_killed_run_resumes_from_its_last_epoch(store, sig, code, resume_by):
    epochs = 3
    overrides = (
        "model=mlp12",
        "data.limit=12000",
        f"trainer.epochs={epochs}",
        "tracking.log_model=false",
        "callbacks=early_stopping",
        "tracking.run_name=stopped",
    )
    proc, folder = interrupt_after_first_checkpoint(store, sig, *overrides)
    assert proc.returncode == code, proc.stderr[-3000:]
    run = the_run(store, "stopped")
    if sig == signal.SIGTERM:
        assert error_lines(proc)[-1].startswith("error: terminated (SIGTERM); epoch")
        assert run.info.status == "KILLED"
    else:  # nothing can catch SIGKILL: the run stays RUNNING until resumed
        assert run.info.status == "RUNNING"
    target = str(folder) if resume_by == "output_dir" else run.info.run_id

    resumed = run_cli(f"resume={target}", "trainer.verbose=0", store=store)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = the_run(store, "stopped")
    assert run.info.status == "FINISHED"
    for name in PER_EPOCH:
        assert steps(store, run.info.run_id, name) == list(range(epochs)), name


def test_resume_refuses_what_it_cannot_continue(store, tmp_path):
    done = run_cli("model=mlp12", "data.limit=300", "trainer.epochs=1", "tracking.log_model=false", store=store)
    assert done.returncode == 0, done.stderr[-3000:]
    finished = mlflow_client(store).search_runs(["1"])[0].info.run_id
    cases = [
        ((f"resume={finished}",), "that run is FINISHED"),
        (("resume=not-a-run",), "neither an output folder nor an MLflow run id"),
        ((f"resume={'0' * 32}",), "no such run"),
        ((f"resume={tmp_path}",), "holds no checkpoint"),
        ((f"resume={finished}", "optimizer.lr=0.1"), "'optimizer.lr=0.1' would change it"),
        (("-m", f"resume={finished}"), "cannot be part of a sweep"),
    ]
    for overrides, phrase in cases:
        proc = run_cli(*overrides, store=store)
        lines = error_lines(proc)
        assert proc.returncode == 2 and len(lines) == 1, (overrides, proc.stderr[-2000:])
        assert lines[0].startswith("error: resume") and phrase in lines[0], (overrides, lines)
    assert len(mlflow_client(store).search_runs(["1"])) == 1  # nothing new was recorded
