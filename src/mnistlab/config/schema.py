"""The config's sections as dataclasses: their keys, types, defaults and bounds. The groups whose
keys depend on the option chosen (optimizer, scheduler, loss, callbacks) have one class per option,
in their own modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from mnistlab.config.fields import MAX_COUNT, rule
from mnistlab.data.registry import DATASETS

POLICIES = ("float32", "mixed_bfloat16")  # Keras dtype policies a run can train in
PRECISIONS = (*POLICIES, "auto")
#: Keras layers whose ``rate`` is a dropout probability, checked to be in [0, 1)
DROPOUT_LAYERS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianDropout", "AlphaDropout")
VERBOSE_CHOICES = ("auto", 0, 1, 2)
#: names TensorFlow accepts for the model's root name scope (other names failed when training started)
MODEL_NAME = r"([A-Za-z0-9.][A-Za-z0-9_.>-]*)?"


@dataclass
class AugmentConfig:
    rotation: float = rule(0.0, ge=0, lt=180)
    shift: float = rule(0.0, ge=0, lt=1)
    zoom: float = rule(0.0, ge=0, lt=1)


@dataclass
class DataConfig:
    name: str = rule("mnist", choices=tuple(DATASETS.names()))
    dir: Optional[str] = None
    verify: bool = True
    val_split: float = rule(0.1, ge=0, lt=1)
    limit: Optional[int] = rule(None, ge=1)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ModelConfig:
    name: str = "model"
    layers: List[Dict[str, Any]] = field(default_factory=list)
    max_params: int = rule(50_000_000, ge=1)  # larger models are refused before anything is built
    auto_precision: str = rule("mixed_bfloat16", choices=POLICIES)  # trainer.precision=auto's pick on bf16 hardware


@dataclass
class TrainerConfig:
    epochs: int = rule(5, ge=1, le=MAX_COUNT)
    batch_size: int = rule(128, ge=1, le=MAX_COUNT)
    verbose: Any = rule("auto", choices=VERBOSE_CHOICES)
    steps_per_execution: int = rule(32, ge=1, le=MAX_COUNT)
    jit_compile: bool = False
    threads: Any = "auto"  # "auto" or an integer >= 1 (validation checks it)
    precision: str = rule("auto", choices=PRECISIONS)


@dataclass
class TrackingConfig:
    uri: str = ""
    experiment: str = "mnistlab"
    run_name: Optional[str] = None
    log_model: bool = True
    tags: Dict[str, str] = field(default_factory=dict)
    fallback_to_local: bool = False
    system_metrics: bool = False


@dataclass
class Config:
    seed: int = rule(42, ge=0, lt=2**32)
    root_dir: str = "."
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: Any = None  # config.optimizers.OPTIMIZERS[optimizer.name]
    scheduler: Any = None  # config.schedulers.SCHEDULERS[scheduler.name]
    loss: Any = None  # config.losses.LOSSES[loss.name]
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    callbacks: Any = None  # each key: config.callbacks.CALLBACKS[key]
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    resume: Optional[str] = None  # an MLflow run id or a run's output folder
