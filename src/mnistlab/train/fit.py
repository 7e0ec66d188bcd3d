"""A run's training: the callbacks around Keras's ``fit``, over seeded batches, from a resume's
next epoch; then the best epoch's weights put back when a callback kept them."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mnistlab.config.callbacks import BEST_WEIGHTS, MONITORS
from mnistlab.data.prepare import Dataset
from mnistlab.train import callbacks as cbs
from mnistlab.train.checkpoints import Checkpoint
from mnistlab.train.pipeline import shuffled_batches


@dataclass
class TrainResult:
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch metrics, Keras names
    train_time_s: float = 0.0
    best_epoch: int | None = None  # 0-based epoch whose weights were restored (best_checkpoint), else None

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("loss", []))

    def at_epoch(self, epoch: int) -> dict[str, float]:
        return {name: values[epoch] for name, values in self.history.items()}


@dataclass(frozen=True)
class Checkpointing:
    """Where each epoch is checkpointed, and what the checkpoint records beside it (run id, config)."""

    directory: Path
    state: Mapping[str, Any]


def train(
    model: keras.Model,
    data: Dataset,
    trainer: Mapping,
    report: cbs.EpochReport,
    *,
    callbacks: Mapping | None = None,
    checkpointing: Checkpointing | None = None,
    seed: int = 0,
    resume: Checkpoint | None = None,
) -> TrainResult:
    """Train ``model`` for ``trainer``'s epochs and batch size; ``report(epoch, metrics)`` sees each
    epoch's metrics as soon as it ends (True stops training). ``callbacks``: the config group;
    ``checkpointing``: every epoch is checkpointed; ``resume``: a checkpoint to continue from."""
    directory = checkpointing.directory if checkpointing else Path(".")
    configured = cbs.configured(callbacks, directory)
    history = cbs.EpochHistory(resume)
    order: list[keras.callbacks.Callback] = [
        cbs.StopOnNaN(),
        *(callback for _, callback in configured.values()),
        history,
    ]
    checkpointer = None
    if checkpointing is not None:
        checkpointer = cbs.Checkpointer(directory, checkpointing.state, history, configured, resume)
        order.append(checkpointer)
    order += [cbs.Reporter(report, history), cbs.InterruptCheck()]
    start = time.perf_counter()
    if resume is not None and resume.training_done:  # training was over: only the weights to test are needed
        (checkpointer or cbs.Checkpointer(directory, {}, history, configured, resume)).restore(model)
    else:
        fit(model, data, trainer, order, seed, first_epoch=resume.epochs_done if resume else 0)
    result = TrainResult(
        history=history.history, train_time_s=time.perf_counter() - start + history.earlier_train_time_s
    )
    for spec, _ in configured.values():
        best = directory / BEST_WEIGHTS
        if spec.restores_best and best.is_file():
            model.load_weights(str(best))
            values = result.history[spec.monitor]
            result.best_epoch = int(np.argmax(values) if MONITORS[spec.monitor] == "max" else np.argmin(values))
    return result


def fit(
    model: keras.Model,
    data: Dataset,
    trainer: Mapping,
    callbacks: Sequence[keras.callbacks.Callback],
    seed: int,
    first_epoch: int = 0,
) -> None:
    """Keras's fit from ``first_epoch``: batches shuffled by ``seed`` and epoch number, so a resumed
    run sees the same batches as an uninterrupted one."""
    validation = (data.x_val, data.y_val) if len(data.x_val) else None
    steps = math.ceil(len(data.x_train) / trainer["batch_size"])
    model.fit(
        shuffled_batches(data.x_train, data.y_train, trainer["batch_size"], seed, first_epoch),
        steps_per_epoch=steps,
        epochs=trainer["epochs"],
        initial_epoch=first_epoch,
        shuffle=False,
        validation_data=validation,
        verbose=keras_verbosity(trainer["verbose"]),
        callbacks=list(callbacks),
    )


def keras_verbosity(verbose: str | int) -> int:
    """``auto``: a live progress bar on a terminal, one line per epoch in logs and CI."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)
