"""Bad data through the real command line (``python run.py data.dir=...`` in a subprocess).

Each case damages a copy of the real MNIST files in one way: missing folder, missing file, truncated
gzip, corrupted gzip, one pixel changed (wrong checksum), wrong IDX header, label out of range, or
images and labels of different counts. This proves that each one is refused with exit code 1 and a
single ``error:`` line naming the file and the problem, with no traceback, and that nothing reaches
MLflow, because the run fails before training starts.
"""

from __future__ import annotations

import gzip
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import error_lines, mlflow_client, run_cli
from mnistlab.data import IDX_FILES, load_mnist, read_idx

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = (f"{IDX_FILES[k]}.gz" for k in IDX_FILES)


def copy_real(real: Path, folder: Path, skip: str | None = None) -> Path:
    """Copy the four real .gz files into ``folder``, leaving out ``skip``. Uses ``copyfile``, not
    ``copy``: the shared files are read-only and the copies have to be writable."""
    folder.mkdir(parents=True)
    for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS):
        if name != skip:
            shutil.copyfile(real / name, folder / name)
    return folder


def rewrite_idx(path: Path, change: Callable[[bytearray], bytes]) -> None:
    """Decompress ``path``, apply ``change`` to the IDX bytes, and write it back as valid gzip
    (level 1: any level is valid gzip, and the default 9 takes seconds on the images)."""
    path.write_bytes(gzip.compress(change(bytearray(gzip.decompress(path.read_bytes()))), compresslevel=1))


# Each builder turns (real folder, tmp folder) into (data.dir, damaged file), with the file = data.dir when
# the folder itself is what's wrong. Each one also checks that its damage is the one it claims to make,
# so a case can't pass because of some other fault.


def missing_directory(real: Path, tmp: Path) -> tuple[Path, Path]:
    return tmp / "nowhere", tmp / "nowhere"


def missing_file(real: Path, tmp: Path) -> tuple[Path, Path]:
    folder = copy_real(real, tmp / "data", skip=TEST_LABELS)
    return folder, folder / TEST_LABELS


def truncated_gzip(real: Path, tmp: Path) -> tuple[Path, Path]:
    folder = copy_real(real, tmp / "data")
    path = folder / TEST_IMAGES
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a download cut off halfway
    return folder, path


def corrupted_gzip(real: Path, tmp: Path) -> tuple[Path, Path]:
    folder = copy_real(real, tmp / "data")
    path = folder / TEST_IMAGES
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])  # inside the deflate stream
    path.write_bytes(bytes(data))
    assert path.stat().st_size == (real / TEST_IMAGES).stat().st_size  # same length, only the bytes differ
    return folder, path


def one_pixel_changed(real: Path, tmp: Path) -> tuple[Path, Path]:
    folder = copy_real(real, tmp / "data")
    path = folder / TEST_IMAGES

    def flip_pixel(data: bytearray) -> bytes:
        data[16 + 5 * 784 + 14 * 28 + 14] ^= 0x01  # image 5, centre pixel, lowest bit
        return bytes(data)

    rewrite_idx(path, flip_pixel)
    # still valid gzip and valid IDX, off by one pixel: only the checksum can catch it
    damaged, original = read_idx(path, expected_ndim=3), read_idx(real / TEST_IMAGES, expected_ndim=3)
    assert damaged.shape == original.shape and int((damaged != original).sum()) == 1
    return folder, path


def _set_header_byte(index: int, value: int) -> Callable[[bytearray], bytes]:
    def change(data: bytearray) -> bytes:
        assert data[index] != value
        data[index] = value
        return bytes(data)

    return change


def wrong_magic(real: Path, tmp: Path) -> tuple[Path, Path]:
    folder = copy_real(real, tmp / "data")
    rewrite_idx(folder / TEST_LABELS, _set_header_byte(2, 0x09))  # IDX type 0x09 (signed bytes), not 0x08
    return folder, folder / TEST_LABELS


def wrong_dimensions(real: Path, tmp: Path) -> tuple[Path, Path]:
    folder = copy_real(real, tmp / "data")
    rewrite_idx(folder / TEST_IMAGES, _set_header_byte(3, 2))  # claims 2 dimensions, images have 3
    return folder, folder / TEST_IMAGES


def wrong_count_in_header(real: Path, tmp: Path) -> tuple[Path, Path]:
    folder = copy_real(real, tmp / "data")
    rewrite_idx(folder / TEST_LABELS, lambda data: bytes(data[:4]) + struct.pack(">I", 10001) + bytes(data[8:]))
    return folder, folder / TEST_LABELS


def label_out_of_range(real: Path, tmp: Path) -> tuple[Path, Path]:
    folder = copy_real(real, tmp / "data")
    rewrite_idx(folder / TEST_LABELS, lambda data: bytes(data[:-1]) + bytes([10]))  # last label: 10
    assert int(read_idx(folder / TEST_LABELS, expected_ndim=1).max()) == 10
    return folder, folder / TEST_LABELS


def fewer_labels_than_images(real: Path, tmp: Path) -> tuple[Path, Path]:
    folder = copy_real(real, tmp / "data")
    # drop the last test label and say 9999 in the header: a valid IDX file, just one label short
    rewrite_idx(folder / TEST_LABELS, lambda data: bytes(data[:4]) + struct.pack(">I", 9999) + bytes(data[8:-1]))
    assert read_idx(folder / TEST_LABELS, expected_ndim=1).shape == (9999,)
    return folder, folder / TEST_LABELS


# Overrides: the header checks run while each file is parsed, before the checksums, so those cases
# need nothing extra. The label-range and count checks run after the checksums, and the checksum
# (published SHA-256 of the real files) would reject the edited labels file first. So those two cases
# use data.verify=false to reach the check that they test.
NO_VERIFY = ("data.verify=false",)
# None of these change how the data is read. They only keep a regression short: damaged data that
# gets through trains one small epoch and then fails the test, rather than training for minutes.
CHEAP = ("data.limit=100", "trainer.epochs=1", "tracking.log_model=false")

CASES = [
    pytest.param(missing_directory, (), "no such directory", id="missing-directory"),
    pytest.param(missing_file, (), "missing MNIST file(s) t10k-labels-idx1-ubyte[.gz]", id="missing-file"),
    pytest.param(truncated_gzip, (), "cannot be read as gzip (Compressed file ended", id="truncated-gzip"),
    pytest.param(corrupted_gzip, (), "cannot be read as gzip (", id="corrupted-gzip"),
    pytest.param(one_pixel_changed, (), "SHA-256 of the t10k-images-idx3-ubyte contents is", id="wrong-checksum"),
    pytest.param(wrong_magic, (), "not an IDX file of unsigned bytes (starts with 00000901", id="wrong-magic"),
    pytest.param(wrong_dimensions, (), "IDX header says 2 dimensions, expected 3", id="wrong-dimensions"),
    pytest.param(wrong_count_in_header, (), "IDX header promises shape (10001,)", id="wrong-count-in-header"),
    pytest.param(
        label_out_of_range, NO_VERIFY, "test labels go up to 10, expected digits 0-9", id="label-out-of-range"
    ),
    pytest.param(
        fewer_labels_than_images,
        NO_VERIFY,
        "10000 test images but 9999 test labels",
        id="images-and-labels-of-different-counts",
    ),
]


def assert_nothing_in_mlflow(store: str, root: Path) -> None:
    """The store was never created, or it holds no run in any experiment, and there are no artifacts."""
    db = Path(store.removeprefix("sqlite:///"))
    if db.exists():
        client = mlflow_client(store)
        runs = [r.info.run_id for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
        assert runs == [], f"a run that never trained was recorded: {runs}"
    assert not (root / "mlruns").exists(), "artifacts were written for a run that never trained"


@pytest.mark.parametrize("damage,extra,problem", CASES)
def test_bad_data_is_refused_in_one_line_naming_the_file_and_records_nothing(
    tmp_path, mnist_dir, store, damage, extra, problem
):
    data_dir, damaged = damage(mnist_dir, tmp_path)
    proc = run_cli(f"data.dir={data_dir}", *extra, *CHEAP, store=store, timeout=180)

    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])  # 1: DataError
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    message = lines[0]
    if damaged == data_dir or (damaged.parent == data_dir and not damaged.exists()):
        # a missing folder or file: the path to the folder, and the file's name when a file is missing
        assert str(data_dir) in message and damaged.name.removesuffix(".gz") in message, message
    elif "images but" in problem:
        # which of the two files is wrong can't be known: name the folder and both files
        assert message.startswith(f"error: {data_dir}: "), message
        assert TEST_IMAGES in message and TEST_LABELS in message, message
    else:
        assert message.startswith(f"error: {damaged}: "), message  # the full path of the damaged file
    assert problem in message, message
    assert_nothing_in_mlflow(store, tmp_path)


def test_an_undamaged_copy_loads(mnist_dir, tmp_path):
    """Control: the copies the cases start from are good, so each refusal above comes from its damage."""
    raw = load_mnist(copy_real(mnist_dir, tmp_path / "data"))
    assert raw.x_train.shape == (60000, 28, 28) and raw.y_test.shape == (10000,)
