"""Shared fixtures: the real config composed through Hydra, the real MNIST files, a fresh MLflow
store per test, and a helper that runs ``python run.py`` exactly as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
RUN_PY = ROOT / "run.py"
SHARED_MNIST = ROOT.parent / "shared" / "datasets" / "mnist"


def _find_mnist() -> Path | None:
    if os.environ.get("MNIST_DIR"):
        return Path(os.environ["MNIST_DIR"]).resolve()
    return SHARED_MNIST if SHARED_MNIST.is_dir() else None


MNIST_DIR = _find_mnist()


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST IDX files: $MNIST_DIR, else ../shared/datasets/mnist. Required in CI."""
    if MNIST_DIR is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs the MNIST files: set MNIST_DIR or provide ../shared/datasets/mnist")
        pytest.skip("no MNIST folder (set MNIST_DIR to the four IDX files)")
    return MNIST_DIR


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Iterator:
    """compose_cfg(overrides) -> the real composed config, as the Hydra app would see it."""

    def _compose(overrides: list[str] = ()) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
        HydraConfig().set_config(cfg)  # so ${hydra:...} interpolations resolve, as in a real run
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def store(tmp_path: Path) -> str:
    """A fresh SQLite tracking URI of this test's own (artifacts land beside it, in tmp)."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def cli_env(store: str | None = None, env: dict | None = None) -> dict[str, str]:
    """The environment ``python run.py`` gets in tests: the real MNIST, a test-owned store and root."""
    drop = ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR", "MNISTLAB_ROOT", "MNISTLAB_ONE_LINE_ERRORS")
    full = {k: v for k, v in os.environ.items() if k not in drop}
    if MNIST_DIR is not None:
        full["MNIST_DIR"] = str(MNIST_DIR)
    if store is not None:
        full["MLFLOW_TRACKING_URI"] = store
        full["MNISTLAB_ROOT"] = str(Path(store[len("sqlite:///") :]).parent)  # outputs/ beside the store
    full.update(env or {})
    return full


def run_cli(
    *overrides: str,
    store: str | None = None,
    cwd: Path | None = None,
    env: dict | None = None,
    run_py: Path = RUN_PY,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """``python run.py <overrides>`` in a subprocess, as a user would type it."""
    return subprocess.run(
        [sys.executable, str(run_py), *overrides],
        cwd=cwd or ROOT,
        env=cli_env(store, env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_run_py(*args: str, store: str) -> subprocess.Popen:
    """``python run.py <args>`` in the background, in a session of its own (``kill_if_running`` and
    ``os.killpg`` reach its workers), its output piped."""
    return subprocess.Popen(
        [sys.executable, str(RUN_PY), *args],
        cwd=ROOT,
        env=cli_env(store),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def kill_if_running(proc: subprocess.Popen) -> None:
    """What a test started with start_new_session (``run.py`` and its workers), killed by its
    process group id: for the ``finally`` of a test that may fail before the process ends."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def mlflow_client(store: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store)


def only_run(store: str, experiment: str = "mnistlab"):
    """The single run a test expects in ``store``."""
    client = mlflow_client(store)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} in {store}"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """stderr without TensorFlow's C++ start-up lines (printed before absl logging is set up)."""
    noise = ("WARNING: All log messages before absl::InitializeLog()", "I0000 ", "E0000 ", "W0000 ")
    return [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith(noise)]


SWEEP_EPOCHS = 2


@dataclass(frozen=True)
class SweepResult:
    store: str
    proc: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory, mnist_dir) -> SweepResult:
    """One real two-job sweep, ``python run.py -m ...`` as a user types it, for the tests that
    only read its store (summary, ``mnistlab compare``, the MLflow server and UI)."""
    store = f"sqlite:///{tmp_path_factory.mktemp('small_sweep') / 'mlflow.db'}"
    proc = run_cli(
        "-m",
        "model=mlp12,dense512",
        "data.limit=500",
        f"trainer.epochs={SWEEP_EPOCHS}",
        "tracking.log_model=false",
        store=store,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return SweepResult(store, proc)
