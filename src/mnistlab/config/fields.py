"""Schema fields with their rules: bounds or allowed values, checked after OmegaConf has checked types."""

from __future__ import annotations

from dataclasses import field
from typing import Any

#: the largest count TensorFlow takes for epochs, steps, batch sizes and threads (int32): larger
#: values are refused here, with the limit named, instead of deep inside TensorFlow
MAX_COUNT = 2**31 - 1


def rule(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    choices: tuple | None = None,
) -> Any:
    """A dataclass field with the bounds (or allowed values) its value must respect; ``le`` is a
    limit of the implementation (TensorFlow's int32), reported on its own."""
    bounds = {k: v for k, v in dict(ge=ge, gt=gt, lt=lt, le=le, choices=choices).items() if v is not None}
    return field(default=default, metadata=bounds)
