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

The job side (``TrialLink``) is read by ``cli.task`` from the job's output folder, where the
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
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from omegaconf import DictConfig, OmegaConf

from mnistlab import processes
from mnistlab.errors import ConfigError, MnistlabError, one_line
from mnistlab.redaction import redact
from mnistlab.search_space import SearchSpace

log = logging.getLogger(__name__)
TRIAL_FILE = "optuna_trial.json"
OBJECTIVE = "val_accuracy"
# the trial's user attributes this project sets
OWNER, FAIL_REASON, PRUNED_AT, RETRY_OF = "owner", "fail_reason", "pruned_at_epoch", "retry_of"
PRUNERS = {
    "median": "optuna.pruners.MedianPruner",
    "percentile": "optuna.pruners.PercentilePruner",
    "successive_halving": "optuna.pruners.SuccessiveHalvingPruner",
    "hyperband": "optuna.pruners.HyperbandPruner",
    "threshold": "optuna.pruners.ThresholdPruner",
    "patient": "optuna.pruners.PatientPruner",
    "nop": "optuna.pruners.NopPruner",
}
WAIT_S = 2  # how often a worker with nothing left to ask checks on the others' last trials
HEARTBEAT_S = 60  # a trial whose heartbeat is older than GRACE_S on another host is taken as dead
GRACE_S = 180


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
        return (f"search {self.study_name!r} stopped after {self.failed_here} failed trials (more than "
                f"hydra.sweeper.max_failures): "
                f"{self.finished} of {self.target} trials finished; rerun the same command to continue")


_outcome: Outcome | None = None  # the search run by this process, read by sweep.SweepTracker at the end


def outcome() -> Outcome | None:
    return _outcome


# ---------------------------------------------------------------------------------------------
# The job side: which trial a job is, reporting epochs, pruning


@dataclass(frozen=True)
class TrialLink:
    """What a job needs to know about its trial (written as ``optuna_trial.json`` in its folder)."""

    study_name: str
    storage: str
    trial_id: int
    number: int
    params: dict[str, Any]
    pruner: Any = None  # the pruner's config (the job decides whether to stop)
    sweep: dict | None = None  # the MLflow parent run of the process that launched the trial (sweep.Sweep)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # only the owner may read it: the storage URL the job reports to may hold a password
        fd = os.open(directory / TRIAL_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> TrialLink | None:
        path = Path(directory) / TRIAL_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else None

    def tags(self) -> dict[str, str]:
        """MLflow tags of the trial's run."""
        return {"optuna.study": self.study_name, "optuna.trial": str(self.number), "optuna.state": "RUNNING",
                "optuna.storage": redact(self.storage),
                **{f"optuna.param.{key}": str(value) for key, value in self.params.items()}}

    def epoch_reporter(self) -> Callable[[int, Mapping[str, float]], bool]:
        """Reports val_accuracy after each epoch (the trial's intermediate values: what a pruner,
        now or in a later run of the study, compares); True (stop training) when the pruner says so."""
        import optuna

        study = optuna.load_study(study_name=self.study_name, storage=open_storage(self.storage, heartbeat=False),
                                  pruner=make_pruner(self.pruner) or optuna.pruners.NopPruner())
        trial = optuna.Trial(study, self.trial_id)

        def report(epoch: int, metrics: Mapping[str, float]) -> bool:
            if OBJECTIVE not in metrics or not math.isfinite(metrics[OBJECTIVE]):
                return False
            trial.report(metrics[OBJECTIVE], epoch + 1)
            if self.pruner and trial.should_prune():
                trial.set_user_attr(PRUNED_AT, epoch + 1)
                log.info("Optuna trial %d pruned after epoch %d (%s %.4f)", self.number, epoch + 1, OBJECTIVE,
                         metrics[OBJECTIVE])
                return True
            return False

        return report


# ---------------------------------------------------------------------------------------------
# The sweeper side


@dataclass
class Settings:
    """``hydra.sweeper``: the keys of the official Optuna sweeper, plus pruner and max_failures."""

    direction: str = "maximize"
    study_name: str | None = None
    storage: str | None = None
    n_trials: int = 20
    n_jobs: int = 1
    sampler: Any = None
    pruner: Any = None
    max_failures: int = 3
    params: dict[str, Any] | None = field(default=None)

    @classmethod
    def of(cls, sweeper: DictConfig | Mapping, launcher_jobs: int | None = None) -> Settings:
        """``launcher_jobs``: how many jobs the launcher runs at once (joblib's n_jobs; -1 = every
        core, as joblib counts), the batch size when ``n_jobs`` is null."""
        values = OmegaConf.to_container(sweeper, resolve=True) if isinstance(sweeper, DictConfig) else dict(sweeper)
        values.pop("_target_", None)
        if values.get("n_jobs") is None:
            jobs = launcher_jobs if isinstance(launcher_jobs, int) else 1
            values["n_jobs"] = max(1, jobs if jobs > 0 else (os.cpu_count() or 1) + 1 + jobs)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise ConfigError("hydra.sweeper.direction", "must be maximize or minimize (the objective is "
                              f"{OBJECTIVE})", self.direction)
        for key in ("n_trials", "n_jobs"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"hydra.sweeper.{key}", "must be an integer >= 1", value)
        if isinstance(self.max_failures, bool) or not isinstance(self.max_failures, int) or self.max_failures < 0:
            raise ConfigError("hydra.sweeper.max_failures", "must be an integer >= 0", self.max_failures)
        if isinstance(self.pruner, str) and self.pruner not in PRUNERS:
            raise ConfigError("hydra.sweeper.pruner", f"unknown pruner; choose one of {', '.join(PRUNERS)}, null, "
                              "or a mapping with _target_", self.pruner)
        if self.study_name is not None and not str(self.study_name).strip():
            raise ConfigError("hydra.sweeper.study_name", "must not be empty", self.study_name)


def default_storage(root_dir: str | Path) -> str:
    """A sqlite file next to mlflow.db."""
    return f"sqlite:///{Path(root_dir).resolve() / 'optuna.db'}"


def open_storage(url: str, heartbeat: bool = True) -> Any:
    """An RDB storage; sqlite waits for a lock instead of failing at once (parallel jobs report too)."""
    import optuna

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else {"pool_pre_ping": True}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" (since Optuna 2.9)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                              heartbeat_interval=HEARTBEAT_S if heartbeat else None,
                                              grace_period=GRACE_S if heartbeat else None)
    except Exception as exc:  # a bad URL, a missing driver, a server that does not answer
        raise ConfigError("hydra.sweeper.storage", f"cannot open the Optuna storage ({one_line(exc, 300)})",
                          redact(url)) from None


def make_pruner(spec: Any) -> Any:
    if not spec:
        return None
    from hydra.utils import instantiate

    if isinstance(spec, str):
        return instantiate({"_target_": PRUNERS[spec]})
    return instantiate(dict(spec))


def make_sampler(spec: Any, offset: int) -> Any:
    """The configured sampler (TPE by default) with its seed moved on by ``offset``."""
    from hydra.utils import instantiate

    spec = dict(spec or {"_target_": "optuna.samplers.TPESampler"})
    if spec.get("seed") is not None:
        spec["seed"] = int(spec["seed"]) + offset
    return instantiate(spec)


class Search:
    """One invocation of a search: continue the study to n_trials, a batch of n_jobs at a time."""

    def __init__(self, settings: Settings, space: SearchSpace, root_dir: str, sweep_dir: Path,
                 launch: Callable[[list[list[str]], int], list[Any]]) -> None:
        self.settings, self.space, self.sweep_dir, self.launch = settings, space, sweep_dir, launch
        self.storage_url = settings.storage or default_storage(root_dir)
        self.study_name = settings.study_name or "mnistlab"
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.failed_here = self.launched = 0

    def run(self) -> Outcome:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(self.storage_url)
        study = optuna.create_study(study_name=self.study_name, storage=storage, load_if_exists=True,
                                    direction=self.settings.direction)
        if study.direction.name.lower() != self.settings.direction:
            raise ConfigError("hydra.sweeper.direction", f"study {self.study_name!r} in {redact(self.storage_url)} "
                              f"was created to {study.direction.name.lower()}; use another study_name",
                              self.settings.direction)
        self._fail_dead_trials(study)
        # a resumed study moves on by its trials so far, a parallel worker by its place among the workers
        offset = len(study.trials) + 7919 * self._worker_index(study)
        study.sampler = make_sampler(self.settings.sampler, offset)
        log.info("Optuna study %r in %s: %d of %d trials finished", self.study_name, redact(self.storage_url),
                 _finished(study), self.settings.n_trials)
        distributions = self.space.distributions()
        while self.failed_here <= self.settings.max_failures:  # one failure more than tolerated stops it
            self._fail_dead_trials(study)
            finished = _finished(study)
            missing = self.settings.n_trials - finished - self._others_running(study)
            if finished >= self.settings.n_trials:
                break
            if missing <= 0:  # other workers' trials may finish the study; if they fail or die, this one goes on
                time.sleep(WAIT_S)
                continue
            with warnings.catch_warnings():  # "heartbeat ... supposed to be used with Study.optimize": we beat
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                try:
                    trials = [study.ask(distributions) for _ in range(min(self.settings.n_jobs, missing))]
                except ValueError as exc:  # e.g. a key that was an interval() is now a choice()
                    raise ConfigError("hydra.sweeper.params", f"{one_line(exc)}: study {self.study_name!r} has "
                                      "trials that searched a key differently; keep each key's kind (choice, "
                                      "interval, int) or use another study_name") from None
            batch = [self._prepare(trial) for trial in trials]
            self.launched += len(trials)
            try:
                with _heartbeats(storage, [t._trial_id for t in trials]):
                    results = self.launch(batch, trials[0].number)  # Hydra's job numbers: the trials' numbers
            except BaseException as exc:  # Ctrl-C, SIGTERM, a launcher crash: the trials are retried next time
                for trial in trials:
                    self._fail(study, trial.number, trial._trial_id, f"the search stopped ({type(exc).__name__})",
                               retry=True)
                raise
            for trial, result in zip(trials, results):
                self._tell(study, trial, result)
        self._log_study(study)
        global _outcome
        _outcome = Outcome(self.study_name, redact(self.storage_url), _finished(study), self.settings.n_trials,
                           self.failed_here, self.launched, _best(study))
        return _outcome

    # -- one trial ------------------------------------------------------------------------------

    def _prepare(self, trial: Any) -> list[str]:
        trial.set_user_attr(OWNER, {"host": self.host, "pid": self.pid, "started": processes.start_time(self.pid)})
        if RETRY_OF in trial.user_attrs:
            log.info("Optuna trial %d retries trial %d's parameters", trial.number, trial.user_attrs[RETRY_OF])
        folder = f"trial-{trial.number:04d}"
        sweep = self._sweep()
        TrialLink(self.study_name, self.storage_url, trial._trial_id, trial.number, dict(trial.params),
                  self.settings.pruner, asdict(sweep) if sweep else None).save(self.sweep_dir / folder)
        return [*self.space.overrides(trial.params), f"hydra.sweep.subdir={folder}"]

    def _tell(self, study: Any, trial: Any, result: Any) -> None:
        from optuna.trial import TrialState

        value, reason = _objective(result)
        attrs = study._storage.get_trial(trial._trial_id).user_attrs
        lost = _lost(result)
        if lost and RETRY_OF not in attrs:  # e.g. SLURM preempted it: not the parameters' fault, once
            self._fail(study, trial.number, trial._trial_id, lost, retry=True)
            log.warning("Optuna trial %d was lost (%s): FAIL, parameters queued again", trial.number, lost)
            return
        extra = {}
        if value is not None and PRUNED_AT in attrs:
            study.tell(trial, state=TrialState.PRUNED)
            state, extra = "PRUNED", {"optuna.pruned_at_epoch": str(attrs[PRUNED_AT])}
        elif value is not None:
            study.tell(trial, value)
            state = "COMPLETE"
        else:
            reason = self._child_failure_reason(trial.number) or reason
            trial.set_user_attr(FAIL_REASON, reason)
            study.tell(trial, state=TrialState.FAIL)
            self.failed_here += 1
            state = "FAIL"
            log.warning("Optuna trial %d failed: %s", trial.number, reason)
        if state == "FAIL":
            extra = {"optuna.fail_reason": reason}
        self._tag_child(trial.number, {"optuna.state": state, **extra})

    def _fail(self, study: Any, number: int, trial_id: int, reason: str, retry: bool) -> bool:
        """Mark a RUNNING trial FAIL (False if another process got there first) and queue its
        parameters again."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        storage = study._storage
        try:  # the reason first: a finished trial takes no more attributes
            storage.set_trial_user_attr(trial_id, FAIL_REASON, reason)
            if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
                return False
        except UpdateFinishedTrialError:  # another process failed (or finished) it first
            return False
        if retry:
            params = storage.get_trial(trial_id).params
            study.enqueue_trial(params, user_attrs={RETRY_OF: number}, skip_if_exists=False)
        self._tag_child(number, {"optuna.state": "FAIL", "optuna.fail_reason": reason}, end_running=True)
        return True

    def _fail_dead_trials(self, study: Any) -> None:
        """Trials left RUNNING by a process that is gone: FAIL, and their parameters queued again."""
        import optuna
        from optuna.trial import TrialState

        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = trial.user_attrs.get(OWNER) or {}
            if owner.get("host") == self.host and not processes.alive(owner.get("pid"), owner.get("started")):
                if self._fail(study, trial.number, trial._trial_id,
                              f"its process ({owner.get('pid')} on {self.host}) died", retry=True):
                    log.warning("Optuna trial %d was left RUNNING by a process that died: FAIL, parameters "
                                "queued again", trial.number)
        # other hosts: Optuna's heartbeat (the sweeper that owns a trial records it while the trial runs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            stale = study._storage._get_stale_trial_ids(study._study_id)
        for trial_id in stale:
            trial = study._storage.get_trial(trial_id)
            self._fail(study, trial.number, trial_id, f"no heartbeat for {GRACE_S} s (its process is gone)",
                       retry=True)

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
        from optuna.trial import TrialState

        return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if (t.user_attrs.get(OWNER) or {}).get("pid") != self.pid
                   or (t.user_attrs.get(OWNER) or {}).get("host") != self.host)

    # -- MLflow ---------------------------------------------------------------------------------

    def _log_study(self, study: Any) -> None:
        """The study on the search's parent run: the best trial (tags, a metric, best_trial.json),
        every trial (trials.csv), and Optuna's optimisation-history and parameter-importance plots."""
        from mnistlab import tracking

        sweep = self._sweep()
        if sweep is None:
            return
        client = tracking.client(sweep.tracking_uri)
        run_id = sweep.parent_run_id
        try:
            best = _best(study)
            tags = {"optuna.study": self.study_name, "optuna.storage": redact(self.storage_url),
                    "optuna.n_trials": str(self.settings.n_trials), "optuna.finished": str(_finished(study))}
            if best is not None:
                tags["optuna.best_trial"] = str(best["number"])
                tags.update({f"optuna.best.{key}": str(value) for key, value in best["params"].items()})
                client.log_metric(run_id, f"best_{OBJECTIVE}", best["value"])
                client.log_text(run_id, json.dumps(best, indent=2) + "\n", "optuna/best_trial.json")
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
            client.log_text(run_id, study.trials_dataframe().to_csv(index=False), "optuna/trials.csv")
            import matplotlib.pyplot as plt

            for name, figure in _plots(study).items():
                client.log_figure(run_id, figure, f"optuna/{name}.png")
                plt.close(figure)
        except Exception as exc:  # the study is safe in its storage; the parent's copy is a convenience
            log.warning("could not log the study to the parent run %s: %s", run_id, one_line(exc))

    # -- the trial's MLflow run -----------------------------------------------------------------

    def _sweep(self) -> Any:
        """This process's sweep (its MLflow parent run), else the one in the sweep folder."""
        from mnistlab import sweep

        return sweep.active() or sweep.Sweep.load(self.sweep_dir)

    def _children(self, number: int) -> list[Any]:
        from mnistlab import tracking

        sweep = self._sweep()
        if sweep is None:
            return []
        client = tracking.client(sweep.tracking_uri)
        return client.search_runs([sweep.experiment_id], f"tags.`optuna.study` = '{self.study_name}' and "
                                                         f"tags.`optuna.trial` = '{number}'")

    def _child_failure_reason(self, number: int) -> str | None:
        for run in self._children(number):
            if run.data.tags.get("failure_reason"):
                return run.data.tags["failure_reason"]
        return None

    def _tag_child(self, number: int, tags: Mapping[str, str], end_running: bool = False) -> None:
        from mnistlab import tracking

        try:
            runs = self._children(number)
            if not runs:
                return
            client = tracking.client(self._sweep().tracking_uri)
            for run in runs:
                for key, value in tags.items():
                    client.set_tag(run.info.run_id, key, value)
                if end_running and run.info.status == "RUNNING":
                    tracking.end_detached_run(client, run.info.run_id, "KILLED", tags.get("optuna.fail_reason"))
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
    from mnistlab.sweep import LostJob

    value = getattr(result, "_return_value", None)
    return value.reason if isinstance(value, LostJob) else None


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _best(study: Any) -> dict | None:
    try:
        best = study.best_trial
    except ValueError:  # no COMPLETE trial yet
        return None
    return {"number": best.number, "value": best.value, "params": best.params}


def _plots(study: Any) -> dict[str, Any]:
    """Optuna's own matplotlib plots (importance needs two finished trials that differ)."""
    import matplotlib

    matplotlib.use("Agg")
    import optuna
    from optuna.visualization import matplotlib as plots

    figures = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if _finished(study):
            figures["optimization_history"] = plots.plot_optimization_history(study).figure
        complete = [t for t in study.trials if t.state.name == "COMPLETE"]
        if len(complete) >= 2:
            try:
                figures["param_importances"] = plots.plot_param_importances(study).figure
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. every trial alike
                log.info("no parameter-importance plot: %s", one_line(exc))
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
                    storage.record_heartbeat(trial_id)
                except Exception:  # finished meanwhile, or the database blinked: the next beat retries
                    pass
            if stop.wait(HEARTBEAT_S):
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
    _, worker_host, pid, started = (name.split(" ") + ["", "", ""])[:4]
    if worker_host != host:
        return True
    return pid.isdigit() and processes.alive(int(pid), None if started == "None" else started)


