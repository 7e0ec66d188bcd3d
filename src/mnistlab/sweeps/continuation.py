"""Continuing a grid sweep: the same ``-m`` command with ``hydra.sweep.dir=<that sweep's folder>``
(or ``mnistlab continue``). The sweep callback checks that the command expands to the same jobs
and that the sweep is not still running; each job then looks for its earlier runs (``job_plan``):
FINISHED is skipped, KILLED (or left RUNNING by a process that is gone) resumes from its
checkpoint in the same run, FAILED or never started runs again. No MLflow import here: the
callback reads the folder before the store is opened."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from mnistlab.core import processes
from mnistlab.core.errors import ConfigError
from mnistlab.tracking.parents import Sweep

#: overrides that say where or how a sweep runs, not which jobs it has
NOT_JOBS = ("hydra.sweep.dir", "hydra.sweep.subdir", "hydra.mode", "hydra.launcher", "hydra/launcher")


def jobs(config: DictConfig) -> list[list[str]]:
    """The job list a sweep's config expands to, as Hydra's basic sweeper expands it."""
    params = OmegaConf.select(config, "hydra.sweeper.params")
    lines = [f"{key}={value}" for key, value in (OmegaConf.to_container(params) if params is not None else {}).items()]
    lines += [line for line in OmegaConf.to_container(config.hydra.overrides.task) if not line.startswith(NOT_JOBS)]
    overrides = OverridesParser.create().parse_overrides(lines)
    return [list(job) for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def check_same_jobs(before: DictConfig, now: DictConfig, sweep_dir: Path) -> None:
    """A continue must expand to the job list the sweep had: else one line naming the first difference."""
    old, new = jobs(before), jobs(now)
    where = f"hydra.sweep.dir={str(sweep_dir)!r}"
    for number, (was, is_) in enumerate(zip(old, new)):
        if sorted(was) != sorted(is_):
            raise ConfigError(
                "",
                f"{where}: this command does not continue that sweep: its job {number} was "
                f"{' '.join(was)}, here it is {' '.join(is_)} (give the sweep's own overrides, or "
                "another hydra.sweep.dir for a new sweep)",
            )
    if len(old) != len(new):
        raise ConfigError(
            "",
            f"{where}: this command does not continue that sweep: it had {len(old)} jobs, this one has {len(new)}",
        )


def check_not_running(previous: Sweep, sweep_dir: Path) -> None:
    if previous.host == socket.gethostname() and processes.alive(previous.pid, previous.started):
        raise ConfigError(
            "",
            f"hydra.sweep.dir={str(sweep_dir)!r}: that sweep is still running (process {previous.pid}); "
            "wait for it to end, or stop it first",
        )


def owner() -> dict[str, Any]:
    """This process, as a sweep's owner."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": processes.start_time(pid)}


@dataclass(frozen=True)
class JobPlan:
    """What a continued sweep's job does: ``skip`` (its run FINISHED), ``resume`` a run, or train."""

    skip: Any = None  # the FINISHED run
    resume: str | None = None  # the run id to continue from its checkpoint
    superseded: tuple = ()  # earlier runs this job replaces (FAILED, or KILLED without a checkpoint)


def job_plan(runs: list, has_checkpoint: bool) -> JobPlan:
    """``runs``: the job's earlier runs, newest first (tracking.sweeps.job_runs)."""
    finished = [run for run in runs if run.info.status == "FINISHED"]
    if finished:
        return JobPlan(skip=finished[0])
    if runs and runs[0].info.status in ("KILLED", "RUNNING") and has_checkpoint:
        return JobPlan(resume=runs[0].info.run_id, superseded=tuple(runs[1:]))
    return JobPlan(superseded=tuple(runs))
