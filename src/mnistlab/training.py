"""Seeding, optimizers, compile, fit and evaluate: the Keras side of a run."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from collections.abc import Callable, Mapping

import keras
import numpy as np

from mnistlab.config import LOSSES
from mnistlab.data import Dataset
from mnistlab.errors import MnistlabError

log = logging.getLogger(__name__)

EpochReport = Callable[[int, dict[str, float]], None]
KERAS_OPTIMIZERS = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
EVAL_BATCH_SIZE = 1024  # inference only: a large batch is faster and does not change the results


@dataclass
class TrainResult:
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch metrics, Keras names
    train_time_s: float = 0.0


class TrainingDiverged(MnistlabError):
    """The loss became NaN or infinite: the run stops at once instead of training on garbage."""


def seed_everything(seed: int) -> None:
    """A clean Keras state (a parallel launcher may reuse this process for the next job), then
    Python, NumPy and TensorFlow generators: weights, shuffling and dropout repeat exactly."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)


def cpu_cores() -> int:
    """Cores this process may use (its CPU affinity, e.g. a container's or SLURM's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_threads(threads: str | int, parallel_jobs: int) -> int:
    """``auto``: the cores shared out between the jobs that run at once, at least one each.
    ``parallel_jobs`` counts as joblib's n_jobs does: -1 is one job per core, -2 all but one."""
    if threads != "auto":
        return int(threads)
    cores = cpu_cores()
    jobs = parallel_jobs if parallel_jobs > 0 else cores + 1 + parallel_jobs
    return max(1, cores // max(1, jobs))


def set_threads(threads: int) -> None:
    """TensorFlow's thread pools; possible only before the first op of the process runs.

    A launcher that reuses its worker processes (joblib) brings the next job here after
    TensorFlow started: the pools are then already sized for this sweep and stay as they are.
    """
    import tensorflow as tf

    if tf.config.threading.get_intra_op_parallelism_threads() == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        log.warning("TensorFlow already started in this process; its thread pools keep their size "
                    "(%d threads)", tf.config.threading.get_intra_op_parallelism_threads())


def make_optimizer(opt: Mapping) -> keras.optimizers.Optimizer:
    """Keras optimizer from its config: ``lr`` is Keras's learning_rate, null options are left out."""
    kwargs = {k: v for k, v in opt.items() if k not in ("name", "lr") and v is not None}
    return KERAS_OPTIMIZERS[opt["name"]](learning_rate=opt["lr"], **kwargs)


def compile_model(model: keras.Model, opt: Mapping, loss: str, trainer: Mapping) -> None:
    model.compile(optimizer=make_optimizer(opt), loss=LOSSES[loss][0], metrics=["accuracy"],
                  steps_per_execution=trainer["steps_per_execution"], jit_compile=trainer["jit_compile"])


def fit(model: keras.Model, data: Dataset, epochs: int, batch_size: int, verbose: str | int,
        on_epoch_end: EpochReport) -> TrainResult:
    """Train; ``on_epoch_end(epoch, metrics)`` sees each epoch's metrics as soon as it ends."""
    validation = (data.x_val, data.y_val) if len(data.x_val) else None
    result = TrainResult()
    reporter = _EpochReporter(on_epoch_end, result.history)
    start = time.perf_counter()
    model.fit(data.x_train, data.y_train, batch_size=batch_size, epochs=epochs, shuffle=True,
              validation_data=validation, verbose=keras_verbosity(verbose), callbacks=[_StopOnNaN(), reporter])
    result.train_time_s = time.perf_counter() - start
    return result


def keras_verbosity(verbose: str | int) -> int:
    """``auto``: a live progress bar on a terminal, one line per epoch in logs and CI."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def evaluate(model: keras.Model, data: Dataset, loss: str) -> tuple[dict[str, float], np.ndarray]:
    """Test loss and accuracy and the class probabilities, from one pass over the test images.

    One ``predict`` instead of ``evaluate`` + ``predict`` saves a second pass and its tracing
    (~2 s); the loss is Keras's own loss function plus any regularisation, as ``evaluate`` has it.
    """
    probabilities = model.predict(data.x_test, batch_size=EVAL_BATCH_SIZE, verbose=0)
    per_image = keras.losses.get(LOSSES[loss][0])(data.y_test, probabilities)
    test_loss = float(np.mean(keras.ops.convert_to_numpy(per_image))) + sum(
        float(keras.ops.convert_to_numpy(term)) for term in model.losses)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == data.labels_test))
    return {"test_loss": test_loss, "test_accuracy": accuracy}, probabilities


class _EpochReporter(keras.callbacks.Callback):
    """Per-epoch metrics plus wall time and learning rate, handed on at each epoch's end."""

    def __init__(self, report: EpochReport, history: dict[str, list[float]]) -> None:
        super().__init__()
        self._report, self._history, self._start = report, history, 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        metrics["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        metrics["epoch_time_s"] = time.perf_counter() - self._start
        for name, value in metrics.items():
            self._history.setdefault(name, []).append(value)
        self._report(epoch, metrics)


class _StopOnNaN(keras.callbacks.Callback):
    """Keras's TerminateOnNaN, except that it raises: a diverged run is FAILED, not FINISHED.

    ``async_safe``: Keras checks each batch's loss in a helper thread instead of waiting for it
    between steps; the error then surfaces in the training loop at the next batch.
    """

    async_safe = True

    def __init__(self) -> None:
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            raise TrainingDiverged(f"training diverged: loss is {float(loss)} at epoch {self._epoch + 1}, "
                                   f"batch {batch + 1}; try a lower optimizer.lr (it is {lr:g})")
