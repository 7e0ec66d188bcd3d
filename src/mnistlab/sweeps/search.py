"""Hyperparameter search: Optuna's ask/tell, with each batch of trials launched through Hydra's
configured launcher (in process, joblib, SLURM...), stored in a study that a rerun continues.

The sweeper plugin (``hydra_plugins/mnistlab_optuna_sweeper``) is a thin shell around ``Search``.
What it adds over the official plugin:

* ``n_trials`` is the study's total of finished trials (COMPLETE or PRUNED): rerunning the same
  command after a crash or Ctrl-C tops the study up to it, never beyond;
* a trial left RUNNING by a process that died is found (same host: its pid is gone; elsewhere:
  Optuna's heartbeat stopped), marked FAIL and its parameters queued again;
* the sampler's seed is offset by the number of trials already in the study, so a resumed search
  does not replay its first samples;
* each trial writes to ``<sweep dir>/trial-<number>``, which no other trial uses;
* a trial that fails (raises, or its objective is NaN/inf) is FAIL with its reason and the search
  goes on, until more than ``max_failures`` have failed; the exit code says whether the target was reached;
* pruning: each job reports validation accuracy per epoch to its trial (``TrialLink``) and stops
  when the pruner says so.

The job side (``trial.TrialLink``) is read by ``app.task`` from the job's output folder, where the
sweeper writes it before launching: jobs may run in other processes or on other machines.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import optuna
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState
from optuna.visualization import matplotlib as optuna_plots

from mnistlab.core import processes
from mnistlab.core.errors import ConfigError, MnistlabError, one_line
from mnistlab.core.redaction import redact
from mnistlab.sweeps import optuna_adapter as adapter
from mnistlab.sweeps import tracker
from mnistlab.sweeps.lost import LostJob
from mnistlab.sweeps.space import SearchSpace
from mnistlab.sweeps.trial import OBJECTIVE, PRUNED_AT, PRUNERS, TrialLink
from mnistlab.tracking import sweeps
from mnistlab.tracking.parents import Sweep
from mnistlab.tracking.runs import end_detached_run

log = logging.getLogger(__name__)
# the trial's user attributes this project sets
OWNER, FAIL_REASON, RETRY_OF = "owner", "fail_reason", "retry_of"
WAIT_S = 2  # how often a worker with nothing left to ask checks on the others' last trials


class SearchStopped(MnistlabError):
    """The search ended before its study reached n_trials (too many failed trials)."""


@dataclass(frozen=True)
class Outcome:
    """What a search did, for the sweep's summary and its exit code."""

    study_name: str
    storage: str
    finished: int  # COMPLETE or PRUNED trials in the study now
    target: int
    failed_here: int  # trials of this invocation that failed
    launched: int  # trials this invocation launched
    best: dict | None  # {"number", "value", "params"} of the best trial so far

    @property
    def reached(self) -> bool:
        return self.finished >= self.target

    def problem(self) -> str | None:
        if self.reached:
            return None
        return (
            f"search {self.study_name!r} stopped after {self.failed_here} failed trials (more than "
            f"hydra.sweeper.max_failures): "
            f"{self.finished} of {self.target} trials finished; rerun the same command to continue"
        )


@dataclass
class Settings:
    """``hydra.sweeper``: the keys of the official Optuna sweeper, plus pruner and max_failures."""

    direction: str | list[str] = "maximize"  # a list: a multi-objective search, one per objective
    study_name: str | None = None
    storage: str | None = None
    n_trials: int = 20
    n_jobs: int = 1
    sampler: Any = None
    pruner: Any = None
    max_failures: int = 3
    params: dict[str, Any] | None = field(default=None)
    custom_search_space: str | None = None
    objectives: list[str] | None = None  # a multi-objective search: each direction's final metric of the run

    @property
    def directions(self) -> list[str]:
        return list(self.direction) if isinstance(self.direction, (list, tuple)) else [self.direction]

    @property
    def multi(self) -> bool:
        return len(self.directions) > 1

    @classmethod
    def of(cls, sweeper: DictConfig | Mapping, launcher_jobs: int | None = None) -> Settings:
        """``launcher_jobs``: how many jobs the launcher runs at once (joblib's n_jobs; -1 = every
        core, as joblib counts), the batch size when ``n_jobs`` is null."""
        values = OmegaConf.to_container(sweeper, resolve=True) if isinstance(sweeper, DictConfig) else dict(sweeper)
        values.pop("_target_", None)
        values.pop("_recursive_", None)
        if values.get("n_jobs") is None:
            jobs = launcher_jobs if isinstance(launcher_jobs, int) else 1
            values["n_jobs"] = max(1, jobs if jobs > 0 else (os.cpu_count() or 1) + 1 + jobs)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if not self.directions or any(d not in ("maximize", "minimize") for d in self.directions):
            raise ConfigError(
                "hydra.sweeper.direction",
                f"must be maximize or minimize, or a list of them (the objective is {OBJECTIVE})",
                self.direction,
            )
        if self.objectives is not None and len(self.objectives) != len(self.directions):
            raise ConfigError(
                "hydra.sweeper.objectives",
                f"names {len(self.objectives)} metrics for {len(self.directions)} directions: give one per direction",
                self.objectives,
            )
        if self.multi and self.pruner is not None:
            raise ConfigError(
                "hydra.sweeper.pruner",
                "Optuna prunes single-objective studies only: set it to null for a multi-objective search",
                self.pruner,
            )
        for key in ("n_trials", "n_jobs"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"hydra.sweeper.{key}", "must be an integer >= 1", value)
        if isinstance(self.max_failures, bool) or not isinstance(self.max_failures, int) or self.max_failures < 0:
            raise ConfigError("hydra.sweeper.max_failures", "must be an integer >= 0", self.max_failures)
        if isinstance(self.pruner, str) and self.pruner not in PRUNERS:
            raise ConfigError(
                "hydra.sweeper.pruner",
                f"unknown pruner; choose one of {', '.join(PRUNERS)}, null, or a mapping with _target_",
                self.pruner,
            )
        if self.study_name is not None and not str(self.study_name).strip():
            raise ConfigError("hydra.sweeper.study_name", "must not be empty", self.study_name)


def custom_search_space(path: str) -> Callable[[Any, Any], None]:
    """The function ``hydra.sweeper.custom_search_space`` names, or a one-line error."""
    try:
        function = get_method(path)
    except Exception as exc:  # Hydra's: not importable, or not a callable
        raise ConfigError("hydra.sweeper.custom_search_space", f"cannot import it ({one_line(exc)})", path) from None
    return function


def default_storage(root_dir: str | Path) -> str:
    """A sqlite file next to mlflow.db."""
    return f"sqlite:///{Path(root_dir).resolve() / 'optuna.db'}"


GRID_SAMPLERS = ("optuna.samplers.GridSampler", "optuna.samplers.BruteForceSampler")


def make_sampler(spec: Any, offset: int, space: SearchSpace | None = None) -> Any:
    """The configured sampler (TPE by default) with its seed moved on by ``offset``; a GridSampler
    without a ``search_space`` takes the grid of ``space`` (the params' choices and ranges)."""
    spec = dict(spec or {"_target_": "optuna.samplers.TPESampler"})
    if spec.get("seed") is not None:
        spec["seed"] = int(spec["seed"]) + offset
    if spec.get("_target_") == GRID_SAMPLERS[0] and not spec.get("search_space") and space is not None:
        spec["search_space"] = space.grid()
    return instantiate(spec)


def grid_size(spec: Any, space: SearchSpace) -> int | None:
    """How many trials a grid sampler has (the study's n_trials is capped at it), or None."""
    spec = dict(spec or {})
    if spec.get("_target_") not in GRID_SAMPLERS:
        return None
    grid = spec.get("search_space") or space.grid()
    return math.prod(len(values) for values in grid.values())


class Search:
    """One invocation of a search: continue the study to n_trials, a batch of n_jobs at a time."""

    def __init__(
        self,
        settings: Settings,
        space: SearchSpace,
        root_dir: str,
        sweep_dir: Path,
        launch: Callable[[list[list[str]], int], list[Any]],
        extend: Callable[[Any], None] | None = None,
    ) -> None:
        """``extend``: the custom search space, called with each trial to suggest more keys."""
        self.settings, self.space, self.sweep_dir, self.launch = settings, space, sweep_dir, launch
        self.extend = extend
        self.grid_done = False  # a grid sampler asked the study to stop: its grid is covered
        self.storage_url = settings.storage or default_storage(root_dir)
        self.study_name = settings.study_name or "mnistlab"
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.failed_here = self.launched = 0

    def run(self) -> Outcome:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = adapter.open_storage(self.storage_url)
        study = optuna.create_study(
            study_name=self.study_name, storage=storage, load_if_exists=True, directions=self.settings.directions
        )
        existing = [d.name.lower() for d in study.directions]
        if existing != self.settings.directions:
            raise ConfigError(
                "hydra.sweeper.direction",
                f"study {self.study_name!r} in {redact(self.storage_url)} "
                f"was created to {', '.join(existing)}; use another study_name",
                self.settings.direction,
            )
        self._fail_dead_trials(study)
        # a resumed study moves on by its trials so far, a parallel worker by its place among the workers
        offset = len(study.trials) + 7919 * self._worker_index(study)
        study.sampler = make_sampler(self.settings.sampler, offset, self.space)
        size = grid_size(self.settings.sampler, self.space)
        if size is not None and size < self.settings.n_trials:
            log.info("the grid has %d points: n_trials %d is capped at %d", size, self.settings.n_trials, size)
            self.settings.n_trials = size
        log.info(
            "Optuna study %r in %s: %d of %d trials finished",
            self.study_name,
            redact(self.storage_url),
            _finished(study),
            self.settings.n_trials,
        )
        distributions = self.space.distributions()
        while self.failed_here <= self.settings.max_failures:  # one failure more than tolerated stops it
            self._fail_dead_trials(study)
            finished = _finished(study)
            missing = self.settings.n_trials - finished - self._others_running(study)
            if finished >= self.settings.n_trials or self.grid_done:
                break
            if missing <= 0:  # other workers' trials may finish the study; if they fail or die, this one goes on
                time.sleep(WAIT_S)
                continue
            with warnings.catch_warnings():  # "heartbeat ... supposed to be used with Study.optimize": we beat
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                try:
                    trials = [study.ask(distributions) for _ in range(min(self.settings.n_jobs, missing))]
                    for trial in trials:
                        if self.extend is not None:
                            self.extend(trial)
                except ValueError as exc:  # e.g. a key that was an interval() is now a choice()
                    raise ConfigError(
                        "hydra.sweeper.params",
                        f"{one_line(exc)}: study {self.study_name!r} has "
                        "trials that searched a key differently; keep each key's kind (choice, "
                        "interval, int) or use another study_name",
                    ) from None
            batch = [self._prepare(trial) for trial in trials]
            self.launched += len(trials)
            try:
                with _heartbeats(storage, [adapter.trial_id(t) for t in trials]):
                    results = self.launch(batch, trials[0].number)  # Hydra's job numbers: the trials' numbers
            except BaseException as exc:  # Ctrl-C, SIGTERM, a launcher crash: the trials are retried next time
                for trial in trials:
                    self._fail(
                        study,
                        trial.number,
                        adapter.trial_id(trial),
                        f"the search stopped ({type(exc).__name__})",
                        retry=True,
                    )
                raise
            for trial, result in zip(trials, results):
                self._tell(study, trial, result)
        self._log_study(study)
        outcome = Outcome(
            self.study_name,
            redact(self.storage_url),
            _finished(study),
            self.settings.n_trials,
            self.failed_here,
            self.launched,
            _best(study),
        )
        self._write_results(study)
        tracker.report_search(outcome)  # the sweep's end reads it: failed trials are part of a search
        if not outcome.reached and tracker.active() is None:
            # no mnistlab sweep callback in this app to say it and exit non-zero: Hydra does, with the reason
            raise SearchStopped(outcome.problem())
        return outcome

    def _write_results(self, study: Any) -> None:
        """``optimization_results.yaml`` in the sweep folder, as the official Optuna sweeper writes it."""
        best = _best(study)
        if self.settings.multi:
            front = _pareto(study)
            if not front:
                return
            results = {"name": "optuna", "solutions": [{"params": t["params"], "values": t["values"]} for t in front]}
        elif best is None:
            return
        else:
            results = {"name": "optuna", "best_params": best["params"], "best_value": best["value"]}
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optimization_results.yaml")

    # -- one trial ------------------------------------------------------------------------------

    def _prepare(self, trial: Any) -> list[str]:
        trial.set_user_attr(OWNER, {"host": self.host, "pid": self.pid, "started": processes.start_time(self.pid)})
        if RETRY_OF in trial.user_attrs:
            log.info("Optuna trial %d retries trial %d's parameters", trial.number, trial.user_attrs[RETRY_OF])
        folder = f"trial-{trial.number:04d}"
        sweep = self._sweep()
        TrialLink(
            self.study_name,
            self.storage_url,
            adapter.trial_id(trial),
            trial.number,
            dict(trial.params),
            self.settings.pruner,
            asdict(sweep) if sweep else None,
        ).save(self.sweep_dir / folder)
        return [*self.space.overrides(trial.params), f"hydra.sweep.subdir={folder}"]

    def _tell(self, study: Any, trial: Any, result: Any) -> None:
        value, reason = self._values(trial.number, result) if self.settings.multi else _objective(result)
        attrs = adapter.stored_trial(study, adapter.trial_id(trial)).user_attrs
        lost = _lost(result)
        if lost and RETRY_OF not in attrs:  # e.g. SLURM preempted it: not the parameters' fault, once
            self._fail(study, trial.number, adapter.trial_id(trial), lost, retry=True)
            log.warning("Optuna trial %d was lost (%s): FAIL, parameters queued again", trial.number, lost)
            return
        extra = {}
        if value is not None and PRUNED_AT in attrs:
            self._told(study, trial, state=TrialState.PRUNED)
            state, extra = "PRUNED", {"optuna.pruned_at_epoch": str(attrs[PRUNED_AT])}
        elif value is not None:
            self._told(study, trial, value)
            state = "COMPLETE"
        else:
            reason = self._child_failure_reason(trial.number) or reason
            trial.set_user_attr(FAIL_REASON, reason)
            self._told(study, trial, state=TrialState.FAIL)
            self.failed_here += 1
            state = "FAIL"
            log.warning("Optuna trial %d failed: %s", trial.number, reason)
        if state == "FAIL":
            extra = {"optuna.fail_reason": reason}
        self._tag_child(trial.number, {"optuna.state": state, **extra})

    def _values(self, number: int, result: Any) -> tuple[list[float] | None, str]:
        """A multi-objective trial's values: the job's returned sequence, or the final metrics
        ``objectives`` names, read from the trial's run; None and why, when one is missing or not finite."""
        try:
            returned = result.return_value  # raises the job's exception when Hydra caught one
        except Exception as exc:
            return None, f"{type(exc).__name__}: {one_line(exc)}"
        if isinstance(returned, (list, tuple)) and self.settings.objectives is None:
            values = list(returned)
        elif self.settings.objectives is not None:
            runs = [run for run in self._children(number) if run.info.status == "FINISHED"]
            if not runs:
                return None, "the trial's run did not finish"
            metrics = runs[0].data.metrics
            missing = [name for name in self.settings.objectives if name not in metrics]
            if missing:
                return None, f"the trial's run logged no {', '.join(missing)} (hydra.sweeper.objectives)"
            values = [metrics[name] for name in self.settings.objectives]
        else:
            return None, "a multi-objective search needs hydra.sweeper.objectives, or a job that returns one value each"
        if len(values) != len(self.settings.directions) or not all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in values
        ):
            return None, f"the objectives are {values}"
        return [float(v) for v in values], ""

    def _told(self, study: Any, trial: Any, *args: Any, **kwargs: Any) -> None:
        """``study.tell``. A grid sampler whose grid is covered calls ``study.stop()``, which raises
        outside ``optimize()``; the trial is stored by then: the search ends there instead."""
        try:
            study.tell(trial, *args, **kwargs)
        except RuntimeError as exc:
            if "Study.stop" not in str(exc):
                raise
            self.grid_done = True

    def _fail(self, study: Any, number: int, trial_id: int, reason: str, retry: bool) -> bool:
        """Mark a RUNNING trial FAIL (False if another process got there first) and queue its
        parameters again."""
        if not adapter.fail(study, trial_id, FAIL_REASON, reason):
            return False
        if retry:
            params = adapter.stored_trial(study, trial_id).params
            study.enqueue_trial(params, user_attrs={RETRY_OF: number}, skip_if_exists=False)
        self._tag_child(number, {"optuna.state": "FAIL", "optuna.fail_reason": reason}, end_running=True)
        return True

    def _fail_dead_trials(self, study: Any) -> None:
        """Trials left RUNNING by a process that is gone: FAIL, and their parameters queued again."""
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = trial.user_attrs.get(OWNER) or {}
            if owner.get("host") != self.host or processes.alive(owner.get("pid"), owner.get("started")):
                continue
            reason = f"its process ({owner.get('pid')} on {self.host}) died"
            if self._fail(study, trial.number, adapter.trial_id(trial), reason, retry=True):
                log.warning(
                    "Optuna trial %d was left RUNNING by a process that died: FAIL, parameters queued again",
                    trial.number,
                )
        # other hosts: Optuna's heartbeat (the sweeper that owns a trial records it while the trial runs)
        for trial_id in adapter.stale_trial_ids(study):
            trial = adapter.stored_trial(study, trial_id)
            self._fail(
                study, trial.number, trial_id, f"no heartbeat for {adapter.GRACE_S} s (its process is gone)", retry=True
            )

    def _worker_index(self, study: Any) -> int:
        """How many processes joined this study before this one, counting only those still running.
        Each records itself first and reads the list after, so two that start together get
        different places (0 for a search that runs alone)."""
        key = f"worker {self.host} {self.pid} {processes.start_time(self.pid)}"
        study.set_user_attr(key, time.time())
        joined = sorted((when, name) for name, when in study.user_attrs.items() if name.startswith("worker "))
        earlier = [name for when, name in joined if (when, name) < (study.user_attrs[key], key)]
        return sum(1 for name in earlier if _alive_worker(name, self.host))

    def _others_running(self, study: Any) -> int:
        return sum(
            1
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if (t.user_attrs.get(OWNER) or {}).get("pid") != self.pid
            or (t.user_attrs.get(OWNER) or {}).get("host") != self.host
        )

    # -- MLflow ---------------------------------------------------------------------------------

    def _log_study(self, study: Any) -> None:
        """The study on the search's parent run: the best trial (tags, a metric, best_trial.json),
        every trial (trials.csv), and Optuna's optimisation-history and parameter-importance plots."""
        sweep = self._sweep()
        if sweep is None:
            return
        client = sweeps.client(sweep)
        run_id = sweep.parent_run_id
        try:
            best = _best(study)
            tags = {
                "optuna.study": self.study_name,
                "optuna.storage": redact(self.storage_url),
                "optuna.n_trials": str(self.settings.n_trials),
                "optuna.finished": str(_finished(study)),
            }
            if best is not None:
                tags["optuna.best_trial"] = str(best["number"])
                tags.update({f"optuna.best.{key}": str(value) for key, value in best["params"].items()})
                client.log_metric(run_id, f"best_{OBJECTIVE}", best["value"])
                client.log_text(run_id, json.dumps(best, indent=2) + "\n", "optuna/best_trial.json")
            if self.settings.multi:
                tags["optuna.directions"] = ",".join(self.settings.directions)
                tags["optuna.objectives"] = ",".join(self.settings.objectives or [])
                self._log_pareto(study, client, run_id)
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
            client.log_text(run_id, study.trials_dataframe().to_csv(index=False), "optuna/trials.csv")
            for name, figure in _plots(study, self.settings.objectives).items():
                client.log_figure(run_id, figure, f"optuna/{name}.png")
                plt.close(figure)
        except Exception as exc:  # the study is safe in its storage; the parent's copy is a convenience
            log.warning("could not log the study to the parent run %s: %s", run_id, one_line(exc))

    def _log_pareto(self, study: Any, client: Any, run_id: str) -> None:
        """The Pareto front as a table on the parent (``optuna/pareto_front.csv``), each objective
        against the others; the front's runs tagged ``optuna.pareto_front=true``."""
        names = self.settings.objectives or [f"objective_{i}" for i in range(len(self.settings.directions))]
        front = _pareto(study)
        rows = ["trial," + ",".join(names) + ",params"]
        for t in sorted(front, key=lambda t: t["values"]):
            rows.append(f"{t['number']}," + ",".join(f"{v:g}" for v in t["values"]) + f',"{t["params"]}"')
        client.log_text(run_id, "\n".join(rows) + "\n", "optuna/pareto_front.csv")
        on_front = {t["number"] for t in front}
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            self._tag_child(trial.number, {"optuna.pareto_front": "true" if trial.number in on_front else "false"})

    # -- the trial's MLflow run -----------------------------------------------------------------

    def _sweep(self) -> Any:
        """This process's sweep (its MLflow parent run), else the one in the sweep folder."""
        return tracker.active() or Sweep.load(self.sweep_dir)

    def _children(self, number: int) -> list[Any]:
        sweep = self._sweep()
        if sweep is None:
            return []
        client = sweeps.client(sweep)
        return client.search_runs(
            [sweep.experiment_id], f"tags.`optuna.study` = '{self.study_name}' and tags.`optuna.trial` = '{number}'"
        )

    def _child_failure_reason(self, number: int) -> str | None:
        for run in self._children(number):
            if run.data.tags.get("failure_reason"):
                return run.data.tags["failure_reason"]
        return None

    def _tag_child(self, number: int, tags: Mapping[str, str], end_running: bool = False) -> None:
        try:
            runs = self._children(number)
            if not runs:
                return
            client = sweeps.client(self._sweep())
            for run in runs:
                for key, value in tags.items():
                    client.set_tag(run.info.run_id, key, value)
                if end_running and run.info.status == "RUNNING":
                    end_detached_run(client, run.info.run_id, "KILLED", tags.get("optuna.fail_reason"))
        except Exception as exc:  # the trial's state is in the study; the tag is a convenience
            log.warning("could not tag the MLflow run of trial %d: %s", number, one_line(exc))


def _objective(result: Any) -> tuple[float | None, str]:
    """A job's objective, or None and why not."""
    try:
        value = result.return_value  # raises the job's exception when Hydra caught one
    except Exception as exc:
        return None, f"{type(exc).__name__}: {one_line(exc)}"
    if value is None:
        return None, f"the job returned no {OBJECTIVE} (is data.val_split 0?)"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None, f"the job returned {value!r}, not a number"
    if not math.isfinite(value):
        return None, f"the objective is {value}"
    return value, ""


def _lost(result: Any) -> str | None:
    """Why the launcher lost this job (no result came back), or None."""
    value = getattr(result, "_return_value", None)
    return value.reason if isinstance(value, LostJob) else None


def _finished(study: Any) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _best(study: Any) -> dict | None:
    if len(study.directions) > 1:  # no single best: the Pareto front (_pareto)
        return None
    try:
        best = study.best_trial
    except ValueError:  # no COMPLETE trial yet
        return None
    return {"number": best.number, "value": best.value, "params": best.params}


def _pareto(study: Any) -> list[dict]:
    """A multi-objective study's Pareto front: the trials no other trial beats on every objective."""
    return [{"number": t.number, "values": list(t.values), "params": t.params} for t in study.best_trials]


def _plots(study: Any, names: list[str] | None = None) -> dict[str, Any]:
    """Optuna's own matplotlib plots (importance needs two finished trials that differ)."""
    matplotlib.use("Agg")
    figures = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if len(study.directions) > 1:
            if study.best_trials:
                figures["pareto_front"] = optuna_plots.plot_pareto_front(study, target_names=names).figure
            return _laid_out(figures)
        if _finished(study):
            figures["optimization_history"] = optuna_plots.plot_optimization_history(study).figure
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        if len(complete) >= 2:
            try:
                figures["param_importances"] = optuna_plots.plot_param_importances(study).figure
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. every trial alike
                log.info("no parameter-importance plot: %s", one_line(exc))
    return _laid_out(figures)


def _laid_out(figures: dict[str, Any]) -> dict[str, Any]:
    for figure in figures.values():
        figure.tight_layout()
    return figures


@contextmanager
def _heartbeats(storage: Any, trial_ids: list[int]) -> Iterator[None]:
    """Record the trials' heartbeats while their jobs run, so that other hosts can tell them alive."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            for trial_id in trial_ids:
                try:
                    adapter.record_heartbeat(storage, trial_id)
                except Exception:  # finished meanwhile, or the database blinked: the next beat retries
                    pass
            if stop.wait(adapter.HEARTBEAT_S):
                return

    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _alive_worker(name: str, host: str) -> bool:
    """A ``worker <host> <pid> <start>`` entry of a study: alive (another host's counts as alive)."""
    _, worker_host, pid, started = ([*name.split(" "), "", "", ""])[:4]
    if worker_host != host:
        return True
    return pid.isdigit() and processes.alive(int(pid), None if started == "None" else started)
