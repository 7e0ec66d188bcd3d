"""A run's lifecycle in MLflow: started or continued, always ended in a true state (FINISHED,
KILLED, FAILED with its reason); runs outside the active-run stack (a sweep's parent, a job that
failed before training); a run's record of its output folder."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import mlflow
from mlflow.entities import Param, RunStatus
from mlflow.tracking import MlflowClient

from mnistlab.core import interrupts
from mnistlab.core.errors import ConfigError, one_line
from mnistlab.core.redaction import redact, redact_all
from mnistlab.tracking.safe import SafeClient, safe_run_name
from mnistlab.tracking.store import follow_move, quiet_store_errors, sqlite_path, store_error, store_problem

log = logging.getLogger(__name__)


@contextmanager
def active_run(
    experiment_id: str,
    run_name: str,
    tags: Mapping[str, str],
    run_id: str | None = None,
    system_metrics: bool = False,
) -> Iterator[mlflow.ActiveRun]:
    """A run that always ends in a true state: FINISHED, KILLED (interrupt) or FAILED (with a reason).
    ``run_id``: continue that run (resume) instead of starting a new one. Ending it holds Ctrl-C and
    SIGTERM back: a second signal while the run is being marked would leave it RUNNING."""
    try:
        with quiet_store_errors():
            run = _start_or_continue(experiment_id, run_name, tags, run_id, system_metrics)
    except Exception as exc:
        raise store_error(mlflow.get_tracking_uri(), exc) from None
    quiet = logging.getLogger("mlflow.store.db.utils")  # logs each store error with its traceback first
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        yield run
    except BaseException as exc:
        interrupt = interrupts.as_interrupt(exc)  # TensorFlow can turn Ctrl-C into another error
        with interrupts.deferred():
            if not isinstance(interrupt, KeyboardInterrupt):
                _end_quietly(
                    run.info.run_id, RunStatus.FAILED, f"{type(exc).__name__}: {one_line(exc)}", traceback.format_exc()
                )
            else:
                _end_quietly(run.info.run_id, RunStatus.KILLED, "interrupted")
                log.warning("MLflow run %s marked KILLED; the epochs logged so far are kept", run.info.run_id)
        if interrupt is exc or not isinstance(interrupt, KeyboardInterrupt):
            raise
        raise interrupt from exc
    else:
        with interrupts.deferred():
            mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))
    finally:
        quiet.setLevel(level)


def _start_or_continue(
    experiment_id: str, run_name: str, tags: Mapping[str, str], run_id: str | None, system_metrics: bool
) -> mlflow.ActiveRun:
    if run_id is None:
        return mlflow.start_run(
            experiment_id=experiment_id,
            run_name=safe_run_name(run_name),
            tags=redact_all(tags),
            log_system_metrics=system_metrics,
        )
    run = mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics)
    client = SafeClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    if "failure_reason" in run.data.tags:  # why the first part ended; the run goes on now
        client.delete_tag(run_id, "failure_reason")
    return run


def _end_quietly(run_id: str, status: int, reason: str, details: str | None = None) -> None:
    """End the run without masking the exception that ended it (the store may be the problem)."""
    client = SafeClient()
    try:
        client.set_tag(run_id, "failure_reason", reason)
        if details:
            client.log_text(run_id, details, "traceback.txt")
    except Exception as exc:
        log.warning("could not record why the run ended: %s", store_problem(mlflow.get_tracking_uri(), exc))
    try:
        mlflow.end_run(RunStatus.to_string(status))
    except Exception as exc:
        log.warning(
            "could not mark the run %s: %s", RunStatus.to_string(status), store_problem(mlflow.get_tracking_uri(), exc)
        )


def start_detached_run(
    experiment_id: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, str] | None = None
) -> str:
    """A run outside the fluent API's active-run stack (a sweep's parent stays open while the
    jobs, possibly in this same process, start and end their own runs)."""
    client = SafeClient()
    run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
    if params:
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    return run.info.run_id


def end_detached_run(client: MlflowClient, run_id: str, status: str, reason: str | None = None) -> None:
    """``client``: a SafeClient (tracking.store.client), so that the reason is redacted."""
    if reason:
        client.set_tag(run_id, "failure_reason", reason)
    client.set_terminated(run_id, status)


def record_failed_run(client: MlflowClient, experiment_id: str, run_name: str, tags: Mapping[str, str]) -> str:
    """A FAILED run for a job that failed before training (tags say why)."""
    run = client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
    client.set_terminated(run.info.run_id, "FAILED")
    return run.info.run_id


def resumable(run_id: str, tracking_uri: str, target: str | None = None) -> Any:
    """Run ``run_id`` as the store has it, if it can be resumed: there, not deleted, not FINISHED.
    ``target``: what ``resume=`` said (a folder or the id), for the message."""
    target = target or run_id
    db = sqlite_path(tracking_uri)
    if db is not None and not db.is_file():  # opening it would create an empty store
        raise ConfigError("resume", f"no MLflow store at {db}; pass the run's store as tracking.uri=...", target)
    try:
        run = MlflowClient(tracking_uri=tracking_uri).get_run(run_id)
    except Exception as exc:
        raise ConfigError(
            "resume",
            f"no such run {run_id} in {redact(tracking_uri)} ({one_line(exc, 200)}); pass "
            "the store it was logged to as tracking.uri=...",
            target,
        ) from None
    if run.info.lifecycle_stage != "active":
        raise ConfigError("resume", f"run {run_id} is deleted in {redact(tracking_uri)}", target)
    if run.info.status == "FINISHED":
        raise ConfigError("resume", f"that run is FINISHED ({run_id}); there is nothing to resume", target)
    artifacts = urlparse(run.info.artifact_uri)
    if artifacts.scheme == "file" and follow_move(tracking_uri, Path(unquote(artifacts.path))):
        run = MlflowClient(tracking_uri=tracking_uri).get_run(run_id)
        artifacts = urlparse(run.info.artifact_uri)
    if artifacts.scheme == "file" and not Path(unquote(artifacts.path)).is_dir():
        # MLflow records a run's artifact folder as an absolute path, and would recreate it there
        raise ConfigError(
            "resume",
            f"run {run_id} keeps its artifacts in {unquote(artifacts.path)}, which does not "
            "exist: move that folder back (or the project with it, mlruns/ beside mlflow.db) to "
            "continue the run",
            target,
        )
    return run


def output_dir_of_run(run_id: str, tracking_uri: str) -> Path:
    """The output folder an unfinished run recorded (tag ``hydra.output_dir``): what ``resume=<run id>`` continues."""
    run = resumable(run_id, tracking_uri)
    folder = run.data.tags.get("hydra.output_dir")
    if not folder or not Path(folder).is_dir():
        raise ConfigError(
            "resume",
            f"the run's output folder {folder!r} is not on this machine; pass resume=<output folder> instead",
            run_id,
        )
    return Path(folder)
