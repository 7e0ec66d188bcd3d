"""Where to look at a run or a sweep: the MLflow UI's pages for it (no MLflow import: the CLI prints
these).

MLflow 3's UI opens an experiment on its GenAI pages (traces, an overview) unless the address says
``workflowType=machine_learning``: every link here does, so it lands on the training runs.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode, urlparse

LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` listens by default
TRAINING = {"workflowType": "machine_learning"}


def run_page(experiment_id: str, run_id: str) -> str:
    """The run's own page (overview: params, metrics, datasets, the model), as a URL fragment."""
    return f"#/experiments/{experiment_id}/runs/{run_id}?{urlencode(TRAINING)}"


def runs_page(experiment_id: str, search_filter: str | None = None, charts: bool = False) -> str:
    """The experiment's Training runs table (or its chart view), filtered, ranked by test accuracy,
    as a URL fragment. Ranked by anything but the start time, the UI lists a sweep's children
    themselves instead of folding them under their parent (MLflow 3.17's nestChildren)."""
    query = dict(TRAINING)
    if charts:
        query["compareRunsMode"] = "CHART"
    if search_filter:
        query["searchFilter"] = search_filter
    query.update(orderByKey="metrics.`test_accuracy`", orderByAsc="false")
    return f"#/experiments/{experiment_id}/runs?{urlencode(query, quote_via=quote)}"


def where_to_look(uri: str, experiment_id: str, run_id: str, sweep_filter: str | None = None) -> list[str]:
    """How to see a run (or, with ``sweep_filter``, a sweep's runs in the chart view) in the MLflow
    UI: the page on a server, or the command that serves a local store and then the page."""
    page = runs_page(experiment_id, sweep_filter, charts=True) if sweep_filter else run_page(experiment_id, run_id)
    if urlparse(uri).scheme in ("http", "https"):
        return [f"open {uri.rstrip('/')}/{page}"]
    return [f"mlflow ui --backend-store-uri {uri}", f"then {LOCAL_UI}/{page}"]
