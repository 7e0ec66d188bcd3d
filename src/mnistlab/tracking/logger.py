"""The run a training writes to, behind one interface: ``run_log(...)`` starts or continues it and
yields a ``RunLog``, whose methods are everything the runner records. The runner calls MLflow only
through here."""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from mnistlab.config.groups import flatten
from mnistlab.core import interrupts
from mnistlab.core.redaction import redact_tree
from mnistlab.reports import evaluation
from mnistlab.tracking import models, provenance
from mnistlab.tracking.datasets import Split
from mnistlab.tracking.runs import active_run
from mnistlab.tracking.safe import SafeClient
from mnistlab.tracking.store import store_error


@contextmanager
def run_log(
    experiment_id: str,
    run_name: str,
    tags: Mapping[str, str],
    run_id: str | None = None,
    system_metrics: bool = False,
) -> Iterator[RunLog]:
    """A new run (or run ``run_id``, continued) that ends FINISHED, KILLED or FAILED with the block;
    with ``system_metrics``, MLflow samples the machine's CPU and memory into it meanwhile."""
    with active_run(experiment_id, run_name, tags, run_id=run_id, system_metrics=system_metrics) as active:
        yield RunLog(active.info.run_id, continued=run_id is not None)


def _store_errors(method: Callable) -> Callable:
    """A write that fails (the store was deleted, the disk is full) as one line naming the cause."""

    @functools.wraps(method)
    def write(self: RunLog, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (MlflowException, SQLAlchemyError, OSError) as exc:
            raise store_error(mlflow.get_tracking_uri(), exc) from None

    return write


class RunLog:
    """The active MLflow run, as a training records into it; every write redacted (tracking.safe)
    and a failing store reported in one line."""

    def __init__(self, run_id: str, continued: bool = False) -> None:
        self.run_id = run_id
        self.client = SafeClient()
        # a continued run may have logged its results already (its process died while writing them)
        run = self.client.get_run(run_id) if continued else None
        self._logged = set(run.data.metrics) if run else set()
        outputs = run.outputs.model_outputs if run and run.outputs else []
        self._model_id: str | None = outputs[0].model_id if outputs else None

    @_store_errors
    def record(
        self,
        config: Mapping[str, Any],
        output_dir: str,
        model_summary: str,
        params: Mapping[str, str],
        metrics: Mapping[str, float],
    ) -> None:
        """What a new run records before training: every config value as a param, the config and
        Hydra's files, the model summary, and what is needed to repeat it (installed packages, the
        uncommitted changes). Secrets from the environment are masked in all of it."""
        masked = redact_tree(config)  # before YAML escapes a secret's non-ASCII characters
        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in {**flatten(masked), **params}.items()])
        self.results(metrics)
        self.text(yaml.safe_dump(masked, sort_keys=False, allow_unicode=True), "config.yaml")
        self.text(model_summary, "model_summary.txt")
        hydra_dir = Path(output_dir) / ".hydra"
        for path in sorted(hydra_dir.glob("*.yaml")) if hydra_dir.is_dir() else []:
            self.text(path.read_text(), f"hydra/{path.name}")
        self.text(provenance.installed_packages(), "environment/requirements.txt")
        diff = provenance.git(provenance.code_dir(str(config.get("root_dir", "."))), "diff", "HEAD", "--no-color")
        if diff:
            self.text(diff + "\n", "environment/git_diff.patch")

    @_store_errors
    def epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """One point per curve at step = epoch (0-based, as Keras and mlflow autolog count)."""
        with interrupts.deferred():
            self.results(metrics, step=epoch)

    @_store_errors
    def missing_epochs(self, history: Mapping[str, list[float]]) -> int:
        """A resumed run: log the checkpoint's epochs that MLflow lacks (an interrupt can fall between
        saving an epoch and logging it), so every epoch is in MLflow exactly once. Returns how many."""
        have = {m.step for m in self.client.get_metric_history(self.run_id, "loss")}
        missing = [epoch for epoch in range(len(history.get("loss", []))) if epoch not in have]
        for epoch in missing:
            self.epoch(epoch, {name: values[epoch] for name, values in history.items()})
        return len(missing)

    @_store_errors
    def results(
        self, metrics: Mapping[str, float], step: int = 0, model_id: str | None = None, dataset: Split | None = None
    ) -> None:
        """Metrics at ``step``; with ``model_id`` and ``dataset``, linked to that logged model (its page
        shows them) and to the dataset they were measured on."""
        now = int(time.time() * 1000)
        on = {"dataset_name": dataset.name, "dataset_digest": dataset.digest} if dataset else {}
        self.client.log_batch(
            self.run_id, metrics=[Metric(k, float(v), now, step, model_id=model_id, **on) for k, v in metrics.items()]
        )

    @_store_errors
    def final(self, metrics: Mapping[str, float], model_id: str | None = None, dataset: Split | None = None) -> None:
        """The run's final values, each logged once: a continued run's earlier ones are kept."""
        self.results({k: v for k, v in metrics.items() if k not in self._logged}, model_id=model_id, dataset=dataset)

    @_store_errors
    def datasets(self, splits: Iterable[Split]) -> None:
        """The run's inputs: each split with its role (training, validation, test)."""
        for split in splits:
            mlflow.log_input(split.dataset, context=split.context)

    @_store_errors
    def describe(self, text: str) -> None:
        """The run's description, as the UI shows it on the run's page (``mlflow.note.content``)."""
        self.client.set_tag(self.run_id, "mlflow.note.content", text)

    @_store_errors
    def text(self, text: str, path: str) -> None:
        self.client.log_text(self.run_id, text, path)

    @_store_errors
    def predictions(self, frame: Any) -> None:
        """The per-image test predictions (reports.evaluation.predictions_frame) as a compressed parquet file."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(evaluation.PREDICTIONS_ARTIFACT).name
            evaluation.write_predictions(frame, path)
            self.client.log_artifact(self.run_id, str(path), str(Path(evaluation.PREDICTIONS_ARTIFACT).parent))

    @_store_errors
    def model(self, model: Any, input_shape: tuple[int, ...], num_classes: int) -> str:
        """The model logged once per run (a continued run may have logged it); its LoggedModel id."""
        if self._model_id is None:
            self._model_id = models.log_keras_model(model, input_shape, num_classes)
        return self._model_id

    @_store_errors
    def files(self, paths: Iterable[Path], folder: str | None = None) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), folder)
