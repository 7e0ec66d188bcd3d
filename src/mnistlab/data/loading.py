"""Reading a registered dataset: its IDX files from a folder (or an npz), or through keras.datasets;
every source checked against the published SHA-256 sums, then for consistency."""

from __future__ import annotations

import hashlib
import importlib
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistlab.core.errors import DataError
from mnistlab.data.idx import file_bytes, idx_bytes, parse_idx
from mnistlab.data.registry import SPLITS, DatasetSpec


@dataclass(frozen=True)
class RawData:
    """The four arrays as stored: uint8 images (N, H, W) and uint8 labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def load(
    spec: DatasetSpec, directory: str | Path | None, verify: bool = True, checksums: Mapping[str, str] | None = None
) -> RawData:
    """Read ``spec``'s files from ``directory`` (IDX files or an npz), or through Keras when None.
    ``checksums``: other sums than the published ones (tests)."""
    sums = spec.checksums if checksums is None else checksums
    if directory is None:
        arrays, origins = _download_with_keras(spec, verify, sums)
        source = "Keras download cache"
    else:
        folder = Path(directory).expanduser()
        if not folder.is_dir():
            raise DataError(
                f"data.dir={str(directory)!r}: no such directory (set data.dir or {spec.env_var} to the "
                f"folder with the {spec.title} IDX files, or to null to download through Keras)"
            )
        key = (spec.name, verify, tuple(sorted(sums.items())), _files_as_they_are(folder))
        if _last_read[0] == key:
            return _last_read[1]
        arrays, origins = _read_folder(spec, folder, verify, sums)
        source = str(folder)
    _check_consistent(spec, arrays, source, origins)
    raw = RawData(**arrays, source=source)
    if directory is not None:
        for array in arrays.values():
            array.flags.writeable = False  # shared by the process's later runs: nobody changes them
        _last_read[:] = [key, raw]
    return raw


#: the folder read last and its arrays: a launcher's reused worker (joblib) reads and checks the
#: same files for every job, 0.4-0.8 s each time; any file changed, added or removed reads it again
_last_read: list = [None, None]


def _files_as_they_are(folder: Path) -> tuple:
    stats = ((path.name, path.stat()) for path in folder.iterdir() if path.is_file())
    return tuple(sorted((name, st.st_size, st.st_mtime_ns, st.st_ino) for name, st in stats))


def _read_folder(spec: DatasetSpec, folder: Path, verify: bool, sums: Mapping[str, str]) -> tuple[dict, dict]:
    """The four arrays and, for each, the file it came from (for error messages)."""
    found = {split: _find_idx(folder, spec.files[split]) for split in SPLITS}
    if all(found.values()):  # every file parsed (its header checked) before any checksum
        arrays = {
            split: parse_idx(file_bytes(path), path, expected_ndim=3 if split.startswith("x") else 1)
            for split, path in found.items()
        }
        if verify:
            for split, path in found.items():
                _verify_file(spec, path, arrays[split], sums)
        return arrays, {split: str(path) for split, path in found.items()}
    npz = folder / spec.npz_file if spec.npz_file else None
    if npz is not None and npz.is_file() and not any(found.values()):
        arrays = _read_npz(npz)
        origins = {split: f"{npz} [{split}]" for split in SPLITS}
        if verify:
            for split, array in arrays.items():
                check_sha256(idx_bytes(array), spec.files[split], sums, origins[split], spec.title)
        return arrays, origins
    missing = ", ".join(f"{spec.files[s]}[.gz]" for s, p in found.items() if p is None)
    also = f", or a {spec.npz_file}" if spec.npz_file else ""
    raise DataError(
        f"{folder}: missing {spec.title} file(s) {missing} (expected the four official IDX files, gzipped or not{also})"
    )


def _verify_file(spec: DatasetSpec, path: Path, array: np.ndarray, sums: Mapping[str, str]) -> None:
    base = path.name.removesuffix(".gz")
    if spec.checksums_of == "contents":
        check_sha256(idx_bytes(array), base, sums, str(path), spec.title)
    elif path.suffix != ".gz":
        raise DataError(
            f"{path}: {spec.title}'s published SHA-256 sums are of the .gz files; give the .gz files as "
            "published, or set data.verify=false to read these unchecked"
        )
    else:
        check_sha256(path.read_bytes(), base, sums, str(path), spec.title, what="file")


def _find_idx(folder: Path, base: str) -> Path | None:
    return next((p for p in (folder / f"{base}.gz", folder / base) if p.is_file()), None)


def _read_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in SPLITS if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: lacks the array(s) {', '.join(missing)} (a Keras-style npz has "
                    "x_train, y_train, x_test, y_test)"
                )
            arrays = {k: npz[k] for k in SPLITS}
    except (OSError, ValueError, zlib.error, EOFError) as exc:
        raise DataError(f"{path}: cannot be read as an npz archive ({exc})") from None
    for name, array in arrays.items():
        expected_ndim = 3 if name.startswith("x") else 1
        if array.dtype != np.uint8 or array.ndim != expected_ndim:
            raise DataError(
                f"{path}: {name} is {array.dtype} with {array.ndim} dimensions, expected uint8 with {expected_ndim}"
            )
    return arrays


def _download_with_keras(spec: DatasetSpec, verify: bool, sums: Mapping[str, str]) -> tuple[dict, dict]:
    module = importlib.import_module(f"keras.datasets.{spec.keras_dataset}")  # only here: Keras costs seconds
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as exc:  # Keras raises plain Exception on a failed download
        raise DataError(
            f"data.dir is null and Keras could not download {spec.title} "
            f"({str(exc).splitlines()[0]}); set data.dir or {spec.env_var} to a folder with the "
            f"{spec.title} IDX files"
        ) from None
    if spec.keras_cache:  # the .gz files Keras fetched: checked and read like a data.dir
        cache = Path(os.environ.get("KERAS_HOME") or "~/.keras").expanduser() / spec.keras_cache
        return _read_folder(spec, cache, verify, sums)
    arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    origins = {split: f"Keras's {spec.keras_dataset} [{split}]" for split in SPLITS}
    if verify:
        for split, array in arrays.items():
            check_sha256(idx_bytes(array), spec.files[split], sums, origins[split], spec.title)
    return arrays, origins


def check_sha256(
    data: bytes, base: str, checksums: Mapping[str, str], where: str, title: str, what: str = "contents"
) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if digest != checksums[base]:
        subject = f"the {base} contents" if what == "contents" else "the file"
        raise DataError(
            f"{where}: SHA-256 of {subject} is {digest[:16]}..., expected the published "
            f"{checksums[base][:16]}...: the file is corrupt or not {title} (data.verify=false to skip)"
        )


def _check_consistent(spec: DatasetSpec, arrays: dict, source: str, origins: Mapping[str, str]) -> None:
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y):
            files = " and ".join(Path(origins[f"{k}_{split}"]).name for k in ("x", "y"))
            raise DataError(f"{source}: {len(x)} {split} images but {len(y)} {split} labels ({files} do not match)")
        if len(y) and int(y.max()) >= spec.num_classes:
            raise DataError(
                f"{origins[f'y_{split}']}: {split} labels go up to {int(y.max())}, "
                f"expected {spec.label_word} 0-{spec.num_classes - 1}"
            )
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError(
            f"{source}: train images are {arrays['x_train'].shape[1:]}, test images {arrays['x_test'].shape[1:]}"
        )
