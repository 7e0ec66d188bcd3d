"""The callbacks around a run's training, one job each, in the order they run at an epoch's end:

1. ``StopOnNaN``: a NaN or infinite loss fails the run at once (never checkpointed);
2. the configured Keras callbacks (``callbacks`` group: early stopping, best checkpoint);
3. ``EpochHistory``: the epoch's metrics, learning rate and time, kept for the result;
4. ``Checkpointer``: the epoch's weights and everything a resume needs (what 2 decided included);
5. ``Reporter``: the epoch to MLflow, then to a pruner, which may stop training;
6. ``InterruptCheck``: a signal whose interrupt TensorFlow swallowed stops here, the epoch kept.

In that order a metric point in MLflow always has its checkpoint, and a resume logs the points
the checkpoint has and MLflow lacks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mnistlab.config.callbacks import CALLBACKS, CallbackConfig
from mnistlab.core import interrupts
from mnistlab.core.errors import MnistlabError
from mnistlab.train import checkpoints
from mnistlab.train.checkpoints import Checkpoint

EpochReport = Callable[[int, dict[str, float]], "bool | None"]  # True: stop training after this epoch


class TrainingDiverged(MnistlabError):
    """The loss became NaN or infinite: the run stops at once instead of training on garbage."""


def learning_rate(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class StopOnNaN(keras.callbacks.Callback):
    """Keras's TerminateOnNaN, except that it raises: a diverged run is FAILED, not FINISHED.

    ``async_safe``: Keras checks each batch's loss in a helper thread instead of waiting for it
    between steps; the error then surfaces in the training loop at the next batch, or at the
    epoch's end, where every metric of the epoch is checked once more."""

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
            raise TrainingDiverged(
                f"training diverged: loss is {float(loss)} at epoch {self._epoch + 1}, "
                f"by batch {batch + 1}; try a lower optimizer.lr (it is {learning_rate(self.model):g})"
            )

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        bad = {k: float(v) for k, v in (logs or {}).items() if not math.isfinite(float(v))}
        if bad:
            name, value = next(iter(bad.items()))
            raise TrainingDiverged(
                f"training diverged: {name} is {value} at epoch {epoch + 1}; "
                f"try a lower optimizer.lr (it is {learning_rate(self.model):g})"
            )


class EpochHistory(keras.callbacks.Callback):
    """Every epoch's metrics (Keras's names), learning rate (``lr``) and time (``epoch_time_s``),
    continuing a checkpoint's; and the training time, earlier parts of a resumed run included."""

    def __init__(self, resume: Checkpoint | None = None) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = (
            {k: list(v) for k, v in resume.state["history"].items()} if resume else {}
        )
        self.last: dict[str, float] = {}
        self.earlier_train_time_s = resume.train_time_s if resume else 0.0
        self._train_start = self._epoch_start = time.perf_counter()

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._train_start = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.last = {k: float(v) for k, v in (logs or {}).items()}
        self.last["lr"] = learning_rate(self.model)
        self.last["epoch_time_s"] = time.perf_counter() - self._epoch_start
        for name, value in self.last.items():
            self.history.setdefault(name, []).append(value)

    @property
    def train_time_s(self) -> float:
        return time.perf_counter() - self._train_start + self.earlier_train_time_s


class Checkpointer(keras.callbacks.Callback):
    """Each epoch into ``directory`` (weights, then last.json with ``state``, the history, the random
    generators and the configured callbacks' bookkeeping); at the start of a resumed fit, all of
    that put back."""

    def __init__(
        self,
        directory: Path,
        state: Mapping[str, Any],
        history: EpochHistory,
        configured: Mapping[str, tuple[CallbackConfig, keras.callbacks.Callback]],
        resume: Checkpoint | None = None,
    ) -> None:
        super().__init__()
        self.directory, self.state, self.history, self.configured, self.resume = (
            Path(directory),
            dict(state),
            history,
            configured,
            resume,
        )

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.resume is not None:  # after the configured callbacks reset themselves
            self.restore(self.model)

    def restore(self, model: keras.Model) -> None:
        """The checkpointed epoch: weights, optimizer state (step count: the schedule goes on),
        the random generators of dropout and augmentation, and the callbacks' bookkeeping."""
        state = self.resume.state
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(str(self.resume.weights))
        for generator, value in zip(_seed_generators(model), state["seed_states"], strict=True):
            generator.state.assign(np.array(value, dtype=generator.state.dtype))
        for name, (_, callback) in self.configured.items():
            for attribute, value in (state.get(name) or {}).items():
                setattr(callback, attribute, value)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        epochs_done = epoch + 1
        weights_file = checkpoints.weights_name(epochs_done)
        partial = self.directory / f"partial-{weights_file}"
        try:  # written whole or not at all: a full disk leaves no truncated file that last.json would name
            self.directory.mkdir(parents=True, exist_ok=True)
            self.model.save_weights(str(partial))
            partial.replace(self.directory / weights_file)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise checkpoints.CheckpointError(
                f"could not checkpoint epoch {epochs_done} in {self.directory} ({exc})"
            ) from None
        state = {
            **self.state,
            "history": self.history.history,
            "stopped_early": bool(self.model.stop_training),
            "train_time_s": self.history.train_time_s,
            "seed_states": [keras.ops.convert_to_numpy(g.state).tolist() for g in _seed_generators(self.model)],
        }
        for name, (spec, callback) in self.configured.items():
            state[name] = {attribute: _plain(getattr(callback, attribute)) for attribute in spec.resume_state}
        checkpoints.write(self.directory, epochs_done, weights_file, state)


class Reporter(keras.callbacks.Callback):
    """The epoch's metrics to ``report`` (MLflow, then a pruner); its True stops training."""

    def __init__(self, report: EpochReport, history: EpochHistory) -> None:
        super().__init__()
        self.report, self.history = report, history

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.report(epoch, dict(self.history.last)):
            self.model.stop_training = True


class InterruptCheck(keras.callbacks.Callback):
    """A signal whose interrupt never came out of TensorFlow: raised here, after the epoch is
    checkpointed and logged."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        interrupts.check()


def configured(
    callbacks: Mapping[str, Mapping] | None, checkpoint_dir: Path
) -> dict[str, tuple[CallbackConfig, keras.callbacks.Callback]]:
    """The enabled callbacks of the ``callbacks`` group, each as its schema and its Keras callback."""
    built = {}
    for name, node in (callbacks or {}).items():
        spec = CALLBACKS.instance(node, name)
        if spec.enabled:
            if spec.restores_best:
                checkpoint_dir.mkdir(parents=True, exist_ok=True)
            built[name] = (spec, getattr(keras.callbacks, spec.keras_class)(**spec.keras_arguments(checkpoint_dir)))
    return built


def _plain(value: Any) -> Any:
    """A callback's attribute as JSON takes it."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return int(value) if isinstance(value, np.integer) else float(value)


def _seed_generators(model: keras.Model) -> list:
    """Every random generator in the model (dropout, augmentation layers), in a stable order."""
    return [generator for layer in model._flatten_layers() for generator in getattr(layer, "_seed_generators", [])]
