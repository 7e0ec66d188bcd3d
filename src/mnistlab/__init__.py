"""mnistlab: config-driven experiments for image classifiers (Hydra + Keras + MLflow).

Importing the package is cheap on purpose: TensorFlow, Keras and MLflow are imported only
by the modules that train and track, so validating a config or printing it stays fast.
"""

__version__ = "0.1.0"
