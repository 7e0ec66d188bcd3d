"""Losses: one schema class per ``conf/loss/<name>.yaml``, naming its keras.losses class and the
label encoding that class needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mnistlab.config.fields import rule
from mnistlab.config.registry import Registry
from mnistlab.core.errors import ConfigError

LOSSES: Registry[LossConfig] = Registry("loss")


@dataclass
class LossConfig:
    name: str = ""
    label_smoothing: float = rule(0.0, ge=0, lt=1)

    def keras(self) -> tuple[str, dict[str, Any]]:
        """The keras.losses class and its arguments."""
        raise NotImplementedError

    @property
    def label_encoding(self) -> str:
        """``integer`` labels or ``onehot`` rows, as the Keras class takes them."""
        raise NotImplementedError

    def check(self, config: Any) -> None:
        """Rules of this loss that its fields' bounds cannot say."""


@LOSSES.register("crossentropy")
@dataclass
class CrossentropyConfig(LossConfig):
    """Keras smooths labels only for one-hot targets, so smoothing switches the class and the encoding."""

    def keras(self) -> tuple[str, dict[str, Any]]:
        if self.label_smoothing:
            return "CategoricalCrossentropy", {"label_smoothing": self.label_smoothing}
        return "SparseCategoricalCrossentropy", {}

    @property
    def label_encoding(self) -> str:
        return "onehot" if self.label_smoothing else "integer"


@LOSSES.register("mse")
@dataclass
class MSEConfig(LossConfig):
    def keras(self) -> tuple[str, dict[str, Any]]:
        return "MeanSquaredError", {}

    @property
    def label_encoding(self) -> str:
        return "onehot"

    def check(self, config: Any) -> None:
        if self.label_smoothing:
            raise ConfigError(
                "loss.label_smoothing", "applies to loss=crossentropy only (mse has no smoothing)", self.label_smoothing
            )
