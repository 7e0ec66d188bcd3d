"""`python run.py -m ... hydra/launcher=dry_run`: every job listed and validated, nothing trained,
nothing recorded, TensorFlow and MLflow never imported. Real subprocesses of run.py."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT, RUN_PY, cli_env, error_lines

pytestmark = pytest.mark.fast


def dry_run(store: str, *overrides: str) -> subprocess.CompletedProcess:
    # -X importtime: every module the process imports, on stderr (what it must not import)
    return subprocess.run(
        [sys.executable, "-X", "importtime", str(RUN_PY), "-m", *overrides, "hydra/launcher=dry_run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=cli_env(store),
        timeout=120,
    )


def imported(proc: subprocess.CompletedProcess) -> set[str]:
    return {m.group(1).split(".")[0] for m in re.finditer(r"^import time:.*\|\s+(\S+)$", proc.stderr, re.M)}


def test_a_grid_with_one_invalid_job_lists_every_job_and_names_the_invalid_one(store, tmp_path):
    root = tmp_path
    proc = dry_run(store, "model=mlp12", "trainer.epochs=1,2,3,-1")
    assert proc.returncode == 2, proc.stderr[-3000:]
    jobs = re.findall(r"^  #(\d+): (.*?)(  INVALID)?$", proc.stdout, re.M)
    assert [(n, o.split()[-1]) for n, o, _ in jobs] == [
        (str(i), f"trainer.epochs={e}") for i, e in enumerate([1, 2, 3, -1])
    ]
    assert [n for n, _, bad in jobs if bad] == ["3"]
    lines = [line for line in error_lines(proc) if not line.startswith("import time:")]
    assert lines == [
        "error: job 3 (model=mlp12 trainer.epochs=-1): trainer.epochs=-1: must be >= 1",
        "error: dry run: 1 of 4 jobs are invalid (job 3)",
    ]
    assert not {"tensorflow", "keras", "mlflow", "optuna"} & imported(proc)
    assert not (root / "mlflow.db").exists()  # the store: not even created
    assert not (root / "outputs").exists()  # nor any job or sweep folder


def test_a_valid_grid_exits_0_and_leaves_the_store_unchanged(store, tmp_path):
    from conftest import mlflow_client

    mlflow_client(store).create_experiment("already-there")
    before = (tmp_path / "mlflow.db").read_bytes()
    proc = dry_run(store, "model=mlp12,dense", "seed=1,2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dry run: all 4 jobs are valid" in proc.stdout
    assert (tmp_path / "mlflow.db").read_bytes() == before
    assert not (tmp_path / "outputs").exists()


def test_a_search_prints_its_space_and_leaves_the_study_alone(store, tmp_path):
    proc = dry_run(store, "hparams_search=cnn_optuna")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "optimizer.lr: FloatDistribution(high=0.01, log=True, low=0.0001, step=None)" in proc.stdout
    assert "trainer.batch_size: CategoricalDistribution(choices=(32, 64, 128, 256))" in proc.stdout
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()
    assert not {"tensorflow", "mlflow"} & imported(proc)
