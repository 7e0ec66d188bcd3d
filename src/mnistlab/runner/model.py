"""The Keras side of a run: the process set up, the model built and compiled, trained with its
callbacks (checkpointed when it runs under a run id), and evaluated on the test set."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from omegaconf import DictConfig

from mnistlab.build.augmentation import with_augmentation
from mnistlab.build.model import build_model, compile_model, summary_text
from mnistlab.build.optimizers import make_schedule
from mnistlab.core.errors import ConfigError, one_line
from mnistlab.data.prepare import Dataset
from mnistlab.train import checkpoints, runtime
from mnistlab.train.checkpoints import Checkpoint
from mnistlab.train.evaluate import evaluate
from mnistlab.train.fit import Checkpointing, TrainResult, train


def start_tensorflow() -> None:
    """TensorFlow finds its devices (on a machine without a GPU it says so, at length): call it
    inside ``core.quiet.stderr_filtered()``."""
    runtime.find_devices()


@dataclass(frozen=True)
class Built:
    """The model (what is logged), the trainee (the model behind augmentation layers: what trains),
    and how the process runs it."""

    model: keras.Model
    trainee: keras.Model
    threads: int
    precision: str

    @property
    def num_params(self) -> int:
        return self.model.count_params()

    @property
    def summary(self) -> str:
        return summary_text(self.model)


def build(cfg: DictConfig, data: Dataset, parallel_jobs: int) -> Built:
    threads = runtime.resolve_threads(cfg.trainer.threads, parallel_jobs)
    runtime.set_threads(threads)  # before the first TensorFlow op
    runtime.seed_everything(cfg.seed)
    precision = runtime.resolve_precision(cfg.trainer.precision, cfg.model.auto_precision)
    runtime.set_precision(precision)
    model = build_model(cfg.model.name, cfg.model.layers, data.input_shape, data.num_classes)
    trainee = with_augmentation(model, cfg.data.augment, cfg.seed)
    steps_per_epoch = math.ceil(len(data.x_train) / cfg.trainer.batch_size)
    schedule = make_schedule(cfg.scheduler, cfg.optimizer.lr, steps_per_epoch, cfg.trainer.epochs)
    compile_model(trainee, cfg.optimizer, cfg.loss, cfg.trainer, learning_rate=schedule)
    return Built(model, trainee, threads, precision)


def check_checkpoint(built: Built, resume: Checkpoint) -> None:
    """The checkpoint's weights load into this run's model: a tampered or foreign file is refused
    before the run is reopened (training restores them again, with the rest of the state)."""
    trainee = built.trainee
    try:
        with warnings.catch_warnings():  # Keras warns before it raises on weights that do not fit: the error says it
            warnings.simplefilter("ignore")
            if not trainee.optimizer.built:
                trainee.optimizer.build(trainee.trainable_variables)
            trainee.load_weights(str(resume.weights))
    except Exception as exc:
        raise ConfigError(
            "resume",
            f"the checkpoint's weights ({resume.weights.name}) do not fit this run's model "
            f"({one_line(exc, 200)}): the checkpoint is damaged or not this run's",
            str(resume.output_dir),
        ) from None


def fit(
    cfg: DictConfig,
    built: Built,
    data: Dataset,
    report: Callable[[int, dict], bool],
    output_dir: str,
    state: dict[str, Any],
    resume: Checkpoint | None,
) -> TrainResult:
    """Training, every epoch checkpointed in ``output_dir`` with ``state`` (run id, config) beside it."""
    checkpointing = Checkpointing(Path(output_dir) / checkpoints.CHECKPOINT_DIR, state)
    return train(
        built.trainee,
        data,
        cfg.trainer,
        report,
        callbacks=cfg.callbacks,
        checkpointing=checkpointing,
        seed=cfg.seed,
        resume=resume,
    )


def test(cfg: DictConfig, built: Built, data: Dataset) -> tuple[dict[str, float], np.ndarray]:
    """Test loss and accuracy, and every test image's class probabilities."""
    return evaluate(built.trainee, data, cfg.loss)
