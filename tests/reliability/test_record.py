"""What a run records to be repeated, and what it must never record.

One real run from a throwaway clone of this repository with an uncommitted change, and fake
secrets in the environment (one of them pulled into the config by the user, one in a tracking
URI's password): the run records the commit, the dirty flag and the diff, the installed packages,
host and CPU, and the exact command line; no secret reaches a param, a tag or an artifact.
Also: models are loaded with Keras's safe mode, which refuses a model that carries Python code.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, mlflow_client, only_run, run_cli

TOKEN = "tok_FAKE_d41d8cd98f00b204e9800998ecf8427e"
PASSWORD = "hunter2-FAKE-pw"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def artifact_texts(store: str, run_id: str, path: str | None = None) -> dict[str, bytes]:
    """Every artifact of a run, downloaded: {path: bytes}."""
    client = mlflow_client(store)
    texts = {}
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            texts.update(artifact_texts(store, run_id, item.path))
        else:
            texts[item.path] = Path(client.download_artifacts(run_id, item.path)).read_bytes()
    return texts


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(store, run, clone) of one run from a dirty clone, with fake secrets around it."""
    tmp = tmp_path_factory.mktemp("record")
    clone = tmp / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    model_file = clone / "conf" / "model" / "mlp12.yaml"
    model_file.write_text(model_file.read_text() + "# an uncommitted change\n")
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    overrides = (
        "model=mlp12",
        "data.limit=300",
        "trainer.epochs=1",
        "tracking.log_model=false",
        "+tracking.tags.ticket=${oc.env:MNISTLAB_FAKE_API_TOKEN}",
        "tracking.run_name=recorded",
    )
    env = {
        "MNISTLAB_FAKE_API_TOKEN": TOKEN,
        "AWS_SECRET_ACCESS_KEY": TOKEN[::-1],
        "DATABASE_URL": f"postgresql://me:{PASSWORD}@db.example/mnist",
        "MNISTLAB_ROOT": str(tmp),
    }
    proc = run_cli(*overrides, store=store, run_py=clone / "run.py", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return store, only_run(store), clone, overrides


def test_run_records_what_is_needed_to_repeat_it(recorded):
    store, run, clone, _overrides = recorded
    tags = run.data.tags
    assert tags["git.commit"] == git(clone, "rev-parse", "HEAD") and tags["git.dirty"] == "true"
    assert tags["command"].startswith("run.py model=mlp12 data.limit=300 ")
    assert tags["command"].endswith("tracking.run_name=recorded")  # as typed, quoting included
    cpu = next(
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    )
    assert tags["host.cpu"] == cpu and tags["hostname"] and int(tags["host.cores"]) >= 1
    artifacts = artifact_texts(store, run.info.run_id)
    diff = artifacts["environment/git_diff.patch"].decode()
    assert "conf/model/mlp12.yaml" in diff and "+# an uncommitted change" in diff
    packages = artifacts["environment/requirements.txt"].decode().splitlines()
    import keras
    import mlflow

    assert f"keras=={keras.__version__}" in packages and f"mlflow=={mlflow.__version__}" in packages
    assert any(line.startswith("mnistlab==") for line in packages)


def test_a_clean_checkout_records_no_diff(tmp_path):
    from mnistlab.tracking.provenance import environment_tags

    clone = tmp_path / "clean"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    tags = environment_tags(str(clone), str(tmp_path))
    assert tags["git.dirty"] == "false" and tags["git.commit"] == git(clone, "rev-parse", "HEAD")


@pytest.mark.fast
def test_the_package_list_follows_an_install_between_two_runs_of_one_process(tmp_path, monkeypatch):
    # a reused worker reads the list once; a distribution installed (or removed) on sys.path in
    # between changes its folder, and the next run's list has it
    from mnistlab.tracking.provenance import installed_packages

    def install(name: str, version: str) -> Path:
        info = tmp_path / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        return info

    monkeypatch.syspath_prepend(str(tmp_path))
    install("mnistlab-probe-a", "1.0")
    first = installed_packages()
    assert "mnistlab-probe-a==1.0" in first.splitlines() and installed_packages() is first  # read once
    install("mnistlab-probe-b", "2.0")
    assert "mnistlab-probe-b==2.0" in installed_packages().splitlines()
    for path in tmp_path.glob("mnistlab-probe-a-*/*"):
        path.unlink()
    (tmp_path / "mnistlab-probe-a-1.0.dist-info").rmdir()
    assert "mnistlab-probe-a==1.0" not in installed_packages().splitlines()


def test_no_secret_from_the_environment_reaches_mlflow(recorded):
    store, run, _, _ = recorded
    secrets = (TOKEN, TOKEN[::-1], PASSWORD)
    recorded_text = [*run.data.params.keys(), *run.data.params.values(), *run.data.tags.keys(), *run.data.tags.values()]
    for secret in secrets:
        assert not [text for text in recorded_text if secret in text], secret
    artifacts = artifact_texts(store, run.info.run_id)
    expected = {"config.yaml", "hydra/config.yaml", "hydra/overrides.yaml", "environment/requirements.txt"}
    assert expected <= set(artifacts)
    for path, content in artifacts.items():
        for secret in secrets:
            assert secret.encode() not in content, (path, secret)
    # the user's interpolation did resolve: it is masked, not dropped
    assert run.data.tags["ticket"] == "***" and run.data.params["tracking.tags.ticket"] == "***"


@pytest.mark.fast
def test_redaction_covers_url_passwords_and_secret_variables(monkeypatch):
    from mnistlab.core.redaction import redact

    monkeypatch.setenv("MY_SERVICE_TOKEN", "s3cr3t-value")
    monkeypatch.setenv("EPOCHS", "123456")  # not secret-looking: left alone
    text = "uri=http://alice:pa55word@host:5000 token=s3cr3t-value epochs=123456"
    assert redact(text) == "uri=http://alice:***@host:5000 token=*** epochs=123456"


@pytest.mark.fast
def test_the_ray_launcher_printing_the_jobs_environment_is_redacted(monkeypatch, caplog):
    """hydra-ray-launcher logs every ray.init argument, the jobs' environment variables included."""
    import logging

    from mnistlab.app.task import quiet_launcher_plugins

    monkeypatch.setenv("MY_SERVICE_TOKEN", "s3cr3t-value")
    quiet_launcher_plugins()
    init_cfg = {
        "address": "10.0.0.5:6379",
        "runtime_env": {
            "env_vars": {
                "MY_SERVICE_TOKEN": "s3cr3t-value",
                "MLFLOW_TRACKING_URI": "postgresql://alice:pa55word@db/mlflow",
            }
        },
    }
    with caplog.at_level(logging.INFO):  # as the plugin logs it: an f-string
        logging.getLogger("hydra_plugins.hydra_ray_launcher._launcher_util").info(
            f"Initializing ray with config: {init_cfg}"
        )
    assert caplog.messages == [
        "Initializing ray with config: {'address': '10.0.0.5:6379', 'runtime_env': {'env_vars': "
        "{'MY_SERVICE_TOKEN': '***', 'MLFLOW_TRACKING_URI': 'postgresql://alice:***@db/mlflow'}}}"
    ]


def test_models_load_in_keras_safe_mode(tmp_path):
    """A logged model that carries Python code (a Lambda layer) is refused, with one clear message."""
    import keras
    import mlflow
    import mlflow.keras

    from mnistlab.core.errors import TrackingError
    from mnistlab.tracking.models import load_keras_model

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(store)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Dense(2)])
    with mlflow.start_run() as run:
        mlflow.keras.log_model(model, name="model", pip_requirements=["keras"])
    with pytest.raises(TrackingError, match="safe mode refuses"):
        load_keras_model(f"runs:/{run.info.run_id}/model")
    safe = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with mlflow.start_run() as run:
        mlflow.keras.log_model(safe, name="model", pip_requirements=["keras"])
    assert load_keras_model(f"runs:/{run.info.run_id}/model").count_params() == 10
