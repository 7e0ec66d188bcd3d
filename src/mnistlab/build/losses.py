"""The loss, from its registered schema class."""

from __future__ import annotations

from collections.abc import Mapping

import keras

from mnistlab.config.losses import LOSSES


def make_loss(loss: Mapping) -> keras.losses.Loss:
    keras_class, arguments = LOSSES.instance(loss).keras()
    return getattr(keras.losses, keras_class)(**arguments)


def label_encoding(loss: Mapping) -> str:
    """How labels must be encoded for this loss: ``integer`` or ``onehot``."""
    return LOSSES.instance(loss).label_encoding
