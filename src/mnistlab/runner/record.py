"""What a run records, through ``tracking``'s interface: the store it logs to, its tags, the record
written before training, and the results, figures and model after it."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from mnistlab.config.groups import GROUP_TAG, flatten, group_id
from mnistlab.core import interrupts
from mnistlab.core.redaction import redact_tree
from mnistlab.core.stopwatch import Stopwatch
from mnistlab.core.text import plural
from mnistlab.data.prepare import Dataset
from mnistlab.data.registry import DatasetSpec
from mnistlab.reports.drawing import DRAWER
from mnistlab.reports.evaluation import Misclassified, TestReport, predictions_frame
from mnistlab.tracking import logger, provenance, server, store
from mnistlab.tracking.datasets import Split
from mnistlab.tracking.logger import RunLog
from mnistlab.tracking.parents import Sweep
from mnistlab.train.checkpoints import Checkpoint
from mnistlab.train.fit import TrainResult


@dataclass(frozen=True)
class Store:
    tracking_uri: str  # the local store instead, when the server did not answer and fallback is on
    experiment_id: str


def open_store(cfg: DictConfig) -> Store:
    """The store answers (a server within seconds, not MLflow's minutes of retries) and holds the experiment."""
    uri = server.reachable_uri(cfg.tracking.uri, cfg.tracking.fallback_to_local, cfg.root_dir)
    return Store(uri, store.open_experiment(uri, cfg.tracking.experiment))


def tags(
    cfg: DictConfig,
    resolved: Mapping[str, Any],
    output_dir: str,
    where: Store,
    sweep: Sweep | None,
    job: int,
    extra: Mapping[str, str] | None,
    resume: Checkpoint | None,
) -> dict[str, str]:
    """A new run's tags: provenance, the user's, its configuration group, its sweep and trial; a
    resumed run's: how often and after which epoch it was resumed."""
    if resume is not None:
        return {"resumed": str(resume.state.get("resumed", 0) + 1), "resumed.after_epoch": str(resume.epochs_done)}
    # replicates of one configuration (differing by seed only) share this tag; from the params as logged
    found = {
        **provenance.environment_tags(cfg.root_dir, output_dir),
        **cfg.tracking.tags,
        GROUP_TAG: group_id(flatten(redact_tree(resolved))),
    }
    if sweep is not None:
        nested = (sweep.tracking_uri, sweep.experiment_id) == (where.tracking_uri, where.experiment_id)
        found.update(sweep.child_tags(job, nested=nested))
    found.update(extra or {})
    return found


@contextmanager
def run_log(
    where: Store, run_name: str, run_tags: Mapping[str, str], resume: Checkpoint | None, system_metrics: bool
) -> Iterator[RunLog]:
    run_id = resume.run_id if resume else None
    with logger.run_log(where.experiment_id, run_name, run_tags, run_id=run_id, system_metrics=system_metrics) as log:
        yield log


def before_training(
    log: RunLog,
    resolved: Mapping[str, Any],
    output_dir: str,
    summary: str,
    num_params: int,
    threads: int,
    precision: str,
    data: Dataset,
    inputs: Mapping[str, Split],
    resume: Checkpoint | None,
) -> None:
    """A new run's record, written whole (Ctrl-C waits for it); a resumed run's missing epochs."""
    with interrupts.deferred():
        if resume is not None:
            log.missing_epochs(resume.state["history"])
            return
        # num_params also as a metric: charts plot accuracy against size; intervals need the image counts
        log.record(
            resolved,
            output_dir,
            model_summary=summary,
            params={
                "num_params": str(num_params),
                "trainer.threads_used": str(threads),
                "trainer.precision_used": precision,
            },
            metrics={
                "num_params": num_params,
                "train_images": len(data.x_train),
                "val_images": len(data.x_val),
                "test_images": len(data.x_test),
            },
        )
        log.datasets(inputs.values())


@dataclass(frozen=True)
class Tested:
    """The test set's verdict on the trained model."""

    scores: dict[str, float]  # test loss, accuracy and its interval, each class's recall
    probabilities: np.ndarray
    report: TestReport

    @classmethod
    def of(cls, scores: dict[str, float], probabilities: np.ndarray, data: Dataset, spec: DatasetSpec) -> Tested:
        report = TestReport.of(data.labels_test, probabilities.argmax(axis=1), spec.class_names)
        return cls({**scores, **report.metrics()}, probabilities, report)


def description(cfg: DictConfig, num_params: int, data: Dataset, epochs_run: int, scores: Mapping[str, float]) -> str:
    """The run in a sentence, with its result: its page's description in the MLflow UI."""
    low, high = scores["test_accuracy_ci_low"], scores["test_accuracy_ci_high"]
    epochs = plural(epochs_run, "epoch")
    return (
        f"{cfg.model.name} ({num_params:,} parameters) trained with {cfg.optimizer.name} on "
        f"{len(data.x_train):,} {cfg.data.name} images for {epochs} of batch {cfg.trainer.batch_size}, seed "
        f"{cfg.seed}: test accuracy {scores['test_accuracy']:.2%} on {len(data.x_test):,} test images "
        f"(95% interval {low:.2%}-{high:.2%}, one seed)."
    )


def draw_curves(fitted: TrainResult, title: str) -> None:
    """The learning curves, asked of the figures' helper as soon as training ends (after_training
    logs them)."""
    DRAWER.ask("learning_curves", (fitted.history, title), "learning_curves.png")


def after_training(
    log: RunLog,
    title: str,
    fitted: TrainResult,
    tested: Tested,
    timing: dict[str, float],
    data: Dataset,
    model: Any,
    log_model: bool,
    started: float,
    logs: Mapping[str | None, list[Path]],
    inputs: Mapping[str, Split],
    summary: str,
    watch: Stopwatch,
) -> float:
    """Only writes from here (Ctrl-C waits for them, seconds): the model, the results (the test
    scores linked to the model and the test set), the figures, the test predictions, the logs.
    Returns the run's wall time. ``watch``: its phases are logged last, as ``time_<phase>_s``."""
    with interrupts.deferred():
        predicted = tested.probabilities.argmax(axis=1)
        shown = Misclassified.of(data.x_test, data.labels_test, predicted)
        DRAWER.ask("confusion_figure", (tested.report.counts, title, tested.report.class_names), "confusion_matrix.png")
        DRAWER.ask("misclassified_figure", (shown, title), "misclassified.png")
        model_id = log.model(model, data.input_shape, data.num_classes) if log_model else None
        log.final(tested.scores, model_id=model_id, dataset=inputs["test"])
        log.final(timing)
        log.describe(summary)
        log.text(tested.report.per_class_csv(), "per_class.csv")
        log.predictions(predictions_frame(data.labels_test, tested.probabilities))
        with DRAWER.drawn() as drawn:  # the learning curves (draw_curves), the confusion matrix, the misclassified
            log.files(drawn)
        wall = time.perf_counter() - started
        log.final({"wall_time_s": wall})
        for folder, paths in logs.items():
            log.files(paths, folder)
        watch.lap("log")
        log.final({f"time_{phase}_s": seconds for phase, seconds in watch.laps.items()})
    return wall
