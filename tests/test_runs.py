"""End to end: ``python run.py ...`` in a subprocess on the real MNIST files, then the MLflow store
is opened and what is really there is checked (runs, params, metric histories, artifacts, a model
that reloads and predicts). Small ``data.limit`` keeps each run to seconds."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, RUN_PY, error_lines, mlflow_client, only_run, run_cli
from test_config import PARAMS

QUICK = ("data.limit=1000", "trainer.epochs=2", "trainer.batch_size=64")
CURVES = ("loss", "accuracy", "val_loss", "val_accuracy")


@pytest.fixture(scope="module")
def test_images(mnist_dir):
    from mnistlab.data import load_mnist, prepare

    data = prepare(load_mnist(mnist_dir), val_split=0.1, limit=None, encoding="integer")
    return data.x_test, data.labels_test


def artifact_paths(client, run_id: str, path: str = "") -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


# every model once; every optimizer and both losses more than once
@pytest.mark.parametrize(
    "model,optimizer,loss,extra",
    [
        ("dense", "adam", "crossentropy", ["+tracking.tags.team=vision"]),
        ("cnn", "sgd", "mse", []),
        ("tiny_cnn", "rmsprop", "mse", ["tracking.run_name=tiny-try"]),
        ("dense512", "rmsprop", "crossentropy", []),
        ("cnn32", "adam", "mse", []),
        ("mlp12", "sgd", "crossentropy", ["optimizer.momentum=0.9"]),
    ],
)
def test_run_logs_everything_to_mlflow(store, test_images, model, optimizer, loss, extra):
    proc = run_cli(f"model={model}", f"optimizer={optimizer}", f"loss={loss}", *QUICK, *extra, store=store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run(store)
    run_id, client = run.info.run_id, mlflow_client(store)
    assert run.info.status == "FINISHED"

    # named after the overrides (or tracking.run_name), printed in the summary
    if "tracking.run_name=tiny-try" in extra:
        assert run.info.run_name == "tiny-try"
    else:
        assert f"model={model}" in run.info.run_name and f"optimizer={optimizer}" in run.info.run_name
    assert run_id in proc.stdout and f"mlflow ui --backend-store-uri {store}" in proc.stdout

    # params: the whole resolved config, flattened, plus the parameter count
    params = run.data.params
    assert (params["model.name"], params["optimizer.name"], params["loss.name"]) == (model, optimizer, loss)
    assert params["trainer.epochs"] == "2" and params["data.limit"] == "1000" and "optimizer.lr" in params
    assert params["model.layers.0.type"] in ("Flatten", "Conv2D")
    assert int(params["num_params"]) == PARAMS[model] == run.data.metrics["num_params"]
    if "optimizer.momentum=0.9" in extra:
        assert params["optimizer.momentum"] == "0.9"

    # one point per epoch per curve, at steps 0 and 1 (a real curve, not all at step 0)
    for name in CURVES:
        history = client.get_metric_history(run_id, name)
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [0, 1], name
        assert all(math.isfinite(m.value) for m in history)
        assert run.data.metrics[name] == max(history, key=lambda m: m.step).value
    metrics = run.data.metrics
    for name in ("test_loss", "test_accuracy", "train_time_s", "time_per_epoch_s", "wall_time_s"):
        assert name in metrics and metrics[name] >= 0
    assert 0.1 < metrics["test_accuracy"] <= 1.0
    # where the time went, phase by phase: they add up to the run's wall time (and the last writes)
    phases = ("data", "imports", "store", "build", "record", "fit", "test", "log")
    assert all(metrics[f"time_{p}_s"] >= 0 for p in (*phases, "startup"))
    assert metrics["wall_time_s"] <= sum(metrics[f"time_{p}_s"] for p in phases) <= metrics["wall_time_s"] + 10
    assert metrics["time_fit_s"] >= metrics["train_time_s"]

    # artifacts
    paths = artifact_paths(client, run_id)
    assert {
        "config.yaml",
        "learning_curves.png",
        "confusion_matrix.png",
        "model_summary.txt",
        "hydra/overrides.yaml",
    } <= paths
    local = Path(client.download_artifacts(run_id, ""))
    assert yaml.safe_load((local / "config.yaml").read_text())["model"]["name"] == model
    summary = (local / "model_summary.txt").read_text()
    assert f"Total params: {PARAMS[model]:,}" in summary and "Param #" in summary  # the per-layer column too
    for png in ("learning_curves.png", "confusion_matrix.png"):
        assert (local / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # tags for reproducibility
    tags = run.data.tags
    assert tags["git.commit"] and tags["git.dirty"] in ("true", "false", "unknown")
    assert tags["hostname"] and tags["version.tensorflow"] and tags["version.keras"] and tags["version.mlflow"]
    assert Path(tags["hydra.output_dir"]).is_dir()
    if "+tracking.tags.team=vision" in extra:
        assert tags["team"] == "vision"

    # the logged model reloads through pyfunc and predicts the test images with the logged accuracy
    import mlflow.pyfunc

    x_test, labels = test_images
    mlflow.set_tracking_uri(store)
    probabilities = mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(x_test)
    assert probabilities.shape == (10000, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    assert (probabilities.argmax(axis=1) == labels).mean() == pytest.approx(metrics["test_accuracy"], abs=1e-6)

    # the per-image predictions paired tests read: the reloaded model's own answers, image by image
    import pandas as pd
    from scipy import stats

    predictions = pd.read_parquet(local / "predictions" / "test.parquet")
    assert list(predictions.columns) == ["index", "label", "predicted", *(f"prob_{k}" for k in range(10))]
    assert (predictions["index"].to_numpy() == np.arange(10000)).all()
    assert (predictions["label"].to_numpy() == labels).all()
    probs = predictions[[f"prob_{k}" for k in range(10)]].to_numpy()
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs, probabilities, atol=1e-5)
    assert (predictions["predicted"].to_numpy() == probs.argmax(axis=1)).all()
    assert (local / "predictions" / "test.parquet").stat().st_size < 600_000

    # the accuracy's Wilson interval, and each class's precision / recall / F1 from those predictions
    correct = int((predictions["predicted"] == predictions["label"]).sum())
    wilson = stats.binomtest(correct, 10000).proportion_ci(0.95, method="wilson")
    assert (metrics["test_accuracy_ci_low"], metrics["test_accuracy_ci_high"]) == pytest.approx(
        (wilson.low, wilson.high), abs=1e-9
    )
    assert metrics["test_accuracy_ci_low"] < metrics["test_accuracy"] < metrics["test_accuracy_ci_high"]
    per_class = pd.read_csv(local / "per_class.csv")
    assert list(per_class["class"]) == list(range(10)) and per_class["support"].sum() == 10000
    for digit in range(10):
        is_digit, said_digit = predictions["label"] == digit, predictions["predicted"] == digit
        recall = (is_digit & said_digit).sum() / is_digit.sum()
        precision = (is_digit & said_digit).sum() / max(1, said_digit.sum())
        assert per_class.loc[digit, "recall"] == pytest.approx(recall) == metrics[f"test_recall_{digit}"]
        assert per_class.loc[digit, "precision"] == pytest.approx(precision)
    assert (local / "misclassified.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert metrics["test_images"] == 10000 and metrics["train_images"] == 1000 and metrics["val_images"] == 6000

    # its configuration group: the id comparisons compute from the params of runs logged before the tag
    from mnistlab.config.groups import GROUP_TAG, group_id

    assert tags[GROUP_TAG] == group_id(params) and len(tags[GROUP_TAG]) == 12

    # MLflow 3's conventions: the three splits as the run's datasets, the test scores linked to the
    # test set and to the logged model (its page lists them), a description in a sentence
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs if i.tags}
    assert sorted(inputs) == ["test", "training", "validation"]
    rows = {context: json.loads(d.profile)["features_shape"][0] for context, d in inputs.items()}
    assert rows == {"training": 1000, "validation": 6000, "test": 10000}
    assert {d.name for d in inputs.values()} == {"mnist-training", "mnist-validation", "mnist-test"}
    assert len({d.digest for d in inputs.values()}) == 3
    assert all(json.loads(d.source)["uri"] == params["data.dir"] for d in inputs.values())
    (model_output,) = run.outputs.model_outputs
    linked = {m.key: m for m in client.get_logged_model(model_output.model_id).metrics}
    for name in ("test_accuracy", "test_loss", "test_accuracy_ci_low", "test_recall_0"):
        assert linked[name].value == metrics[name]
        assert (linked[name].dataset_name, linked[name].dataset_digest) == ("mnist-test", inputs["test"].digest)
    described = tags["mlflow.note.content"]
    assert described.startswith(f"{model} ({PARAMS[model]:,} parameters) trained with {optimizer} on 1,000 ")
    assert f"test accuracy {metrics['test_accuracy']:.2%} on 10,000 test images" in described


def test_same_seed_same_result_other_seed_other_result(tmp_path):
    """Same config and seed twice: identical to the last digit. (cnn: dropout and shuffling both seeded.)"""
    results, groups = [], []
    for i, seed in enumerate((7, 7, 8)):
        store = f"sqlite:///{tmp_path / str(i) / 'mlflow.db'}"
        (tmp_path / str(i)).mkdir()
        proc = run_cli(
            "model=cnn", "data.limit=2000", "trainer.epochs=2", f"seed={seed}", "tracking.log_model=false", store=store
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        run = only_run(store)
        history = [m.value for m in mlflow_client(store).get_metric_history(run.info.run_id, "val_loss")]
        results.append((run.data.metrics["test_accuracy"], run.data.metrics["test_loss"], history))
        groups.append(run.data.tags["mnistlab.group"])
    assert results[0] == results[1]
    assert results[0][1] != results[2][1]
    assert groups[0] == groups[1] == groups[2]  # seeds of one configuration: one group


def test_default_store_is_the_project_root_whatever_the_cwd(tmp_path):
    """A checkout run from another directory logs to <checkout>/mlflow.db, mlruns/ and outputs/."""
    project, elsewhere = tmp_path / "checkout", tmp_path / "elsewhere"
    shutil.copytree(ROOT / "conf", project / "conf")
    shutil.copy(RUN_PY, project / "run.py")
    elsewhere.mkdir()
    proc = run_cli(
        "model=mlp12",
        "data.limit=500",
        "trainer.epochs=1",
        "tracking.log_model=false",
        run_py=project / "run.py",
        cwd=elsewhere,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = f"sqlite:///{project / 'mlflow.db'}"
    assert store in proc.stdout
    run = only_run(store)
    assert run.info.artifact_uri.startswith((project / "mlruns").as_uri())
    assert Path(run.data.tags["hydra.output_dir"]).is_relative_to(project / "outputs" / "runs")
    assert list(elsewhere.iterdir()) == []


def test_mlflow_tracking_uri_from_environment_wins(tmp_path):
    store = f"sqlite:///{tmp_path / 'from_env.db'}"
    proc = run_cli(
        "model=mlp12",
        "data.limit=500",
        "trainer.epochs=1",
        "tracking.log_model=false",
        "tracking.experiment=env-test",
        env={"MLFLOW_TRACKING_URI": store, "MNISTLAB_ROOT": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert only_run(store, "env-test").info.status == "FINISHED"
    assert not (tmp_path / "mlflow.db").exists()


def _network_reaches_keras() -> bool:
    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(_network_reaches_keras(), reason="this machine can download MNIST through Keras")
def test_without_data_dir_and_network_the_error_says_what_to_set(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_cli("data.dir=null", store=store, env={"KERAS_HOME": str(tmp_path / "keras")})
    assert proc.returncode == 1
    lines = error_lines(proc)
    assert len(lines) == 1 and "Keras could not download MNIST" in lines[0] and "MNIST_DIR" in lines[0], proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_system_metrics_are_sampled_into_the_run_when_asked(store):
    proc = run_cli(
        "model=cnn",
        "data.limit=3000",
        "trainer.epochs=2",
        "tracking.log_model=false",
        "tracking.system_metrics=true",
        store=store,
        env={"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"},  # MLflow's default, 10 s, outlasts this run
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run(store)
    assert "tracking.system_metrics" not in run.info.run_name  # it cannot change the result
    sampled = {k: v for k, v in run.data.metrics.items() if k.startswith("system/")}
    assert (
        0 < sampled["system/cpu_utilization_percentage"] <= 100 and sampled["system/system_memory_usage_megabytes"] > 0
    )


def test_system_metrics_without_psutil_are_refused_naming_the_extra(compose_cfg, monkeypatch):
    from mnistlab.config import validate
    from mnistlab.core.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psutil" else real(name, *a))
    with pytest.raises(
        ConfigError, match=r"^tracking.system_metrics=True: needs psutil: pip install 'mnistlab\[system-metrics\]'"
    ):
        validate(compose_cfg(["tracking.system_metrics=true"]))


def test_run_that_raises_is_failed_with_its_reason(tmp_path, store):
    """An artifact store that cannot be written (its folder is a file): FAILED, reason tagged, one line."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    mlflow_client(store).create_experiment("broken", artifact_location=(blocker / "artifacts").as_uri())
    proc = run_cli("model=mlp12", "data.limit=500", "trainer.epochs=1", "tracking.experiment=broken", store=store)
    assert proc.returncode == 1
    lines = error_lines(proc)
    assert lines[-1].startswith("error: ") and "traceback in" in lines[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    saved = Path(lines[-1].rsplit("traceback in ", 1)[1].rstrip(")"))
    assert "Traceback" in saved.read_text()
    run = only_run(store, "broken")
    assert run.info.status == "FAILED"
    kind, reason = run.data.tags["failure_reason"].split(": ", 1)
    assert kind == "TrackingError" and "Not a directory" in reason and reason[:100] in lines[-1]


@pytest.mark.slow
def test_default_experiment_reaches_98_5_percent(store):
    """`python run.py` with no overrides: cnn + adam on all of MNIST, the headline promise."""
    proc = run_cli(store=store, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run(store)
    assert (run.data.params["model.name"], run.data.params["optimizer.name"]) == ("cnn", "adam")
    assert run.data.metrics["test_accuracy"] >= 0.985
    assert f"accuracy {run.data.metrics['test_accuracy']:.4f}" in proc.stdout
