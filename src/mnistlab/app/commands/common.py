"""What the ``mnistlab`` commands share: where the store is, and errors as one line with their exit code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from mnistlab.core.errors import MnistlabError


def project_root() -> Path:
    """As run.py has it: $MNISTLAB_ROOT, else the current folder."""
    return Path(os.environ.get("MNISTLAB_ROOT", ".")).resolve()


def default_uri() -> str:
    """As run.py has it: $MLFLOW_TRACKING_URI, else mlflow.db in the project root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def run_command(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Errors a user can fix as one line on stderr, with their exit code."""
    try:
        return command(args)
    except MnistlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
