"""The images a run trained, validated and tested on, as MLflow datasets (the run page's Datasets):
a name per split, a digest of the published files' checksums and the rows taken from them, the
folder they came from, and the row counts."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass

import mlflow.data
from mlflow.data.numpy_dataset import NumpyDataset

from mnistlab.data.prepare import Dataset
from mnistlab.data.registry import DatasetSpec


@dataclass(frozen=True)
class Split:
    """One split of a run's data as MLflow records it."""

    context: str  # training, validation or test (MLflow's UI names)
    dataset: NumpyDataset

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def digest(self) -> str:
        return self.dataset.digest


def splits(data: Dataset, spec: DatasetSpec) -> dict[str, Split]:
    """The run's train, validation and test sets. The validation images are the last of the
    training files, the training images the first ``len(x_train)`` (prepare's split)."""
    total = spec.train_images
    rows = {
        "training": ("train", data.x_train, data.y_train, 0, len(data.x_train)),
        "validation": ("train", data.x_val, data.y_val, total - len(data.x_val), total),
        "test": ("test", data.x_test, data.y_test, 0, len(data.x_test)),
    }
    found = {}
    for context, (files, x, y, start, stop) in rows.items():
        checksums = [spec.checksums.get(spec.files[f"{axis}_{files}"], "") for axis in ("x", "y")]
        digest = hashlib.sha256(f"{','.join(checksums)}:{start}:{stop}".encode()).hexdigest()[:16]
        name = f"{spec.name}-{context}"
        with warnings.catch_warnings():  # a local path "can be interpreted in multiple ways": all of them local
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_numpy(x, targets=y, source=data.source, name=name, digest=digest)
        found[context] = Split(context, dataset)
    return found
