"""Configuration groups: runs whose configs differ only by seed (or by keys that cannot change the
result) share a group, which comparisons treat as replicates of one configuration.

Light on purpose (no MLflow): the runner tags each run with its group, and comparisons compute
the same id from the params of runs logged before the tag existed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

GROUP_TAG = "mnistlab.group"
#: config keys (and key prefixes) that do not change what a run trains: the seed, where things are
#: read and written, how progress prints; a superset of what run names leave out (conf/config.yaml)
NEUTRAL_KEYS = (
    "seed",
    "root_dir",
    "resume",
    "data.dir",
    "data.verify",
    "trainer.verbose",
    "trainer.steps_per_execution",
    "tracking",
    "model.max_params",
)
#: params a run logs beside its config (measured or resolved at run time, not chosen)
DERIVED_PARAMS = ("num_params", "trainer.threads_used", "trainer.precision_used")


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """{"model": {"layers": [{"type": "Dense"}]}} -> {"model.layers.0.type": "Dense"}: MLflow's params."""
    items = tree.items() if isinstance(tree, Mapping) else enumerate(tree) if isinstance(tree, list) else None
    if items is None:
        return {prefix: str(tree)}
    flat: dict[str, str] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def is_neutral(key: str) -> bool:
    return any(key == neutral or key.startswith(neutral + ".") for neutral in NEUTRAL_KEYS)


def group_id(params: Mapping[str, str]) -> str:
    """A stable id of a run's configuration from its params (flattened config as strings): the same
    for every seed, different as soon as any key that changes training differs."""
    kept = sorted((k, v) for k, v in params.items() if not is_neutral(k) and k not in DERIVED_PARAMS)
    return hashlib.sha256(json.dumps(kept).encode()).hexdigest()[:12]
