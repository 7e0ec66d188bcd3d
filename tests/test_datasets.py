"""The dataset extension point, proven with data=fashion_mnist. Fashion-MNIST cannot be downloaded
here, so these tests write small IDX files of their own (synthetic images: the tests are about the
loader, its checks and its errors) and train on them through the real ``python run.py``."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import error_lines, mlflow_client, only_run, run_cli
from mnistlab.core.errors import DataError
from mnistlab.data import DATASETS, load
from mnistlab.data.fashion_mnist import FASHION_MNIST
from mnistlab.data.idx import idx_bytes

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def small_fashion(folder: Path, train: int = 400, test: int = 200, gz: bool = True) -> dict[str, str]:
    """Four IDX files in Fashion-MNIST's names: each class a bright band at its own rows, plus noise
    (learnable in an epoch); returns the SHA-256 of the files as written."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for split, n in (("train", train), ("test", test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label : 4 + 2 * label, :] = 250
        for key, array in ((f"x_{split}", images), (f"y_{split}", labels)):
            name = FASHION_MNIST.files[key]
            data = gzip.compress(idx_bytes(array)) if gz else idx_bytes(array)
            (folder / (name + (".gz" if gz else ""))).write_bytes(data)
            sums[name] = hashlib.sha256(data).hexdigest()
    return sums


@pytest.mark.fast
def test_fashion_mnist_is_registered_with_its_published_files():
    assert {"mnist", "fashion_mnist"} <= set(DATASETS.names())
    spec = DATASETS["fashion_mnist"]
    assert spec.class_names == CLASSES and spec.input_shape == (28, 28, 1) and spec.num_classes == 10
    assert spec.files["x_train"] == "train-images-idx3-ubyte" and spec.checksums_of == "gzip"
    assert spec.env_var == "FASHION_MNIST_DIR" and spec.keras_dataset == "fashion_mnist"
    assert spec.checksums["train-images-idx3-ubyte"].startswith("08dc20ab1689590a")


@pytest.mark.fast
def test_the_gzip_checksums_are_checked_file_by_file(tmp_path):
    sums = small_fashion(tmp_path)
    raw = load(FASHION_MNIST, tmp_path, checksums=sums)  # the sums of the files as written: accepted
    assert raw.x_train.shape == (400, 28, 28) and raw.y_test.shape == (200,)
    with pytest.raises(DataError) as info:  # the published sums: these are not Fashion-MNIST
        load(FASHION_MNIST, tmp_path)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "train-images-idx3-ubyte.gz")) and "\n" not in message
    assert "SHA-256 of the file" in message and "not Fashion-MNIST" in message and "data.verify=false" in message
    assert load(FASHION_MNIST, tmp_path, verify=False).x_test.shape == (200, 28, 28)


@pytest.mark.fast
def test_uncompressed_files_cannot_be_checked_against_gzip_sums(tmp_path):
    small_fashion(tmp_path, gz=False)
    with pytest.raises(DataError, match=r"published SHA-256 sums are of the \.gz files"):
        load(FASHION_MNIST, tmp_path)
    assert load(FASHION_MNIST, tmp_path, verify=False).x_train.shape == (400, 28, 28)


def test_a_run_trains_on_fashion_mnist_and_names_its_classes(tmp_path, store):
    folder = tmp_path / "fashion"
    small_fashion(folder)
    proc = run_cli(
        "data=fashion_mnist",
        "data.verify=false",
        "model=mlp12",
        "trainer.epochs=2",
        "tracking.log_model=false",
        store=store,
        env={"FASHION_MNIST_DIR": str(folder)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run(store)
    assert run.info.status == "FINISHED"
    assert run.data.params["data.name"] == "fashion_mnist" and run.data.params["data.dir"] == str(folder)
    assert run.data.metrics["train_images"] == 360 and run.data.metrics["test_images"] == 200
    assert "Fashion-MNIST from " in proc.stdout + proc.stderr  # the log line of the data step
    local = Path(mlflow_client(store).download_artifacts(run.info.run_id, ""))
    per_class = pd.read_csv(local / "per_class.csv")
    assert tuple(per_class["class"]) == CLASSES and per_class["support"].sum() == 200
    predictions = pd.read_parquet(local / "predictions" / "test.parquet")
    assert len(predictions) == 200 and predictions["label"].max() <= 9


def test_without_files_the_error_names_the_dataset_and_its_variable(tmp_path, store):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli("data=fashion_mnist", store=store, env={"FASHION_MNIST_DIR": str(empty)})
    assert proc.returncode == 1
    assert error_lines(proc) == [
        f"error: {empty}: missing Fashion-MNIST file(s) train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
        "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz] (expected the four official IDX files, gzipped "
        "or not)"
    ]
    proc = run_cli("data=fashion_mnist", f"data.dir={tmp_path / 'nowhere'}", store=store)
    assert proc.returncode == 1 and "FASHION_MNIST_DIR" in error_lines(proc)[0]
    assert not Path(store[len("sqlite:///") :]).exists()  # refused before the store was opened


@pytest.mark.fast
def test_an_unknown_dataset_is_refused_before_anything_loads(compose_cfg):
    from mnistlab.config import validate
    from mnistlab.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.name='cifar10': must be one of .*mnist"):
        validate(compose_cfg(["data.name=cifar10"]))
