"""One experiment run: data, model, training, evaluation, and all of it logged to MLflow.

Hydra-free on purpose (the CLI passes in what Hydra knows), so it can be driven from code.
Order matters: everything that can fail on user input (data, layers, then the store) fails
before the MLflow run starts, so a typo never leaves a run behind.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mnistlab import checkpoints, evaluation, interrupts
from mnistlab import data as data_lib
from mnistlab.config import loss_spec, validate
from mnistlab.errors import MnistlabError
from mnistlab.groups import GROUP_TAG, flatten, group_id
from mnistlab.redaction import redact_all
from mnistlab.sweep import Sweep

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunResult:
    run_id: str
    experiment_id: str
    num_params: int
    metrics: dict[str, float]  # the final values: last epoch, test scores, times
    config: DictConfig | None = None  # what ran (a resumed run's own config, not the command line's)
    tracking_uri: str = ""  # where it is recorded (the local store, when the server did not answer)

    @property
    def objective(self) -> float | None:
        """What a sweeper optimises: validation accuracy (never the test set)."""
        return self.metrics.get("val_accuracy")


def run(cfg: DictConfig, output_dir: str, run_name: str, *, parallel_jobs: int = 1,
        sweep: Sweep | None = None, job: int = 0, extra_tags: Mapping[str, str] | None = None,
        on_epoch: Callable[[int, dict], bool] | None = None) -> RunResult:
    """Train and evaluate ``cfg`` (already validated) and record everything in one MLflow run.

    ``parallel_jobs``: how many runs share this machine's cores at once (joblib's n_jobs; sizes
    TensorFlow's threads when ``trainer.threads`` is auto);
    ``sweep``: the multirun this is job number ``job`` of (the run is nested under its parent);
    ``extra_tags``: more tags for the run (an Optuna trial's); ``on_epoch(epoch, metrics)``: called
    after each epoch is logged, True stops training (a pruner).
    With ``cfg.resume`` set, the interrupted run it names continues instead, with its own config.
    """
    started = time.perf_counter()
    job_dir = output_dir  # this process's Hydra folder (a resumed run keeps writing to its first one)
    resume = checkpoints.locate(cfg.resume, cfg.tracking.uri) if cfg.resume else None
    if resume is not None:
        cfg = _resumed_config(resume, cfg)
        output_dir = str(resume.output_dir)  # checkpoints and logs stay in the first part's folder
        log.info("resuming MLflow run %s after epoch %d of %d, from %s", resume.run_id, resume.epochs_done,
                 cfg.trainer.epochs, resume.directory)
    raw = data_lib.load_mnist(cfg.data.dir, verify=cfg.data.verify)
    data = data_lib.prepare(raw, cfg.data.val_split, cfg.data.limit, encoding=loss_spec(cfg.loss)[2])
    log.info("MNIST from %s: %d training, %d validation, %d test images",
             data.source, len(data.x_train), len(data.x_val), len(data.x_test))
    import mlflow  # MLflow (~1-2 s to import) once the data is known good

    from mnistlab import tracking

    tracking_uri = tracking.reachable_uri(cfg.tracking.uri, cfg.tracking.fallback_to_local, cfg.root_dir)
    experiment_id = tracking.open_experiment(tracking_uri, cfg.tracking.experiment)
    from mnistlab import models, plots, training  # TensorFlow starts here, after the data and store are known good

    threads = training.resolve_threads(cfg.trainer.threads, parallel_jobs)
    training.set_threads(threads)  # before the first TensorFlow op
    training.seed_everything(cfg.seed)
    precision = training.resolve_precision(cfg.trainer.precision)
    training.set_precision(precision)
    model = models.build_model(cfg.model.name, cfg.model.layers, data.input_shape, data_lib.NUM_CLASSES)
    num_params = model.count_params()
    # what trains: the model, behind the augmentation layers when data.augment asks for them
    trainee = training.with_augmentation(model, cfg.data.augment, cfg.seed)
    steps_per_epoch = math.ceil(len(data.x_train) / cfg.trainer.batch_size)
    schedule = training.make_schedule(cfg.scheduler, cfg.optimizer.lr, steps_per_epoch, cfg.trainer.epochs)
    training.compile_model(trainee, cfg.optimizer, cfg.loss, cfg.trainer, learning_rate=schedule)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    # replicates of one configuration (differing by seed only) share this tag; from the params as logged
    tags = {**tracking.environment_tags(cfg.root_dir, output_dir), **cfg.tracking.tags,
            GROUP_TAG: group_id(redact_all(flatten(resolved)))}
    if sweep is not None:
        nested = (sweep.tracking_uri, sweep.experiment_id) == (tracking_uri, experiment_id)
        tags.update(sweep.child_tags(job, nested=nested))
    tags.update(extra_tags or {})
    if resume is not None:
        tags = {"resumed": str(resume.state.get("resumed", 0) + 1), "resumed.after_epoch": str(resume.epochs_done)}
    with tracking.active_run(experiment_id, run_name, tags, run_id=resume.run_id if resume else None) as active:
        run_id = active.info.run_id
        log.info("MLflow run %s (%s) in experiment %r", run_id, run_name, cfg.tracking.experiment)
        with interrupts.deferred():  # the record of the run, written whole
            if resume is None:
                tracking.log_run_record(resolved, output_dir, model_summary=models.summary_text(model), extra_params={
                    "num_params": str(num_params), "trainer.threads_used": str(threads),
                    "trainer.precision_used": precision})
                # also metrics: charts plot accuracy against size, and intervals need the image counts
                mlflow.log_metrics({"num_params": num_params, "train_images": len(data.x_train),
                                    "val_images": len(data.x_val), "test_images": len(data.x_test)})
            else:
                tracking.log_missing_epochs(run_id, resume.state["history"])

        checkpoint_dir = Path(output_dir) / checkpoints.CHECKPOINT_DIR
        try:
            fitted = training.fit(trainee, data, cfg.trainer.epochs, cfg.trainer.batch_size, cfg.trainer.verbose,
                                  on_epoch_end=_reporter(tracking.log_epoch, on_epoch), callbacks=cfg.callbacks,
                                  checkpoint_dir=checkpoint_dir, seed=cfg.seed, resume=resume,
                                  checkpoint_state={"run_id": run_id, "config": resolved,
                                                    "resumed": int(tags.get("resumed", 0))})
        except (Exception, KeyboardInterrupt) as exc:
            interrupt = interrupts.as_interrupt(exc)
            _explain_checkpoint(interrupt, Path(output_dir), run_id)
            if interrupt is not exc:
                raise interrupt from exc
            raise
        scores, probabilities = training.evaluate(trainee, data, cfg.loss)
        predicted = probabilities.argmax(axis=1)
        tested_report = evaluation.TestReport.of(data.labels_test, predicted, data_lib.CLASS_NAMES)
        # the epoch whose weights are tested: the best one when best_checkpoint restored it
        tested = fitted.best_epoch if fitted.best_epoch is not None else fitted.epochs_run - 1
        final = fitted.at_epoch(tested)
        timing = {"train_time_s": fitted.train_time_s, "epochs_run": fitted.epochs_run,
                  "time_per_epoch_s": sum(fitted.history["epoch_time_s"]) / fitted.epochs_run}
        if fitted.best_epoch is not None:
            timing["best_epoch"] = fitted.best_epoch + 1  # 1-based, as Keras prints "Epoch 7/20"
        with interrupts.deferred():  # only writes from here: Ctrl-C waits for them (seconds)
            scores.update(tested_report.metrics())  # the accuracy's interval and each class's recall
            mlflow.log_metrics({**scores, **timing})

            title = f"{run_name.replace(',', ', ')} ({num_params:,} parameters)"  # spaces let it wrap
            mlflow.log_figure(plots.learning_curves(fitted.history, title), "learning_curves.png")
            mlflow.log_figure(plots.confusion_figure(tested_report.counts, title), "confusion_matrix.png")
            mlflow.log_figure(plots.misclassified_figure(data.x_test, data.labels_test, predicted, title),
                              "misclassified.png")
            mlflow.log_text(tested_report.per_class_csv(), "per_class.csv")
            tracking.log_predictions(evaluation.predictions_frame(data.labels_test, probabilities))
            if cfg.tracking.log_model:
                tracking.log_keras_model(model, data.input_shape, data_lib.NUM_CLASSES)
            wall = time.perf_counter() - started
            mlflow.log_metric("wall_time_s", wall)
            for log_file in Path(output_dir).glob("*.log"):  # Hydra's job log
                mlflow.log_artifact(str(log_file))
            if job_dir != output_dir:  # the log of the resumed part
                for log_file in Path(job_dir).glob("*.log"):
                    mlflow.log_artifact(str(log_file), f"resumed-{tags['resumed']}")
    checkpoints.remove(Path(output_dir))  # FINISHED: nothing left to resume

    return RunResult(run_id=run_id, experiment_id=experiment_id, num_params=num_params,
                     metrics={**final, **scores, **timing, "wall_time_s": wall}, config=cfg,
                     tracking_uri=tracking_uri)


def _reporter(log_epoch: Callable[[int, dict], None], on_epoch: Callable | None) -> Callable[[int, dict], bool]:
    """The epoch goes to MLflow first, then to ``on_epoch``, whose True stops training."""
    def report(epoch: int, metrics: dict) -> bool:
        log_epoch(epoch, metrics)
        return bool(on_epoch is not None and on_epoch(epoch, metrics))

    return report


def _resumed_config(resume: checkpoints.Checkpoint, current: DictConfig) -> DictConfig:
    """The interrupted run's own config; only where the data is and how progress prints may differ."""
    stored = OmegaConf.create(resume.config)
    stored.data.dir = current.data.dir
    stored.trainer.verbose = current.trainer.verbose
    stored.resume = None
    return validate(stored)


def _explain_checkpoint(exc: BaseException, output_dir: Path, run_id: str) -> None:
    """Say, on the exception's one line, what an interrupted or failed run left to resume from."""
    try:
        last = checkpoints.read(output_dir)
    except MnistlabError:
        last = None
    if isinstance(exc, KeyboardInterrupt):
        done = f"epochs 1-{last.epochs_done} are" if last and last.epochs_done > 1 else "epoch 1 is"
        exc.hint = (f"{done} checkpointed; continue with: python run.py resume={run_id}"
                    if last else "no epoch had finished, nothing to resume")
    elif isinstance(exc, MnistlabError) and last is not None:
        exc.args = (f"{exc}; the last good epoch ({last.epochs_done}) is checkpointed in {last.weights}",)
