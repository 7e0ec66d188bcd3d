"""Everything MLflow: the store, the run's lifecycle, and what gets logged into it."""

from __future__ import annotations

import logging
import os
import platform
import socket
import subprocess
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from collections.abc import Iterator, Mapping
from urllib.parse import unquote, urlparse

import mlflow
import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no locking (a fresh store is then best created before parallel work)
    fcntl = None
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import mnistlab
from mnistlab.errors import TrackingError, one_line

log = logging.getLogger(__name__)
MODEL_ARTIFACT = "model"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (absolute), else None."""
    if not uri.startswith("sqlite:"):
        return None
    return Path(unquote(uri[len("sqlite:///"):])).resolve()


def open_experiment(uri: str, name: str) -> str:
    """Point MLflow at ``uri`` and return the id of experiment ``name``, creating it when missing.

    A new experiment in a sqlite store keeps its artifacts in ``mlruns/<name>`` beside the
    database file; MLflow's own default would be ./mlruns of whatever the current directory is.
    """
    mlflow.set_tracking_uri(uri)
    try:
        client = _open_store(uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            db = sqlite_path(uri)
            location = (db.parent / "mlruns" / _slug(name)).as_uri() if db else None
            try:
                return client.create_experiment(name, artifact_location=location)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # another process created it first
                    raise
                experiment = client.get_experiment_by_name(name)
    except Exception as exc:  # MLflow's own errors and the database driver's
        raise TrackingError(f"tracking.uri={uri!r}: cannot open the MLflow store ({one_line(exc)})") from None
    if experiment.lifecycle_stage == "deleted":
        raise TrackingError(f"tracking.experiment={name!r} is deleted in {uri}; restore it with "
                            f"`mlflow experiments restore --experiment-id {experiment.experiment_id}` "
                            "or choose another name")
    return experiment.experiment_id


def _open_store(uri: str) -> MlflowClient:
    """A client whose store is ready. Opening a fresh sqlite store creates its tables, and two
    processes doing that at once break each other in many ways (duplicate columns, migration
    mismatches); holding a lock on the database's folder makes one create and the others wait."""
    db = sqlite_path(uri)
    if db is None or fcntl is None:
        return MlflowClient()
    db.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(db.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        return MlflowClient()  # MLflow 3.17 opens the store (and creates the tables) right here
    finally:
        os.close(folder)  # closing releases the lock


@contextmanager
def active_run(experiment_id: str, run_name: str, tags: Mapping[str, str]) -> Iterator[mlflow.ActiveRun]:
    """A run that always ends in a true state: FINISHED, KILLED (interrupt) or FAILED (with a reason)."""
    run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags))
    try:
        yield run
    except KeyboardInterrupt:
        _end_quietly(RunStatus.KILLED, "interrupted")
        log.warning("MLflow run %s marked KILLED; the epochs logged so far are kept", run.info.run_id)
        raise
    except BaseException as exc:
        _end_quietly(RunStatus.FAILED, f"{type(exc).__name__}: {one_line(exc)}", traceback.format_exc())
        raise
    mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))


def _end_quietly(status: int, reason: str, details: str | None = None) -> None:
    """End the run without masking the exception that ended it (the store may be the problem)."""
    try:
        mlflow.set_tag("failure_reason", reason)
        if details:
            mlflow.log_text(details, "traceback.txt")
    except Exception as exc:
        log.warning("could not record why the run ended: %s", one_line(exc))
    try:
        mlflow.end_run(RunStatus.to_string(status))
    except Exception as exc:
        log.warning("could not mark the run %s: %s", RunStatus.to_string(status), one_line(exc))


def log_epoch(epoch: int, metrics: Mapping[str, float]) -> None:
    """One point per curve at step = epoch (0-based, as Keras and mlflow autolog count)."""
    mlflow.log_metrics(dict(metrics), step=epoch)


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """{"model": {"layers": [{"type": "Dense"}]}} -> {"model.layers.0.type": "Dense"}."""
    items = tree.items() if isinstance(tree, Mapping) else enumerate(tree) if isinstance(tree, list) else None
    if items is None:
        return {prefix: str(tree)}
    flat: dict[str, str] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def environment_tags(root_dir: str, output_dir: str) -> dict[str, str]:
    """What is needed to know where a run came from and to repeat it (no TensorFlow import:
    a sweep's launcher process records the same without loading it)."""
    commit = _git(root_dir, "rev-parse", "HEAD")
    dirty = _git(root_dir, "status", "--porcelain", "--untracked-files=no")
    return {
        "git.commit": commit or "unknown (not a git checkout)",
        "git.dirty": "unknown" if commit is None else str(bool(dirty)).lower(),
        "hostname": socket.gethostname(),
        "version.python": platform.python_version(),
        "version.tensorflow": _version("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly"),
        "version.keras": _version("keras"),
        "version.mlflow": _version("mlflow"),
        "version.mnistlab": mnistlab.__version__,
        "hydra.output_dir": output_dir,
    }


def log_keras_model(model: Any, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Log with a tensor signature and explicit requirements (inferring them costs seconds;
    an input_example crashes mlflow.keras, MLflow #16183)."""
    import keras
    import mlflow.keras
    import tensorflow as tf
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *input_shape))]),  # unnamed: one tensor in,
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_classes))]),  # class probabilities out
    )
    requirements = [f"mlflow=={mlflow.__version__}", f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
    mlflow.keras.log_model(model, name=MODEL_ARTIFACT, signature=signature, pip_requirements=requirements)


def where_to_look(uri: str, experiment_id: str, run_id: str) -> list[str]:
    """How to see a run in the MLflow UI: a server's address, or the command and page for a local store."""
    if urlparse(uri).scheme in ("http", "https"):
        return [f"open {uri} in a browser"]
    return [f"mlflow ui --backend-store-uri {uri}",
            f"then http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}"]


def client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri)


def start_detached_run(experiment_id: str, run_name: str, tags: Mapping[str, str],
                       params: Mapping[str, str] = {}) -> str:
    """A run outside the fluent API's active-run stack (a sweep's parent stays open while the
    jobs, possibly in this same process, start and end their own runs)."""
    mlflow_client = MlflowClient()
    run = mlflow_client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
    if params:
        from mlflow.entities import Param

        mlflow_client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    return run.info.run_id


def end_detached_run(mlflow_client: MlflowClient, run_id: str, status: str, reason: str | None = None) -> None:
    if reason:
        mlflow_client.set_tag(run_id, "failure_reason", reason)
    mlflow_client.set_terminated(run_id, status)


def record_failed_run(mlflow_client: MlflowClient, experiment_id: str, run_name: str,
                      tags: Mapping[str, str]) -> str:
    """A FAILED run for a job that failed before training (tags say why)."""
    run = mlflow_client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
    mlflow_client.set_terminated(run.info.run_id, "FAILED")
    return run.info.run_id


def _version(*distributions: str) -> str:
    """The installed version of the first of these distributions (names of one package)."""
    from importlib.metadata import PackageNotFoundError, version

    for name in distributions:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return "not installed"


def _git(cwd: str, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "experiment"

