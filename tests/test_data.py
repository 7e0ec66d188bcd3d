"""The MNIST loader. Synthetic IDX/npz files (tiny, written here) test the parser and the checks;
the real files in ../shared/datasets/mnist test the published checksums and the real shapes."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from mnistlab.core.errors import ConfigError, DataError
from mnistlab.data import IDX_FILES, MNIST_SHA256, encode_labels, load_mnist, prepare, read_idx

pytestmark = pytest.mark.fast  # make test-fast: no training, no subprocess runs of training


def idx_bytes(array: np.ndarray) -> bytes:
    """Written out by hand from the IDX spec, independently of the loader."""
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def synthetic(n_train: int = 30, n_test: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_idx_dir(folder: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> dict[str, str]:
    """Write the four files; return their SHA-256 (to pass as the expected checksums)."""
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for name, array in arrays.items():
        data = idx_bytes(array)
        sums[IDX_FILES[name]] = hashlib.sha256(data).hexdigest()
        path = folder / (IDX_FILES[name] + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(data) if gz else data)
    return sums


@pytest.mark.parametrize("gz", [True, False])
def test_reads_idx_files_gzipped_or_not(tmp_path, gz):
    arrays = synthetic()
    sums = write_idx_dir(tmp_path, arrays, gz=gz)
    raw = load_mnist(tmp_path, checksums=sums)
    for name, expected in arrays.items():
        np.testing.assert_array_equal(getattr(raw, name), expected)
    assert raw.source == str(tmp_path)


def test_reads_keras_style_npz_and_verifies_its_contents(tmp_path):
    arrays = synthetic()
    sums = write_idx_dir(tmp_path / "idx", arrays)  # checksums of the same content as IDX
    np.savez(tmp_path / "mnist.npz", **arrays)
    raw = load_mnist(tmp_path, checksums=sums)
    np.testing.assert_array_equal(raw.x_test, arrays["x_test"])
    arrays["y_test"] = (arrays["y_test"] + 1) % 10  # same shape, other content
    np.savez(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(DataError, match=r"mnist\.npz \[y_test\]: SHA-256 of the t10k-labels-idx1-ubyte contents"):
        load_mnist(tmp_path, checksums=sums)


def test_published_checksums_refuse_other_data(tmp_path):
    write_idx_dir(tmp_path, synthetic())
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path)  # the published MNIST checksums
    assert "train-images-idx3-ubyte.gz: SHA-256" in str(info.value) and "corrupt or not MNIST" in str(info.value)
    load_mnist(tmp_path, verify=False)  # data.verify=false reads them anyway


def test_one_corrupted_file_is_named(tmp_path):
    arrays = synthetic()
    sums = write_idx_dir(tmp_path, arrays)
    flipped = arrays["x_test"].copy()
    flipped[3, 14, 14] ^= 0xFF  # one pixel
    write_idx_dir(tmp_path, {**arrays, "x_test": flipped})
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: SHA-256"):
        load_mnist(tmp_path, checksums=sums)


@pytest.mark.parametrize(
    "damage,phrase",
    [
        (lambda data: data[: len(data) // 2], "cannot be read as gzip"),  # truncated download
        (lambda data: b"not gzip at all" + data, "cannot be read as gzip"),
        (
            lambda data: gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">3I", 30, 28, 28) + b"\x01" * 100),
            "truncated or padded",
        ),
        (lambda data: gzip.compress(b"\x00\x00\x0d\x03" + b"\x00" * 50), "not an IDX file of unsigned bytes"),
        (lambda data: gzip.compress(idx_bytes(np.zeros(30, np.uint8))), "IDX header says 1 dimensions, expected 3"),
    ],
)
def test_damaged_file_is_refused_with_its_name(tmp_path, damage, phrase):
    sums = write_idx_dir(tmp_path, synthetic())
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path, checksums=sums)
    assert str(info.value).startswith(str(path)) and phrase in str(info.value)


def test_missing_file_and_missing_dir_are_named(tmp_path):
    sums = write_idx_dir(tmp_path, synthetic())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"missing MNIST file\(s\) t10k-labels-idx1-ubyte\[\.gz\]"):
        load_mnist(tmp_path, checksums=sums)
    with pytest.raises(DataError, match=r"data.dir='.*nowhere': no such directory"):
        load_mnist(tmp_path / "nowhere")


def test_images_and_labels_of_different_counts_are_refused(tmp_path):
    arrays = synthetic()
    arrays["y_train"] = arrays["y_train"][:-1]
    sums = write_idx_dir(tmp_path, arrays)
    with pytest.raises(DataError, match="30 train images but 29 train labels"):
        load_mnist(tmp_path, checksums=sums)


def test_prepare_splits_limits_normalises_and_encodes(tmp_path):
    arrays = synthetic(n_train=40)
    raw = load_mnist(tmp_path, checksums=write_idx_dir(tmp_path, arrays))
    data = prepare(raw, val_split=0.25, limit=None, encoding="integer")
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (30, 10, 12)
    np.testing.assert_array_equal(data.x_val[..., 0] * 255, arrays["x_train"][30:])  # the last 25%
    assert data.x_train.dtype == np.float32 and data.x_train.shape[1:] == (28, 28, 1)
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0
    np.testing.assert_array_equal(data.y_train, arrays["y_train"][:30])

    limited = prepare(raw, val_split=0.25, limit=7, encoding="onehot")
    assert len(limited.x_train) == 7 and len(limited.x_val) == 10  # validation set unchanged by limit
    assert limited.y_train.shape == (7, 10) and (limited.y_train.argmax(1) == arrays["y_train"][:7]).all()
    np.testing.assert_array_equal(limited.labels_test, arrays["y_test"])

    assert len(prepare(raw, val_split=0.0, limit=None, encoding="integer").x_val) == 0
    with pytest.raises(ConfigError, match=r"data.limit=31: must be <= 30"):
        prepare(raw, val_split=0.25, limit=31, encoding="integer")


def test_label_encodings():
    labels = np.array([3, 0, 9], np.uint8)
    assert encode_labels(labels, "integer").tolist() == [3, 0, 9]
    onehot = encode_labels(labels, "onehot")
    assert onehot.dtype == np.float32 and onehot.sum(axis=1).tolist() == [1, 1, 1]
    assert onehot.argmax(axis=1).tolist() == [3, 0, 9]


def test_real_mnist_files(mnist_dir):
    raw = load_mnist(mnist_dir)  # verified against the published checksums
    assert raw.x_train.shape == (60000, 28, 28) and raw.x_test.shape == (10000, 28, 28)
    assert raw.x_train.dtype == np.uint8 and int(raw.x_train.max()) == 255
    assert sorted(np.unique(raw.y_train).tolist()) == list(range(10))
    assert np.bincount(raw.y_test).min() > 800  # every digit well represented
    data = prepare(raw, val_split=0.1, limit=None, encoding="integer")
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (54000, 6000, 10000)
    # the real files agree with the checksums shipped beside them
    listed = dict(line.split()[::-1] for line in (mnist_dir / "SHA256SUMS").read_text().splitlines() if line)
    assert listed == MNIST_SHA256


def test_real_files_as_npz_pass_the_same_checksums(mnist_dir, tmp_path):
    """An npz rebuilt from the official arrays verifies: IDX files and npz share one checksum set."""
    raw = load_mnist(mnist_dir)
    np.savez_compressed(
        tmp_path / "mnist.npz", x_train=raw.x_train, y_train=raw.y_train, x_test=raw.x_test, y_test=raw.y_test
    )
    assert load_mnist(tmp_path).x_train.shape == (60000, 28, 28)


def test_a_damaged_copy_of_the_real_files_is_refused(mnist_dir, tmp_path):
    for path in mnist_dir.glob("*.gz"):
        shutil.copy(path, tmp_path / path.name)
    target = tmp_path / "train-labels-idx1-ubyte.gz"
    data = bytearray(gzip.decompress(target.read_bytes()))
    data[-1] = (data[-1] + 1) % 10  # one label changed
    target.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: SHA-256"):
        load_mnist(tmp_path)


def test_read_idx_single_file(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    (tmp_path / "l.idx").write_bytes(idx_bytes(labels))
    np.testing.assert_array_equal(read_idx(tmp_path / "l.idx", expected_ndim=1), labels)


def test_a_folder_read_again_unchanged_is_not_parsed_again_and_a_changed_file_is(tmp_path):
    """A reused worker's next job gets the arrays already read and checked; a file rewritten since
    (a new label here, then a damaged one) is read and checked again."""
    arrays = synthetic()
    sums = write_idx_dir(tmp_path, arrays)
    first = load_mnist(tmp_path, checksums=sums)
    assert load_mnist(tmp_path, checksums=sums) is first
    assert not first.x_train.flags.writeable  # shared by later runs: read-only
    assert load_mnist(tmp_path, checksums=sums, verify=False) is not first  # another request, read anew
    changed = {**arrays, "y_test": (arrays["y_test"] + 1) % 10}
    sums = write_idx_dir(tmp_path, changed)
    np.testing.assert_array_equal(load_mnist(tmp_path, checksums=sums).y_test, changed["y_test"])
    (tmp_path / (IDX_FILES["y_test"] + ".gz")).write_bytes(gzip.compress(idx_bytes(arrays["y_test"])))
    with pytest.raises(DataError, match="SHA-256"):
        load_mnist(tmp_path, checksums=sums)
