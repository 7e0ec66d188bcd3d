"""Keras callbacks around training: one schema class per key of the ``callbacks`` group, naming the
keras.callbacks class it becomes. Each can be switched on alone (``enabled``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from mnistlab.config.fields import rule
from mnistlab.config.registry import Registry
from mnistlab.core.errors import ConfigError

CALLBACKS: Registry[CallbackConfig] = Registry("callback")
#: metrics a callback can watch, and whether larger is better
MONITORS = {"val_accuracy": "max", "val_loss": "min", "accuracy": "max", "loss": "min"}
BEST_WEIGHTS = "best.weights.h5"  # beside the per-epoch checkpoints


@dataclass
class CallbackConfig:
    keras_class: ClassVar[str]  # in keras.callbacks
    #: attributes of the Keras callback that a checkpoint saves and a resume restores
    resume_state: ClassVar[tuple[str, ...]] = ()
    #: the callback saved the best epoch's weights (BEST_WEIGHTS), which are tested instead of the last
    restores_best: ClassVar[bool] = False
    enabled: bool = False
    monitor: str = rule("val_accuracy", choices=tuple(MONITORS))

    def keras_arguments(self, checkpoint_dir: Path) -> dict[str, Any]:
        return {"monitor": self.monitor, "mode": MONITORS[self.monitor]}

    def check(self, key: str, config: Any) -> None:
        if self.enabled and self.monitor.startswith("val_") and not config.data.val_split:
            raise ConfigError(
                f"{key}.monitor",
                "needs a validation split (data.val_split > 0); or watch accuracy or loss",
                self.monitor,
            )


@CALLBACKS.register("early_stopping")
@dataclass
class EarlyStoppingConfig(CallbackConfig):
    keras_class = "EarlyStopping"
    resume_state = ("wait", "best", "best_epoch")
    patience: int = rule(3, ge=1)
    min_delta: float = rule(0.0, ge=0)

    def keras_arguments(self, checkpoint_dir: Path) -> dict[str, Any]:
        return {**super().keras_arguments(checkpoint_dir), "patience": self.patience, "min_delta": self.min_delta}


@CALLBACKS.register("best_checkpoint")
@dataclass
class BestCheckpointConfig(CallbackConfig):
    keras_class = "ModelCheckpoint"
    resume_state = ("best",)
    restores_best = True

    def keras_arguments(self, checkpoint_dir: Path) -> dict[str, Any]:
        return {
            **super().keras_arguments(checkpoint_dir),
            "filepath": str(checkpoint_dir / BEST_WEIGHTS),
            "save_best_only": True,
            "save_weights_only": True,
        }
