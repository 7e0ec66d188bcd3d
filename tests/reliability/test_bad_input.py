"""Inputs that used to get far (a run started, TensorFlow loaded, or minutes of MLflow's retries) are
refused at once in one line naming the key, with nothing recorded; and a store that goes away
mid-run, or a disk that fills, ends the run with one line and the way to continue."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, RUN_PY, cli_env, error_lines, mlflow_client, only_run, run_cli
from servers import mlflow_server

MNISTLAB = Path(sys.executable).parent / "mnistlab"


@pytest.mark.parametrize(
    "override,line",
    [
        (
            "data.val_split=0.000001",
            "error: data.val_split=1e-06: holds out 0 of the 60,000 training images; use 0 "
            "for no validation, or at least 1.7e-05",
        ),
        ("data.val_split=0.999999", "error: data.val_split=0.999999: leaves no training image of 60,000"),
        ("model.layers.5.units=1000000000", "error: model.layers.5.units=1000000000: the model would have "),
        (
            "model.layers.0.type=Dens",
            "error: model.layers.0.type='Dens': not a keras.layers class; did you mean Dense?",
        ),
        (
            "+model.layers.0.filterz=3",
            "error: model.layers.0.filterz=3: Conv2D has no argument 'filterz'; did you mean filters?",
        ),
        ("~model.layers.5.units", "error: model.layers.5={'type': 'Dense', 'activation': 'relu'}: Dense needs units"),
        ("tracking.uri=sqlite:///./mlfow/x.db", "error: tracking.uri='sqlite:///./mlfow/x.db': the folder"),
    ],
)
def test_refused_before_anything_loads_or_is_recorded(tmp_path, override, line):
    """Each in well under the time TensorFlow takes to import (~3-5 s), from a fresh process."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    started = time.monotonic()
    proc = run_cli(override, store=store, cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr[-2000:]
    (only,) = error_lines(proc)
    assert only.startswith(line), only
    assert "tensorflow" not in proc.stderr.lower() and elapsed < 10  # refused before TensorFlow started
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlfow").exists()


def test_a_model_that_needs_more_memory_than_there_is_is_refused(store):
    proc = run_cli("model=dense", "model.layers.1.units=10000000", "+model.max_params=100000000000", store=store)
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert (
        line.startswith(
            "error: model.layers.1.units=10000000: training this model (12,970,005,642 parameters, "
            "batch 128) would need about"
        )
        and "this machine has available" in line
    )


def test_a_tracking_server_behind_credentials_in_the_url_is_reached(tmp_path, mnist_dir):
    """MLflow's client sends the URL's user and password as basic auth; the probe must do the same
    (a server without auth ignores them)."""
    with mlflow_server(
        f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts", tmp_path / "server.log"
    ) as server:
        port = server.url.rsplit(":", 1)[1]
        uri = f"http://someone:pa55word@127.0.0.1:{port}"
        proc = run_cli(
            "model=mlp12",
            "data.limit=300",
            "trainer.epochs=1",
            "tracking.log_model=false",
            f"tracking.uri={uri}",
            env={"MNISTLAB_ROOT": str(tmp_path)},
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs = mlflow_client(server.url).search_runs(["1"])
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
        assert "pa55word" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("command", [["compare"], ["predict", "digit.png"], ["promote", "0" * 32, "--name", "m"]])
def test_the_tools_give_up_on_a_dead_server_at_once(tmp_path, command):
    _digit(tmp_path / "digit.png")
    started = time.monotonic()
    proc = subprocess.run(
        [str(MNISTLAB), *command, "--uri", "http://127.0.0.1:9"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=cli_env(),
    )
    assert time.monotonic() - started < 30  # not MLflow's minutes of retries
    assert proc.returncode == 1
    assert error_lines(proc) == [
        "error: --uri 'http://127.0.0.1:9' does not answer ([Errno 111] Connection refused): "
        "start the server (mlflow server --host 127.0.0.1 --port <port>), or fix --uri or "
        "MLFLOW_TRACKING_URI"
    ]


def _digit(path: Path) -> None:
    from PIL import Image, ImageDraw

    image = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(image).line([(14, 4), (14, 24)], fill=255, width=3)
    image.save(path)


def test_the_tools_find_the_store_run_py_logs_to_from_any_folder(tmp_path):
    """run.py logs to <its checkout>/mlflow.db; the tools, run from elsewhere, say they look there."""
    env = {k: v for k, v in cli_env().items() if k not in ("MNISTLAB_ROOT", "MLFLOW_TRACKING_URI")}
    proc = subprocess.run(
        [str(MNISTLAB), "compare"], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env
    )
    lines = error_lines(proc)
    if (ROOT / "mlflow.db").exists():
        assert proc.returncode == 0, lines
    else:
        assert lines == [
            f"error: no MLflow store at {ROOT / 'mlflow.db'} (mlflow.db of the checkout mnistlab is "
            "installed from): run `python run.py` first, or pass --uri (or set MLFLOW_TRACKING_URI)"
        ]


def wait_for_checkpoint(root: Path, proc: subprocess.Popen) -> Path:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        found = list(root.glob("outputs/runs/*/checkpoints/last.json"))
        if found:
            return found[0].parent.parent
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.1)
    raise AssertionError("no checkpoint")


def test_a_store_deleted_mid_run_ends_it_in_one_line_with_the_way_to_continue(store):
    root = Path(store[len("sqlite:///") :]).parent
    proc = subprocess.Popen(
        [
            sys.executable,
            str(RUN_PY),
            "model=mlp12",
            "data.limit=2000",
            "trainer.epochs=40",
            "trainer.verbose=0",
            "tracking.log_model=false",
        ],
        cwd=ROOT,
        env=cli_env(store),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        folder = wait_for_checkpoint(root, proc)
        os.unlink(root / "mlflow.db")
        shutil.rmtree(root / "mlruns")
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    lines = error_lines(subprocess.CompletedProcess(proc.args, 1, "", stderr))
    assert len(lines) == 1, stderr[-3000:]
    assert lines[0].startswith(f"error: tracking.uri={store!r}: the database {root / 'mlflow.db'} is gone")
    assert lines[0].endswith(f"checkpointed: once the store works again, continue with: python run.py resume={folder}")
    assert "Traceback" not in stderr and stderr.count("\n") < 20


def test_a_full_disk_leaves_no_broken_checkpoint(store):
    """The file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored: writes fail with EFBIG) stands in for
    a full disk: the dense model's first checkpoint (8 MB with Adam's state) cannot be written, the
    database (well under the limit) can. One line, the run FAILED, no partial weights file."""

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4_000_000, 4_000_000))

    proc = subprocess.run(
        [sys.executable, str(RUN_PY), "model=dense", "data.limit=500", "trainer.epochs=2", "tracking.log_model=false"],
        cwd=ROOT,
        env=cli_env(store),
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=small_disk,
    )
    assert proc.returncode == 1
    (line,) = error_lines(proc)
    assert line.startswith("error: could not checkpoint epoch 1 in ") and "File too large" in line, line
    run = only_run(store)
    assert run.info.status == "FAILED" and "could not checkpoint" in run.data.tags["failure_reason"]
    checkpoints = Path(run.data.tags["hydra.output_dir"]) / "checkpoints"
    assert not list(checkpoints.glob("*.weights.h5")) and not (checkpoints / "last.json").exists()
