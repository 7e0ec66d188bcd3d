"""A multirun as one MLflow parent run, with one nested child run per job, summarised at the end.

Hydra calls ``SweepTracker`` in the process that launches the jobs. ``on_multirun_start``
validates the shared config, opens the store once (parallel jobs that create a fresh sqlite
file at the same time race on its tables) and starts the parent run. Each job finds the
parent in ``<sweep dir>/sweep.json`` (``tracking.parents.Sweep``). ``on_multirun_end`` ranks the
children, logs the comparison to the parent, and ends it.

MLflow (and a search's Optuna) are imported inside the methods: Hydra instantiates callbacks for
``--cfg`` and ``--help`` too. Hydra turns exceptions raised by callbacks into warnings, so a
callback that must stop the sweep prints its one line and exits itself (``exits.exit_for``).
"""

from __future__ import annotations

import atexit
import logging
import secrets
import signal
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from mnistlab.config import validate
from mnistlab.core import transcript
from mnistlab.core.errors import ConfigError, MnistlabError, Terminated, TrackingError, one_line, resume_in_a_sweep
from mnistlab.core.exits import exit_for
from mnistlab.core.redaction import redact
from mnistlab.core.text import plural
from mnistlab.sweeps import continuation
from mnistlab.tracking.parents import ROLE_TAG, SWEEP_ROLE, Sweep

log = logging.getLogger(__name__)
_active: Sweep | None = None  # the sweep this process launches (set by on_multirun_start)
_search: Any = None  # what the search this process ran did (search.Outcome), if it ran one


def active() -> Sweep | None:
    """The sweep this process started or continued: several processes sharing one sweep folder
    (workers of one search) would otherwise read each other's sweep.json."""
    return _active


def is_dry_run(config: DictConfig) -> bool:
    """``hydra/launcher=dry_run``: the jobs are listed and validated, nothing runs."""
    target = OmegaConf.select(config, "hydra.launcher._target_", default="") or ""
    return target.endswith(".DryRunLauncher")


def report_search(outcome: Any) -> None:
    """A search's outcome, for the sweep's end: its failed trials are part of it, its target decides."""
    global _search
    _search = outcome


class SweepFailed(MnistlabError):
    """Some jobs of the sweep did not finish; the others did, and the summary says which."""


def _start_workers(config: DictConfig) -> None:
    """A launcher that can start its worker processes ahead of its first batch (a ``prestart``
    method: mnistlab's joblib launcher) starts them now, so that their seconds of imports pass while
    the parent run is set up. Hydra instantiates the launcher only after this callback."""
    target = OmegaConf.select(config, "hydra.launcher._target_")
    try:
        prestart = getattr(get_class(target), "prestart", None) if target else None
    except Exception:  # not a class Hydra can import: the launcher reports it itself
        return
    if prestart is not None:
        prestart(config)


class SweepTracker(Callback):
    """Hydra callback (conf/config.yaml, hydra.callbacks) that makes a multirun one parent run."""

    def __init__(self) -> None:
        self._sweep: Sweep | None = None
        self._ended = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if is_dry_run(config):  # a preview: no store, no parent run, no MLflow import
            return
        try:
            valid = validate(config)  # an error every job would hit stops the sweep before it starts
            if valid.resume:
                raise resume_in_a_sweep(valid.resume)
        except Exception as exc:
            exit_for(exc)
        _start_workers(config)  # they load TensorFlow while this process sets up the parent run
        from mnistlab.tracking import provenance, runs, server, store, sweeps

        try:
            uri = server.reachable_uri(valid.tracking.uri, valid.tracking.fallback_to_local, valid.root_dir)
            experiment_id = store.open_experiment(uri, valid.tracking.experiment)
        except Exception as exc:  # Hydra would make it a warning and run the jobs without a parent
            exit_for(exc)
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            continued = _search_to_continue(config, sweep_dir, uri, experiment_id) or _grid_to_continue(
                config, sweep_dir, uri, experiment_id
            )
        except Exception as exc:  # not the same jobs, still running, another store
            exit_for(exc)
        global _active
        if continued is not None:  # the same parent run goes on (a search's rerun, a grid's continue)
            continued = replace(continued, **continuation.owner())
            continued.save(sweep_dir)
            self._sweep = _active = continued
            client = sweeps.client(continued)
            client.update_run(continued.parent_run_id, status="RUNNING")
            if continued.continued:
                client.set_tag(continued.parent_run_id, "sweep.continued", str(continued.continued))
            self._watch_exit()
            log.info("MLflow parent run %s continues (sweep_id %s)", continued.parent_run_id, continued.sweep_id)
            return
        sweep_id = f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
        parsed = sweep_overrides(config)
        overrides = {key: redact(o.input_line.split("=", 1)[1]) for key, o in parsed.items()}  # as typed
        swept = [key for key, o in parsed.items() if o.is_sweep_override()]
        tags = {
            **provenance.environment_tags(valid.root_dir, str(sweep_dir)),
            **valid.tracking.tags,
            ROLE_TAG: SWEEP_ROLE,
            "sweep_id": sweep_id,
            "sweep.dir": str(sweep_dir),
            "sweep.keys": ",".join(swept),
            "sweep.launcher": OmegaConf.select(config, "hydra.launcher._target_", default="?").rpartition(".")[2],
        }
        name = f"sweep {sweep_id}" + (f": {', '.join(swept)}" if swept else "")
        parent = runs.start_detached_run(experiment_id, name, tags, params=overrides)
        self._sweep = _active = Sweep(sweep_id, parent, experiment_id, uri, **continuation.owner())
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
        try:
            rows = self._summarise()
        except Exception as exc:  # the store went away: say so (the parent is ended at exit, if it can be)
            exit_for(TrackingError(f"sweep {self._sweep.sweep_id}: cannot summarise its runs ({one_line(exc)})"))
        if _search is not None:  # a hyperparameter search: failed trials are part of it, the target decides
            problem = _search.problem()
            self._end("FAILED" if problem else "FINISHED", problem)
            if problem:
                exit_for(SweepFailed(problem))
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
            exit_for(
                SweepFailed(
                    f"sweep {self._sweep.sweep_id}: "
                    + (
                        f"{len(failed)} of {len(rows)} jobs did not finish (job {jobs}; the table above says why)"
                        if rows
                        else "no job recorded a run"
                    )
                )
            )

    def _summarise(self) -> list:
        """Rank the children, print the comparison, and log it with the figure to the parent run."""
        from mnistlab.reports.comparison import Report
        from mnistlab.tracking import links, reading, sweeps

        sweep = self._sweep
        client = sweeps.client(sweep)
        rows = reading.sweep_rows(client, sweep)
        if rows:
            report = Report(
                rows,
                reading.val_curves(client, rows),
                title=f"sweep {sweep.sweep_id}",
                predictions=reading.predictions_from(client),
            )
            sweeps.log_summary(client, sweep.parent_run_id, report)
            view = sweeps.share_grouped_view(client, sweep)
            configurations = plural(len(report.groups), "configuration")
            print(
                redact(
                    f"\nsweep {sweep.sweep_id}: {len(rows)} runs in {configurations}, ranked by test accuracy\n"
                    f"{report.text(transcript.columns())}\n"
                ),
                flush=True,
            )
            look = links.where_to_look(sweep.tracking_uri, sweep.experiment_id, sweep.parent_run_id, shared_view=view)
            for line in look:
                print(redact(f"  {line}"))
            print(f"  runs of this sweep: filter {sweep.runs_filter}", flush=True)
        return rows

    def _end(self, status: str, reason: str | None = None) -> None:
        from mnistlab.tracking import runs, sweeps

        self._ended = True
        runs.end_detached_run(sweeps.client(self._sweep), self._sweep.parent_run_id, status, reason)

    def _end_early(self) -> None:
        """At exit without on_multirun_end: whatever ran is summarised and the parent KILLED;
        a sweep that never launched a job leaves no parent behind."""
        if self._sweep is None or self._ended:
            return
        from mnistlab.tracking import sweeps

        try:
            if not sweeps.end_running_children(self._sweep, "KILLED", "the sweep ended before this job"):
                sweeps.client(self._sweep).delete_run(self._sweep.parent_run_id)
                self._ended = True
                return
            self._summarise()
            self._end("KILLED", "the sweep stopped before all its jobs ended (interrupted or crashed)")
        except Exception as exc:  # at exit: report, never raise
            log.warning("could not end the sweep's parent run %s: %s", self._sweep.parent_run_id, one_line(exc))


def _search_to_continue(config: DictConfig, sweep_dir: Path, uri: str, experiment_id: str) -> Sweep | None:
    """The sweep a hyperparameter search left in its (per-study) folder, when its parent run is
    still in this store and experiment: a rerun then continues it, as the study continues."""
    from mnistlab.tracking import sweeps

    if not OmegaConf.select(config, "hydra.sweeper.study_name"):
        return None
    try:
        previous = Sweep.load(sweep_dir)
    except (OSError, ValueError, TypeError):
        return None
    if previous is None or (previous.tracking_uri, previous.experiment_id) != (uri, experiment_id):
        return None
    return previous if sweeps.parent_is_active(previous) else None


def _grid_to_continue(config: DictConfig, sweep_dir: Path, uri: str, experiment_id: str) -> Sweep | None:
    """A grid sweep's folder given again (hydra.sweep.dir): the same jobs, not running any more, in
    this store: it continues, one more time."""
    from mnistlab.tracking import sweeps

    if OmegaConf.select(config, "hydra.sweeper.study_name"):
        return None  # a search: its study decides what runs
    try:
        previous = Sweep.load(sweep_dir)
        before = OmegaConf.load(sweep_dir / "multirun.yaml")
    except (OSError, ValueError, TypeError):
        return None
    if previous is None:
        return None
    where = f"hydra.sweep.dir={str(sweep_dir)!r}"
    if (previous.tracking_uri, previous.experiment_id) != (uri, experiment_id):
        raise ConfigError(
            "",
            f"{where}: that sweep is recorded in {redact(previous.tracking_uri)} (experiment "
            f"{previous.experiment_id}), not here; point tracking.uri and tracking.experiment at it",
        )
    if not sweeps.parent_is_active(previous):
        raise ConfigError("", f"{where}: that sweep's parent run {previous.parent_run_id} is deleted or gone")
    continuation.check_same_jobs(before, config, sweep_dir)
    continuation.check_not_running(previous, sweep_dir)
    return replace(previous, continued=previous.continued + 1)


def sweep_overrides(config: DictConfig) -> dict[str, Any]:
    """The sweep's ``hydra.sweeper.params`` (e.g. from a preset) and command-line overrides, parsed
    as Hydra's basic sweeper parses them, by key (the command line wins)."""
    params = OmegaConf.select(config, "hydra.sweeper.params")
    lines = [f"{key}={value}" for key, value in (OmegaConf.to_container(params) if params is not None else {}).items()]
    lines += OmegaConf.to_container(config.hydra.overrides.task)
    return {o.key_or_group: o for o in OverridesParser.create().parse_overrides(lines)}


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()
