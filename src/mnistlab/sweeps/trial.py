"""The job side of a search: which trial a job is (``optuna_trial.json``, written into the job's
folder by the sweeper before it launches: jobs may run in other processes or on other machines),
its MLflow tags, and its epochs reported to the trial, which a pruner may stop."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.utils import instantiate

from mnistlab.core.redaction import redact

log = logging.getLogger(__name__)
TRIAL_FILE = "optuna_trial.json"
OBJECTIVE = "val_accuracy"
PRUNED_AT = "pruned_at_epoch"  # the trial's user attribute: the epoch its job stopped at
PRUNERS = {
    "median": "optuna.pruners.MedianPruner",
    "percentile": "optuna.pruners.PercentilePruner",
    "successive_halving": "optuna.pruners.SuccessiveHalvingPruner",
    "hyperband": "optuna.pruners.HyperbandPruner",
    "threshold": "optuna.pruners.ThresholdPruner",
    "patient": "optuna.pruners.PatientPruner",
    "nop": "optuna.pruners.NopPruner",
}


@dataclass(frozen=True)
class TrialLink:
    """What a job needs to know about its trial (written as ``optuna_trial.json`` in its folder)."""

    study_name: str
    storage: str
    trial_id: int
    number: int
    params: dict[str, Any]
    pruner: Any = None  # the pruner's config (the job decides whether to stop)
    sweep: dict | None = None  # the MLflow parent run of the process that launched the trial (sweep.Sweep)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # only the owner may read it: the storage URL the job reports to may hold a password
        fd = os.open(directory / TRIAL_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> TrialLink | None:
        path = Path(directory) / TRIAL_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else None

    def tags(self) -> dict[str, str]:
        """MLflow tags of the trial's run."""
        return {
            "optuna.study": self.study_name,
            "optuna.trial": str(self.number),
            "optuna.state": "RUNNING",
            "optuna.storage": redact(self.storage),
            **{f"optuna.param.{key}": str(value) for key, value in self.params.items()},
        }

    def epoch_reporter(self) -> Callable[[int, Mapping[str, float]], bool]:
        """Reports val_accuracy after each epoch (the trial's intermediate values: what a pruner,
        now or in a later run of the study, compares); True (stop training) when the pruner says so."""
        from mnistlab.sweeps import optuna_adapter  # Optuna: loaded only in a search's jobs

        trial = optuna_adapter.trial_of(self.study_name, self.storage, self.trial_id, make_pruner(self.pruner))

        def report(epoch: int, metrics: Mapping[str, float]) -> bool:
            if OBJECTIVE not in metrics or not math.isfinite(metrics[OBJECTIVE]):
                return False
            try:
                trial.report(metrics[OBJECTIVE], epoch + 1)
            except NotImplementedError:  # a multi-objective study: Optuna keeps no intermediate values, nor prunes
                return False
            if self.pruner and trial.should_prune():
                trial.set_user_attr(PRUNED_AT, epoch + 1)
                log.info(
                    "Optuna trial %d pruned after epoch %d (%s %.4f)",
                    self.number,
                    epoch + 1,
                    OBJECTIVE,
                    metrics[OBJECTIVE],
                )
                return True
            return False

        return report


def make_pruner(spec: Any) -> Any:
    if not spec:
        return None
    if isinstance(spec, str):
        return instantiate({"_target_": PRUNERS[spec]})
    return instantiate(dict(spec))
