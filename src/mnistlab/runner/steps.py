"""One experiment run, as a list of steps: data, store, model, fit, evaluate, log.

Hydra-free on purpose (the CLI passes in what Hydra knows), so it can be driven from code.
Order matters: everything that can fail on user input (data, layers, then the store) fails
before the MLflow run starts, so a typo never leaves a run behind; MLflow loads once the data is
known good, TensorFlow once the store is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf

from mnistlab.config.losses import LOSSES
from mnistlab.core import imports, interrupts, quiet
from mnistlab.core.stopwatch import Stopwatch
from mnistlab.data.loading import load
from mnistlab.data.prepare import Dataset, prepare
from mnistlab.data.registry import DATASETS, DatasetSpec
from mnistlab.reports.drawing import DRAWER
from mnistlab.runner import resume as resuming
from mnistlab.tracking.parents import Sweep
from mnistlab.train import checkpoints

if TYPE_CHECKING:
    from mnistlab.train.checkpoints import Checkpoint
    from mnistlab.train.fit import TrainResult

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


def run(
    cfg: DictConfig,
    output_dir: str,
    run_name: str,
    *,
    parallel_jobs: int = 1,
    sweep: Sweep | None = None,
    job: int = 0,
    extra_tags: Mapping[str, str] | None = None,
    on_epoch: Callable[[int, dict], bool] | None = None,
) -> RunResult:
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
    resume = resuming.locate(cfg)
    if resume is not None:
        cfg = resuming.resumed_config(resume, cfg)
        output_dir = str(resume.output_dir)  # checkpoints and logs stay in the first part's folder
        log.info(
            "resuming MLflow run %s after epoch %d of %d, from %s",
            resume.run_id,
            resume.epochs_done,
            cfg.trainer.epochs,
            resume.directory,
        )
    # the checkpoint folder is this process's for as long as the run trains: a second resume is refused
    with checkpoints.exclusive(Path(output_dir) / checkpoints.CHECKPOINT_DIR, resume.run_id if resume else None):
        return _steps(
            cfg, output_dir, job_dir, run_name, started, resume, parallel_jobs, sweep, job, extra_tags, on_epoch
        )


def _steps(
    cfg: DictConfig,
    output_dir: str,
    job_dir: str,
    run_name: str,
    started: float,
    resume: Checkpoint | None,
    parallel_jobs: int,
    sweep: Sweep | None,
    job: int,
    extra_tags: Mapping[str, str] | None,
    on_epoch: Callable[[int, dict], bool] | None,
) -> RunResult:
    watch = Stopwatch()
    DRAWER.start()  # the figures' helper process loads matplotlib meanwhile, on the other core
    spec = DATASETS[cfg.data.name]
    data = load_data(cfg, spec)  # 1. the data, checked
    watch.lap("data")
    preload()  # MLflow and TensorFlow (~4-6 s to import) once the data is known good, unless loaded
    from mnistlab.runner import model as keras_side
    from mnistlab.runner import record
    from mnistlab.tracking.datasets import splits

    watch.lap("imports")
    where = record.open_store(cfg)  # 2. the store answers and holds the experiment
    watch.lap("store")
    built = keras_side.build(cfg, data, parallel_jobs)  # 3. the model
    if resume is not None:
        keras_side.check_checkpoint(built, resume)  # its weights fit, before the run is reopened
    watch.lap("build")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    tags = record.tags(cfg, resolved, output_dir, where, sweep, job, extra_tags, resume)
    ending = interrupts.Deferral()
    with record.run_log(where, run_name, tags, resume, cfg.tracking.system_metrics) as run_log:
        log.info("MLflow run %s (%s) in experiment %r", run_log.run_id, run_name, cfg.tracking.experiment)
        inputs = splits(data, spec)  # the training, validation and test sets as MLflow datasets
        record.before_training(
            run_log,
            resolved,
            output_dir,
            built.summary,
            built.num_params,
            built.threads,
            built.precision,
            data,
            inputs,
            resume,
        )
        watch.lap("record")
        state = {"run_id": run_log.run_id, "config": resolved, "resumed": int(tags.get("resumed", 0))}
        try:  # 4. fit
            fitted = keras_side.fit(cfg, built, data, _reporter(run_log.epoch, on_epoch), output_dir, state, resume)
        except (Exception, KeyboardInterrupt) as exc:
            interrupt = interrupts.as_interrupt(exc)
            resuming.explain(interrupt, Path(output_dir), run_log.run_id)
            if interrupt is not exc:
                raise interrupt from exc
            raise
        watch.lap("fit")
        title = f"{run_name.replace(',', ', ')} ({built.num_params:,} parameters)"  # spaces let it wrap
        record.draw_curves(fitted, title)  # drawn by the helper while the model is tested
        tested = record.Tested.of(*keras_side.test(cfg, built, data), data, spec)  # 5. evaluate
        watch.lap("test")
        timing = _timing(fitted)
        logs = {None: list(Path(output_dir).glob("*.log"))}  # Hydra's job log
        if job_dir != output_dir:  # the log of the resumed part
            logs[f"resumed-{tags['resumed']}"] = list(Path(job_dir).glob("*.log"))
        # 6. log: from here the run completes, whatever signal comes; it is delivered once the run is FINISHED
        ending.start()
        try:
            described = record.description(cfg, built.num_params, data, fitted.epochs_run, tested.scores)
            wall = record.after_training(
                run_log,
                title,
                fitted,
                tested,
                timing,
                data,
                built.model,
                cfg.tracking.log_model,
                started,
                logs,
                inputs,
                described,
                watch,
            )
        except BaseException:
            ending.stop(raise_held=False)
            raise
    checkpoints.remove(Path(output_dir))  # FINISHED: nothing left to resume
    try:
        ending.stop()
    except KeyboardInterrupt as exc:
        exc.hint = f"it came after run {run_log.run_id} had finished: the run is complete and FINISHED"
        raise
    # the epoch whose weights are tested: the best one when best_checkpoint restored it
    final = fitted.at_epoch(fitted.best_epoch if fitted.best_epoch is not None else fitted.epochs_run - 1)
    return RunResult(
        run_id=run_log.run_id,
        experiment_id=where.experiment_id,
        num_params=built.num_params,
        metrics={**final, **tested.scores, **timing, "wall_time_s": wall},
        config=cfg,
        tracking_uri=where.tracking_uri,
    )


def preload() -> None:
    """The libraries a run trains and records with, TensorFlow, Keras and MLflow (seconds), loaded
    and started; once per process. A launcher's worker calls it as it starts, before its first job."""
    with quiet.stderr_filtered(), imports.without_unused():  # TensorFlow's start-up lines dropped, its errors kept
        from mnistlab.runner import model, record  # noqa: F401
        from mnistlab.tracking import datasets  # noqa: F401

        model.start_tensorflow()
    imports.settle()  # the imported objects out of the garbage collector's way


def load_data(cfg: DictConfig, spec: DatasetSpec) -> Dataset:
    raw = load(spec, cfg.data.dir, verify=cfg.data.verify)
    data = prepare(
        raw,
        cfg.data.val_split,
        cfg.data.limit,
        encoding=LOSSES.instance(cfg.loss).label_encoding,
        num_classes=spec.num_classes,
    )
    log.info(
        "%s from %s: %d training, %d validation, %d test images",
        spec.title,
        data.source,
        len(data.x_train),
        len(data.x_val),
        len(data.x_test),
    )
    return data


def _timing(fitted: TrainResult) -> dict[str, float]:
    timing = {
        "train_time_s": fitted.train_time_s,
        "epochs_run": fitted.epochs_run,
        "time_per_epoch_s": sum(fitted.history["epoch_time_s"]) / fitted.epochs_run,
    }
    if fitted.best_epoch is not None:
        timing["best_epoch"] = fitted.best_epoch + 1  # 1-based, as Keras prints "Epoch 7/20"
    return timing


def _reporter(log_epoch: Callable[[int, dict], None], on_epoch: Callable | None) -> Callable[[int, dict], bool]:
    """The epoch goes to MLflow first, then to ``on_epoch``, whose True stops training."""

    def report(epoch: int, metrics: dict) -> bool:
        log_epoch(epoch, metrics)
        return bool(on_epoch is not None and on_epoch(epoch, metrics))

    return report
