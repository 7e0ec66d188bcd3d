"""The ``mnistlab`` command and run.py's help as a user first meets them: real subprocesses."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import mnistlab
from conftest import ROOT, RUN_PY, cli_env

pytestmark = pytest.mark.fast
MNISTLAB = Path(sys.executable).parent / "mnistlab"


def test_version_names_mnistlab_and_the_stack_as_installed():
    proc = subprocess.run([str(MNISTLAB), "--version"], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert metadata.version("mnistlab") == mnistlab.__version__  # pyproject and the package agree
    expected = ", ".join(f"{name} {metadata.version(name)}" for name in ("hydra-core", "keras", "tensorflow"))
    assert proc.stdout.startswith(f"mnistlab {mnistlab.__version__} ({expected}, mlflow ")
    assert proc.stdout.count("\n") == 1  # one line, whatever the terminal's width


def test_run_py_help_starts_with_the_version_and_lists_the_commands():
    proc = subprocess.run(
        [sys.executable, str(RUN_PY), "--help"], cwd=ROOT, capture_output=True, text=True, env=cli_env(), timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"mnistlab {mnistlab.__version__}: train and evaluate")
    help_text = subprocess.run([str(MNISTLAB), "--help"], capture_output=True, text=True, timeout=60).stdout
    for command in ("compare", "continue", "predict", "preprocess", "promote"):
        assert f"    {command}" in help_text
