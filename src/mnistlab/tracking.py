"""Everything MLflow: the store, the run's lifecycle, and what gets logged into it."""

from __future__ import annotations

import logging
import os
import platform
import shlex
import socket
import subprocess
import sys
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
from mnistlab import evaluation, interrupts
from mnistlab.errors import TrackingError, one_line
from mnistlab.groups import flatten
from mnistlab.redaction import redact, redact_all

log = logging.getLogger(__name__)
MODEL_ARTIFACT = "model"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (absolute), else None."""
    if not uri.startswith("sqlite:"):
        return None
    return Path(unquote(uri[len("sqlite:///"):])).resolve()


def existing_store(uri: str) -> MlflowClient:
    """A client for a store that must already hold runs: opening a missing sqlite file would
    quietly create an empty store, so that is refused with what to do instead."""
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise TrackingError(f"no MLflow store at {db}: run `python run.py` first, or pass --uri "
                            "(or set MLFLOW_TRACKING_URI)")
    return MlflowClient(tracking_uri=uri)


def open_experiment(uri: str, name: str) -> str:
    """Point MLflow at ``uri`` and return the id of experiment ``name``, creating it when missing.

    A new experiment in a sqlite store keeps its artifacts in ``mlruns/<name>`` beside the
    database file; MLflow's own default would be ./mlruns of whatever the current directory is.
    """
    mlflow.set_tracking_uri(uri)
    try:
        with _quiet_store_errors():
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
        raise TrackingError(store_problem(uri, exc)) from None
    if experiment.lifecycle_stage == "deleted":
        raise TrackingError(f"tracking.experiment={name!r} is deleted in {uri}; restore it with "
                            f"`mlflow experiments restore --experiment-id {experiment.experiment_id}` "
                            "or choose another name")
    return experiment.experiment_id


def store_problem(uri: str, exc: BaseException) -> str:
    """One line for a store that cannot be used, saying what to do about the usual causes."""
    while getattr(exc, "orig", None) is not None or exc.__cause__ is not None:  # the database driver's own words
        exc = getattr(exc, "orig", None) or exc.__cause__
    text, where = one_line(exc, 300), f"tracking.uri={redact(uri)!r}"
    db = sqlite_path(uri)
    if "readonly database" in text or "read-only file system" in text.lower():
        return (f"{where}: the database {db or ''} is read-only; make it and its folder writable, or point "
                f"tracking.uri (or MLFLOW_TRACKING_URI) at a store you can write ({text})")
    if "database is locked" in text:
        return (f"{where}: the database {db or ''} is locked by another process (an open transaction, or a "
                f"network file system without locking); close that process or use another store ({text})")
    if "unable to open database file" in text:
        return f"{where}: cannot create or open the database {db or ''}: is its folder writable? ({text})"
    return f"{where}: cannot open the MLflow store ({text})"


def reachable_uri(uri: str, fallback_to_local: bool, root_dir: str) -> str:
    """``uri`` itself, unless it is a tracking server that does not answer: then a one-line error
    before any work (MLflow's client would retry for minutes), or with ``fallback_to_local`` the
    project's own sqlite store, said in a warning."""
    if urlparse(uri).scheme not in ("http", "https"):
        return uri
    problem = server_problem(uri)
    if problem is None:
        return uri
    local = f"sqlite:///{Path(root_dir).resolve() / 'mlflow.db'}"
    if fallback_to_local:
        log.warning("tracking server %s does not answer (%s); tracking.fallback_to_local=true: logging to %s "
                    "instead", redact(uri), problem, local)
        return local
    raise TrackingError(f"tracking.uri={redact(uri)!r} does not answer ({problem}): start the server "
                        "(mlflow server --host 127.0.0.1 --port <port>), fix tracking.uri or MLFLOW_TRACKING_URI, "
                        f"or add tracking.fallback_to_local=true to log to {local} instead")


def server_problem(uri: str, timeout: float = 5.0) -> str | None:
    """None when an MLflow server answers at ``uri`` (any HTTP answer counts: auth is MLflow's business),
    else what went wrong (refused, timed out, unknown host)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return one_line(reason if isinstance(reason, BaseException) else exc, 200) or type(exc).__name__


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
def active_run(experiment_id: str, run_name: str, tags: Mapping[str, str],
               run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """A run that always ends in a true state: FINISHED, KILLED (interrupt) or FAILED (with a reason).
    ``run_id``: continue that run (resume) instead of starting a new one."""
    try:
        with _quiet_store_errors():
            run = _start_or_continue(experiment_id, run_name, tags, run_id)
    except Exception as exc:
        raise TrackingError(store_problem(mlflow.get_tracking_uri(), exc)) from None
    try:
        yield run
    except BaseException as exc:
        interrupt = interrupts.as_interrupt(exc)  # TensorFlow can turn Ctrl-C into another error
        if not isinstance(interrupt, KeyboardInterrupt):
            _end_quietly(RunStatus.FAILED, f"{type(exc).__name__}: {one_line(exc)}", traceback.format_exc())
            raise
        _end_quietly(RunStatus.KILLED, "interrupted")
        log.warning("MLflow run %s marked KILLED; the epochs logged so far are kept", run.info.run_id)
        if interrupt is exc:
            raise
        raise interrupt from exc
    mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))


def _start_or_continue(experiment_id: str, run_name: str, tags: Mapping[str, str],
                       run_id: str | None) -> mlflow.ActiveRun:
    if run_id is None:
        return mlflow.start_run(experiment_id=experiment_id, run_name=fitting_name(run_name), tags=redact_all(tags))
    run = mlflow.start_run(run_id=run_id)
    mlflow.set_tags(redact_all(tags))
    if "failure_reason" in run.data.tags:  # why the first part ended; the run goes on now
        MlflowClient().delete_tag(run_id, "failure_reason")
    return run


class _Held(logging.Filter):
    """Keeps a logger's records back until we know whether they are news or part of an error."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


@contextmanager
def _quiet_store_errors() -> Iterator[None]:
    """MLflow logs a store error with its whole traceback before raising it; the raised error
    becomes our one line, so its log record is dropped. Its warnings about Databricks credentials
    are held back: shown if the store opens anyway, dropped when our line explains the failure."""
    logger = logging.getLogger("mlflow.store.db.utils")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    held, databricks = _Held(), logging.getLogger("mlflow.utils.databricks_utils")
    databricks.addFilter(held)
    try:
        yield
    finally:
        logger.setLevel(level)
        databricks.removeFilter(held)
    for record in held.records:  # reached only when the store opened
        databricks.handle(record)


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


MAX_RUN_NAME = 250  # MLflow's column; PostgreSQL refuses longer names (sqlite does not check)


def fitting_name(name: str) -> str:
    """A run name MLflow's SQL stores take: long ones (a search's overrides) are cut, with a hash
    of the whole so that two cut names still differ."""
    if len(name) <= MAX_RUN_NAME:
        return name
    import hashlib

    return f"{name[:MAX_RUN_NAME - 10]}~{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def log_epoch(epoch: int, metrics: Mapping[str, float]) -> None:
    """One point per curve at step = epoch (0-based, as Keras and mlflow autolog count)."""
    with interrupts.deferred():
        mlflow.log_metrics(dict(metrics), step=epoch)


def log_missing_epochs(run_id: str, history: Mapping[str, list[float]]) -> int:
    """A resumed run: log the checkpoint's epochs that MLflow lacks (an interrupt can fall between
    saving an epoch and logging it), so every epoch is in MLflow exactly once. Returns how many."""
    have = {m.step for m in MlflowClient().get_metric_history(run_id, "loss")}
    missing = [epoch for epoch in range(len(history.get("loss", []))) if epoch not in have]
    for epoch in missing:
        log_epoch(epoch, {name: values[epoch] for name, values in history.items()})
    return len(missing)


def log_run_record(config: Mapping[str, Any], output_dir: str, model_summary: str,
                   extra_params: Mapping[str, str]) -> None:
    """What a new run records before training: every config value as a param, the config and
    Hydra's files, the model summary, and what is needed to repeat it (installed packages, the
    uncommitted changes). Secrets from the environment are masked in all of it."""
    import yaml

    mlflow.log_params(redact_all({**flatten(config), **extra_params}))
    mlflow.log_text(redact(yaml.safe_dump(config, sort_keys=False)), "config.yaml")
    mlflow.log_text(model_summary, "model_summary.txt")
    hydra_dir = Path(output_dir) / ".hydra"
    for path in sorted(hydra_dir.glob("*.yaml")) if hydra_dir.is_dir() else []:
        mlflow.log_text(redact(path.read_text()), f"hydra/{path.name}")
    mlflow.log_text(installed_packages(), "environment/requirements.txt")
    diff = _git(code_dir(str(config.get("root_dir", "."))), "diff", "HEAD", "--no-color")
    if diff:
        mlflow.log_text(redact(diff) + "\n", "environment/git_diff.patch")


def log_predictions(frame: Any) -> None:
    """The per-image test predictions (evaluation.predictions_frame) as a compressed parquet file."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(evaluation.PREDICTIONS_ARTIFACT).name
        evaluation.write_predictions(frame, path)
        mlflow.log_artifact(str(path), str(Path(evaluation.PREDICTIONS_ARTIFACT).parent))


def installed_packages() -> str:
    """pip freeze, without running pip: every distribution in this environment, name==version."""
    from importlib.metadata import distributions

    names = {f"{d.metadata['Name']}=={d.version}" for d in distributions() if d.metadata["Name"]}
    return "\n".join(sorted(names, key=str.lower)) + "\n"


def environment_tags(root_dir: str, output_dir: str) -> dict[str, str]:
    """What is needed to know where a run came from and to repeat it (no TensorFlow import:
    a sweep's launcher process records the same without loading it)."""
    commit = _git(code_dir(root_dir), "rev-parse", "HEAD")
    dirty = _git(code_dir(root_dir), "status", "--porcelain", "--untracked-files=no")
    return {
        "git.commit": commit or "unknown (not a git checkout)",
        "git.dirty": "unknown" if commit is None else str(bool(dirty)).lower(),
        "hostname": socket.gethostname(),
        "host.cpu": cpu_model(),
        "host.cores": str(os.cpu_count()),
        "host.os": platform.platform(),
        "command": redact(os.environ.get("MNISTLAB_COMMAND") or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])),
        "version.python": platform.python_version(),
        "version.tensorflow": _version("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly"),
        "version.keras": _version("keras"),
        "version.mlflow": _version("mlflow"),
        "version.mnistlab": mnistlab.__version__,
        "hydra.output_dir": output_dir,
    }


def code_dir(root_dir: str) -> str:
    """The checkout the code runs from (run.py's folder), whose git state a run records; outputs
    may go elsewhere (MNISTLAB_ROOT)."""
    return os.environ.get("MNISTLAB_CODE_DIR") or root_dir


def cpu_model() -> str:
    """The CPU's marketing name (results differ across CPU models: instruction sets, thread counts)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


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


def load_keras_model(model_uri: str) -> Any:
    """A logged model, loaded with Keras's safe mode on: a model file that carries Python code
    (a Lambda layer's bytecode) is refused instead of executed."""
    import mlflow.keras

    try:
        return mlflow.keras.load_model(model_uri, load_model_kwargs={"safe_mode": True})
    except ValueError as exc:
        if "safe_mode" not in str(exc):
            raise
        raise TrackingError(f"{model_uri}: the model holds Python code (e.g. a Lambda layer), which Keras's safe "
                            "mode refuses to run; load it with keras.saving.load_model(..., safe_mode=False) only "
                            "if you trust where it came from") from None


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
    run = mlflow_client.create_run(experiment_id, run_name=fitting_name(run_name), tags=dict(tags))
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
    run = mlflow_client.create_run(experiment_id, run_name=fitting_name(run_name), tags=dict(tags))
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

