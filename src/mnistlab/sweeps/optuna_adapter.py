"""Optuna where mnistlab needs more than its public API: a trial's storage id, another process's
trial failed from outside, stale heartbeats, a job reporting to a trial it did not ask for. Every
use of Optuna's private attributes is here, so an Optuna upgrade has one place to check."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from mnistlab.core.errors import ConfigError, one_line
from mnistlab.core.redaction import redact

HEARTBEAT_S = 60  # a trial whose heartbeat is older than GRACE_S on another host is taken as dead
GRACE_S = 180


def open_storage(url: str, heartbeat: bool = True) -> optuna.storages.RDBStorage:
    """An RDB storage; sqlite waits for a lock instead of failing at once (parallel jobs report too)."""
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else {"pool_pre_ping": True}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" (since Optuna 2.9)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_S if heartbeat else None,
                grace_period=GRACE_S if heartbeat else None,
            )
    except Exception as exc:  # a bad URL, a missing driver, a server that does not answer
        raise ConfigError(
            "hydra.sweeper.storage", f"cannot open the Optuna storage ({one_line(exc, 300)})", redact(url)
        ) from None


def trial_id(trial: optuna.Trial) -> int:
    """The trial's id in its storage (not its number in the study)."""
    return trial._trial_id


def stored_trial(study: optuna.Study, trial_id: int) -> FrozenTrial:
    """A trial as the storage has it now, whoever is running it."""
    return study._storage.get_trial(trial_id)


def fail(study: optuna.Study, trial_id: int, reason_attr: str, reason: str) -> bool:
    """Mark a RUNNING trial FAIL with its reason; False if another process finished or failed it first."""
    storage = study._storage
    try:  # the reason first: a finished trial takes no more attributes
        storage.set_trial_user_attr(trial_id, reason_attr, reason)
        return bool(storage.set_trial_state_values(trial_id, TrialState.FAIL))
    except UpdateFinishedTrialError:
        return False


def stale_trial_ids(study: optuna.Study) -> list[int]:
    """RUNNING trials whose heartbeat stopped longer than the grace period ago (their process is gone)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return list(study._storage._get_stale_trial_ids(study._study_id))


def record_heartbeat(storage: Any, trial_id: int) -> None:
    storage.record_heartbeat(trial_id)


def trial_of(study_name: str, storage_url: str, trial_id: int, pruner: Any) -> optuna.Trial:
    """A handle on a trial another process asked for (a search's job reporting its epochs)."""
    study = optuna.load_study(
        study_name=study_name,
        storage=open_storage(storage_url, heartbeat=False),
        pruner=pruner or optuna.pruners.NopPruner(),
    )
    return optuna.Trial(study, trial_id)
