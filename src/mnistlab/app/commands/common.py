"""What the ``mnistlab`` commands share: where the store is, and errors as one line with their exit code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import mnistlab
from mnistlab.core.errors import MnistlabError


def _is_checkout(folder: Path) -> bool:
    return (folder / "run.py").is_file() and (folder / "conf" / "config.yaml").is_file()


def find_project() -> tuple[Path, str]:
    """The project run.py logs to, and why it is that one: $MNISTLAB_ROOT; else the mnistlab checkout
    the current folder is in; else the checkout this package is installed from (run.py's own
    folder, its default root); else the current folder."""
    if os.environ.get("MNISTLAB_ROOT"):
        return Path(os.environ["MNISTLAB_ROOT"]).resolve(), "$MNISTLAB_ROOT"
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if _is_checkout(folder):
            return folder, "the mnistlab checkout the current folder is in"
    installed = Path(mnistlab.__file__).resolve().parents[2]
    if _is_checkout(installed):
        return installed, "the checkout mnistlab is installed from"
    return here, "the current folder (no mnistlab checkout found above it)"


def project_root() -> Path:
    return find_project()[0]


def default_uri() -> str:
    """As run.py has it: $MLFLOW_TRACKING_URI, else mlflow.db in the project's root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def store_origin(uri_given: str | None) -> str:
    """Why the commands look at the store they do, for a message when it is not there."""
    if uri_given:
        return " (--uri)"
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return " ($MLFLOW_TRACKING_URI)"
    return f" (mlflow.db of {find_project()[1]})"


def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Errors a user can fix as one line on stderr, with their exit code."""
    try:
        return command(args)
    except MnistlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
