"""MNIST handwritten digits (LeCun, Cortes, Burges): 60,000 training and 10,000 test images, 28x28 grey."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mnistlab.data.loading import RawData, load
from mnistlab.data.registry import DATASETS, DatasetSpec

#: split -> official IDX file name (without .gz)
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
#: published SHA-256 of the decompressed official files
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MNIST_TRAIN_IMAGES, MNIST_TEST_IMAGES = 60_000, 10_000

MNIST = DATASETS.register(
    DatasetSpec(
        name="mnist",
        title="MNIST",
        env_var="MNIST_DIR",
        files=IDX_FILES,
        checksums=MNIST_SHA256,
        checksums_of="contents",
        class_names=tuple(str(digit) for digit in range(10)),
        label_word="digits",
        image_shape=(28, 28),
        keras_dataset="mnist",
        npz_file="mnist.npz",
    )
)


def load_mnist(
    directory: str | Path | None, verify: bool = True, checksums: Mapping[str, str] | None = None
) -> RawData:
    """MNIST from ``directory`` (IDX files or mnist.npz), or through Keras when None."""
    return load(MNIST, directory, verify=verify, checksums=checksums)
