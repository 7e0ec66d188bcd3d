"""Where to look at a run or a sweep: the MLflow UI's pages for it (no MLflow import: the CLI prints
these).

MLflow 3's UI opens an experiment on its GenAI pages (traces, an overview) unless the address says
``workflowType=machine_learning``: every link here does, so it lands on the training runs.
"""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode, urlparse

from mnistlab.config.groups import GROUP_TAG

LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` listens by default
TRAINING = {"workflowType": "machine_learning"}
#: an experiment tag holding a view of the runs page, opened by ``?viewStateShareKey=<key>`` (the
#: UI's own "Share" button writes the same); the UI keeps "Group by" nowhere else a link can reach
SHARED_VIEW_TAG = "mlflow.sharedViewState."


def run_page(experiment_id: str, run_id: str) -> str:
    """The run's own page (overview: params, metrics, datasets, the model), as a URL fragment."""
    return f"#/experiments/{experiment_id}/runs/{run_id}?{urlencode(TRAINING)}"


def grouped_view(search_filter: str) -> str:
    """The runs page's state (MLflow 3.17's ExperimentPageUIState and search facets, as its Share
    button serialises them) for ``search_filter``'s runs grouped by configuration (the
    ``mnistlab.group`` tag, each group's mean with its min-max band in the charts), ranked by test
    accuracy: the value of a ``SHARED_VIEW_TAG`` experiment tag."""
    attributes = ("Source", "Models", "Dataset")  # the UI's default columns
    return json.dumps(
        {
            "searchFilter": search_filter,
            "orderByKey": "metrics.`test_accuracy`",
            "orderByAsc": False,
            "selectedColumns": [f"attributes.`{name}`" for name in attributes],
            "columnOrder": [],
            "columnWidths": {},
            "runsExpanded": {},
            "runsPinned": [],
            "runsHidden": [],
            "runsVisibilityMap": {},
            "runsHiddenMode": "FIRST_10_RUNS",
            "viewMaximized": False,
            "runListHidden": False,
            "isAccordionReordered": False,
            "useGroupedValuesInCharts": True,
            "hideEmptyCharts": True,
            "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": GROUP_TAG}]},
            "groupsExpanded": {},
            "autoRefreshEnabled": True,
            "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
        }
    )


def shared_view_page(experiment_id: str, key: str) -> str:
    """The runs page's chart view in the view an experiment tag ``SHARED_VIEW_TAG + key`` holds."""
    query = {"viewStateShareKey": key, **TRAINING, "compareRunsMode": "CHART"}
    return f"#/experiments/{experiment_id}/runs?{urlencode(query, quote_via=quote)}"


def where_to_look(uri: str, experiment_id: str, run_id: str, shared_view: str | None = None) -> list[str]:
    """How to see a run (or, with ``shared_view``, the key of a sweep's grouped view, its runs) in the
    MLflow UI: the page on a server, or the command that serves a local store and then the page."""
    page = shared_view_page(experiment_id, shared_view) if shared_view else run_page(experiment_id, run_id)
    if urlparse(uri).scheme in ("http", "https"):
        return [f"open {uri.rstrip('/')}/{page}"]
    return [f"mlflow ui --backend-store-uri {uri}", f"then {LOCAL_UI}/{page}"]
