"""Datasets by name (``data=<name>``): what each one is, its files and their published checksums,
its images' shape and its classes. Plain data, no arrays: the config validates ``data.name``
against it without loading anything."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: the four arrays every dataset provides, in this order
SPLITS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset of the IDX format: four files (gzipped or not), checked against published SHA-256 sums."""

    name: str  # as data.name and conf/data/<name>.yaml say it
    title: str  # as messages name it
    env_var: str  # the folder of its files when data.dir is not set (conf/data/<name>.yaml reads it)
    files: Mapping[str, str]  # split (SPLITS) -> IDX file name, without .gz
    checksums: Mapping[str, str]  # IDX file name -> published SHA-256
    #: what the published sums cover: "contents", the decompressed IDX bytes (then the .gz files, the
    #: plain ones and an npz rebuilt as IDX all verify), or "gzip", the .gz files as published
    checksums_of: str
    class_names: tuple[str, ...]
    label_word: str  # what its classes are called ("digits")
    image_shape: tuple[int, int]
    keras_dataset: str  # the keras.datasets module that downloads it where a network is available
    #: where keras.datasets leaves the .gz files (under KERAS_HOME), read and checked like a data.dir;
    #: None: its load_data() arrays are checked instead (possible with "contents" sums only)
    keras_cache: str | None = None
    npz_file: str | None = None  # an npz of the four arrays that a data.dir may hold instead
    train_images: int = 60_000  # as published: what validation checks the split and the limit against
    test_images: int = 10_000

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.image_shape, 1)


class Datasets:
    """The registered datasets, in registration order."""

    def __init__(self) -> None:
        self._specs: dict[str, DatasetSpec] = {}

    def register(self, spec: DatasetSpec) -> DatasetSpec:
        if spec.name in self._specs:
            raise ValueError(f"dataset {spec.name!r} is registered twice")
        self._specs[spec.name] = spec
        return spec

    def names(self) -> list[str]:
        return list(self._specs)

    def __getitem__(self, name: str) -> DatasetSpec:
        return self._specs[name]


DATASETS = Datasets()
