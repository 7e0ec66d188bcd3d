"""From the stored arrays to what a model trains on: the validation split, the limit, pixel scaling
and the label encoding the loss needs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnistlab.core.errors import ConfigError
from mnistlab.data.loading import RawData


@dataclass(frozen=True)
class Dataset:
    """Model-ready arrays: float32 images in [0, 1] shaped (N, H, W, 1), encoded labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels_test: np.ndarray  # integer test labels, whatever the encoding (confusion matrix)
    source: str
    num_classes: int = 10

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def prepare(raw: RawData, val_split: float, limit: int | None, encoding: str, num_classes: int = 10) -> Dataset:
    """Hold out the last ``val_split`` of the training images, keep the first ``limit`` of the rest."""
    n_val = round(len(raw.x_train) * val_split)
    n_fit = len(raw.x_train) - n_val
    if limit is not None and limit > n_fit:
        raise ConfigError(
            "data.limit", f"must be <= {n_fit}, the training images left after the validation split", limit
        )
    n_train = n_fit if limit is None else limit
    return Dataset(
        x_train=images_for_model(raw.x_train[:n_train]),
        y_train=encode_labels(raw.y_train[:n_train], encoding, num_classes),
        x_val=images_for_model(raw.x_train[n_fit:]),
        y_val=encode_labels(raw.y_train[n_fit:], encoding, num_classes),
        x_test=images_for_model(raw.x_test),
        y_test=encode_labels(raw.y_test, encoding, num_classes),
        labels_test=raw.y_test.astype(np.int64),
        source=raw.source,
        num_classes=num_classes,
    )


def encode_labels(labels: np.ndarray, encoding: str, num_classes: int = 10) -> np.ndarray:
    """Integer labels for sparse cross-entropy, one-hot rows for losses that compare vectors."""
    if encoding == "integer":
        return labels.astype(np.int32)
    if encoding == "onehot":
        return np.eye(num_classes, dtype=np.float32)[labels]
    raise ValueError(f"unknown label encoding {encoding!r}")


def images_for_model(x: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W) as every model takes them, in training and in prediction alike."""
    return (x.astype(np.float32) / 255.0)[..., np.newaxis]
