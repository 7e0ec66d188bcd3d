"""Keras models in MLflow: logged with a signature and explicit requirements, loaded with Keras's safe mode."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import keras
import mlflow
import mlflow.keras
import numpy as np
import tensorflow as tf
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec
from mlflow.utils import environment as mlflow_environment

from mnistlab.core.errors import TrackingError

MODEL_ARTIFACT = "model"


def log_keras_model(model: Any, input_shape: tuple[int, ...], num_classes: int) -> str:
    """Log with a tensor signature and explicit requirements (inferring them costs seconds;
    an input_example crashes mlflow.keras, MLflow #16183)."""
    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *input_shape))]),  # unnamed: one tensor in,
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_classes))]),  # class probabilities out
    )
    requirements = [f"mlflow=={mlflow.__version__}", f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
    with _running_versions_trusted():
        info = mlflow.keras.log_model(model, name=MODEL_ARTIFACT, signature=signature, pip_requirements=requirements)
    return info.model_id  # MLflow 3's LoggedModel: the test metrics are linked to it


#: MLflow's check of a model's requirements against the installed packages
_MISMATCH_CHECK = "warn_dependency_requirement_mismatches"


@contextmanager
def _running_versions_trusted() -> Iterator[None]:
    """Without MLflow's requirement check while the model is logged: it maps every installed
    distribution to its modules first (0.5-1 s, most of logging a model), and the pins here are
    the running packages' own versions, so there is nothing it could find."""
    check = getattr(mlflow_environment, _MISMATCH_CHECK, None)
    if check is None:  # a later MLflow without it: nothing to skip
        yield
        return
    setattr(mlflow_environment, _MISMATCH_CHECK, lambda requirements: None)
    try:
        yield
    finally:
        setattr(mlflow_environment, _MISMATCH_CHECK, check)


def load_keras_model(model_uri: str) -> Any:
    """A logged model, loaded with Keras's safe mode on: a model file that carries Python code
    (a Lambda layer's bytecode) is refused instead of executed."""

    try:
        return mlflow.keras.load_model(model_uri, load_model_kwargs={"safe_mode": True})
    except ValueError as exc:
        if "safe_mode" not in str(exc):
            raise
        raise TrackingError(
            f"{model_uri}: the model holds Python code (e.g. a Lambda layer), which Keras's safe "
            "mode refuses to run; load it with keras.saving.load_model(..., safe_mode=False) only "
            "if you trust where it came from"
        ) from None
