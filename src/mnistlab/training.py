"""Seeding, precision, optimizers and schedules, augmentation, compile, fit and evaluate: the
Keras side of a run."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Collection, Mapping

import keras
import numpy as np

from mnistlab import checkpoints, interrupts
from mnistlab.checkpoints import Checkpoint
from mnistlab.config import MONITORS, loss_spec
from mnistlab.data import Dataset
from mnistlab.errors import MnistlabError

log = logging.getLogger(__name__)

EpochReport = Callable[[int, dict[str, float]], "bool | None"]  # True: stop training after this epoch
KERAS_OPTIMIZERS = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
EVAL_BATCH_SIZE = 1024  # inference only: a large batch is faster and does not change the results
BEST_WEIGHTS = "best.weights.h5"
#: CPU flags of native bfloat16 arithmetic (Linux /proc/cpuinfo names)
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


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
    """``auto``: $OMP_NUM_THREADS when set (Ray sets it to a task's num_cpus, many SLURM sites to
    the job's cores), else the cores shared out between the jobs that run at once, at least one each.
    ``parallel_jobs`` counts as joblib's n_jobs does: -1 is one job per core, -2 all but one."""
    if threads != "auto":
        return int(threads)
    cores = cpu_cores()
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        return min(int(omp), cores)
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


def resolve_precision(precision: str, cpu_flags: Collection[str] | None = None) -> str:
    """``auto``: bfloat16 compute only where the CPU does it natively; emulated, it gains nothing.
    ``cpu_flags``: the CPU's feature flags; default: this machine's, from /proc/cpuinfo."""
    if precision != "auto":
        return precision
    if cpu_flags is None:
        try:
            cpu_flags = set(Path("/proc/cpuinfo").read_text().split())
        except OSError:  # not Linux: no way to tell
            cpu_flags = set()
    return "mixed_bfloat16" if any(flag in cpu_flags for flag in BF16_CPU_FLAGS) else "float32"


def set_precision(policy: str) -> None:
    """Keras's global dtype policy, set for every run (a reused worker keeps the last one)."""
    keras.mixed_precision.set_global_policy(policy)


def make_optimizer(opt: Mapping, learning_rate: float | keras.optimizers.schedules.LearningRateSchedule | None = None
                   ) -> keras.optimizers.Optimizer:
    """Keras optimizer from its config: ``lr`` is Keras's learning_rate (or ``learning_rate``, a
    schedule, replaces it); null options are left out."""
    kwargs = {k: v for k, v in opt.items() if k not in ("name", "lr") and v is not None}
    return KERAS_OPTIMIZERS[opt["name"]](learning_rate=opt["lr"] if learning_rate is None else learning_rate, **kwargs)


def make_schedule(scheduler: Mapping, lr: float, steps_per_epoch: int, epochs: int
                  ) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The ``scheduler`` config as one of Keras's own schedules, evaluated at every step.

    Only built-in classes: a saved model's optimizer then reloads anywhere, without mnistlab."""
    schedules = keras.optimizers.schedules
    name, total = scheduler["name"], steps_per_epoch * epochs
    if name == "constant":
        return lr
    if name in ("step", "exponential"):
        every = scheduler["every_epochs"] if name == "step" else 1
        return schedules.ExponentialDecay(lr, decay_steps=every * steps_per_epoch, decay_rate=scheduler["factor"],
                                          staircase=name == "step")
    if name == "cosine":
        warmup = round(scheduler["warmup_epochs"] * steps_per_epoch)
        return schedules.CosineDecay(0.0 if warmup else lr, decay_steps=total - warmup,
                                     alpha=scheduler["final_lr_fraction"],
                                     warmup_target=lr if warmup else None, warmup_steps=warmup)
    if name == "onecycle":
        warmup = max(1, round(scheduler["pct_start"] * total))
        return schedules.CosineDecay(lr / scheduler["div_factor"], decay_steps=max(1, total - warmup),
                                     alpha=1 / (scheduler["div_factor"] * scheduler["final_div_factor"]),
                                     warmup_target=lr, warmup_steps=warmup)
    raise ValueError(f"unknown scheduler {name!r}")


def make_loss(loss: Mapping) -> keras.losses.Loss:
    cls, kwargs, _ = loss_spec(loss)
    return getattr(keras.losses, cls)(**kwargs)


def with_augmentation(model: keras.Model, augment: Mapping, seed: int) -> keras.Model:
    """``model`` behind Keras's random image layers, which act in training only.

    In the model graph rather than in a tf.data map: Keras's seeded generators then draw the same
    distortions on every run of a seed (a parallel map does not), at a small cost per step. The
    model logged to MLflow is ``model`` itself, without these layers."""
    layers = []
    if augment["rotation"]:
        layers.append(keras.layers.RandomRotation(augment["rotation"] / 360, fill_mode="constant", seed=seed + 1))
    if augment["shift"]:
        layers.append(keras.layers.RandomTranslation(augment["shift"], augment["shift"], fill_mode="constant",
                                                     seed=seed + 2))
    if augment["zoom"]:
        layers.append(keras.layers.RandomZoom(augment["zoom"], fill_mode="constant", seed=seed + 3))
    if not layers:
        return model
    return keras.Sequential([keras.Input(model.input_shape[1:]), *layers, model], name=f"{model.name}_augmented")


def compile_model(model: keras.Model, opt: Mapping, loss: Mapping, trainer: Mapping,
                  learning_rate: float | keras.optimizers.schedules.LearningRateSchedule | None = None) -> None:
    model.compile(optimizer=make_optimizer(opt, learning_rate), loss=make_loss(loss), metrics=["accuracy"],
                  steps_per_execution=trainer["steps_per_execution"], jit_compile=trainer["jit_compile"])


def fit(model: keras.Model, data: Dataset, epochs: int, batch_size: int, verbose: str | int,
        on_epoch_end: EpochReport, callbacks: Mapping | None = None, checkpoint_dir: str | Path | None = None,
        seed: int = 0, checkpoint_state: Mapping | None = None, resume: Checkpoint | None = None) -> TrainResult:
    """Train; ``on_epoch_end(epoch, metrics)`` sees each epoch's metrics as soon as it ends.

    ``callbacks``: the config group (early stopping; best checkpoint, saved in ``checkpoint_dir``
    and loaded back into ``model`` when training ends). ``checkpoint_state``: when given, every
    epoch is checkpointed in ``checkpoint_dir`` with this (the run id, the config) beside it;
    ``resume``: a checkpoint to continue from, at its next epoch. Batches are shuffled by
    ``seed`` and epoch number, so a resumed run sees the same batches as an uninterrupted one.
    """
    validation = (data.x_val, data.y_val) if len(data.x_val) else None
    result = TrainResult(history={k: list(v) for k, v in resume.state["history"].items()} if resume else {})
    first_epoch = resume.epochs_done if resume else 0
    keras_callbacks: list[keras.callbacks.Callback] = [_StopOnNaN()]
    stopping = (callbacks or {}).get("early_stopping") or {}
    early_stopping = best_saver = None
    if stopping.get("enabled"):
        early_stopping = keras.callbacks.EarlyStopping(
            monitor=stopping["monitor"], mode=MONITORS[stopping["monitor"]], patience=stopping["patience"],
            min_delta=stopping["min_delta"])
        keras_callbacks.append(early_stopping)
    best = (callbacks or {}).get("best_checkpoint") or {}
    directory = Path(checkpoint_dir or ".")
    best_path = directory / BEST_WEIGHTS
    if best.get("enabled"):
        best_path.parent.mkdir(parents=True, exist_ok=True)
        best_saver = keras.callbacks.ModelCheckpoint(
            str(best_path), monitor=best["monitor"], mode=MONITORS[best["monitor"]], save_best_only=True,
            save_weights_only=True)
        keras_callbacks.append(best_saver)
    epoch_end = _EpochEnd(on_epoch_end, result.history, directory if checkpoint_state is not None else None,
                          checkpoint_state or {}, early_stopping, best_saver, resume)
    keras_callbacks.append(epoch_end)  # last: it checkpoints what the callbacks above decided
    start = time.perf_counter()
    if not (resume and resume.training_done):
        steps = math.ceil(len(data.x_train) / batch_size)
        model.fit(shuffled_batches(data.x_train, data.y_train, batch_size, seed, first_epoch),
                  steps_per_epoch=steps, epochs=epochs, initial_epoch=first_epoch, shuffle=False,
                  validation_data=validation,
                  verbose=keras_verbosity(verbose), callbacks=keras_callbacks)
    else:
        epoch_end.restore(model)  # training was over: only the weights to test are needed
    result.train_time_s = time.perf_counter() - start + epoch_end.earlier_train_time_s
    if best.get("enabled") and best_path.is_file():
        model.load_weights(str(best_path))
        values = result.history[best["monitor"]]
        result.best_epoch = int(np.argmax(values) if MONITORS[best["monitor"]] == "max" else np.argmin(values))
    return result


def shuffled_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, first_epoch: int):
    """One epoch of batches, in an order drawn from (seed, epoch) alone: epoch 7 has the same
    batches whether or not the run stopped at epoch 5. (Keras's own shuffle continues one
    generator across epochs, which a resumed fit restarts.)

    Keras iterates it once per epoch (the dataset's cardinality is the epoch's steps): with
    steps_per_execution > 1 an epoch's last execution then ends at the epoch's last batch, where
    one long stream of all epochs' batches let it run on into the next epoch's. Each pass takes
    the next epoch number from a counter in the pipeline, starting at ``first_epoch``.
    Like Keras's array adapter: the arrays enter once, each batch is a gather; the last one may be short."""
    import tensorflow as tf

    n = len(x)
    full = n // batch_size * batch_size
    steps = math.ceil(n / batch_size)
    epochs_started = tf.Variable(first_epoch - 1, dtype=tf.int64, trainable=False)
    images, labels = tf.constant(x), tf.constant(y)  # in once; each pass only gathers from them

    def epoch_batches(_: tf.Tensor) -> tf.data.Dataset:
        epoch = epochs_started.assign_add(1)  # once per pass over the dataset
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64),
                                                         seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        batches = tf.data.Dataset.from_tensor_slices(tf.reshape(order[:full], (-1, batch_size)))
        return batches.concatenate(tf.data.Dataset.from_tensors(order[full:])) if full < n else batches

    return (tf.data.Dataset.from_tensors(0).flat_map(epoch_batches)
            .apply(tf.data.experimental.assert_cardinality(steps))
            .map(lambda i: (tf.gather(images, i), tf.gather(labels, i)), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def keras_verbosity(verbose: str | int) -> int:
    """``auto``: a live progress bar on a terminal, one line per epoch in logs and CI."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def evaluate(model: keras.Model, data: Dataset, loss: Mapping) -> tuple[dict[str, float], np.ndarray]:
    """Test loss and accuracy and the class probabilities, from one pass over the test images.

    One ``predict`` instead of ``evaluate`` + ``predict`` saves a second pass and its tracing
    (~2 s); the loss is Keras's own loss function plus any regularisation, as ``evaluate`` has it.
    """
    probabilities = model.predict(data.x_test, batch_size=EVAL_BATCH_SIZE, verbose=0)
    test_loss = float(keras.ops.convert_to_numpy(make_loss(loss)(data.y_test, probabilities))) + sum(
        float(keras.ops.convert_to_numpy(term)) for term in model.losses)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == data.labels_test))
    return {"test_loss": test_loss, "test_accuracy": accuracy}, probabilities


class _EpochEnd(keras.callbacks.Callback):
    """At each epoch's end: the metrics (plus wall time and learning rate) into the history, a
    checkpoint of the epoch, then the report (MLflow). In that order: a metric point in MLflow
    always has its checkpoint, and a resume logs the points the checkpoint has and MLflow lacks.

    A diverged epoch is never checkpointed: the last checkpoint stays the last good epoch."""

    def __init__(self, report: EpochReport, history: dict[str, list[float]], directory: Path | None,
                 state: Mapping, early_stopping: keras.callbacks.EarlyStopping | None,
                 best_saver: keras.callbacks.ModelCheckpoint | None, resume: Checkpoint | None) -> None:
        super().__init__()
        self._report, self._history, self._directory, self._state = report, history, directory, dict(state)
        self._early_stopping, self._best_saver, self._resume = early_stopping, best_saver, resume
        self._start = 0.0
        self._train_start = time.perf_counter()
        self.earlier_train_time_s = resume.train_time_s if resume else 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._train_start = time.perf_counter()
        if self._resume is not None:  # after the other callbacks reset themselves
            self.restore(self.model)

    def restore(self, model: keras.Model) -> None:
        """The checkpointed epoch: weights, optimizer state (step count: the schedule goes on),
        the random generators of dropout and augmentation, and the callbacks' bookkeeping."""
        state = self._resume.state
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(str(self._resume.weights))
        for generator, value in zip(_seed_generators(model), state["seed_states"], strict=True):
            generator.state.assign(np.array(value, dtype=generator.state.dtype))
        if self._early_stopping is not None and state.get("early_stopping"):
            for name, value in state["early_stopping"].items():
                setattr(self._early_stopping, name, value)
        if self._best_saver is not None and state.get("best_checkpoint"):
            self._best_saver.best = state["best_checkpoint"]["best"]

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {k: float(v) for k, v in (logs or {}).items()}
        bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
        if bad:  # the per-batch check runs in a helper thread and may not have fired yet
            name, value = next(iter(bad.items()))
            raise TrainingDiverged(f"training diverged: {name} is {value} at epoch {epoch + 1}; "
                                   f"try a lower optimizer.lr (it is {self._lr():g})")
        metrics["lr"] = self._lr()
        metrics["epoch_time_s"] = time.perf_counter() - self._start
        for name, value in metrics.items():
            self._history.setdefault(name, []).append(value)
        if self._directory is not None:
            self._checkpoint(epoch + 1)
        if self._report(epoch, metrics):  # e.g. an Optuna pruner
            self.model.stop_training = True
        interrupts.check()  # a signal whose interrupt TensorFlow swallowed: stop here, this epoch kept

    def _lr(self) -> float:
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def _checkpoint(self, epochs_done: int) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        weights_file = checkpoints.weights_name(epochs_done)
        self.model.save_weights(str(self._directory / weights_file))
        state = {**self._state, "history": self._history, "stopped_early": bool(self.model.stop_training),
                 "train_time_s": time.perf_counter() - self._train_start + self.earlier_train_time_s,
                 "seed_states": [keras.ops.convert_to_numpy(g.state).tolist() for g in _seed_generators(self.model)]}
        if self._early_stopping is not None:
            es = self._early_stopping
            state["early_stopping"] = {"wait": es.wait, "best": None if es.best is None else float(es.best),
                                       "best_epoch": es.best_epoch}
        if self._best_saver is not None:
            state["best_checkpoint"] = {"best": float(self._best_saver.best)}
        checkpoints.write(self._directory, epochs_done, weights_file, state)


def _seed_generators(model: keras.Model) -> list:
    """Every random generator in the model (dropout, augmentation layers), in a stable order."""
    return [generator for layer in model._flatten_layers() for generator in getattr(layer, "_seed_generators", [])]


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
