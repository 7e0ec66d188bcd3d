"""Where to look at a run: the MLflow UI's address for it (no MLflow import: the CLI prints these)."""

from __future__ import annotations

from urllib.parse import urlparse


def where_to_look(uri: str, experiment_id: str, run_id: str) -> list[str]:
    """How to see a run in the MLflow UI: a server's address, or the command and page for a local store."""
    if urlparse(uri).scheme in ("http", "https"):
        return [f"open {uri} in a browser"]
    return [
        f"mlflow ui --backend-store-uri {uri}",
        f"then http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}",
    ]
