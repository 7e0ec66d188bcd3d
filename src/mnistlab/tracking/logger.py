"""The run a training writes to, behind one interface: ``run_log(...)`` starts or continues it and
yields a ``RunLog``, whose methods are everything the runner records. The runner calls MLflow only
through here."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import yaml
from mlflow.tracking import MlflowClient

from mnistlab.config.groups import flatten
from mnistlab.core import interrupts
from mnistlab.core.redaction import redact, redact_all
from mnistlab.reports import evaluation
from mnistlab.tracking import models, provenance
from mnistlab.tracking.runs import active_run


@contextmanager
def run_log(experiment_id: str, run_name: str, tags: Mapping[str, str], run_id: str | None = None) -> Iterator[RunLog]:
    """A new run (or run ``run_id``, continued) that ends FINISHED, KILLED or FAILED with the block."""
    with active_run(experiment_id, run_name, tags, run_id=run_id) as active:
        yield RunLog(active.info.run_id)


class RunLog:
    """The active MLflow run, as a training records into it."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

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
        mlflow.log_params(redact_all({**flatten(config), **params}))
        mlflow.log_metrics(dict(metrics))
        mlflow.log_text(redact(yaml.safe_dump(dict(config), sort_keys=False)), "config.yaml")
        mlflow.log_text(model_summary, "model_summary.txt")
        hydra_dir = Path(output_dir) / ".hydra"
        for path in sorted(hydra_dir.glob("*.yaml")) if hydra_dir.is_dir() else []:
            mlflow.log_text(redact(path.read_text()), f"hydra/{path.name}")
        mlflow.log_text(provenance.installed_packages(), "environment/requirements.txt")
        diff = provenance.git(provenance.code_dir(str(config.get("root_dir", "."))), "diff", "HEAD", "--no-color")
        if diff:
            mlflow.log_text(redact(diff) + "\n", "environment/git_diff.patch")

    def epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """One point per curve at step = epoch (0-based, as Keras and mlflow autolog count)."""
        with interrupts.deferred():
            mlflow.log_metrics(dict(metrics), step=epoch)

    def missing_epochs(self, history: Mapping[str, list[float]]) -> int:
        """A resumed run: log the checkpoint's epochs that MLflow lacks (an interrupt can fall between
        saving an epoch and logging it), so every epoch is in MLflow exactly once. Returns how many."""
        have = {m.step for m in MlflowClient().get_metric_history(self.run_id, "loss")}
        missing = [epoch for epoch in range(len(history.get("loss", []))) if epoch not in have]
        for epoch in missing:
            self.epoch(epoch, {name: values[epoch] for name, values in history.items()})
        return len(missing)

    def results(self, metrics: Mapping[str, float]) -> None:
        mlflow.log_metrics(dict(metrics))

    def figure(self, figure: Any, path: str) -> None:
        mlflow.log_figure(figure, path)

    def text(self, text: str, path: str) -> None:
        mlflow.log_text(text, path)

    def predictions(self, frame: Any) -> None:
        """The per-image test predictions (reports.evaluation.predictions_frame) as a compressed parquet file."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(evaluation.PREDICTIONS_ARTIFACT).name
            evaluation.write_predictions(frame, path)
            mlflow.log_artifact(str(path), str(Path(evaluation.PREDICTIONS_ARTIFACT).parent))

    def model(self, model: Any, input_shape: tuple[int, ...], num_classes: int) -> None:
        models.log_keras_model(model, input_shape, num_classes)

    def files(self, paths: Iterable[Path], folder: str | None = None) -> None:
        for path in paths:
            mlflow.log_artifact(str(path), folder)
