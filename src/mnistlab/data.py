"""MNIST: read the official IDX files (or a Keras mnist.npz), verify them, split and encode.

Every source is checked against the published SHA-256 of the four *decompressed* IDX files.
For an npz the IDX bytes are rebuilt from the arrays, so one set of checksums covers the IDX
files, an npz and Keras's own download alike.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping

import numpy as np

from mnistlab.errors import ConfigError, DataError

NUM_CLASSES = 10
CLASS_NAMES = tuple(str(digit) for digit in range(NUM_CLASSES))  # as plots and tables name them
#: array name -> official IDX file name (without .gz)
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
NPZ_FILE = "mnist.npz"
MNIST_TRAIN_IMAGES, MNIST_TEST_IMAGES = 60_000, 10_000
_IDX_UBYTE = 0x08


@dataclass(frozen=True)
class RawMnist:
    """The four arrays as stored: uint8 images (N, 28, 28) and uint8 labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


@dataclass(frozen=True)
class Dataset:
    """Model-ready arrays: float32 images in [0, 1] shaped (N, 28, 28, 1), encoded labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels_test: np.ndarray  # integer test labels, whatever the encoding (confusion matrix)
    source: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def load_mnist(directory: str | Path | None, verify: bool = True,
               checksums: Mapping[str, str] = MNIST_SHA256) -> RawMnist:
    """Read MNIST from ``directory`` (IDX files or mnist.npz), or through Keras when None."""
    if directory is None:
        arrays = _download_with_keras()
        source, origins = "Keras download cache", {k: f"Keras's mnist.npz [{k}]" for k in IDX_FILES}
    else:
        folder = Path(directory).expanduser()
        if not folder.is_dir():
            raise DataError(f"data.dir={str(directory)!r}: no such directory (set data.dir or MNIST_DIR to the "
                            "folder with the MNIST IDX files, or to null to download through Keras)")
        arrays, origins = _read_folder(folder)
        source = str(folder)
    if verify:
        for name, array in arrays.items():
            _check_sha256(_idx_bytes(array), IDX_FILES[name], checksums, where=origins[name])
    _check_consistent(arrays, source, origins)
    return RawMnist(**arrays, source=source)


def read_idx(path: Path, expected_ndim: int | None = None) -> np.ndarray:
    """Parse one IDX file, gzipped or not."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot be read as {'gzip' if path.suffix == '.gz' else 'a file'} ({exc})") from None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != _IDX_UBYTE:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (starts with {data[:4].hex() or 'nothing'}, "
                        "expected 00000801 for labels or 00000803 for images)")
    ndim = data[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataError(f"{path}: IDX header says {ndim} dimensions, expected {expected_ndim} "
                        f"({'images' if expected_ndim == 3 else 'labels'})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: IDX header is truncated ({len(data)} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    size = int(np.prod(shape))
    if len(data) - header != size:
        raise DataError(f"{path}: IDX header promises shape {shape} ({size} bytes of data), "
                        f"the file holds {len(data) - header}: truncated or padded")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def prepare(raw: RawMnist, val_split: float, limit: int | None, encoding: str) -> Dataset:
    """Hold out the last ``val_split`` of the training images, keep the first ``limit`` of the rest."""
    n_val = int(round(len(raw.x_train) * val_split))
    n_fit = len(raw.x_train) - n_val
    if limit is not None and limit > n_fit:
        raise ConfigError("data.limit", f"must be <= {n_fit}, the training images left after the validation split",
                          limit)
    n_train = n_fit if limit is None else limit
    return Dataset(
        x_train=images_for_model(raw.x_train[:n_train]),
        y_train=encode_labels(raw.y_train[:n_train], encoding),
        x_val=images_for_model(raw.x_train[n_fit:]),
        y_val=encode_labels(raw.y_train[n_fit:], encoding),
        x_test=images_for_model(raw.x_test),
        y_test=encode_labels(raw.y_test, encoding),
        labels_test=raw.y_test.astype(np.int64),
        source=raw.source,
    )


def encode_labels(labels: np.ndarray, encoding: str) -> np.ndarray:
    """Integer labels for sparse cross-entropy, one-hot rows for losses that compare vectors."""
    if encoding == "integer":
        return labels.astype(np.int32)
    if encoding == "onehot":
        return np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    raise ValueError(f"unknown label encoding {encoding!r}")


def images_for_model(x: np.ndarray) -> np.ndarray:
    """uint8 images (N, 28, 28) as every model takes them, in training and in prediction alike."""
    return (x.astype(np.float32) / 255.0)[..., np.newaxis]


def _read_folder(folder: Path) -> tuple[dict, dict]:
    """The four arrays and, for each, the file it came from (for error messages)."""
    found = {name: _find_idx(folder, base) for name, base in IDX_FILES.items()}
    if all(found.values()):
        arrays = {name: read_idx(path, expected_ndim=3 if name.startswith("x") else 1)
                  for name, path in found.items()}
        return arrays, {name: str(path) for name, path in found.items()}
    npz = folder / NPZ_FILE
    if npz.is_file() and not any(found.values()):
        return _read_npz(npz), {name: f"{npz} [{name}]" for name in IDX_FILES}
    missing = ", ".join(f"{IDX_FILES[n]}[.gz]" for n, p in found.items() if p is None)
    raise DataError(f"{folder}: missing MNIST file(s) {missing} (expected the four official IDX files, "
                    f"gzipped or not, or a {NPZ_FILE})")


def _find_idx(folder: Path, base: str) -> Path | None:
    return next((p for p in (folder / f"{base}.gz", folder / base) if p.is_file()), None)


def _read_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in IDX_FILES if k not in npz.files]
            if missing:
                raise DataError(f"{path}: lacks the array(s) {', '.join(missing)} (a Keras mnist.npz has "
                                "x_train, y_train, x_test, y_test)")
            arrays = {k: npz[k] for k in IDX_FILES}
    except (OSError, ValueError, zlib.error, EOFError) as exc:
        raise DataError(f"{path}: cannot be read as an npz archive ({exc})") from None
    for name, array in arrays.items():
        expected_ndim = 3 if name.startswith("x") else 1
        if array.dtype != np.uint8 or array.ndim != expected_ndim:
            raise DataError(f"{path}: {name} is {array.dtype} with {array.ndim} dimensions, "
                            f"expected uint8 with {expected_ndim}")
    return arrays


def _download_with_keras() -> dict:
    from keras.datasets import mnist  # only here: importing Keras costs seconds

    try:
        (x_train, y_train), (x_test, y_test) = mnist.load_data()
    except Exception as exc:  # Keras raises plain Exception on a failed download
        raise DataError(f"data.dir is null and Keras could not download MNIST ({str(exc).splitlines()[0]}); "
                        "set data.dir or MNIST_DIR to a folder with the MNIST IDX files") from None
    return dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def _idx_bytes(array: np.ndarray) -> bytes:
    """The official IDX encoding of a uint8 array: the bytes the published checksums cover."""
    header = bytes([0, 0, _IDX_UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _check_sha256(data: bytes, base: str, checksums: Mapping[str, str], where: str) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != checksums[base]:
        raise DataError(f"{where}: SHA-256 of the {base} contents is {digest[:16]}..., expected the published "
                        f"{checksums[base][:16]}...: the file is corrupt or not MNIST (data.verify=false to skip)")


def _check_consistent(arrays: dict, source: str, origins: Mapping[str, str]) -> None:
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y):
            files = " and ".join(Path(origins[f"{k}_{split}"]).name for k in ("x", "y"))
            raise DataError(f"{source}: {len(x)} {split} images but {len(y)} {split} labels "
                            f"({files} do not match)")
        if len(y) and int(y.max()) >= NUM_CLASSES:
            raise DataError(f"{origins[f'y_{split}']}: {split} labels go up to {int(y.max())}, "
                            f"expected digits 0-{NUM_CLASSES - 1}")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(f"{source}: train images are {arrays['x_train'].shape[1:]}, "
                        f"test images {arrays['x_test'].shape[1:]}")
