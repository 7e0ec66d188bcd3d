"""A sweep in the store: its parent run's client, the jobs that failed before their run started,
the children left RUNNING, and the comparison logged to the parent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlflow.tracking import MlflowClient

from mnistlab.tracking import links
from mnistlab.tracking.parents import SUPERSEDED_TAG, Sweep
from mnistlab.tracking.runs import end_detached_run, record_failed_run
from mnistlab.tracking.safe import SafeClient

if TYPE_CHECKING:  # the comparison's matplotlib and scipy (1 s) only where a sweep is summarised
    from mnistlab.reports.comparison import Report


def client(sweep: Sweep) -> SafeClient:
    return SafeClient(tracking_uri=sweep.tracking_uri)


def share_grouped_view(mlflow_client: MlflowClient, sweep: Sweep) -> str:
    """The sweep's children grouped by configuration, as a view of the runs page that a link opens
    (an experiment tag, as the UI's Share button writes); returns its key."""
    key = f"mnistlab-{sweep.sweep_id}"
    children = f"{sweep.runs_filter} and tags.`sweep.job` LIKE '%'"  # the parent has no job number
    mlflow_client.set_experiment_tag(sweep.experiment_id, f"{links.SHARED_VIEW_TAG}{key}", links.grouped_view(children))
    return key


def record_failed_job(sweep: Sweep, job: int, run_name: str, reason: str, tags: dict[str, str] | None = None) -> None:
    """A job that failed before its run started still gets a (FAILED) child: the sweep's
    table and the UI then show every job, not only the ones that got far enough. A run left
    RUNNING (its process was killed, e.g. by SLURM) ends FAILED with ``reason``."""
    mlflow_client = client(sweep)
    runs = mlflow_client.search_runs([sweep.experiment_id], f"{sweep.runs_filter} and tags.`sweep.job` = '{job}'")
    for run in runs:
        if run.info.status == "RUNNING":
            end_detached_run(mlflow_client, run.info.run_id, "FAILED", reason)
    if runs:
        return  # the run started and ended with its reason
    record_failed_run(
        mlflow_client,
        sweep.experiment_id,
        run_name,
        {**(tags or {}), **sweep.child_tags(job), "failure_reason": reason},
    )


def end_running_children(sweep: Sweep, status: str, reason: str) -> int:
    """End the children still RUNNING (their process is gone); returns how many children there are."""
    mlflow_client = client(sweep)
    children = [
        run
        for run in mlflow_client.search_runs([sweep.experiment_id], sweep.runs_filter)
        if run.info.run_id != sweep.parent_run_id
    ]
    for run in children:
        if run.info.status == "RUNNING":
            end_detached_run(mlflow_client, run.info.run_id, status, reason)
    return len(children)


def parent_is_active(sweep: Sweep) -> bool:
    try:
        return client(sweep).get_run(sweep.parent_run_id).info.lifecycle_stage == "active"
    except Exception:  # gone, or the store does not answer: nothing to continue
        return False


def log_summary(client: MlflowClient, run_id: str, report: Report) -> None:
    """A comparison's tables, JSON, figure, and its best run and configuration, on a run (a sweep's parent)."""
    texts, figures, metrics, tags = report.summary()
    for path, text in texts.items():
        client.log_text(run_id, text, path)
    for path, figure in figures.items():
        client.log_figure(run_id, figure, path)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def job_runs(sweep: Sweep, job: int) -> list:
    """Job ``job``'s runs in this sweep that a continue has not superseded, the newest first."""
    runs = client(sweep).search_runs(
        [sweep.experiment_id],
        f"{sweep.runs_filter} and tags.`sweep.job` = '{job}'",
        order_by=["attributes.start_time DESC"],
    )
    return [run for run in runs if SUPERSEDED_TAG not in run.data.tags]


def supersede(sweep: Sweep, runs: list, reason: str) -> None:
    """Earlier runs of a job that a continued sweep runs again: kept, tagged, left out of its summary
    (a RUNNING one, whose process is gone, ends FAILED with ``reason``)."""
    mlflow_client = client(sweep)
    for run in runs:
        if run.info.status == "RUNNING":
            end_detached_run(mlflow_client, run.info.run_id, "FAILED", reason)
        mlflow_client.set_tag(run.info.run_id, SUPERSEDED_TAG, "true")


def finished_jobs(sweep: Sweep, numbers: list[int]) -> dict[int, object]:
    """Of ``numbers``, the jobs whose run FINISHED in this sweep (a continue skips them), with that run."""
    runs = client(sweep).search_runs([sweep.experiment_id], f"{sweep.runs_filter} and attributes.status = 'FINISHED'")
    done = {int(run.data.tags["sweep.job"]): run for run in runs if run.data.tags.get("sweep.job", "").isdigit()}
    return {number: done[number] for number in numbers if number in done}
