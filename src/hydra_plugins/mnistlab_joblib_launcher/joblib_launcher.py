"""``hydra/launcher=joblib``: the jobs of a sweep on ``n_jobs`` worker processes, reused from job to
job, as hydra-joblib-launcher runs them, with one change.

A worker process that dies (the OOM killer, ``kill -9``) costs its own job only: that job is FAILED
with the reason (``its worker process was killed (signal 9)``), a new worker takes its place, and the
other jobs go on. joblib's loky pool, when one of its workers dies, kills all the others and
raises: the whole sweep stopped, a healthy job with it, and the remaining jobs never ran. Here the
workers are a ``multiprocessing`` pool (spawned, so no state is inherited), which replaces a dead
worker and leaves the others alone; each job writes its worker's pid where the launcher watches it.

Each worker loads TensorFlow, Keras and MLflow as it starts (``runner.steps.preload``), and the
sweep tracker starts the first batch's workers before it sets up the parent run (``prestart``):
the seconds of imports then pass while this process opens the store, not after it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
from joblib.externals import cloudpickle  # joblib's own copy: the plugin's dependency, whatever else is installed
from omegaconf import DictConfig

from hydra_plugins.hydra_joblib_launcher._core import execute_job
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher as PluginLauncher
from hydra_plugins.mnistlab_joblib_launcher.config import MnistlabJoblibLauncherConf  # noqa: F401  (registers it)
from mnistlab.app.task import quiet_launcher_plugins
from mnistlab.core import processes
from mnistlab.sweeps.lost import lost_job

log = logging.getLogger(__name__)
POLL_S = 0.2
_started: list[Any] = []  # the pool prestart() started, for the first launch to take


def _preload() -> None:
    """A worker's start: the libraries its jobs train and record with, loaded before the first job
    comes; Ctrl-C is the launcher's meanwhile (it stops the pool). A failure here is left to the
    job that meets it again, which reports it as a run would: a pool's initializer that raised
    would only be started again and again."""
    quiet_launcher_plugins()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from mnistlab.runner.steps import preload

        preload()
    except Exception:
        pass
    finally:
        signal.signal(signal.SIGINT, previous)


def _pool(n_jobs: int) -> Any:
    return multiprocessing.get_context("spawn").Pool(n_jobs, initializer=_preload)


def _run(payload: bytes, pid_file: str) -> bytes:
    """In a worker: say which process runs the job, run it, send its result back."""
    quiet_launcher_plugins()  # as run.py's own process is: a spawned worker starts without it
    Path(pid_file).write_text(str(os.getpid()))
    function, args = cloudpickle.loads(payload)
    return cloudpickle.dumps(function(*args))


class JoblibLauncher(PluginLauncher):
    @staticmethod
    def prestart(config: DictConfig) -> None:
        """The worker processes of the first batch, started now (the sweep tracker calls this before
        it sets up the parent run): each loads TensorFlow meanwhile. As many as n_jobs asks for
        (launch() would start fewer for a batch of fewer jobs, unknown yet: the others stay idle)."""
        if not _started:
            _started.append(_pool(_workers(int(config.hydra.launcher.get("n_jobs") or -1), jobs=sys.maxsize)))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.task_function is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        n_jobs = _workers(int(self.joblib.get("n_jobs") or -1), len(job_overrides))
        log.info(
            "joblib launcher: %d jobs on %d worker processes, sweep output dir: %s",
            len(job_overrides),
            n_jobs,
            sweep_dir,
        )
        numbers = range(initial_job_idx, initial_job_idx + len(job_overrides))
        for number, overrides in zip(numbers, job_overrides):
            log.info("\t#%d : %s", number, " ".join(filter_overrides(overrides)))
        singleton_state = Singleton.get_state()
        watch = sweep_dir / ".workers"
        watch.mkdir(exist_ok=True)
        pool = _started.pop() if _started else _pool(n_jobs)
        try:
            pending = {}
            for number, overrides in zip(numbers, job_overrides):
                args = (number, overrides, self.hydra_context, self.config, self.task_function, singleton_state)
                pid_file = watch / f"job-{number}.pid"
                pid_file.unlink(missing_ok=True)
                pending[number] = (
                    overrides,
                    pid_file,
                    pool.apply_async(_run, (cloudpickle.dumps((execute_job, args)), str(pid_file))),
                )
            results = self._collect(pool, pending)
        finally:
            # every result is in (or Ctrl-C, SIGTERM: the workers stop with the sweep); not close():
            # the pool would wait forever for the result of a job whose worker died
            pool.terminate()
            pool.join()
        return [results[number] for number in numbers]

    def _collect(self, pool: Any, pending: dict) -> dict[int, JobReturn]:
        """Each job's result as it comes; a job whose worker died is lost (and its worker replaced)."""
        results: dict[int, JobReturn] = {}
        # every worker process seen, by pid: the pool drops a dead one from its (private) list, and with it
        # the exit code that says how it died
        workers: dict[int, Any] = {}
        while pending:
            workers.update({process.pid: process for process in list(pool._pool)})
            for number, (overrides, pid_file, result) in list(pending.items()):
                if result.ready():
                    results[number] = cloudpickle.loads(result.get())
                    del pending[number]
                    continue
                pid = int(pid_file.read_text()) if pid_file.is_file() and pid_file.read_text() else None
                if pid is not None and not processes.alive(pid):
                    time.sleep(POLL_S)  # the result may have arrived just before the worker went
                    if result.ready():
                        continue
                    reason = _died(workers.get(pid))
                    results[number] = lost_job(
                        self.config.hydra.sweep.dir, number, overrides, reason, self.config.hydra.job.name
                    )
                    del pending[number]
            time.sleep(POLL_S)
        return results


def _workers(n_jobs: int, jobs: int) -> int:
    """joblib's count: -1 is every core, -2 all but one; never more workers than jobs."""
    cores = os.cpu_count() or 1
    wanted = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
    return max(1, min(wanted, jobs))


def _died(process: Any) -> str:
    code = getattr(process, "exitcode", None)
    if code is not None and code < 0:
        return f"its worker process was killed (signal {-code})"
    return f"its worker process ended (exit code {code})" if code is not None else "its worker process died"
