"""Seeding, optimizers, compile, fit and evaluate: the Keras side of a run."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from collections.abc import Callable, Mapping

import keras
import numpy as np

from mnistlab.config import LOSSES
from mnistlab.data import Dataset

EpochReport = Callable[[int, dict[str, float]], None]
KERAS_OPTIMIZERS = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
EVAL_BATCH_SIZE = 1024  # inference only: a large batch is faster and does not change the results


@dataclass
class TrainResult:
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch metrics, Keras names
    train_time_s: float = 0.0


def seed_everything(seed: int) -> None:
    """Python, NumPy and TensorFlow generators: weights, shuffling and dropout repeat exactly."""
    keras.utils.set_random_seed(seed)


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
              validation_data=validation, verbose=keras_verbosity(verbose), callbacks=[reporter])
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
