"""A run whose loss becomes NaN or infinite stops at once: FAILED with its reason, the last good
epoch's checkpoint kept, one line that suggests a lower learning rate.

The divergence is made deterministic: one batch per epoch and a warm-up from a learning rate of 0
to 1e6, so epoch 1 cannot diverge (its only step has lr 0) and later steps blow the weights up.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from conftest import error_lines, mlflow_client, only_run, run_cli

DIVERGES = (
    "model=mlp12",
    "optimizer=sgd",
    "optimizer.lr=1e6",
    "scheduler=cosine",
    "scheduler.warmup_epochs=5",
    "trainer.epochs=8",
    "data.limit=32",
    "trainer.batch_size=32",
    "tracking.log_model=false",
)


def test_nan_loss_fails_the_run_and_keeps_the_last_good_epoch(store):
    proc = run_cli(*DIVERGES, store=store)
    lines = error_lines(proc)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len([line for line in lines if line.startswith("error: ")]) == 1 and lines[-1].startswith("error: ")
    message = lines[-1]
    assert "training diverged" in message and "try a lower optimizer.lr" in message, message

    run = only_run(store)
    assert run.info.status == "FAILED"
    assert "training diverged" in run.data.tags["failure_reason"]
    checkpoint = Path(run.data.tags["hydra.output_dir"]) / "checkpoints"
    state = json.loads((checkpoint / "last.json").read_text())
    good = state["epochs_done"]
    assert good >= 1 and (checkpoint / state["weights"]).is_file()
    assert f"the last good epoch ({good}) is checkpointed in {checkpoint / state['weights']}" in message
    assert f"at epoch {good + 1}" in message  # it stopped in the epoch after the checkpoint, at once
    # what MLflow holds: the good epochs, all finite; nothing of the diverged one
    history = mlflow_client(store).get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(good))
    assert all(math.isfinite(m.value) for m in history) and state["history"]["loss"] == [
        m.value for m in sorted(history, key=lambda m: m.step)
    ]
    assert "test_accuracy" not in run.data.metrics


def test_divergence_in_the_first_epoch_says_there_is_nothing_to_keep(store):
    proc = run_cli(
        "model=mlp12",
        "optimizer=sgd",
        "optimizer.lr=1e12",
        "data.limit=256",
        "trainer.epochs=2",
        "tracking.log_model=false",
        store=store,
    )
    lines = error_lines(proc)
    assert proc.returncode == 1 and lines[-1].startswith("error: training diverged"), proc.stderr[-3000:]
    assert "checkpointed" not in lines[-1] and "epoch 1" in lines[-1]
    run = only_run(store)
    assert run.info.status == "FAILED" and "diverged" in run.data.tags["failure_reason"]
    assert not (Path(run.data.tags["hydra.output_dir"]) / "checkpoints" / "last.json").exists()
