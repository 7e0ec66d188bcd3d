"""Datasets: the registry (``data=<name>``: MNIST, Fashion-MNIST), reading and checking their IDX
files, and the arrays a run trains on. numpy only: no TensorFlow."""

from mnistlab.data import fashion_mnist, mnist  # noqa: F401  (each registers itself)
from mnistlab.data.idx import read_idx
from mnistlab.data.loading import RawData, load
from mnistlab.data.mnist import IDX_FILES, MNIST, MNIST_SHA256, MNIST_TEST_IMAGES, MNIST_TRAIN_IMAGES, load_mnist
from mnistlab.data.prepare import Dataset, encode_labels, images_for_model, prepare
from mnistlab.data.registry import DATASETS, DatasetSpec

__all__ = [
    "DATASETS",
    "IDX_FILES",
    "MNIST",
    "MNIST_SHA256",
    "MNIST_TEST_IMAGES",
    "MNIST_TRAIN_IMAGES",
    "Dataset",
    "DatasetSpec",
    "RawData",
    "encode_labels",
    "images_for_model",
    "load",
    "load_mnist",
    "prepare",
    "read_idx",
]
