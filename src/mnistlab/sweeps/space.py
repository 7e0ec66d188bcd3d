"""Hydra's sweep syntax as an Optuna search space, the way the official Optuna sweeper reads it.

    optimizer.lr: tag(log, interval(1e-4, 1e-2))    # FloatDistribution(log=True)
    model.layers.4.rate: interval(0.0, 0.5)          # FloatDistribution
    model.layers.0.filters: int(interval(16, 96))    # IntDistribution (also tag(int, interval(16, 96)))
    trainer.epochs: tag(log, int(interval(2, 32)))   # IntDistribution(log=True)
    trainer.batch_size: choice(32, 64, 128)          # CategoricalDistribution
    trainer.epochs: range(2, 6)                      # IntDistribution(2, 5): Python's range, stop excluded
    seed: 7                                          # not a sweep: the same in every trial
    +trainer.new_key: choice(1, 2)                   # a key the config lacks: the + stays on each trial's override

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
    element: str = ""  # the key as the override wrote it: with its +, ++ or @package

    def grid(self) -> list[Any]:
        """Every value, for a grid search (GridSampler); an interval has none to list."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.step is None:
            raise ConfigError(
                "hydra.sweeper.sampler",
                f"a grid needs a list of values, and {self.key} is an interval(): use choice() or range() for it",
            )
        values, current = [], self.low
        while current <= self.high + 1e-12 * abs(self.high or 1):
            values.append(int(current) if self.kind == "int" else current)
            current += self.step
        return values

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

    def grid(self) -> dict[str, list[Any]]:
        """GridSampler's ``search_space``: each key's values."""
        return {key: dim.grid() for key, dim in self.dimensions.items()}

    def describe(self) -> list[str]:
        """One line per key: its Optuna distribution, then the fixed overrides (a dry run prints them)."""
        return [f"{key}: {dim.distribution()!r}" for key, dim in self.dimensions.items()] + [
            f"{line} (fixed)" for line in self.fixed
        ]

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The command line of one trial: the fixed overrides, then each sampled value (keys a
        custom search space suggested, which are not dimensions here, as they are named)."""
        elements = {key: dim.element or key for key, dim in self.dimensions.items()}
        return [*self.fixed, *(f"{elements.get(key, key)}={_as_override(value)}" for key, value in params.items())]


def parse(params: Mapping[str, Any] | None, arguments: list[str], custom: bool = False) -> SearchSpace:
    """``hydra.sweeper.params`` (from a preset) and the command line's overrides, the command line
    winning for a key given in both. ``custom``: a custom search space suggests keys too, so no
    dimension here is needed."""
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
    if not dimensions and not custom:
        raise ConfigError(
            "hydra.sweeper.params",
            "nothing to search: give at least one key a choice(), interval() "
            "or range() (in an hparams_search preset or on the command line)",
        )
    return SearchSpace(dimensions, fixed)


def _dimension(key: str, override: Override) -> Dimension:
    dimension = _distribution_of(key, override)
    return Dimension(**{**dimension.__dict__, "element": override.get_key_element()})


def _distribution_of(key: str, override: Override) -> Dimension:
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
        # int(interval(a, b)) is Hydra's cast: its ends arrive as ints (a plain interval's as floats)
        is_int = "int" in tags or (isinstance(low, int) and isinstance(high, int))
        return Dimension(key, "int" if is_int else "float", low, high, log="log" in tags)
    if isinstance(value, RangeSweep):
        if not value.step:
            raise ConfigError(key, f"range({value.start}, {value.stop}, {value.step}): the step must not be 0")
        values = list(_range_values(value))
        if not values:
            raise ConfigError(key, f"range({value.start}, {value.stop}, {value.step}) is empty")
        is_int = all(isinstance(v, int) for v in (value.start, value.stop, value.step))
        return Dimension(key, "int" if is_int else "float", values[0], values[-1], step=value.step)
    if isinstance(value, ChoiceSweep):
        if value.shuffle:
            raise ConfigError(
                key,
                f"{override.input_line.split('=', 1)[1]}: shuffle() orders a grid sweep's jobs, and a "
                "search samples its values: use choice()",
            )
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
