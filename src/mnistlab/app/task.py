"""How run.py behaves: Hydra's errors as one line, validation before anything heavy loads, the
job's place in a sweep or a search, the run, and the summary it ends with.

Hydra normally prints its own errors (several lines) and a stripped traceback for anything the
task raises. ``entry`` sets HYDRA_FULL_ERROR=1 so those exceptions reach it instead, and prints
each as one line. Set HYDRA_FULL_ERROR=1 yourself to get Hydra's behaviour and full tracebacks.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import shlex
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.hydra_config import HydraConfig
from hydra.core.object_type import ObjectType
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mnistlab.config import validate
from mnistlab.core import interrupts, transcript
from mnistlab.core.errors import MnistlabError, one_line, resume_in_a_sweep
from mnistlab.core.exits import describe, exit_for, quit_closed_pipe
from mnistlab.core.redaction import Redacted, redact
from mnistlab.core.text import plural
from mnistlab.sweeps import continuation
from mnistlab.sweeps.trial import TrialLink
from mnistlab.tracking.links import where_to_look
from mnistlab.tracking.parents import Sweep
from mnistlab.train import checkpoints
from mnistlab.train.checkpoints import check_overrides

ONE_LINE_ERRORS = "MNISTLAB_ONE_LINE_ERRORS"  # set by entry(); inherited by launcher processes
COMMAND = "MNISTLAB_COMMAND"  # likewise
log = logging.getLogger(__name__)
CODE_DIR = "MNISTLAB_CODE_DIR"  # likewise


def entry(hydra_main: Callable[[], Any], root_dir: Path) -> None:
    """Call a ``@hydra.main`` function; turn every failure into one line and an exit code."""
    os.environ.setdefault("MNISTLAB_ROOT", str(root_dir.resolve()))
    os.environ[CODE_DIR] = str(root_dir.resolve())  # the checkout whose git commit the runs record
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO chatter
    # MLflow prints each run's URL, with a server URL's password; the summary says where to look, masked
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # the command line as typed, for the runs' "command" tag (a launcher's worker processes have their own argv)
    os.environ[COMMAND] = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    quiet_launcher_plugins()
    if {"--help", "-h", "--hydra-help"} & set(sys.argv[1:]):
        list_config_groups_once()
    if os.environ.get("HYDRA_FULL_ERROR") == "1":  # the user asked for Hydra's full tracebacks
        hydra_main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let Hydra's exceptions reach us instead of its printer
    os.environ[ONE_LINE_ERRORS] = "1"
    try:
        hydra_main()
    except BrokenPipeError:
        quit_closed_pipe()
    except (Exception, KeyboardInterrupt) as exc:
        exit_for(exc)


def quiet_launcher_plugins() -> None:
    """conf/hydra/launcher/ray.yaml, joblib.yaml and conf/hydra/sweeper/basic.yaml replace the
    plugins' configs of the same name on purpose, which Hydra 1.3 warns about each time it composes
    (up to 4 times a sweep); hydra-ray-launcher logs every ray.init argument, the jobs' environment
    variables included: redacted here; and Ray's patience with an address where nothing answers is
    shortened (RAY_NUM_REDIS_GET_RETRIES)."""
    warnings.filterwarnings(
        "ignore",
        message=r"\s*'hydra/(launcher/ray|launcher/joblib|sweeper/basic)' is validated against ConfigStore schema",
    )
    # a Ray address where no cluster answers: give up after ~2 minutes, not Ray's ~14 (20 attempts of ~40 s)
    os.environ.setdefault("RAY_NUM_REDIS_GET_RETRIES", "3")
    logging.getLogger("hydra_plugins.hydra_ray_launcher._launcher_util").addFilter(Redacted())


def list_config_groups_once() -> None:
    """For --help: Hydra lists every config group and its options through
    ConfigLoaderImpl.get_group_options, which copies the whole config repository (every plugin's
    config in it) at each of about a hundred calls, most of a second. Nothing the help prints can
    change meanwhile, so the listing reads one copy (Hydra 1.3's get_group_options, with its
    repository kept per config name and overrides)."""
    repositories: dict[tuple, Any] = {}

    def get_group_options(
        self: ConfigLoaderImpl,
        group_name: str,
        results_filter: ObjectType | None = ObjectType.CONFIG,
        config_name: str | None = None,
        overrides: list[str] | None = None,
    ) -> list[str]:
        key = (id(self), config_name, tuple(overrides or ()))
        if key not in repositories:
            repositories[key] = self._parse_overrides_and_create_caching_repo(config_name, list(overrides or ()))[1]
        return repositories[key].get_group_options(group_name, results_filter)

    ConfigLoaderImpl.get_group_options = get_group_options  # type: ignore[method-assign]


@dataclass(frozen=True)
class Job:
    """Where this run stands: its output folder, its name, and its place in a sweep or a search."""

    output_dir: str
    run_name: str  # the overrides as typed (validation may still refuse them)
    in_sweep: bool
    sweep: Sweep | None  # the parent run to nest under
    trial: TrialLink | None  # the Optuna trial this job is
    number: int  # the job's number in its sweep (a trial's number in a search)
    parallel_jobs: int  # jobs sharing this machine's cores

    @classmethod
    def current(cls) -> Job:
        hydra_cfg = HydraConfig.get()
        output_dir = hydra_cfg.runtime.output_dir
        in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
        sweep = Sweep.load(hydra_cfg.sweep.dir) if in_sweep else None
        trial = TrialLink.load(output_dir) if in_sweep else None
        if trial is not None and trial.sweep:  # the parent run of the worker that launched it
            sweep = Sweep(**trial.sweep)
        number = trial.number if trial else int(hydra_cfg.job.num) if in_sweep else 0
        # as typed: an override like seed=${oc.env:NOPE} must fail in validation, not while naming the run
        run_name = OmegaConf.to_container(hydra_cfg.job, resolve=False).get("override_dirname") or "defaults"
        parallel = OmegaConf.select(hydra_cfg, "launcher.n_jobs", default=1) or 1
        return cls(output_dir, run_name, in_sweep, sweep, trial, number, parallel)


def task(cfg: DictConfig) -> float | None:
    """The Hydra task: validate (fast, no TensorFlow), then train; returns the sweep objective.

    In a sweep a failed job does not raise: its run is FAILED, one line goes to stderr, and the
    sweep goes on (Hydra would stop at the first failure and skip the summary); the summary then
    reports it and the sweep exits non-zero.
    """
    job = Job.current()
    _redact_log_files()
    with transcript.transcript():  # run.log: what the terminal shows, beside Hydra's log records
        return _task(cfg, job)


def _task(cfg: DictConfig, job: Job) -> float | None:
    run_name = job.run_name
    refused = True  # until the config has passed every check: then a failure is the run's
    try:
        _check_resume(job)  # before anything else: the other overrides are what resume= cannot take
        valid = validate(cfg)
        if not job.in_sweep:  # a sweep asked once, before its first job
            _check_server(valid)
        refused = False
        run_name = valid.tracking.run_name or run_name
        if job.sweep is not None and job.sweep.continued and job.trial is None:  # a continued grid sweep
            plan = _continued(job, run_name)
            if plan.skip is not None:
                return plan.skip.data.metrics.get("val_accuracy")
            if plan.resume is not None:
                valid = _resuming(valid, plan.resume)
        with interrupts.raised():
            from mnistlab import runner  # TensorFlow and MLflow load here, after validation

            result = runner.run(
                valid,
                output_dir=job.output_dir,
                run_name=run_name,
                sweep=job.sweep,
                job=job.number,
                parallel_jobs=job.parallel_jobs,
                extra_tags=job.trial.tags() if job.trial else None,
                on_epoch=job.trial.epoch_reporter() if job.trial else None,
            )
    except (Exception, KeyboardInterrupt) as exc:
        if job.trial is not None and isinstance(exc, KeyboardInterrupt):  # the search, not this run, goes on
            exc.hint = (
                "the finished trials are kept; rerun the same command to continue the search (this trial's "
                "parameters are tried again)"
            )
        if job.sweep is not None and isinstance(exc, Exception):  # Ctrl-C stops the sweep, an error only the job
            return _job_failed(exc, job, run_name)
        if refused and not job.in_sweep:
            _remove_output_dir(job.output_dir)
        if os.environ.get(ONE_LINE_ERRORS) and not job.in_sweep:
            exit_for(exc, None if refused else job.output_dir)  # else Hydra reports it, adding lines of its own
        raise
    print(redact(summary(result, result.config or valid)), flush=True)
    return result.objective


def _check_server(cfg: DictConfig) -> None:
    """A tracking server that does not answer refuses the command before the data, TensorFlow and
    MLflow load (seconds), unless tracking.fallback_to_local lets the run go to the local store."""
    if cfg.tracking.fallback_to_local or urlparse(cfg.tracking.uri).scheme not in ("http", "https"):
        return
    from mnistlab.tracking import server  # requests (0.2 s to import) only when there is a server to ask

    server.reachable_uri(cfg.tracking.uri, False, cfg.root_dir)


def _remove_output_dir(output_dir: str) -> None:
    """A refused command's folder, when it holds only what Hydra put there (its copy of the config,
    the log); then the folders above it too, when left empty. Anything else in it keeps it all (a
    ``hydra.run.dir`` may name a folder of the user's)."""
    folder = Path(output_dir)
    hydra_files = {".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml"}
    try:
        found = {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir()}
        if not all(f in hydra_files or (f.endswith(".log") and "/" not in f) for f in found):
            return
        for f in found:
            (folder / f).unlink()
        for empty in (folder / ".hydra", folder, folder.parent, folder.parent.parent):
            empty.rmdir()  # only when empty
    except OSError:
        pass


def _continued(job: Job, run_name: str) -> continuation.JobPlan:
    """What this job of a continued sweep does, from its earlier runs; says it when it skips."""
    from mnistlab.tracking import sweeps  # MLflow: the earlier runs are in the store

    try:
        has_checkpoint = checkpoints.read(Path(job.output_dir)) is not None  # None: no epoch checkpointed
    except MnistlabError:  # a damaged one: the job runs again
        has_checkpoint = False
    plan = continuation.job_plan(sweeps.job_runs(job.sweep, job.number), has_checkpoint)
    if plan.superseded:
        reason = "its process is gone; the continued sweep runs the job again"
        sweeps.supersede(job.sweep, list(plan.superseded), reason)
    if plan.skip is not None:
        print(f"job {job.number} ({run_name}): FINISHED before, in run {plan.skip.info.run_id}: skipped", flush=True)
    elif plan.resume is not None:
        log.info("job %d continues its run %s from its last checkpoint", job.number, plan.resume)
    return plan


def _resuming(valid: DictConfig, run_id: str) -> DictConfig:
    """The validated config with ``resume`` set: the runner then continues that run."""
    cfg = copy.deepcopy(valid)
    OmegaConf.set_readonly(cfg, False)
    cfg.resume = run_id
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _redact_log_files() -> None:
    """The job's log file (and the terminal's log lines) through the redaction filter: Hydra set
    up its handlers just before calling the task."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, Redacted) for f in handler.filters):
            handler.addFilter(Redacted())


def _check_resume(job: Job) -> None:
    """``resume=`` on the command line: not in a sweep, and nothing else that would change the run."""
    overrides = OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False)  # as typed
    given = [o.split("=", 1)[1] for o in overrides if "=" in o and o.split("=", 1)[0].lstrip("+~") == "resume"]
    if not given:
        return
    if job.in_sweep:
        raise resume_in_a_sweep(given[0])
    check_overrides(overrides)


def _job_failed(exc: Exception, job: Job, run_name: str) -> float:
    """A failed job of a sweep: one line (or the traceback, with HYDRA_FULL_ERROR=1), a FAILED
    child run even when it failed before training, and NaN as its objective."""
    message, _ = describe(exc, job.output_dir)
    if not os.environ.get(ONE_LINE_ERRORS):
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    print(redact(f"error: job {job.number} ({run_name}): {message}"), file=sys.stderr, flush=True)
    try:
        from mnistlab.tracking import sweeps  # MLflow, for a job that may have failed before loading it

        sweeps.record_failed_job(job.sweep, job.number, run_name, message, job.trial.tags() if job.trial else None)
    except Exception as store_exc:
        print(
            f"error: job {job.number}: could not record the failure in MLflow: {one_line(store_exc)}",
            file=sys.stderr,
            flush=True,
        )
    return math.nan


def summary(result: Any, cfg: DictConfig) -> str:
    """What a user wants to read when a run ends: the score, the cost, and where it is recorded."""
    m = result.metrics
    first, *rest = where_to_look(result.tracking_uri or cfg.tracking.uri, result.experiment_id, result.run_id)
    epochs = plural(cfg.trainer.epochs, "epoch")
    if m["epochs_run"] < cfg.trainer.epochs:
        epochs = f"{m['epochs_run']:.0f} of {epochs} (stopped early)"
    tested = f" (weights of epoch {m['best_epoch']:.0f})" if "best_epoch" in m else ""
    lines = [
        f"model       {cfg.model.name} ({result.num_params:,} parameters), {cfg.optimizer.name}, "
        f"{cfg.loss.name}, {epochs} of batch {cfg.trainer.batch_size}",
        f"test        accuracy {m['test_accuracy']:.4f} (95% interval {m['test_accuracy_ci_low']:.4f}-"
        f"{m['test_accuracy_ci_high']:.4f}, one seed), loss {m['test_loss']:.4f}{tested}",
        f"time        {m['wall_time_s']:.1f} s wall, {m['train_time_s']:.1f} s training",
        f"MLflow run  {result.run_id} (experiment {cfg.tracking.experiment!r}, id {result.experiment_id})",
        f"look at it  {first}",
        *(f"            {line}" for line in rest),
    ]
    return "\n".join(lines)
