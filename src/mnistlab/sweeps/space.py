"""Hydra's sweep syntax as an Optuna search space, the way the official Optuna sweeper reads it.

    optimizer.lr: tag(log, interval(1e-4, 1e-2))    # FloatDistribution(log=True)
    model.layers.4.rate: interval(0.0, 0.5)          # FloatDistribution
    model.layers.0.filters: tag(int, interval(16, 96))  # IntDistribution (Hydra reads interval() ends as floats)
    trainer.batch_size: choice(32, 64, 128)          # CategoricalDistribution
    trainer.epochs: range(2, 6)                      # IntDistribution(2, 5): Python's range, stop excluded
    seed: 7                                          # not a sweep: the same in every trial

Only the parser is imported here (no Optuna), so a bad search space is reported before anything
heavy loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from mnistlab.core.errors import ConfigError


@dataclass(frozen=True)
class Dimension:
    """One searched key: Optuna's distribution for it, described as plain data."""

    key: str
    kind: str  # "float", "int" or "categorical"
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "categorical":
            return CategoricalDistribution(self.choices)
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)


@dataclass(frozen=True)
class SearchSpace:
    dimensions: dict[str, Dimension]  # by key, in the order given
    fixed: list[str]  # overrides that are not sweeps, as typed ("seed=7")

    def distributions(self) -> dict[str, Any]:
        return {key: dim.distribution() for key, dim in self.dimensions.items()}

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The command line of one trial: the fixed overrides, then each sampled value."""
        return [*self.fixed, *(f"{key}={_as_override(value)}" for key, value in params.items())]


def parse(params: Mapping[str, Any] | None, arguments: list[str]) -> SearchSpace:
    """``hydra.sweeper.params`` (from a preset) and the command line's overrides, the command line
    winning for a key given in both."""
    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    try:
        overrides = OverridesParser.create().parse_overrides(lines)
    except Exception as exc:  # Hydra's grammar errors: several lines, made one
        raise ConfigError("hydra.sweeper.params", " ".join(str(exc).split())) from None
    by_key: dict[str, Override] = {}
    for override in overrides:
        by_key.pop(override.key_or_group, None)
        by_key[override.key_or_group] = override
    dimensions, fixed = {}, []
    for key, override in by_key.items():
        if override.is_sweep_override():
            dimensions[key] = _dimension(key, override)
        else:
            fixed.append(override.input_line)
    if not dimensions:
        raise ConfigError(
            "hydra.sweeper.params",
            "nothing to search: give at least one key a choice(), interval() "
            "or range() (in an hparams_search preset or on the command line)",
        )
    return SearchSpace(dimensions, fixed)


def _dimension(key: str, override: Override) -> Dimension:
    value = override.value()
    tags = set(getattr(value, "tags", ()) or ())
    unknown = tags - {"log", "int"}
    if unknown:
        raise ConfigError(
            key, f"unknown tag {sorted(unknown)[0]!r} in {override.input_line.split('=', 1)[1]}; allowed: log, int"
        )
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        if not low < high:
            raise ConfigError(key, f"interval({low}, {high}): the start must be below the end")
        if "log" in tags and low <= 0:
            raise ConfigError(key, f"tag(log, interval({low}, {high})): a log scale needs a start > 0")
        if "int" in tags and not (float(low).is_integer() and float(high).is_integer()):
            raise ConfigError(key, f"tag(int, interval({low}, {high})): an int interval needs whole-number ends")
        return Dimension(key, "int" if "int" in tags else "float", low, high, log="log" in tags)
    if isinstance(value, RangeSweep):
        if not value.step:
            raise ConfigError(key, f"range({value.start}, {value.stop}, {value.step}): the step must not be 0")
        values = list(_range_values(value))
        if not values:
            raise ConfigError(key, f"range({value.start}, {value.stop}, {value.step}) is empty")
        is_int = all(isinstance(v, int) for v in (value.start, value.stop, value.step))
        return Dimension(key, "int" if is_int else "float", values[0], values[-1], step=value.step)
    if isinstance(value, ChoiceSweep):
        choices = tuple(value.list)
        for choice in choices:
            if choice is not None and not isinstance(choice, (bool, int, float, str)):
                raise ConfigError(
                    key, f"choice(...) holds {choice!r}; Optuna's choices are numbers, strings, booleans or null"
                )
        if len(set(map(repr, choices))) != len(choices):
            raise ConfigError(key, f"choice{choices}: a value appears twice")
        return Dimension(key, "categorical", choices=choices)
    raise ConfigError(
        key,
        f"{override.input_line.split('=', 1)[1]}: the Optuna sweeper takes choice(), interval() "
        "and range() (glob() is not a search space)",
    )


def _range_values(value: RangeSweep) -> list[float]:
    out, current = [], value.start
    while (value.step > 0 and current < value.stop) or (value.step < 0 and current > value.stop):
        out.append(current)
        current = current + value.step
    return out


def _as_override(value: Any) -> str:
    """A sampled value as Hydra's grammar reads it back unchanged."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    text = str(value)
    return (
        text
        if text.replace("_", "").replace("-", "").replace(".", "").isalnum()
        else "'" + text.replace("'", "\\'") + "'"
    )
