"""The MLflow UI for real: after a small sweep, ``mlflow server`` on a free local port serves the sweep's
children and their per-epoch curves through its REST API, and the pages mnistlab links to, rendered
by headless Chromium, show what they should: the runs listed (Training runs, not MLflow 3's GenAI
pages), the sweep's charts drawn, a run's description and datasets, a logged model's test metrics
with the dataset they came from. Screenshots are kept as test artifacts (and shown in the docs)."""

from __future__ import annotations

import html
import os
import re
import urllib.parse
from dataclasses import dataclass

import pytest

from conftest import ROOT, SWEEP_EPOCHS, mlflow_client, run_cli
from mnistlab.config.groups import GROUP_TAG
from mnistlab.tracking import links
from servers import chromium, chromium_executable, mlflow_server

CURVES = ("loss", "accuracy", "val_loss", "val_accuracy")
ARTIFACTS = ROOT / "outputs" / "test-artifacts"  # git-ignored; kept after the run for a look


@dataclass(frozen=True)
class SweepInStore:
    store: str
    experiment_id: str
    sweep_id: str
    parent: object  # mlflow.entities.Run
    children: list  # [mlflow.entities.Run], in job order


@pytest.fixture(scope="module")
def sweep(small_sweep) -> SweepInStore:
    """The sweep as the store has it, read with MlflowClient (what the server must serve)."""
    sweep_store = small_sweep.store
    client = mlflow_client(sweep_store)
    experiment = client.get_experiment_by_name("mnistlab")
    assert experiment is not None
    parents = client.search_runs([experiment.experiment_id], "tags.`mnistlab.role` = 'sweep'")
    assert len(parents) == 1, [r.info.run_name for r in parents]
    parent = parents[0]
    sweep_id = parent.data.tags["sweep_id"]
    children = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    children.sort(key=lambda r: int(r.data.tags["sweep.job"]))
    assert [r.data.tags["sweep.job"] for r in children] == ["0", "1"]
    assert all(r.data.tags["sweep_id"] == sweep_id for r in children)
    return SweepInStore(sweep_store, experiment.experiment_id, sweep_id, parent, children)


@pytest.fixture(scope="module")
def server(sweep, tmp_path_factory):
    """``mlflow server`` against the sweep's store; stopped by its pid when the module is done."""
    work = tmp_path_factory.mktemp("ui_server")
    with mlflow_server(sweep.store, artifacts_dir=work / "artifacts", log_path=work / "server.log") as running:
        yield running


def test_server_serves_the_sweep_children(sweep, server):
    found = server.post_json(
        "/api/2.0/mlflow/runs/search",
        {
            "experiment_ids": [sweep.experiment_id],
            "filter": f"tags.sweep_id = '{sweep.sweep_id}' and "
            f"tags.`mlflow.parentRunId` = '{sweep.parent.info.run_id}'",
            "max_results": 100,
        },
    )
    runs = {r["info"]["run_id"]: r for r in found.get("runs", [])}
    assert set(runs) == {c.info.run_id for c in sweep.children}
    for child in sweep.children:
        served = runs[child.info.run_id]
        tags = {t["key"]: t["value"] for t in served["data"].get("tags", [])}
        assert served["info"]["run_name"] == child.info.run_name
        assert served["info"]["status"] == "FINISHED"
        assert tags["sweep.job"] == child.data.tags["sweep.job"]
        assert {m["key"] for m in served["data"]["metrics"]} >= {*CURVES, "test_accuracy", "test_loss"}

    # the whole sweep by its id alone: the parent and its children, nothing else
    everything = server.post_json(
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": [sweep.experiment_id], "filter": f"tags.sweep_id = '{sweep.sweep_id}'"},
    )
    assert {r["info"]["run_id"] for r in everything["runs"]} == {
        sweep.parent.info.run_id,
        *(c.info.run_id for c in sweep.children),
    }


@pytest.mark.parametrize("curve", CURVES)
def test_server_serves_each_child_epoch_history(sweep, server, curve):
    client = mlflow_client(sweep.store)
    for child in sweep.children:
        served = server.get_json("/api/2.0/mlflow/metrics/get-history", run_id=child.info.run_id, metric_key=curve)
        points = sorted((m["step"], m["value"]) for m in served["metrics"])
        assert [step for step, _ in points] == list(range(SWEEP_EPOCHS)), (child.info.run_name, points)
        stored = sorted((m.step, m.value) for m in client.get_metric_history(child.info.run_id, curve))
        assert points == stored, child.info.run_name


def need_chromium() -> None:
    if chromium_executable() is None:
        message = "no chromium on PATH (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def model_run(sweep):
    """A run with a logged model, in an experiment of its own beside the sweep's (the sweep's
    experiment stays as other tests expect it)."""
    proc = run_cli(
        "model=mlp12", "data.limit=500", "trainer.epochs=1", "tracking.experiment=ui-model", store=sweep.store
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = mlflow_client(sweep.store)
    experiment = client.get_experiment_by_name("ui-model")
    (run,) = client.search_runs([experiment.experiment_id])
    return run


def render(server, page: str, name: str, *, drawn: str | None = None) -> str:
    """The page at ``server``/``page`` as Chromium renders it; DOM and screenshot kept in ARTIFACTS.

    With ``drawn``, a page whose DOM lacks that text is rendered once more with three times the
    virtual-time budget: the chart view loads plotly as a lazy chunk, which a loaded CI machine
    had not drawn within 20 s (37 chart cards, no plot)."""
    need_chromium()
    screenshot = ARTIFACTS / f"{name}.png"
    for budget_ms in (20_000, 60_000):
        dom = chromium(f"{server.url}/{page}", screenshot=screenshot, dump_dom=True, budget_ms=budget_ms)
        if drawn is None or drawn in dom:
            break
    (ARTIFACTS / f"{name}.html").write_text(dom)
    print(f"{name}: {server.url}/{page}\nscreenshot: {screenshot}")
    return dom


def test_the_printed_link_opens_the_run_on_training_runs_with_its_description_and_datasets(sweep, server):
    child = sweep.children[0]
    summary_link = links.where_to_look(sweep.store, sweep.experiment_id, child.info.run_id)[1]
    page = summary_link.split("127.0.0.1:5000/", 1)[1]  # what the summary prints, on this server
    dom = render(server, page, "mlflow_ui_run")
    text = html.unescape(dom)
    assert child.data.tags["mlflow.note.content"] in text  # the run in a sentence
    assert child.info.run_name in text and "About this run" in text  # the run's own page, not GenAI's overview
    training = next(i.dataset for i in child.inputs.dataset_inputs if i.tags[0].value == "training")
    assert f"{training.name} ({training.digest})" in text  # the first of its datasets; "+2" folds the others


def test_the_sweep_summary_link_opens_its_runs_grouped_by_configuration(small_sweep, sweep, server):
    """The link the sweep's summary prints: a view the sweep wrote as an experiment tag (MLflow's
    shared views), its children grouped by their `mnistlab.group` tag, in the chart view."""
    printed = re.findall(r"then http://127\.0\.0\.1:5000/(\S+)", small_sweep.proc.stdout)[-1]  # after the jobs
    key = urllib.parse.parse_qs(printed.split("?", 1)[1])["viewStateShareKey"][0]
    assert key == f"mnistlab-{sweep.sweep_id}"
    experiment = mlflow_client(sweep.store).get_experiment(sweep.experiment_id)
    assert f"{links.SHARED_VIEW_TAG}{key}" in experiment.tags
    text = html.unescape(render(server, printed, "mlflow_ui_sweep_grouped", drawn="main-svg"))
    assert "You're viewing a shared view" in text  # the UI found and applied the view
    assert f"Group by: {GROUP_TAG}" in text
    for child in sweep.children:  # each configuration is a group, its run listed under it
        assert f"Group: {child.data.tags[GROUP_TAG]}" in text and child.info.run_name in text
    assert sweep.parent.info.run_name not in text  # the parent is no configuration
    charts = int(re.search(r"Model metrics</div><div[^>]*>\((\d+)\)", text).group(1))  # a chart per metric
    assert charts >= len(CURVES) + 3
    assert text.count("main-svg") >= 4, "no chart drawn"  # plotly's drawn charts (the first rows are drawn)


def test_the_logged_model_page_shows_its_test_metrics_and_their_dataset(model_run, server):
    (output,) = model_run.outputs.model_outputs
    page = f"#/experiments/{model_run.info.experiment_id}/models/{output.model_id}?workflowType=machine_learning"
    text = html.unescape(render(server, page, "mlflow_ui_model"))
    assert "test_accuracy" in text and "mnist-test" in text
    assert f"{model_run.data.metrics['test_accuracy']:.4g}"[:5] in text


def test_runs_page_lists_the_children(sweep, server):
    need_chromium()
    # The runs table nests child runs under their parent, collapsed, unless it is sorted by something
    # other than the start time (MLflow 3.17: nestChildren = sort is start_time, or no sort and no
    # filter); so: sorted by run name, and filtered to this sweep.
    query = urllib.parse.urlencode(
        {
            "searchFilter": f"tags.sweep_id = '{sweep.sweep_id}'",
            "orderByKey": "tags.`mlflow.runName`",
            "orderByAsc": "true",
        },
        quote_via=urllib.parse.quote,
    )
    url = f"{server.url}/#/experiments/{sweep.experiment_id}/runs?{query}"
    screenshot = ARTIFACTS / "mlflow_ui_runs.png"
    dom = chromium(url, screenshot=screenshot, dump_dom=True, budget_ms=15_000)
    (ARTIFACTS / "mlflow_ui_runs.html").write_text(dom)
    print(f"MLflow runs page: {url}\nscreenshot: {screenshot}")

    missing = [
        c.info.run_name
        for c in sweep.children
        if html.escape(c.info.run_name, quote=False) not in dom
        or f'href="#/experiments/{sweep.experiment_id}/runs/{c.info.run_id}"' not in dom
    ]
    assert not missing, f"not rendered: {missing}; see {screenshot} and {ARTIFACTS / 'mlflow_ui_runs.html'}"
