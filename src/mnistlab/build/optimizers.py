"""An optimizer and its learning-rate schedule, from their registered schema classes."""

from __future__ import annotations

from collections.abc import Mapping

import keras

from mnistlab.config.optimizers import OPTIMIZERS
from mnistlab.config.schedulers import SCHEDULERS

LearningRate = float | keras.optimizers.schedules.LearningRateSchedule


def make_optimizer(opt: Mapping, learning_rate: LearningRate | None = None) -> keras.optimizers.Optimizer:
    """Keras optimizer from its config: ``lr`` is Keras's learning_rate (or ``learning_rate``, a
    schedule, replaces it); null options are left out."""
    spec = OPTIMIZERS.instance(opt)
    keras_class = getattr(keras.optimizers, spec.keras_class)
    return keras_class(learning_rate=spec.lr if learning_rate is None else learning_rate, **spec.keras_arguments())


def make_schedule(scheduler: Mapping, lr: float, steps_per_epoch: int, epochs: int) -> LearningRate:
    """The ``scheduler`` config as one of Keras's own schedules, evaluated at every step (a constant
    rate stays a float)."""
    spec = SCHEDULERS.instance(scheduler)
    if spec.keras_class is None:
        return lr
    return getattr(keras.optimizers.schedules, spec.keras_class)(**spec.keras_arguments(lr, steps_per_epoch, epochs))
