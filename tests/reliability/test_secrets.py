"""Secrets from the environment reach nothing mnistlab writes: real runs and a real sweep pull two
secrets (one with non-ASCII characters) into tags, the run name, a sweep value and a failure
message, then every text column of mlflow.db, every file under mlruns/ and outputs/ (inside zip
files too) and everything printed is searched for them, in every encoding text can carry them in."""

from __future__ import annotations

import json
import sqlite3
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import error_lines, mlflow_client, run_cli

TOKEN = "tok-4f7e2a9c1b"  # in MY_API_TOKEN
PASSWORD = "pässwörd-çà-42"  # in DB_PASSWORD: non-ASCII, which JSON and YAML escape
SECRETS = {"MY_API_TOKEN": TOKEN, "DB_PASSWORD": PASSWORD}
SMALL = ("model=mlp12", "data.limit=300", "trainer.epochs=1")


def spellings(secret: str) -> set[bytes]:
    """The bytes a file or a column could hold the secret as."""
    forms = {secret, json.dumps(secret)[1:-1], secret.encode("unicode_escape").decode(), quote(secret, safe="")}
    forms.add(secret.encode("unicode_escape").decode().replace("\\xe4", "\\xE4").replace("\\xf6", "\\xF6"))
    return {form.encode() for form in forms} | {secret.encode("utf-8")}


FORBIDDEN = set().union(*(spellings(s) for s in SECRETS.values()))


def leaks(data: bytes) -> set[bytes]:
    return {form for form in FORBIDDEN if form in data}


def scan_files(root: Path) -> dict[str, set[bytes]]:
    found = {}
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        blobs = [path.read_bytes()]
        if zipfile.is_zipfile(path):  # a saved Keras model is a zip of JSON and weights
            with zipfile.ZipFile(path) as archive:
                blobs += [archive.read(name) for name in archive.namelist()]
        hit = set().union(*(leaks(blob) for blob in blobs))
        if hit:
            found[str(path.relative_to(root))] = hit
    return found


def scan_database(db: Path) -> list[tuple[str, str, bytes]]:
    found = []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            columns = [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]
            for column in columns:
                if (table, column) in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
                    continue  # the test itself put a secret in one experiment's location, to fail a run on it
                for (value,) in connection.execute(f'SELECT "{column}" FROM "{table}"'):
                    data = value.encode() if isinstance(value, str) else value if isinstance(value, bytes) else b""
                    found += [(table, column, form) for form in leaks(data)]
    return found


@pytest.fixture(scope="module")
def secret_runs(tmp_path_factory, mnist_dir):
    root = tmp_path_factory.mktemp("secrets")
    store = f"sqlite:///{root / 'mlflow.db'}"
    printed = []
    single = run_cli(
        *SMALL,
        "tracking.run_name=run-${oc.env:MY_API_TOKEN}",
        "+tracking.tags.owner=${oc.env:MY_API_TOKEN}",
        "+tracking.tags.note=${oc.env:DB_PASSWORD}",
        store=store,
        env=SECRETS,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    printed.append(single)
    # a sweep: the secret in the parent's tags, in one job's data.dir (that job fails, saying the folder)
    sweep = run_cli(
        "-m",
        *SMALL,
        "tracking.log_model=false",
        "+tracking.tags.owner=${oc.env:MY_API_TOKEN}",
        "+tracking.tags.note=${oc.env:DB_PASSWORD}",
        "data.dir=${oc.env:MNIST_DIR},/data/${oc.env:MY_API_TOKEN}/${oc.env:DB_PASSWORD}",
        store=store,
        env=SECRETS,
    )
    assert sweep.returncode == 1, sweep.stderr[-3000:]
    printed.append(sweep)
    # an unexpected failure whose message and traceback name a path holding the secret
    blocker = root / f"store-{TOKEN}"
    blocker.write_text("")
    mlflow_client(store).create_experiment("broken", artifact_location=(blocker / "artifacts").as_uri())
    broken = run_cli(*SMALL, "tracking.experiment=broken", store=store, env=SECRETS)
    assert broken.returncode == 1
    printed.append(broken)
    return root, store, printed


def test_no_secret_in_any_column_of_the_store(secret_runs):
    root, store, _ = secret_runs
    assert scan_database(root / "mlflow.db") == []
    client = mlflow_client(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    names = {run.info.run_name for run in runs}
    assert "run-***" in names  # the run name is there, masked
    parent = next(r for r in runs if r.data.tags.get("mnistlab.role") == "sweep")
    assert parent.data.tags["owner"] == "***" and parent.data.tags["note"] == "***"
    failed = [r for r in runs if r.info.status == "FAILED" and r is not parent]
    assert len(failed) == 2  # the sweep's job with the secret folder, and the broken store's run
    assert parent.info.status == "FAILED" and "***" not in parent.data.tags["failure_reason"]
    assert all("***" in r.data.tags["failure_reason"] for r in failed)


def test_no_secret_in_any_file_of_mlruns_or_outputs(secret_runs):
    root, _, _ = secret_runs
    assert (root / "mlruns").is_dir() and (root / "outputs").is_dir()
    assert scan_files(root / "mlruns") == {}
    assert scan_files(root / "outputs") == {}
    tracebacks = list((root / "outputs").rglob("traceback.txt"))
    assert tracebacks and all("***" in path.read_text() for path in tracebacks)


def test_nothing_printed_holds_a_secret(secret_runs):
    _, _, printed = secret_runs
    for proc in printed:
        assert leaks((proc.stdout + proc.stderr).encode()) == set()
    assert any("data.dir='/data/***/***'" in line for line in error_lines(printed[1]))


def test_a_secret_in_a_name_the_model_keeps_is_refused(store):
    proc = run_cli(*SMALL, "+model.layers.1.name=${oc.env:MY_API_TOKEN}", store=store, env=SECRETS)
    assert proc.returncode == 2
    assert error_lines(proc) == [
        "error: model.layers.1.name: holds the value of $MY_API_TOKEN, which is kept out of everything mnistlab "
        "writes; the saved model and the experiment keep their names as they are: choose another"
    ]
    assert not Path(store[len("sqlite:///") :]).exists()
