"""Optimizers: one schema class per ``conf/optimizer/<name>.yaml``, naming its keras.optimizers class.

A new optimizer is its YAML file and a class here: ``lr`` is Keras's ``learning_rate``, every other
field is the Keras class's own argument of that name (null: Keras's default).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from mnistlab.config.fields import rule
from mnistlab.config.registry import Registry

OPTIMIZERS: Registry[OptimizerConfig] = Registry("optimizer")


@dataclass
class OptimizerConfig:
    """The keys every optimizer has."""

    keras_class: ClassVar[str]  # in keras.optimizers
    name: str = ""
    lr: float = rule(0.001, gt=0)
    weight_decay: Optional[float] = rule(None, ge=0)
    clipnorm: Optional[float] = rule(None, gt=0)

    def keras_arguments(self) -> dict[str, Any]:
        """The Keras class's arguments, the learning rate left out (it may be a schedule)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("name", "lr") and getattr(self, f.name) is not None
        }

    def check(self, config: Any) -> None:
        """Rules that need the rest of the config."""


@OPTIMIZERS.register("adam")
@dataclass
class AdamConfig(OptimizerConfig):
    keras_class = "Adam"
    beta_1: float = rule(0.9, ge=0, lt=1)
    beta_2: float = rule(0.999, ge=0, lt=1)
    epsilon: float = rule(1e-7, gt=0)
    amsgrad: bool = False


@OPTIMIZERS.register("sgd")
@dataclass
class SGDConfig(OptimizerConfig):
    keras_class = "SGD"
    momentum: float = rule(0.0, ge=0, lt=1)
    nesterov: bool = False


@OPTIMIZERS.register("rmsprop")
@dataclass
class RMSpropConfig(OptimizerConfig):
    keras_class = "RMSprop"
    rho: float = rule(0.9, ge=0, lt=1)
    momentum: float = rule(0.0, ge=0, lt=1)
    epsilon: float = rule(1e-7, gt=0)
    centered: bool = False


@OPTIMIZERS.register("adamw")
@dataclass
class AdamWConfig(OptimizerConfig):
    keras_class = "AdamW"
    weight_decay: Optional[float] = rule(0.004, ge=0)
    beta_1: float = rule(0.9, ge=0, lt=1)
    beta_2: float = rule(0.999, ge=0, lt=1)
    epsilon: float = rule(1e-7, gt=0)
    amsgrad: bool = False


@OPTIMIZERS.register("nadam")
@dataclass
class NadamConfig(OptimizerConfig):
    keras_class = "Nadam"
    beta_1: float = rule(0.9, ge=0, lt=1)
    beta_2: float = rule(0.999, ge=0, lt=1)
    epsilon: float = rule(1e-7, gt=0)
