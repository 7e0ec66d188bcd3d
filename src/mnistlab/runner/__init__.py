"""One experiment run, end to end and Hydra-free: the steps in order (data, store, model, fit,
evaluate, log), the Keras side and the recording side of each, and resuming an interrupted run."""

from mnistlab.runner.steps import RunResult, run

__all__ = ["RunResult", "run"]
