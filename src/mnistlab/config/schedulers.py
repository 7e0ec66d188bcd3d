"""Learning-rate schedules: one schema class per ``conf/scheduler/<name>.yaml``, each naming the
keras.optimizers.schedules class it becomes (only built-in classes: a saved model's optimizer then
reloads anywhere, without mnistlab) and computing that class's arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from mnistlab.config.fields import MAX_COUNT, rule
from mnistlab.config.registry import Registry
from mnistlab.core.errors import ConfigError

SCHEDULERS: Registry[SchedulerConfig] = Registry("scheduler")


@dataclass
class SchedulerConfig:
    keras_class: ClassVar[str | None] = None  # in keras.optimizers.schedules; None: a constant rate
    name: str = ""

    def keras_arguments(self, lr: float, steps_per_epoch: int, epochs: int) -> dict[str, Any]:
        """The Keras schedule's arguments, for a peak rate ``lr`` over ``epochs`` of ``steps_per_epoch``."""
        return {}

    def check(self, config: Any) -> None:
        """Rules that need the rest of the config (the number of epochs)."""


@SCHEDULERS.register("constant")
@dataclass
class ConstantConfig(SchedulerConfig):
    """optimizer.lr throughout."""


@SCHEDULERS.register("step")
@dataclass
class StepConfig(SchedulerConfig):
    keras_class = "ExponentialDecay"
    every_epochs: int = rule(2, ge=1, le=MAX_COUNT)
    factor: float = rule(0.5, gt=0, lt=1)

    def keras_arguments(self, lr: float, steps_per_epoch: int, epochs: int) -> dict[str, Any]:
        return {
            "initial_learning_rate": lr,
            "decay_steps": self.every_epochs * steps_per_epoch,
            "decay_rate": self.factor,
            "staircase": True,
        }


@SCHEDULERS.register("exponential")
@dataclass
class ExponentialConfig(SchedulerConfig):
    keras_class = "ExponentialDecay"
    factor: float = rule(0.9, gt=0, lt=1)

    def keras_arguments(self, lr: float, steps_per_epoch: int, epochs: int) -> dict[str, Any]:
        return {
            "initial_learning_rate": lr,
            "decay_steps": steps_per_epoch,
            "decay_rate": self.factor,
            "staircase": False,
        }


@SCHEDULERS.register("cosine")
@dataclass
class CosineConfig(SchedulerConfig):
    keras_class = "CosineDecay"
    warmup_epochs: float = rule(0.0, ge=0)
    final_lr_fraction: float = rule(0.0, ge=0, lt=1)

    def keras_arguments(self, lr: float, steps_per_epoch: int, epochs: int) -> dict[str, Any]:
        warmup = round(self.warmup_epochs * steps_per_epoch)
        return {
            "initial_learning_rate": 0.0 if warmup else lr,
            "decay_steps": steps_per_epoch * epochs - warmup,
            "alpha": self.final_lr_fraction,
            "warmup_target": lr if warmup else None,
            "warmup_steps": warmup,
        }

    def check(self, config: Any) -> None:
        if self.warmup_epochs >= config.trainer.epochs:
            raise ConfigError(
                "scheduler.warmup_epochs", f"must be < trainer.epochs ({config.trainer.epochs})", self.warmup_epochs
            )


@SCHEDULERS.register("onecycle")
@dataclass
class OneCycleConfig(SchedulerConfig):
    keras_class = "CosineDecay"
    pct_start: float = rule(0.3, gt=0, lt=1)
    div_factor: float = rule(25.0, ge=1)
    final_div_factor: float = rule(1.0e4, ge=1)

    def keras_arguments(self, lr: float, steps_per_epoch: int, epochs: int) -> dict[str, Any]:
        total = steps_per_epoch * epochs
        warmup = max(1, round(self.pct_start * total))
        return {
            "initial_learning_rate": lr / self.div_factor,
            "decay_steps": max(1, total - warmup),
            "alpha": 1 / (self.div_factor * self.final_div_factor),
            "warmup_target": lr,
            "warmup_steps": warmup,
        }
