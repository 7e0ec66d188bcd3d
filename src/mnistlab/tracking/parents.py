"""A sweep's parent run as its jobs find it: ``sweep.json`` in the sweep folder (jobs may run in
other processes or on other machines). No MLflow import: run.py reads it before validation."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

SWEEP_FILE = "sweep.json"
ROLE_TAG, SWEEP_ROLE = "mnistlab.role", "sweep"  # marks parent runs, so listings can leave them out
SUPERSEDED_TAG = "sweep.superseded"  # a job's earlier run that a continued sweep ran again (a summary leaves it out)


def runs_filter(sweep_id: str) -> str:
    """MLflow filter for a sweep's runs: its children and its parent."""
    return f"tags.sweep_id = '{sweep_id}'"


@dataclass(frozen=True)
class Sweep:
    """What a job needs to nest its run under the sweep's parent run."""

    sweep_id: str
    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    continued: int = 0  # how many times the sweep was continued (its jobs then look for their earlier runs)
    host: str = ""  # the process that launches the jobs now: a second one on this machine is refused
    pid: int = 0
    started: str | None = None

    def save(self, sweep_dir: Path) -> None:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, sweep_dir: str | Path) -> Sweep | None:
        path = Path(sweep_dir) / SWEEP_FILE
        return cls(**json.loads(path.read_text())) if path.is_file() else None

    @property
    def runs_filter(self) -> str:
        return runs_filter(self.sweep_id)

    def child_tags(self, job: int, nested: bool = True) -> dict[str, str]:
        """``nested``: the child is in the parent's store and experiment (else only tagged)."""
        tags = {"sweep_id": self.sweep_id, "sweep.job": str(job)}
        if nested:
            tags["mlflow.parentRunId"] = self.parent_run_id
        return tags
