"""Which trained model to use (a run's, any MLflow model URI, or the best run's), loading it,
and promoting a run's model in the MLflow model registry.

A run's model is found through the run's own record of the models it logged (MLflow 3's
``LoggedModel`` outputs), so a run trained with ``tracking.log_model=false`` is reported as such
instead of failing somewhere inside an artifact download.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mlflow.pyfunc
import numpy as np
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mnistlab.core.errors import MnistlabError, one_line
from mnistlab.tracking.parents import ROLE_TAG, SWEEP_ROLE


class ModelChoiceError(MnistlabError):
    """A run, a model URI or a registry name the user gave that cannot be used."""

    exit_code = 2


class NoModel(MnistlabError):
    """Nothing to choose from: no FINISHED run with a model in the experiment."""


@dataclass(frozen=True)
class Chosen:
    """The model a command will use, and how to say which one it is."""

    uri: str  # what MLflow loads
    description: str  # one line for the user
    run_id: str | None = None
    test_accuracy: float | None = None


def of_run(client: MlflowClient, run_id: str, option: str = "--run") -> Chosen:
    """The model logged by run ``run_id``."""
    run = _get_run(client, run_id, option)
    return Chosen(
        _model_uri(run, option),
        f"run {_name(run)}{_accuracy_text(run)}",
        run.info.run_id,
        run.data.metrics.get("test_accuracy"),
    )


def of_uri(model_uri: str) -> Chosen:
    return Chosen(model_uri, f"model {model_uri}")


def best_run(client: MlflowClient, experiment: str) -> Chosen:
    """The FINISHED run with the highest test accuracy that logged a model (sweep parents left out)."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(repr(e.name) for e in client.search_experiments()) or "none"
        raise NoModel(f"--experiment {experiment!r}: no such experiment (experiments there: {names})")
    runs = client.search_runs(
        [found.experiment_id],
        "attributes.status = 'FINISHED'",
        order_by=["metrics.test_accuracy DESC", "attributes.start_time DESC"],
        max_results=1000,
    )
    for run in runs:
        if (
            run.data.tags.get(ROLE_TAG) != SWEEP_ROLE
            and "test_accuracy" in run.data.metrics
            and run.outputs
            and run.outputs.model_outputs
        ):
            return Chosen(
                _model_uri(run, "run"),
                f"run {_name(run)}{_accuracy_text(run)}, the best FINISHED "
                f"run with a model in experiment {experiment!r}",
                run.info.run_id,
                run.data.metrics["test_accuracy"],
            )
    raise NoModel(
        f"no FINISHED run with a logged model in experiment {experiment!r}: train one with "
        "`python run.py`, or choose a model with --run or --model"
    )


def load(chosen: Chosen, trust: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """A function from images (N, 28, 28, 1) to class probabilities (N, 10). Keras models in the
    .keras format load with safe mode on (``tracking.models.load_keras_model``); any other model
    (another flavour, a Keras model exported as a SavedModel) runs code of its own when it loads,
    so only with ``trust``."""
    from mnistlab.tracking import models  # TensorFlow: only for the commands that load a model

    try:
        flavors = mlflow.models.get_model_info(chosen.uri).flavors
    except (MlflowException, OSError) as exc:
        raise ModelChoiceError(f"{chosen.uri}: cannot load this model ({one_line(exc, 300)})") from None
    keras_flavor = flavors.get("keras") or {}
    if keras_flavor and not keras_flavor.get("save_exported_model"):
        model = models.load_keras_model(chosen.uri)
        return lambda x: np.asarray(model.predict(x, verbose=0))
    if not trust:
        kind = "a Keras model exported as a SavedModel" if keras_flavor else f"a {', '.join(flavors) or '?'} model"
        raise ModelChoiceError(
            f"{chosen.uri}: {kind}, which runs code of its own when it loads (only .keras files "
            "load in Keras's safe mode); pass --trust-model if you trust where it came from"
        )
    pyfunc = mlflow.pyfunc.load_model(chosen.uri)
    return lambda x: np.asarray(pyfunc.predict(x))


def promote(client: MlflowClient, run_id: str, name: str, alias: str) -> list[str]:
    """Register run ``run_id``'s model as a new version of ``name`` and point ``alias`` at it;
    returns what to tell the user."""
    run = _get_run(client, run_id, "RUN_ID")
    if run.info.status != "FINISHED":
        raise ModelChoiceError(f"run {run_id} is {run.info.status}: only a FINISHED run's model can be promoted")
    source = _model_uri(run, "RUN_ID")
    try:
        try:
            client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            client.create_registered_model(name, description="MNIST digit classifiers trained by mnistlab")
        previous = _alias_version(client, name, alias)
        version = client.create_model_version(
            name,
            source,
            run_id=run.info.run_id,
            model_id=source.split("/")[-1],
            tags=_version_tags(run),
            description=f"mnistlab run {_name(run)}",
        )
        client.set_registered_model_alias(name, alias, version.version)
    except MlflowException as exc:
        if exc.error_code == "INVALID_PARAMETER_VALUE":
            raise ModelChoiceError(f"--name {name!r} / --alias {alias!r}: {one_line(exc, 300)}") from None
        raise
    moved = f" (it was on version {previous})" if previous else ""
    return [
        f"registered run {_name(run)}{_accuracy_text(run)} as {name} version {version.version}",
        f"alias {alias} -> version {version.version}{moved}",
        f"predict with: mnistlab predict IMAGE --model models:/{name}@{alias}",
        f"serve it:     mlflow models serve -m models:/{name}@{alias} -p 5001 --env-manager local "
        "(with MLFLOW_TRACKING_URI set to this store)",
    ]


def _get_run(client: MlflowClient, run_id: str, option: str) -> Run:
    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise ModelChoiceError(
                f"{option} {run_id}: no such run in {client.tracking_uri} (`mnistlab compare` "
                "lists the runs and their ids)"
            ) from None
        raise


def _model_uri(run: Run, option: str) -> str:
    outputs = run.outputs.model_outputs if run.outputs else []
    if not outputs:
        raise ModelChoiceError(
            f"{option} {run.info.run_id}: run {_name(run)} ({run.info.status}) has no logged model "
            "(it trained with tracking.log_model=false, or it ended before the model was saved)"
        )
    return f"models:/{outputs[-1].model_id}"


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        return None


def _version_tags(run: Run) -> dict[str, str]:
    tags = {"run_id": run.info.run_id, "model": run.data.params.get("model.name", "")}
    if "test_accuracy" in run.data.metrics:
        tags["test_accuracy"] = f"{run.data.metrics['test_accuracy']:.4f}"
    return tags


def _name(run: Run) -> str:
    return f"{run.info.run_name!r} ({run.info.run_id})"


def _accuracy_text(run: Run) -> str:
    accuracy = run.data.metrics.get("test_accuracy")
    return f", test accuracy {accuracy:.2%}" if accuracy is not None else ""
