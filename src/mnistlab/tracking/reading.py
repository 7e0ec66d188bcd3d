"""Runs read back from the store for comparisons: as report rows, with their validation curves
and their test predictions."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mnistlab.core.errors import MnistlabError, one_line
from mnistlab.reports.comparison import CURVE, Predictions, RunRow, rank
from mnistlab.reports.evaluation import PREDICTIONS_ARTIFACT
from mnistlab.tracking.parents import ROLE_TAG, SUPERSEDED_TAG, SWEEP_ROLE, Sweep


class BadFilter(MnistlabError):
    """An MLflow search filter the store refuses."""

    exit_code = 2


@contextmanager
def errors(uri: str, user_filter: str = "") -> Iterator[None]:
    """The store's errors while reading, as one line: a filter it refuses, or what went wrong with it."""
    try:
        yield
    except MlflowException as exc:
        if exc.error_code == "INVALID_PARAMETER_VALUE" and user_filter:
            raise BadFilter(f"--filter {user_filter!r}: {one_line(exc)}") from None
        raise MnistlabError(f"{uri}: {one_line(exc)}") from None


def find_runs(
    client: MlflowClient,
    experiment_ids: Sequence[str],
    filter_string: str = "",
    max_results: int = 1000,
    metric: str = "test_accuracy",
) -> list[RunRow]:
    """The runs that match, ranked; sweep parents are left out (their children are the runs)."""
    runs = client.search_runs(list(experiment_ids), filter_string, max_results=max_results)
    return rank((RunRow.of(run) for run in runs if run.data.tags.get(ROLE_TAG) != SWEEP_ROLE), metric)


def sweep_rows(client: MlflowClient, sweep: Sweep) -> list[RunRow]:
    """The sweep's runs, but a job's earlier runs that a continue ran again."""
    replaced = f"{sweep.runs_filter} and tags.`{SUPERSEDED_TAG}` = 'true'"
    superseded = {run.info.run_id for run in client.search_runs([sweep.experiment_id], replaced)}
    return [row for row in find_runs(client, [sweep.experiment_id], sweep.runs_filter) if row.run_id not in superseded]


def latest_sweep_id(client: MlflowClient, experiment_ids: Sequence[str]) -> str | None:
    """The sweep whose parent run started last."""
    parents = client.search_runs(
        list(experiment_ids),
        f"tags.`{ROLE_TAG}` = '{SWEEP_ROLE}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return parents[0].data.tags["sweep_id"] if parents else None


def val_curves(client: MlflowClient, rows: Sequence[RunRow]) -> dict[str, list[float]]:
    """Each run's validation-accuracy history, in step order."""
    curves = {}
    for row in rows:
        history = sorted(client.get_metric_history(row.run_id, CURVE), key=lambda m: m.step)
        if history:
            curves[row.run_id] = [m.value for m in history]
    return curves


def predictions_from(client: MlflowClient) -> Predictions:
    """Reads runs' ``predictions/test.parquet`` (labels and predicted classes), once per run."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per run on stderr otherwise
    cache: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}

    def load(run_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        if run_id not in cache:
            with tempfile.TemporaryDirectory() as folder:
                try:
                    path = client.download_artifacts(run_id, PREDICTIONS_ARTIFACT, folder)
                    frame = pd.read_parquet(path, columns=["label", "predicted"])
                    cache[run_id] = (frame["label"].to_numpy(), frame["predicted"].to_numpy())
                except (MlflowException, OSError):
                    cache[run_id] = None
        return cache[run_id]

    return load
