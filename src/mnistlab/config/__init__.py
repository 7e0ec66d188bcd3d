"""The config: its schema (one class per section and per option), the option registries, and
validation, all without TensorFlow or MLflow."""

from mnistlab.config.validation import validate

__all__ = ["validate"]
