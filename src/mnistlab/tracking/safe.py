"""The one place every write to the store passes through: an MlflowClient that masks secrets in
run names, tags, params, texts, figures' texts and text files before they are written."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient

from mnistlab.core.redaction import masked_forms, redact, redact_all, redact_figure

MAX_RUN_NAME = 250  # MLflow's column; PostgreSQL refuses longer names (sqlite does not check)


def fitting_name(name: str) -> str:
    """A run name MLflow's SQL stores take: long ones (a search's overrides) are cut, with a hash
    of the whole so that two cut names still differ."""
    if len(name) <= MAX_RUN_NAME:
        return name
    return f"{name[: MAX_RUN_NAME - 10]}~{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def safe_run_name(name: str | None) -> str | None:
    return None if name is None else fitting_name(redact(name))


class SafeClient(MlflowClient):
    """MlflowClient whose writes are redacted (reads are MlflowClient's own)."""

    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: Mapping[str, Any] | None = None,
        run_name: str | None = None,
    ) -> Any:
        return super().create_run(experiment_id, start_time, redact_all(tags or {}), safe_run_name(run_name))

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        super().update_run(run_id, status=status, name=safe_run_name(name))

    def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> Any:
        return super().set_tag(run_id, redact(str(key)), redact(str(value)), synchronous=synchronous)

    def log_param(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> Any:
        return super().log_param(run_id, redact(str(key)), redact(str(value)), synchronous=synchronous)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Any] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
        synchronous: bool | None = None,
    ) -> Any:
        forms = masked_forms()
        params = [Param(redact(p.key, forms), redact(str(p.value), forms)) for p in params]
        tags = [RunTag(redact(t.key, forms), redact(str(t.value), forms)) for t in tags]
        return super().log_batch(run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        super().log_text(run_id, redact(text), artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str, *, save_kwargs: dict | None = None) -> None:
        super().log_figure(run_id, redact_figure(figure), artifact_file, save_kwargs=save_kwargs)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        """A text file is uploaded as a redacted copy of the same name; other files as they are."""
        path = Path(local_path)
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, IsADirectoryError):
            super().log_artifact(run_id, local_path, artifact_path)
            return
        masked = redact(text)
        if masked == text:
            super().log_artifact(run_id, local_path, artifact_path)
            return
        with tempfile.TemporaryDirectory() as folder:
            copy = Path(folder) / path.name
            copy.write_text(masked, encoding="utf-8")
            super().log_artifact(run_id, str(copy), artifact_path)

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
        run_link: str | None = None,
        description: str | None = None,
        **kwargs: Any,
    ) -> Any:
        return super().create_model_version(
            name,
            source,
            run_id=run_id,
            tags=redact_all(tags or {}),
            run_link=run_link,
            description=redact(description or ""),
            **kwargs,
        )
