"""``hydra/launcher=slurm``: hydra-submitit-launcher's SLURM launcher, with two changes.

- A job that SLURM ends without a result (``scancel``, preemption, a node failure, the memory or
  time limit) is one failed job of the sweep: its run is FAILED with what SLURM said and where the
  job's log is, and the sweep collects the other jobs and ends as usual. The plugin raises instead,
  which stopped the sweep while the rest of the array went on running unobserved.
- Ctrl-C (or SIGTERM) while the jobs run cancels the jobs that have not ended (``scancel``):
  stopping the sweep stops its work on the cluster too.
- A continued sweep (``mnistlab continue``) does not resubmit the jobs whose run FINISHED: the
  array holds the others only, with their own job numbers.

Without the ``slurm`` extra this module defines nothing (Hydra's plugin scan imports it anyway).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher
except ImportError:  # pip install -e .[slurm]
    submitit_launcher = None

log = logging.getLogger(__name__)

if submitit_launcher is not None:
    from hydra.core.singleton import Singleton
    from hydra.core.utils import JobReturn, JobStatus, filter_overrides
    from omegaconf import OmegaConf

    from mnistlab.sweeps import tracker
    from mnistlab.sweeps.lost import lost_job

    class SlurmLauncher(submitit_launcher.SlurmLauncher):
        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            assert self.config is not None
            Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
            every = dict(zip(range(initial_job_idx, initial_job_idx + len(job_overrides)), job_overrides))
            for number, overrides in every.items():
                log.info("\t#%d : %s", number, " ".join(filter_overrides(overrides)))
            done = _finished_before(list(every))
            if done:
                log.info("%d jobs FINISHED before this continue, not resubmitted: %s", len(done), sorted(done))
            todo = {number: overrides for number, overrides in every.items() if number not in done}
            results = {number: done[number] for number in done}
            if todo:
                # submitit runs this launcher (its __call__) on the node: one array task per job
                jobs = self._executor().map_array(
                    self,
                    [list(o) for o in todo.values()],
                    ["hydra.sweep.dir"] * len(todo),
                    list(todo),
                    [f"job_id_for_{n}" for n in todo],
                    [Singleton.get_state()] * len(todo),
                )
                log.info("SLURM job array %s: %d jobs", jobs[0].job_id.split("_")[0], len(jobs))
                try:
                    for job, (number, overrides) in zip(jobs, todo.items()):
                        results[number] = self._result(job, number, overrides)
                except BaseException:  # Ctrl-C, SIGTERM, a store that failed: the cluster's work stops too
                    _cancel([job for job in jobs if not job.done()])
                    raise
            return [results[number] for number in every]

        def _executor(self) -> Any:
            import submitit

            from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

            generic = set(OmegaConf.structured(BaseQueueConf).keys())  # the rest are slurm_<key>
            params = dict(self.params)
            executor = submitit.AutoExecutor(
                folder=params.pop("submitit_folder"),
                cluster="slurm",
                slurm_max_num_timeout=params.pop("max_num_timeout"),
            )
            executor.update_parameters(**{k if k in generic else f"slurm_{k}": v for k, v in params.items()})
            return executor

        def _result(self, job: Any, number: int, overrides: Sequence[str]) -> JobReturn:
            from submitit.core.utils import FailedJobError, UncompletedJobError

            try:
                return job.results()[0]
            except FailedJobError:  # the job's Python raised outside the task (the task catches its own)
                raise
            except UncompletedJobError:
                reason = f"SLURM ended job {job.job_id} ({job.state}) before it returned; its log: {job.paths.stderr}"
            return lost_job(self.config.hydra.sweep.dir, number, overrides, reason, self.config.hydra.job.name)

    def _finished_before(numbers: list[int]) -> dict[int, JobReturn]:
        """A continued sweep's jobs whose run FINISHED: their results, as the jobs returned them."""
        sweep = tracker.active()
        if sweep is None or not sweep.continued:
            return {}
        from mnistlab.tracking import sweeps  # MLflow: only when a sweep is continued

        return {
            number: JobReturn(
                overrides=[], status=JobStatus.COMPLETED, _return_value=run.data.metrics.get("val_accuracy")
            )
            for number, run in sweeps.finished_jobs(sweep, numbers).items()
        }

    def _cancel(jobs: list) -> None:
        for job in jobs:
            try:
                job.cancel(check=False)
            except Exception as exc:  # scancel missing or refused: say so, the interrupt goes on
                print(f"error: could not cancel SLURM job {job.job_id}: {exc}", file=sys.stderr, flush=True)
        if jobs:
            print(f"cancelled SLURM jobs {' '.join(job.job_id for job in jobs)}", file=sys.stderr, flush=True)
