"""Continuing an interrupted run: the checkpoint ``resume=`` names, the run's own config, and the
hint an interrupted or failed run leaves on its error line."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mnistlab.config import validate
from mnistlab.core.errors import MnistlabError, TrackingError
from mnistlab.train import checkpoints
from mnistlab.train.checkpoints import Checkpoint


def locate(cfg: DictConfig) -> Checkpoint | None:
    """The checkpoint of ``cfg.resume`` (an output folder or a run id), or None for a new run."""
    if not cfg.resume:
        return None

    from mnistlab.tracking import runs  # MLflow: the run's state is in the store

    checkpoint = checkpoints.locate(cfg.resume, lambda run_id: runs.output_dir_of_run(run_id, cfg.tracking.uri))
    runs.resumable(checkpoint.run_id, cfg.tracking.uri, cfg.resume)  # a FINISHED run is not reopened
    return checkpoint


def resumed_config(resume: Checkpoint, current: DictConfig) -> DictConfig:
    """The interrupted run's own config; only where things are (the data, the store, the project:
    it may have moved since) and how progress prints come from the command line."""
    stored = OmegaConf.create(resume.config)
    stored.data.dir = current.data.dir
    stored.tracking.uri = current.tracking.uri
    stored.root_dir = current.root_dir
    stored.trainer.verbose = current.trainer.verbose
    stored.resume = None
    return validate(stored)


def explain(exc: BaseException, output_dir: Path, run_id: str) -> None:
    """Say, on the exception's one line, what an interrupted or failed run left to resume from."""
    try:
        last = checkpoints.read(output_dir)
    except MnistlabError:
        last = None
    if isinstance(exc, KeyboardInterrupt):
        done = f"epochs 1-{last.epochs_done} are" if last and last.epochs_done > 1 else "epoch 1 is"
        exc.hint = (
            f"{done} checkpointed; continue with: python run.py resume={run_id}"
            if last
            else "no epoch had finished, nothing to resume"
        )
    elif isinstance(exc, TrackingError) and last is not None:  # the store failed: the checkpoint is what is left
        done = f"epochs 1-{last.epochs_done} are" if last.epochs_done > 1 else "epoch 1 is"
        exc.args = (
            f"{exc}; {done} checkpointed: once the store works again, continue with: python run.py resume={output_dir}",
        )
    elif isinstance(exc, MnistlabError) and last is not None:
        exc.args = (f"{exc}; the last good epoch ({last.epochs_done}) is checkpointed in {last.weights}",)
