"""The config schema and its validation.

Hydra composes the YAML; this module checks the result against dataclasses before anything
heavy is imported, so a typo costs a second and one line, not a TensorFlow start-up.
Types are checked by OmegaConf's structured merge; ranges by the ``rule`` metadata below.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from mnistlab.errors import ConfigError

LOSSES = ("crossentropy", "mse")
#: metrics a callback can watch, and whether larger is better
MONITORS = {"val_accuracy": "max", "val_loss": "min", "accuracy": "max", "loss": "min"}
PRECISIONS = ("float32", "mixed_bfloat16", "auto")
#: Keras layers whose ``rate`` is a dropout probability, checked to be in [0, 1)
DROPOUT_LAYERS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianDropout", "AlphaDropout")
VERBOSE_CHOICES = ("auto", 0, 1, 2)
#: the largest count TensorFlow takes for epochs, steps, batch sizes and threads (int32); larger
#: values used to fail deep inside TensorFlow with a misleading error
MAX_COUNT = 2**31 - 1
#: names TensorFlow accepts for the model's root name scope (other names failed when training started)
MODEL_NAME = r"([A-Za-z0-9.][A-Za-z0-9_.>-]*)?"


def rule(default: Any, *, ge: float | None = None, gt: float | None = None, lt: float | None = None,
         le: float | None = None, choices: tuple | None = None) -> Any:
    """A dataclass field with the bounds (or allowed values) its value must respect; ``le`` is a
    limit of the implementation (TensorFlow's int32), reported on its own."""
    bounds = {k: v for k, v in dict(ge=ge, gt=gt, lt=lt, le=le, choices=choices).items() if v is not None}
    return field(default=default, metadata=bounds)


@dataclass
class AugmentConfig:
    rotation: float = rule(0.0, ge=0, lt=180)
    shift: float = rule(0.0, ge=0, lt=1)
    zoom: float = rule(0.0, ge=0, lt=1)


@dataclass
class DataConfig:
    name: str = rule("mnist", choices=("mnist",))
    dir: Optional[str] = None
    verify: bool = True
    val_split: float = rule(0.1, ge=0, lt=1)
    limit: Optional[int] = rule(None, ge=1)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ModelConfig:
    name: str = "model"
    layers: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class OptimizerConfig:
    name: str = ""
    lr: float = rule(0.001, gt=0)
    weight_decay: Optional[float] = rule(None, ge=0)
    clipnorm: Optional[float] = rule(None, gt=0)


@dataclass
class AdamConfig(OptimizerConfig):
    beta_1: float = rule(0.9, ge=0, lt=1)
    beta_2: float = rule(0.999, ge=0, lt=1)
    epsilon: float = rule(1e-7, gt=0)
    amsgrad: bool = False


@dataclass
class SGDConfig(OptimizerConfig):
    momentum: float = rule(0.0, ge=0, lt=1)
    nesterov: bool = False


@dataclass
class RMSpropConfig(OptimizerConfig):
    rho: float = rule(0.9, ge=0, lt=1)
    momentum: float = rule(0.0, ge=0, lt=1)
    epsilon: float = rule(1e-7, gt=0)
    centered: bool = False


OPTIMIZERS: Dict[str, type] = {"adam": AdamConfig, "sgd": SGDConfig, "rmsprop": RMSpropConfig}


@dataclass
class SchedulerConfig:
    name: str = ""


@dataclass
class StepConfig(SchedulerConfig):
    every_epochs: int = rule(2, ge=1, le=MAX_COUNT)
    factor: float = rule(0.5, gt=0, lt=1)


@dataclass
class ExponentialConfig(SchedulerConfig):
    factor: float = rule(0.9, gt=0, lt=1)


@dataclass
class CosineConfig(SchedulerConfig):
    warmup_epochs: float = rule(0.0, ge=0)
    final_lr_fraction: float = rule(0.0, ge=0, lt=1)


@dataclass
class OneCycleConfig(SchedulerConfig):
    pct_start: float = rule(0.3, gt=0, lt=1)
    div_factor: float = rule(25.0, ge=1)
    final_div_factor: float = rule(1.0e4, ge=1)


SCHEDULERS: Dict[str, type] = {"constant": SchedulerConfig, "step": StepConfig, "exponential": ExponentialConfig,
                               "cosine": CosineConfig, "onecycle": OneCycleConfig}


@dataclass
class LossConfig:
    name: str = rule("crossentropy", choices=LOSSES)
    label_smoothing: float = rule(0.0, ge=0, lt=1)


@dataclass
class EarlyStoppingConfig:
    enabled: bool = False
    monitor: str = rule("val_accuracy", choices=tuple(MONITORS))
    patience: int = rule(3, ge=1)
    min_delta: float = rule(0.0, ge=0)


@dataclass
class BestCheckpointConfig:
    enabled: bool = False
    monitor: str = rule("val_accuracy", choices=tuple(MONITORS))


@dataclass
class CallbacksConfig:
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    best_checkpoint: BestCheckpointConfig = field(default_factory=BestCheckpointConfig)


@dataclass
class TrainerConfig:
    epochs: int = rule(5, ge=1, le=MAX_COUNT)
    batch_size: int = rule(128, ge=1, le=MAX_COUNT)
    verbose: Any = rule("auto", choices=VERBOSE_CHOICES)
    steps_per_execution: int = rule(1, ge=1, le=MAX_COUNT)
    jit_compile: bool = False
    threads: Any = "auto"  # "auto" or an integer >= 1, checked by _check_threads
    precision: str = rule("float32", choices=PRECISIONS)


@dataclass
class TrackingConfig:
    uri: str = ""
    experiment: str = "mnistlab"
    run_name: Optional[str] = None
    log_model: bool = True
    tags: Dict[str, str] = field(default_factory=dict)
    fallback_to_local: bool = False


@dataclass
class Config:
    seed: int = rule(42, ge=0, lt=2**32)
    root_dir: str = "."
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: Any = None  # checked against OPTIMIZERS[optimizer.name]
    scheduler: Any = None  # checked against SCHEDULERS[scheduler.name]
    loss: LossConfig = field(default_factory=LossConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    resume: Optional[str] = None  # an MLflow run id or a run's output folder


def validate(cfg: DictConfig) -> DictConfig:
    """Return the config typed by the schema, or raise ConfigError naming the first bad key."""
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])  # compose(return_hydra_config=True)
    try:
        raw = OmegaConf.to_container(job, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(_dotted(getattr(exc, "full_key", "")), f"cannot be resolved ({_first_line(exc)})") from None

    raw.setdefault("scheduler", {"name": "constant"})  # configs composed without the group
    named = {group: _schema_of(group, raw.get(group), options)
             for group, options in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS))}
    typed = _merge(Config, raw, "")
    for group, schema in named.items():
        typed[group] = _merge(schema, raw[group], group + ".")
    _check_rules(typed, Config, "")
    _check_tracking(typed.tracking)
    if typed.data.dir is not None and not typed.data.dir.strip():  # "" would be the current directory
        raise ConfigError("data.dir", "must not be empty (the folder with the MNIST files, or null to download them)",
                          typed.data.dir)
    _check_threads(typed.trainer.threads)
    if not re.fullmatch(MODEL_NAME, typed.model.name):  # Keras names the model's TensorFlow scope after it
        raise ConfigError("model.name", "must start with a letter, a digit or '.', followed by letters, digits "
                          "and _ . - > (TensorFlow names a scope after it)", typed.model.name)
    _check_layers(typed.model.layers)
    _check_combinations(typed)
    OmegaConf.set_readonly(typed, True)
    return typed


def loss_spec(loss: Any) -> tuple[str, dict, str]:
    """(Keras loss class, its arguments, the label encoding it needs) for a ``loss`` config.

    Keras smooths labels only for one-hot targets, so smoothing switches the encoding."""
    if loss["name"] == "mse":
        return "MeanSquaredError", {}, "onehot"
    if loss.get("label_smoothing"):
        return "CategoricalCrossentropy", {"label_smoothing": loss["label_smoothing"]}, "onehot"
    return "SparseCategoricalCrossentropy", {}, "integer"


def _schema_of(group: str, node: Any, options: Dict[str, type]) -> type:
    """The schema of a group whose keys depend on its ``name`` (each optimizer has its own)."""
    name = node.get("name") if isinstance(node, dict) else node
    if not isinstance(name, str) or name not in options:  # a mapping or a list would not even hash
        raise ConfigError(f"{group}.name", f"unknown {group}; choose one of {', '.join(options)}", name)
    return options[name]


def _check_combinations(cfg: DictConfig) -> None:
    """Rules that tie two groups together."""
    if cfg.loss.name == "mse" and cfg.loss.label_smoothing:
        raise ConfigError("loss.label_smoothing", "applies to loss=crossentropy only (mse has no smoothing)",
                          cfg.loss.label_smoothing)
    for name in ("early_stopping", "best_checkpoint"):
        callback = cfg.callbacks[name]
        if callback.enabled and callback.monitor.startswith("val_") and not cfg.data.val_split:
            raise ConfigError(f"callbacks.{name}.monitor", "needs a validation split (data.val_split > 0); "
                              "or watch accuracy or loss", callback.monitor)
    warmup = cfg.scheduler.get("warmup_epochs", 0)
    if warmup >= cfg.trainer.epochs:
        raise ConfigError("scheduler.warmup_epochs", f"must be < trainer.epochs ({cfg.trainer.epochs})", warmup)


def _merge(schema: type, raw: Any, prefix: str) -> DictConfig:
    try:
        return OmegaConf.merge(OmegaConf.structured(schema), raw)
    except ConfigKeyError as exc:
        key = _dotted(exc.full_key)
        parent = _unwrap(_field_type(schema, key.rpartition(".")[0]))
        allowed = ", ".join(f.name for f in dataclasses.fields(parent)) if dataclasses.is_dataclass(parent) else "?"
        raise ConfigError(prefix + key, f"unknown key; allowed keys here: {allowed}", _lookup(raw, key)) from None
    except ValidationError as exc:
        key = _dotted(exc.full_key)
        if not key or _field_type(schema, key) is None:  # e.g. data.augment=1: OmegaConf names no key
            key = _misplaced(schema, raw) or key
        raise ConfigError(prefix + key, f"expected {_describe(_field_type(schema, key))}", _lookup(raw, key)) from None
    except OmegaConfBaseException as exc:
        raise ConfigError(prefix + _dotted(getattr(exc, "full_key", "")), _first_line(exc)) from None


def _check_rules(node: DictConfig, schema: type, prefix: str) -> None:
    """Apply each field's ``rule`` bounds; recurse into nested dataclasses."""
    schema = OmegaConf.get_type(node) or schema
    for f in dataclasses.fields(schema):
        value, key = node[f.name], prefix + f.name
        if isinstance(value, DictConfig) and dataclasses.is_dataclass(OmegaConf.get_type(value)):
            _check_rules(value, OmegaConf.get_type(value), key + ".")
            continue
        if value is None:
            if "choices" in f.metadata and None not in f.metadata["choices"]:  # Any-typed, e.g. trainer.verbose
                raise ConfigError(key, f"must be one of {', '.join(map(str, f.metadata['choices']))}", value)
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(key, "must be a finite number", value)
        meta = f.metadata
        if "choices" in meta and value not in meta["choices"]:
            raise ConfigError(key, f"must be one of {', '.join(map(str, meta['choices']))}", value)
        ge, gt, lt = meta.get("ge"), meta.get("gt"), meta.get("lt")
        if (ge is not None and value < ge) or (gt is not None and value <= gt) or (lt is not None and value >= lt):
            raise ConfigError(key, _bounds_text(ge, gt, lt), value)
        if meta.get("le") is not None and value > meta["le"]:
            raise ConfigError(key, f"must be <= {meta['le']}", value)


def _check_tracking(tracking: DictConfig) -> None:
    if not tracking.uri.strip():
        raise ConfigError("tracking.uri", "must not be empty (sqlite:///path/mlflow.db or http://host:port)",
                          tracking.uri)
    if not tracking.experiment.strip():
        raise ConfigError("tracking.experiment", "must not be empty", tracking.experiment)


def _check_threads(threads: Any) -> None:
    if threads != "auto" and (isinstance(threads, bool) or not isinstance(threads, int)
                              or not 1 <= threads <= MAX_COUNT):
        limit = f" (at most {MAX_COUNT})" if isinstance(threads, int) and threads > MAX_COUNT else ""
        raise ConfigError("trainer.threads", "must be auto (cores / parallel jobs) or an integer >= 1" + limit, threads)


def _check_layers(layers: List[Any]) -> None:
    """What can be checked without importing Keras: shape of each entry, dropout rates, the head."""
    if not layers:
        raise ConfigError("model.layers", "must list at least one layer", [])
    for i, layer in enumerate(layers):
        key = f"model.layers.{i}"
        layer_type = layer.get("type")
        if not isinstance(layer_type, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", layer_type):
            raise ConfigError(key + ".type", "must name a keras.layers class, e.g. Dense or Conv2D", layer_type)
        rate = layer.get("rate")
        if layer_type in DROPOUT_LAYERS:
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
                raise ConfigError(key + ".rate", "dropout rate must be a number in [0, 1)", rate)
    last = layers[-1]
    if last.get("activation") != "softmax" and last.get("type") != "Softmax":
        raise ConfigError(f"model.layers.{len(layers) - 1}",
                          "the last layer must end in a softmax, e.g. {type: Dense, units: 10, activation: softmax}",
                          OmegaConf.to_container(last))


def _bounds_text(ge: float | None, gt: float | None, lt: float | None) -> str:
    low = f"[{ge}" if ge is not None else f"({gt}" if gt is not None else None
    if low is not None and lt is not None:
        return f"must be in {low}, {lt})"
    if lt is not None:
        return f"must be < {lt}"
    return f"must be >= {ge}" if ge is not None else f"must be > {gt}"


def _field_type(schema: Any, dotted: str) -> Any:
    """The annotated type of ``dotted`` inside ``schema`` (Optional unwrapped), or None."""
    tp = schema
    for part in filter(None, dotted.split(".")):
        tp = _unwrap(tp)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is list and args and part.isdigit():
            tp = args[0]
            continue
        if origin is dict and len(args) == 2:
            tp = args[1]
            continue
        if not dataclasses.is_dataclass(tp):
            return None
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return None
        tp = hints[part]
    return tp


def _misplaced(tp: Any, raw: Any, path: str = "") -> str | None:
    """The first key in ``raw`` whose value is not the kind of thing ``tp`` wants there: a scalar where
    a mapping or a list belongs, or a mapping or a list where a scalar does (OmegaConf may not say which)."""
    tp = _unwrap(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if raw is None:
        return None
    if dataclasses.is_dataclass(tp) or origin is dict:
        if not isinstance(raw, dict):
            return path
        hints = typing.get_type_hints(tp) if dataclasses.is_dataclass(tp) else {}
        children = [(k, hints.get(k) if hints else args[-1] if args else None, v) for k, v in raw.items()]
    elif origin is list:
        if not isinstance(raw, list):
            return path
        children = [(i, args[0] if args else None, v) for i, v in enumerate(raw)]
    else:
        return path if isinstance(raw, (dict, list)) and tp in (int, float, bool, str) else None
    for key, child_tp, value in children:
        found = _misplaced(child_tp, value, f"{path}.{key}" if path else str(key)) if child_tp is not None else None
        if found is not None:
            return found
    return None


def _unwrap(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) is typing.Union and len(args) == 1 else tp


def _describe(tp: Any) -> str:
    optional = typing.get_origin(tp) is typing.Union and type(None) in typing.get_args(tp)
    base = _unwrap(tp)
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    text = names.get(base) or {list: "a list", dict: "a mapping"}.get(typing.get_origin(base))
    if text is None:
        text = "a mapping" if dataclasses.is_dataclass(base) else "a value of another type"
    return text + " or null" if optional else text


def _dotted(full_key: Any) -> str:
    return re.sub(r"\[(\d+)\]", r".\1", str(full_key or ""))


def _lookup(raw: Any, dotted: str) -> Any:
    for part in filter(None, dotted.split(".")):
        try:
            raw = raw[int(part)] if isinstance(raw, list) else raw[part]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return raw


def _first_line(exc: BaseException) -> str:
    return (str(getattr(exc, "msg", "") or exc).strip().splitlines() or [type(exc).__name__])[0]
