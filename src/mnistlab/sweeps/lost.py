"""A job its launcher lost: its worker process was killed (the OOM killer, ``kill -9``) or SLURM ended
it, so no result came back. The job is one failed job of the sweep: its run ends FAILED with the
reason (or a FAILED run is recorded for it), and its result is FAILED for Hydra, its value a
``LostJob`` (NaN with the reason), which the sweep counts as failed and a search retries once.
The launchers (joblib's, SLURM's) call here."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus, filter_overrides

from mnistlab.sweeps import tracker
from mnistlab.sweeps.trial import TrialLink


class LostJob(float):
    """NaN, with the reason the job was lost."""

    def __new__(cls, reason: str) -> LostJob:
        job = super().__new__(cls, "nan")
        job.reason = reason
        return job


class LostJobReturn(JobReturn):
    """A lost job as Hydra sees it: FAILED. Its ``return_value`` is the ``LostJob`` instead of an
    exception to raise: Hydra's basic sweeper reads every result and would stop the sweep at the
    first failed one, before mnistlab's summary; the sweep goes on and reports it failed."""

    @property
    def return_value(self) -> LostJob:
        return self._return_value

    @return_value.setter
    def return_value(self, value: LostJob) -> None:
        self._return_value = value


def lost_job(sweep_dir: str | Path, number: int, overrides: Sequence[str], reason: str, task_name: str) -> JobReturn:
    """Say it (as a failed job's line), record it in MLflow, and return its result."""
    run_name = ",".join(filter_overrides(overrides))
    print(f"error: job {number} ({run_name}): {reason}", file=sys.stderr, flush=True)
    active = tracker.active()
    if active is not None:
        from mnistlab.tracking import sweeps  # MLflow: only once a job is lost

        try:
            sweeps.record_failed_job(active, number, run_name, reason, _trial_tags(Path(sweep_dir), overrides))
        except Exception as exc:
            print(f"error: job {number}: could not record the failure in MLflow: {exc}", file=sys.stderr, flush=True)
    return LostJobReturn(
        overrides=list(overrides), status=JobStatus.FAILED, _return_value=LostJob(reason), task_name=task_name
    )


def _trial_tags(sweep_dir: Path, overrides: Sequence[str]) -> dict[str, str] | None:
    """A search's trial: the tags its run gets (the search finds the run by them)."""
    subdir = next((o.split("=", 1)[1] for o in overrides if o.startswith("hydra.sweep.subdir=")), None)
    link = TrialLink.load(sweep_dir / subdir) if subdir else None
    return link.tags() if link else None
