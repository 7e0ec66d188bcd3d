"""A multirun as one MLflow parent run, with one nested child run per job, summarised at the end.

Hydra calls ``SweepTracker`` in the process that launches the jobs. ``on_multirun_start``
validates the shared config, opens the store once (parallel jobs that create a fresh sqlite
file at the same time race on its tables) and starts the parent run. Each job finds the
parent in ``<sweep dir>/sweep.json``: a file, because jobs may run in other processes
(joblib) or on other machines that share the folder (SLURM). ``on_multirun_end`` ranks the
children, logs the table and the comparison figure to the parent, and ends it.

Imports of MLflow stay inside the methods: Hydra instantiates callbacks for ``--cfg`` too.
Hydra turns exceptions raised by callbacks into warnings, so a callback that must stop the
sweep (a bad config, failed jobs) prints its one line and exits itself (``cli.exit_for``).
"""

from __future__ import annotations

import atexit
import json
import logging
import secrets
import signal
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mnistlab.errors import MnistlabError, Terminated, TrackingError, one_line

log = logging.getLogger(__name__)
SWEEP_FILE = "sweep.json"
ROLE_TAG, SWEEP_ROLE = "mnistlab.role", "sweep"  # marks parent runs, so listings can leave them out


_active: Sweep | None = None  # the multirun this process launches (set by SweepTracker.on_multirun_start)


def active() -> Sweep | None:
    """The sweep this process started or continued: several processes sharing one sweep folder
    (workers of one search) would otherwise read each other's sweep.json."""
    return _active


class LostJob(float):
    """A job's result when its launcher lost the job (SLURM ended it, no result came back): NaN, so
    a sweep counts it failed like any job whose objective is NaN, with the reason for a search,
    which runs a lost trial's parameters once more."""

    def __new__(cls, reason: str) -> LostJob:
        job = super().__new__(cls, "nan")
        job.reason = reason
        return job


class SweepFailed(MnistlabError):
    """Some jobs of the sweep did not finish; the others did, and the summary says which."""


def runs_filter(sweep_id: str) -> str:
    """MLflow filter for a sweep's runs: its children and its parent."""
    return f"tags.sweep_id = '{sweep_id}'"


@dataclass(frozen=True)
class Sweep:
    """What a job needs to nest its run under the sweep's parent run."""

    sweep_id: str
    parent_run_id: str
    experiment_id: str
    tracking_uri: str

    def save(self, sweep_dir: Path) -> None:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, sweep_dir: str | Path) -> Sweep | None:
        path = Path(sweep_dir) / SWEEP_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else None

    @property
    def runs_filter(self) -> str:
        return runs_filter(self.sweep_id)

    def child_tags(self, job: int, nested: bool = True) -> dict[str, str]:
        """``nested``: the child is in the parent's store and experiment (else only tagged)."""
        tags = {"sweep_id": self.sweep_id, "sweep.job": str(job)}
        if nested:
            tags["mlflow.parentRunId"] = self.parent_run_id
        return tags

    def record_failed_job(self, job: int, run_name: str, reason: str, tags: dict[str, str] | None = None) -> None:
        """A job that failed before its run started still gets a (FAILED) child: the sweep's
        table and the UI then show every job, not only the ones that got far enough. A run left
        RUNNING (its process was killed, e.g. by SLURM) ends FAILED with ``reason``."""
        from mnistlab import tracking

        client = tracking.client(self.tracking_uri)
        runs = client.search_runs([self.experiment_id], f"{self.runs_filter} and tags.`sweep.job` = '{job}'")
        for run in runs:
            if run.info.status == "RUNNING":
                tracking.end_detached_run(client, run.info.run_id, "FAILED", reason)
        if runs:
            return  # the run started and ended with its reason
        tracking.record_failed_run(client, self.experiment_id, run_name,
                                   {**(tags or {}), **self.child_tags(job), "failure_reason": reason})

    def end_running_children(self, client: Any, status: str, reason: str) -> int:
        """End the children still RUNNING (their process is gone); returns how many children there are."""
        from mnistlab import tracking

        children = [run for run in client.search_runs([self.experiment_id], self.runs_filter)
                    if run.info.run_id != self.parent_run_id]
        for run in children:
            if run.info.status == "RUNNING":
                tracking.end_detached_run(client, run.info.run_id, status, reason)
        return len(children)


class SweepTracker(Callback):
    """Hydra callback (conf/config.yaml, hydra.callbacks) that makes a multirun one parent run."""

    def __init__(self) -> None:
        self._sweep: Sweep | None = None
        self._ended = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mnistlab import tracking
        from mnistlab.cli import exit_for
        from mnistlab.config import validate
        from mnistlab.errors import ConfigError

        try:
            valid = validate(config)  # an error every job would hit stops the sweep before it starts
            if valid.resume:
                raise ConfigError("resume", "continues one interrupted run; it cannot be part of a sweep (drop -m)",
                                  valid.resume)
            uri = tracking.reachable_uri(valid.tracking.uri, valid.tracking.fallback_to_local, valid.root_dir)
            experiment_id = tracking.open_experiment(uri, valid.tracking.experiment)
        except Exception as exc:  # Hydra would make it a warning and run the jobs without a parent
            exit_for(exc)
        sweep_dir = Path(config.hydra.sweep.dir)
        continued = _search_to_continue(config, sweep_dir, uri, experiment_id)
        global _active
        if continued is not None:  # a rerun of a hyperparameter search: the same parent run goes on
            self._sweep = _active = continued
            tracking.client(uri).update_run(continued.parent_run_id, status="RUNNING")
            self._watch_exit()
            log.info("MLflow parent run %s continues (sweep_id %s)", continued.parent_run_id, continued.sweep_id)
            return
        sweep_id = f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
        parsed = sweep_overrides(config)
        overrides = {key: tracking.redact(o.input_line.split("=", 1)[1]) for key, o in parsed.items()}  # as typed
        swept = [key for key, o in parsed.items() if o.is_sweep_override()]
        tags = {
            **tracking.environment_tags(valid.root_dir, str(sweep_dir)),
            **valid.tracking.tags,
            ROLE_TAG: SWEEP_ROLE,
            "sweep_id": sweep_id,
            "sweep.dir": str(sweep_dir),
            "sweep.keys": ",".join(swept),
            "sweep.launcher": OmegaConf.select(config, "hydra.launcher._target_", default="?").rpartition(".")[2],
        }
        name = f"sweep {sweep_id}" + (f": {', '.join(swept)}" if swept else "")
        parent = tracking.start_detached_run(experiment_id, name, tags, params=overrides)
        self._sweep = _active = Sweep(sweep_id, parent, experiment_id, uri)
        self._sweep.save(sweep_dir)
        self._watch_exit()
        log.info("MLflow parent run %s (%s), sweep_id %s", parent, name, sweep_id)

    def _watch_exit(self) -> None:
        atexit.register(self._end_early)  # Ctrl-C, a crash, or a job config Hydra refused
        try:
            signal.signal(signal.SIGTERM, _raise_terminated)
        except ValueError:  # not the main thread
            pass

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._sweep is None:
            return
        from mnistlab.cli import exit_for

        try:
            rows = self._summarise()
        except Exception as exc:  # the store went away: say so (the parent is ended at exit, if it can be)
            exit_for(TrackingError(f"sweep {self._sweep.sweep_id}: cannot summarise its runs ({one_line(exc)})"))
        from mnistlab import search

        searched = search.outcome()
        if searched is not None:  # a hyperparameter search: failed trials are part of it, the target decides
            problem = searched.problem()
            self._end("FAILED" if problem else "FINISHED", problem)
            if problem:
                exit_for(search.SearchStopped(problem))
            return
        failed = [row for row in rows if row.status != "FINISHED"]
        if not rows:
            self._end("FAILED", "no job recorded a run")
        elif failed:
            self._end("FAILED", f"{len(failed)} of {len(rows)} jobs did not finish")
        else:
            self._end("FINISHED")
        if failed or not rows:
            jobs = ", ".join(f"{row.job} {row.status}" for row in failed)
            exit_for(SweepFailed(f"sweep {self._sweep.sweep_id}: " + (
                f"{len(failed)} of {len(rows)} jobs did not finish (job {jobs}; the table above says why)"
                if rows else "no job recorded a run")))

    def _summarise(self) -> list:
        """Rank the children, print the table, and log it with the figure to the parent run."""
        from mnistlab import comparison, tracking

        assert self._sweep is not None
        client = tracking.client(self._sweep.tracking_uri)
        rows = comparison.sweep_rows(client, self._sweep)
        if rows:
            report = comparison.Report(rows, comparison.val_curves(client, rows),
                                       title=f"sweep {self._sweep.sweep_id}",
                                       predictions=comparison.predictions_from(client))
            report.log_to(client, self._sweep.parent_run_id)
            configurations = comparison.plural(len(report.groups), "configuration")
            print(f"\nsweep {self._sweep.sweep_id}: {len(rows)} runs in {configurations}, ranked by test accuracy\n"
                  f"{report.text()}\n", flush=True)
            for line in tracking.where_to_look(self._sweep.tracking_uri, self._sweep.experiment_id,
                                               self._sweep.parent_run_id):
                print(f"  {line}")
            print(f"  runs of this sweep: filter {self._sweep.runs_filter}", flush=True)
        return rows

    def _end(self, status: str, reason: str | None = None) -> None:
        from mnistlab import tracking

        assert self._sweep is not None
        self._ended = True
        tracking.end_detached_run(tracking.client(self._sweep.tracking_uri), self._sweep.parent_run_id,
                                  status, reason)

    def _end_early(self) -> None:
        """At exit without on_multirun_end: whatever ran is summarised and the parent KILLED;
        a sweep that never launched a job leaves no parent behind."""
        if self._sweep is None or self._ended:
            return
        from mnistlab import tracking

        try:
            client = tracking.client(self._sweep.tracking_uri)
            if not self._sweep.end_running_children(client, "KILLED", "the sweep ended before this job"):
                client.delete_run(self._sweep.parent_run_id)
                self._ended = True
                return
            self._summarise()
            self._end("KILLED", "the sweep stopped before all its jobs ended (interrupted or crashed)")
        except Exception as exc:  # at exit: report, never raise
            log.warning("could not end the sweep's parent run %s: %s", self._sweep.parent_run_id, one_line(exc))


def _search_to_continue(config: DictConfig, sweep_dir: Path, uri: str, experiment_id: str) -> Sweep | None:
    """The sweep a hyperparameter search left in its (per-study) folder, when its parent run is
    still in this store and experiment: a rerun then continues it, as the study continues."""
    if not OmegaConf.select(config, "hydra.sweeper.study_name"):
        return None
    try:
        previous = Sweep.load(sweep_dir)
    except (OSError, ValueError, TypeError):
        return None
    if previous is None or (previous.tracking_uri, previous.experiment_id) != (uri, experiment_id):
        return None
    from mnistlab import tracking

    try:
        parent = tracking.client(uri).get_run(previous.parent_run_id)
    except Exception:
        return None
    return previous if parent.info.lifecycle_stage == "active" else None


def sweep_overrides(config: DictConfig) -> dict[str, Any]:
    """The sweep's ``hydra.sweeper.params`` (e.g. from a preset) and command-line overrides, parsed
    as Hydra's basic sweeper parses them, by key (the command line wins)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(config, "hydra.sweeper.params")
    lines = [f"{key}={value}" for key, value in (OmegaConf.to_container(params) if params is not None else {}).items()]
    lines += OmegaConf.to_container(config.hydra.overrides.task)
    return {o.key_or_group: o for o in OverridesParser.create().parse_overrides(lines)}


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()
