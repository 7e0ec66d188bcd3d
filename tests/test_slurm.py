"""hydra/launcher=slurm end to end, without a cluster: the fake ``sbatch``/``srun``/``sacct``/``scancel``
in tests/fake_slurm/ come first on PATH and run each job on this machine, so that ``python run.py -m
...`` goes through the real launcher (hydra-submitit-launcher, submitit) as on a cluster. Then the
store, submitit's folder and the fake's own record (what was submitted, which tasks ran, when) are
read back: a sweep is one job array that never runs more than array_parallelism tasks at once, a
search launches its trials as SLURM jobs, and failures are reported as without SLURM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import ROOT, RUN_PY, cli_env, error_lines, kill_if_running, mlflow_client, run_cli

FAKE_SLURM = Path(__file__).resolve().parent / "fake_slurm"
# small and quick: 300 images, 1 epoch; the jobs' cost is mostly Python, TensorFlow and MLflow starting
QUICK = ("data.limit=300", "trainer.epochs=1", "trainer.verbose=0", "tracking.log_model=false")


@dataclass(frozen=True)
class FakeJob:
    """One sbatch submission as the fake recorded it (tests/fake_slurm/fake_slurm_lib.sh)."""

    id: int
    options: dict[str, str]  # the sbatch options that won (#SBATCH lines, command line)
    tasks: list[str]  # array indices, or ["-"] for a job that is not an array
    states: dict[str, str]  # index -> PENDING, RUNNING, COMPLETED, FAILED, CANCELLED
    spans: dict[str, tuple[float, float]]  # index -> (start, end), for the tasks that ran

    @property
    def is_array(self) -> bool:
        return self.tasks != ["-"]

    def task_id(self, index: str) -> str:
        """The id submitit and sacct use: <id>_<index> in an array, <id> otherwise."""
        return f"{self.id}_{index}" if self.is_array else str(self.id)


def fake_jobs(state: Path) -> list[FakeJob]:
    """Every job the fake sbatch was given, in submission order."""
    jobs: list[FakeJob] = []
    if not (state / "jobs").is_dir():  # sbatch never accepted a job
        return jobs
    for folder in sorted((state / "jobs").iterdir(), key=lambda p: int(p.name)):
        options = dict(line.split("=", 1) for line in (folder / "options").read_text().splitlines())
        tasks = (folder / "tasks").read_text().split()
        spans = {
            t: (float((folder / f"task-{t}.start").read_text()), float((folder / f"task-{t}.end").read_text()))
            for t in tasks
            if (folder / f"task-{t}.end").is_file()
        }
        states = {t: (folder / f"task-{t}.state").read_text().strip() for t in tasks}
        jobs.append(FakeJob(int(folder.name), options, tasks, states, spans))
    return jobs


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) spans that overlap at one moment."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])  # an end before a start
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


@pytest.fixture
def slurm(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment a test's ``python run.py`` gets for "SLURM": the fakes first on PATH, their
    record in tmp. Whatever a failed test left pending or running is cancelled (by process group)."""
    env = {
        "PATH": f"{FAKE_SLURM}{os.pathsep}{os.environ['PATH']}",
        "FAKE_SLURM_DIR": str(tmp_path / "slurm"),
        "FAKE_SLURM_KILL_WAIT": "1",
    }
    yield env
    for job in fake_jobs(tmp_path / "slurm"):
        if {"PENDING", "RUNNING"} & set(job.states.values()):
            subprocess.run([str(FAKE_SLURM / "scancel"), str(job.id)], env={**os.environ, **env}, check=False)


def sweep_runs(store: str) -> tuple:
    """(parent, children in job order) of the only sweep in ``store``."""
    client = mlflow_client(store)
    runs = client.search_runs([client.get_experiment_by_name("mnistlab").experiment_id])
    parents = [r for r in runs if r.data.tags.get("mnistlab.role") == "sweep"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    children = sorted((r for r in runs if r is not parents[0]), key=lambda r: int(r.data.tags["sweep.job"]))
    return parents[0], children


def job_logs(sweep_dir: Path, task_id: str) -> tuple[str, str]:
    """(stdout, stderr) of one SLURM job, where submitit has SLURM write them."""
    folder = sweep_dir / ".submitit" / task_id
    return (folder / f"{task_id}_0_log.out").read_text(), (folder / f"{task_id}_0_log.err").read_text()


def test_a_sweep_is_one_job_array_and_a_job_failing_on_its_node_is_reported(tmp_path, mnist_dir, slurm, compose_cfg):
    """Three jobs, at most two at once. The first one's optimizer.lr=-1 is refused on the "compute
    node" only (the sweep's shared config is valid): its run is FAILED with the reason, as without
    SLURM, and the two others train. (One array serves both checks: each job costs ~15 s here.)"""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_cli(
        "-m",
        "hydra/launcher=slurm",
        "model=mlp12",
        *QUICK,
        "optimizer.lr=-1,0.01,0.02",
        "hydra.launcher.array_parallelism=2",
        "hydra.launcher.partition=debug",
        "hydra.launcher.timeout_min=10",
        store=store,
        env={**slurm, "FAKE_SLURM_PARTITIONS": "debug,gpu"},
    )  # a cluster with these two
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = error_lines(proc)[-1]
    assert last.startswith("error: sweep ") and "1 of 3 jobs did not finish (job 0 FAILED" in last

    # MLflow: the usual sweep, its parent and a child per job, the failed one with its reason
    parent, children = sweep_runs(store)
    assert parent.data.tags["sweep.launcher"] == "SlurmLauncher"
    assert parent.info.status == "FAILED" and parent.data.tags["failure_reason"] == "1 of 3 jobs did not finish"
    assert [c.info.status for c in children] == ["FAILED", "FINISHED", "FINISHED"]
    assert "optimizer.lr=-1.0: must be > 0" in children[0].data.tags["failure_reason"]
    assert children[0].info.run_id in proc.stdout and "must be > 0" in proc.stdout  # the table says why
    assert [c.data.params["optimizer.lr"] for c in children[1:]] == ["0.01", "0.02"]
    client = mlflow_client(store)
    for child in children[1:]:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert 0 < child.data.metrics["test_accuracy"] <= 1 and child.data.metrics["test_loss"] > 0
        assert [m.step for m in client.get_metric_history(child.info.run_id, "val_accuracy")] == [0]
        # the submitter's environment reached the jobs: the data of MNIST_DIR, outputs under MNISTLAB_ROOT
        assert Path(child.data.params["data.dir"]) == mnist_dir
        assert Path(child.data.tags["hydra.output_dir"]).is_relative_to(tmp_path)
    assert parent.data.metrics["runs_finished"] == 2

    # SLURM: one submission, an array of the three jobs, with the config's resources; to SLURM every
    # job ended well (the failure is the run's, recorded in MLflow)
    [job] = fake_jobs(tmp_path / "slurm")
    launcher = compose_cfg(["hydra/launcher=slurm"]).hydra.launcher
    assert job.tasks == ["0", "1", "2"] and job.options["array"] == "0-2%2"
    assert (job.options["partition"], job.options["time"]) == ("debug", "10")
    assert job.options["cpus-per-task"] == str(launcher.cpus_per_task)
    assert job.options["mem"] == f"{launcher.mem_gb}GB" and job.options["export"] == "ALL"
    assert job.states == {"0": "COMPLETED", "1": "COMPLETED", "2": "COMPLETED"}
    assert most_at_once(list(job.spans.values())) == 2  # two together, never three

    # submitit's folder in the sweep's: each job's log, with what the job printed: the run's summary,
    # or the failed job's error line (on a cluster it is there, not in the sweep's terminal)
    sweep_dir = Path(parent.data.tags["sweep.dir"])
    for index, child in zip(job.tasks, children, strict=True):  # array index = the sweep's job number
        stdout, stderr = job_logs(sweep_dir, job.task_id(index))
        assert f"Starting with JobEnvironment(job_id={job.task_id(index)}," in stdout  # submitit's first line
        assert (sweep_dir / ".submitit" / job.task_id(index) / f"{job.task_id(index)}_0_result.pkl").is_file()
        if child.info.status == "FINISHED":
            assert f"MLflow run  {child.info.run_id}" in stdout
        else:
            assert "error: job 0 (" in stderr and "optimizer.lr=-1.0: must be > 0" in stderr

    # continued (mnistlab continue): only job 0 is submitted again, the finished jobs keep their runs
    again = subprocess.run(
        [str(Path(sys.executable).parent / "mnistlab"), "continue"],
        capture_output=True,
        text=True,
        env=cli_env(store, {**slurm, "FAKE_SLURM_PARTITIONS": "debug,gpu"}),
        timeout=600,
    )
    assert again.returncode == 1, again.stderr[-3000:]  # job 0's lr is still refused
    first, second = fake_jobs(tmp_path / "slurm")
    assert first.id == job.id and len(second.tasks) == 1  # one job (submitit submits an array of one as a plain job)
    client = mlflow_client(store)
    runs = client.search_runs([parent.info.experiment_id], f"tags.sweep_id = '{parent.data.tags['sweep_id']}'")
    assert len([r for r in runs if r.data.tags.get("mnistlab.role") == "sweep"]) == 1
    current = {
        r.data.tags["sweep.job"]: r
        for r in runs
        if "sweep.job" in r.data.tags and "sweep.superseded" not in r.data.tags
    }
    assert [current[n].info.run_id for n in ("1", "2")] == [c.info.run_id for c in children[1:]]
    assert current["0"].info.status == "FAILED"  # refused again on its node (its config fails before a run)


def _wait_for(what: str, check, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"the sweep ended (exit {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(1)


def test_a_job_slurm_kills_is_a_failed_job_and_ctrl_c_cancels_the_jobs_left(tmp_path, mnist_dir, slurm):
    """Two long jobs. Job 0 is SIGKILLed on its "node" (as the memory limit or a node failure would):
    no result comes back, its run is FAILED with SLURM's state and the log, and the sweep goes on
    waiting for job 1 (the plugin alone raised at once). Then Ctrl-C on the sweep process alone (on
    a cluster the jobs are not in the terminal's process group): job 1 is cancelled on "SLURM"."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(RUN_PY),
            "-m",
            "hydra/launcher=slurm",
            "model=mlp12",
            "seed=1,2",
            "data.limit=2000",
            "trainer.epochs=500",
            "trainer.verbose=0",
            "tracking.log_model=false",
        ],
        cwd=ROOT,
        env=cli_env(store, slurm),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:

        def runs() -> dict[str, object]:  # sweep.job -> run, once the sweep has created the store
            if not list((tmp_path / "outputs" / "multiruns").rglob("sweep.json")):
                return {}
            client = mlflow_client(store)
            return {
                r.data.tags["sweep.job"]: r
                for r in client.search_runs(
                    [client.get_experiment_by_name("mnistlab").experiment_id], "tags.`sweep.job` != ''"
                )
            }

        def training(job: str) -> bool:
            run = runs().get(job)
            return bool(run and "val_accuracy" in run.data.metrics)

        _wait_for("both jobs trained an epoch", lambda: training("0") and training("1"), proc)
        [job] = fake_jobs(tmp_path / "slurm")
        subprocess.run(
            [str(FAKE_SLURM / "scancel"), "--signal=KILL", job.task_id("0")], env={**os.environ, **slurm}, check=True
        )
        _wait_for("job 0's run FAILED", lambda: runs()["0"].info.status == "FAILED", proc)
        time.sleep(2)
        assert proc.poll() is None  # still collecting job 1
        assert runs()["1"].info.status == "RUNNING"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=90)
    finally:
        kill_if_running(proc)
    assert proc.returncode == 130, stderr[-3000:]
    assert "error: interrupted" in stderr
    assert "error: job 0 (model=mlp12,seed=1," in stderr and f"SLURM ended job {job.task_id('0')} (FAILED)" in stderr
    lost = runs()["0"]
    reason = lost.data.tags["failure_reason"]
    assert reason.startswith(f"SLURM ended job {job.task_id('0')} (FAILED) before it returned; its log: ")
    assert Path(reason.rsplit(" ", 1)[-1]).is_file() and reason.endswith("_log.err")
    assert runs()["1"].info.status == "KILLED"
    assert f"cancelled SLURM jobs {job.task_id('1')}" in stderr
    states = fake_jobs(tmp_path / "slurm")[0].states
    assert states == {"0": "FAILED", "1": "CANCELLED"}


def test_a_job_sbatch_refuses_stops_the_sweep_in_one_line_and_leaves_no_run(tmp_path, slurm):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_cli(
        "-m",
        "hydra/launcher=slurm",
        "model=mlp12",
        *QUICK,
        "seed=1,2",
        "hydra.launcher.partition=gpus",
        store=store,
        env={**slurm, "FAKE_SLURM_PARTITIONS": "debug,gpu"},
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = error_lines(proc)[-1]
    assert last.startswith("error: ") and "invalid partition specified: gpus" in last
    assert fake_jobs(tmp_path / "slurm") == []
    client = mlflow_client(store)
    assert client.search_runs([client.get_experiment_by_name("mnistlab").experiment_id]) == []  # parent removed


def test_a_hyperparameter_search_launches_its_trials_as_slurm_jobs(tmp_path, mnist_dir, slurm):
    """hydra.sweeper.n_jobs is null: a batch is as many trials as the launcher runs at once
    (array_parallelism), so the two trials are asked together and submitted as one array. Trial 0's
    job is SIGKILLed on its node as it starts (as a preemption or the memory limit would): the trial
    is lost, not failed by its parameters, so they run once more, and the search still reaches 2."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep_dir = tmp_path / "outputs" / "hparams_search" / "tiny_cnn_optuna"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(RUN_PY),
            "-m",
            "hparams_search=tiny_cnn_optuna",
            "hydra/launcher=slurm",
            "hydra.sweeper.n_trials=2",
            *QUICK,
        ],
        cwd=ROOT,
        env=cli_env(store, slurm),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:

        def started(task: str) -> bool:  # submitit's first line: the job step runs on its "node"
            log = next(iter(sweep_dir.glob(f".submitit/*_{task}/*_{task}_0_log.out")), None)
            return log is not None and "Starting with JobEnvironment" in log.read_text()

        _wait_for("trial 0's job started", lambda: started("0"), proc)
        subprocess.run(
            [str(FAKE_SLURM / "scancel"), "--signal=KILL", fake_jobs(tmp_path / "slurm")[0].task_id("0")],
            env={**os.environ, **slurm},
            check=True,
        )
        _stdout, stderr = proc.communicate(timeout=300)
    finally:
        kill_if_running(proc)
    assert proc.returncode == 0, stderr[-3000:]

    trials = optuna.load_study(study_name="tiny_cnn_optuna", storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    jobs = fake_jobs(tmp_path / "slurm")
    lost = trials[0].user_attrs["fail_reason"]
    assert lost.startswith(f"SLURM ended job {jobs[0].task_id('0')} (FAILED) before it returned; its log: ")
    assert trials[2].user_attrs["retry_of"] == 0 and trials[2].params == trials[0].params
    parent, children = sweep_runs(store)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.launcher"] == "SlurmLauncher"
    by_trial = {int(c.data.tags["optuna.trial"]): c for c in children}
    assert sorted(by_trial) == [0, 1, 2]
    assert by_trial[0].info.status == "FAILED" and by_trial[0].data.tags["optuna.state"] == "FAIL"
    assert by_trial[0].data.tags["failure_reason"] == lost  # it never got to start its run: recorded for it
    for number in (1, 2):
        run = by_trial[number]
        assert run.info.status == "FINISHED" and run.data.tags["optuna.state"] == "COMPLETE"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert trials[number].value == pytest.approx(run.data.metrics["val_accuracy"])

    # two submissions: the first batch as one array (trial 0 lost), then the retry alone (a plain job)
    assert [job.states for job in jobs] == [{"0": "FAILED", "1": "COMPLETED"}, {"-": "COMPLETED"}]
    assert jobs[0].is_array and not jobs[1].is_array
    for job, index, number in ((jobs[0], "1", 1), (jobs[1], "-", 2)):  # the trial's run, in its own folder
        out, _ = job_logs(sweep_dir, job.task_id(index))
        assert f"MLflow run  {by_trial[number].info.run_id}" in out
        assert (sweep_dir / f"trial-{number:04d}" / "run.log").is_file()
