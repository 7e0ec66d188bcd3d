"""Validation of the composed config: typed by the schema, bounds checked, every option checked
against its registered class, before anything heavy is imported (a typo costs a second and one
line, not a TensorFlow start-up). Types are checked by OmegaConf's structured merge; ranges by
each field's ``rule``."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import re
import typing
from pathlib import Path
from typing import Any, List
from urllib.parse import unquote

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from mnistlab.config.callbacks import CALLBACKS
from mnistlab.config.fields import MAX_COUNT
from mnistlab.config.groups import flatten
from mnistlab.config.layers import check_layer, check_size
from mnistlab.config.losses import LOSSES
from mnistlab.config.optimizers import OPTIMIZERS
from mnistlab.config.registry import Registry
from mnistlab.config.schedulers import SCHEDULERS
from mnistlab.config.schema import DROPOUT_LAYERS, MODEL_NAME, Config
from mnistlab.core.errors import ConfigError
from mnistlab.core.redaction import secret_in
from mnistlab.data.registry import DATASETS

#: the groups whose keys depend on the option named by their ``name``
NAMED_GROUPS: dict[str, Registry] = {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS, "loss": LOSSES}
DEFAULT_OPTIONS = {"scheduler": "constant", "loss": "crossentropy"}  # for configs composed without the group


def _resolved(cfg: DictConfig, key: str) -> Any:
    value = cfg[key]  # raises for a missing value or an interpolation that cannot resolve
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True, throw_on_missing=True)
    return value


def validate(cfg: DictConfig) -> DictConfig:
    """Return the config typed by the schema, or raise ConfigError naming the first bad key."""
    try:  # every key but hydra (compose(return_hydra_config=True)), resolved in place: no copy of the tree
        raw = {key: _resolved(cfg, key) for key in cfg if key != "hydra"}
    except OmegaConfBaseException as exc:
        raise ConfigError(_dotted(getattr(exc, "full_key", "")), f"cannot be resolved ({_first_line(exc)})") from None

    for group, name in DEFAULT_OPTIONS.items():
        raw.setdefault(group, {"name": name})
    schemas = {
        group: registry.schema(_name_of(raw.get(group)), f"{group}.name") for group, registry in NAMED_GROUPS.items()
    }
    callbacks = raw.get("callbacks") or {}
    if not isinstance(callbacks, dict):
        raise ConfigError("callbacks", "expected a mapping of callback names to their settings", callbacks)
    for key in callbacks:
        CALLBACKS.schema(key, f"callbacks.{key}")
    typed = _merge(Config, raw, "")
    for group, schema in schemas.items():
        typed[group] = _merge(schema, raw[group], group + ".")
    typed.callbacks = {
        name: _merge(CALLBACKS.schema(name, ""), callbacks.get(name) or {}, f"callbacks.{name}.")
        for name in CALLBACKS.names()
    }
    _check_rules(typed, Config, "")  # and the named groups: their nodes carry their schema
    for name in CALLBACKS.names():
        _check_rules(typed.callbacks[name], CALLBACKS.schema(name, ""), f"callbacks.{name}.")
    _check_tracking(typed.tracking)
    if typed.resume is not None and not typed.resume.strip():  # an unset $RUN_ID would start a fresh default run
        raise ConfigError(
            "resume",
            "is empty: give the MLflow run id or the output folder of the run to continue "
            "(an unset variable?), or leave resume out to start a new run",
            typed.resume,
        )
    if typed.data.dir is not None and not typed.data.dir.strip():  # "" would be the current directory
        raise ConfigError(
            "data.dir",
            f"must not be empty (the folder with the {DATASETS[typed.data.name].title} files, or null to download "
            "them)",
            typed.data.dir,
        )
    _check_threads(typed.trainer.threads)
    if not re.fullmatch(MODEL_NAME, typed.model.name):  # Keras names the model's TensorFlow scope after it
        raise ConfigError(
            "model.name",
            "must start with a letter, a digit or '.', followed by letters, digits "
            "and _ . - > (TensorFlow names a scope after it)",
            typed.model.name,
        )
    _check_layers(typed.model.layers)
    _check_data_sizes(typed)
    check_size(
        OmegaConf.to_container(typed.model.layers),
        DATASETS[typed.data.name].input_shape,
        typed.trainer.batch_size,
        typed.model.max_params,
    )
    _check_no_secret_names(typed)
    # each option's own rules that tie it to the rest of the config
    for group, registry in NAMED_GROUPS.items():
        registry.instance(typed[group]).check(typed)
    for name in CALLBACKS.names():
        CALLBACKS.instance(typed.callbacks[name], name).check(f"callbacks.{name}", typed)
    OmegaConf.set_readonly(typed, True)
    return typed


def _name_of(node: Any) -> Any:
    return node.get("name") if isinstance(node, dict) else node


@functools.cache
def _structured(schema: type) -> DictConfig:
    """The schema's defaults as a config, built once (merge copies it: the cached one stays as is)."""
    return OmegaConf.structured(schema)


def _merge(schema: type, raw: Any, prefix: str) -> DictConfig:
    try:
        return OmegaConf.merge(_structured(schema), raw)
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


def _check_data_sizes(cfg: DictConfig) -> None:
    """The split leaves images on both sides, and the limit fits in what is left for training (by
    the dataset's published counts; the files read are checked again when they load)."""
    total = DATASETS[cfg.data.name].train_images
    held_out = round(total * cfg.data.val_split)
    if cfg.data.val_split and not held_out:
        raise ConfigError(
            "data.val_split",
            f"holds out 0 of the {total:,} training images; use 0 for no validation, or at least {1 / total:.2g}",
            cfg.data.val_split,
        )
    if total - held_out < 1:
        raise ConfigError("data.val_split", f"leaves no training image of {total:,}", cfg.data.val_split)
    if cfg.data.limit is not None and cfg.data.limit > total - held_out:
        raise ConfigError(
            "data.limit",
            f"must be <= {total - held_out}, the training images left after the validation split",
            cfg.data.limit,
        )


def _check_no_secret_names(cfg: DictConfig) -> None:
    """Names that end up where masking cannot reach (the model file holds the model's and its layers'
    names; the experiment's name identifies it) must not hold a secret from the environment."""
    named = {f"model.{key}": value for key, value in flatten(OmegaConf.to_container(cfg.model)).items()}
    named["tracking.experiment"] = cfg.tracking.experiment
    for key, value in named.items():
        variable = secret_in(value)
        if variable:
            raise ConfigError(
                key,
                f"holds the value of ${variable}, which is kept out of everything mnistlab writes; "
                "the saved model and the experiment keep their names as they are: choose another",
            )


def _check_tracking(tracking: DictConfig) -> None:
    if not tracking.uri.strip():
        raise ConfigError(
            "tracking.uri", "must not be empty (sqlite:///path/mlflow.db or http://host:port)", tracking.uri
        )
    if not tracking.experiment.strip():
        raise ConfigError("tracking.experiment", "must not be empty", tracking.experiment)
    if tracking.system_metrics and importlib.util.find_spec("psutil") is None:  # MLflow samples CPU and memory with it
        raise ConfigError(
            "tracking.system_metrics", "needs psutil: pip install 'mnistlab[system-metrics]' (or psutil)", True
        )
    if tracking.uri.startswith("sqlite:///"):  # a new store file is fine; a mistyped folder must not be created
        folder = Path(unquote(tracking.uri[len("sqlite:///") :])).expanduser().resolve().parent
        if not folder.is_dir():
            raise ConfigError(
                "tracking.uri", f"the folder {folder} does not exist; create it, or fix the path", tracking.uri
            )


def _check_threads(threads: Any) -> None:
    if threads != "auto" and (
        isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_COUNT
    ):
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
        bad_rate = isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1
        if layer_type in DROPOUT_LAYERS and bad_rate:
            raise ConfigError(key + ".rate", "dropout rate must be a number in [0, 1)", rate)
        check_layer(key, OmegaConf.to_container(layer) if isinstance(layer, DictConfig) else layer)
    last = layers[-1]
    if last.get("activation") != "softmax" and last.get("type") != "Softmax":
        raise ConfigError(
            f"model.layers.{len(layers) - 1}",
            "the last layer must end in a softmax, e.g. {type: Dense, units: 10, activation: softmax}",
            OmegaConf.to_container(last),
        )


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
