"""The MLflow store: finding and opening it (a sqlite file created once, a server checked first),
its experiment, and one-line explanations of what is wrong with it."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mnistlab.core.errors import TrackingError, one_line
from mnistlab.core.redaction import Redacted, redact
from mnistlab.tracking.safe import SafeClient
from mnistlab.tracking.server import server_problem

try:
    import fcntl
except ImportError:  # Windows: no locking (a fresh store is then best created before parallel work)
    fcntl = None

log = logging.getLogger(__name__)
for _handler in logging.getLogger("mlflow").handlers:  # MLflow prints run URLs, with a URL's password
    _handler.addFilter(Redacted())


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (absolute), else None."""
    if not uri.startswith("sqlite:"):
        return None
    return Path(unquote(uri[len("sqlite:///") :])).resolve()


def existing_store(uri: str, where_from: str | None = None) -> MlflowClient:
    """A client for a store that must already hold runs: opening a missing sqlite file would
    quietly create an empty store, so that is refused with what to do instead."""
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise TrackingError(
            f"no MLflow store at {db}{where_from or ''}: run `python run.py` first, or pass --uri (or set "
            "MLFLOW_TRACKING_URI)"
        )
    if urlparse(uri).scheme in ("http", "https"):  # MLflow's client would retry for minutes
        problem = server_problem(uri)
        if problem is not None:
            raise TrackingError(
                f"--uri {redact(uri)!r} does not answer ({problem}): start the server "
                "(mlflow server --host 127.0.0.1 --port <port>), or fix --uri or MLFLOW_TRACKING_URI"
            )
    return SafeClient(tracking_uri=uri)


def use(uri: str) -> None:
    """Point MLflow's fluent API (and model loading) at ``uri``."""
    mlflow.set_tracking_uri(uri)


def client(uri: str) -> SafeClient:
    """A client whose writes are redacted (tracking.safe)."""
    return SafeClient(tracking_uri=uri)


def open_experiment(uri: str, name: str) -> str:
    """Point MLflow at ``uri`` and return the id of experiment ``name``, creating it when missing.

    A new experiment in a sqlite store keeps its artifacts in ``mlruns/<name>`` beside the
    database file; MLflow's own default would be ./mlruns of whatever the current directory is.
    """
    mlflow.set_tracking_uri(uri)
    try:
        with quiet_store_errors():
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
        raise store_error(uri, exc, opening=True) from None
    if experiment.lifecycle_stage == "deleted":
        raise TrackingError(
            f"tracking.experiment={name!r} is deleted in {uri}; restore it with "
            f"`mlflow experiments restore --experiment-id {experiment.experiment_id}` "
            "or choose another name"
        )
    return experiment.experiment_id


def store_problem(uri: str, exc: BaseException) -> str:
    """One line for a store that cannot be used, saying what to do about the usual causes."""
    return _diagnose(uri, exc, "the MLflow store failed")[0]


def store_error(uri: str, exc: BaseException, opening: bool = False) -> TrackingError:
    """``store_problem`` as the error to raise; a cause neither it nor MLflow names keeps the
    store's exception, whose traceback is then saved like an unexpected error's."""
    message, named = _diagnose(uri, exc, "cannot open the MLflow store" if opening else "the MLflow store failed")
    return TrackingError(message, cause=None if named else exc)


def _diagnose(uri: str, exc: BaseException, otherwise: str) -> tuple[str, bool]:
    while getattr(exc, "orig", None) is not None or exc.__cause__ is not None:  # the database driver's own words
        exc = getattr(exc, "orig", None) or exc.__cause__
    text, where = one_line(exc, 300), f"tracking.uri={redact(uri)!r}"
    text = text.split(" [SQL: ")[0]  # the statement and its values say nothing the user can act on
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        return f"{where}: the database {db} is gone (deleted while the run trained?) ({text})", True
    if "disk is full" in text or "No space left" in text or "File too large" in text:
        return f"{where}: the disk holding {db or 'the store'} is full; free some space ({text})", True
    if "readonly database" in text or "read-only file system" in text.lower():
        return (
            f"{where}: the database {db or ''} is read-only; make it and its folder writable, or point "
            f"tracking.uri (or MLFLOW_TRACKING_URI) at a store you can write ({text})"
        ), True
    if "database is locked" in text:
        return (
            f"{where}: the database {db or ''} is locked by another process (an open transaction, or a "
            f"network file system without locking); close that process or use another store ({text})"
        ), True
    if "unable to open database file" in text:
        return f"{where}: cannot create or open the database {db or ''}: is its folder writable? ({text})", True
    # MLflow's own messages are written for users; a bare OS or driver error is a surprise worth a traceback
    return f"{where}: {otherwise} ({text})", isinstance(exc, MlflowException)


#: columns of MLflow's SQL schema that hold absolute artifact locations
ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)


def follow_move(uri: str, artifact_path: Path) -> bool:
    """A sqlite store whose project folder moved, mlruns/ with it: MLflow keeps absolute artifact
    paths (and would recreate the old folder), so the paths under the old mlruns/ are rewritten to
    the mlruns/ beside the database now. True when ``artifact_path`` was such a path."""
    db = sqlite_path(uri)
    parts = artifact_path.parts
    if db is None or "mlruns" not in parts or artifact_path.exists():
        return False
    cut = len(parts) - 1 - parts[::-1].index("mlruns")
    old_root, new_root = Path(*parts[: cut + 1]), db.parent / "mlruns"
    if not (new_root / Path(*parts[cut + 1 :])).exists():
        return False
    with sqlite3.connect(db) as connection:
        for old, new in ((old_root.as_uri(), new_root.as_uri()), (str(old_root), str(new_root))):
            for table, column in ARTIFACT_COLUMNS:
                try:
                    connection.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE {column} LIKE ?",
                        (new, len(old) + 1, old + "/%"),
                    )
                except sqlite3.OperationalError:  # a table this MLflow version lacks
                    continue
    log.warning("the project moved: artifact paths under %s now point to %s", old_root, new_root)
    return True


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


class _Held(logging.Filter):
    """Keeps a logger's records back until we know whether they are news or part of an error."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


@contextmanager
def quiet_store_errors() -> Iterator[None]:
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


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "experiment"
