"""The IDX format (LeCun's, as MNIST and Fashion-MNIST ship): parse a file, rebuild a file's bytes."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from mnistlab.core.errors import DataError

_IDX_UBYTE = 0x08


def file_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it is gzipped."""
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot be read as {'gzip' if path.suffix == '.gz' else 'a file'} ({exc})") from None


def read_idx(path: Path, expected_ndim: int | None = None) -> np.ndarray:
    """Parse one IDX file of unsigned bytes, gzipped or not."""
    return parse_idx(file_bytes(path), path, expected_ndim)


def parse_idx(data: bytes, path: Path, expected_ndim: int | None = None) -> np.ndarray:
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != _IDX_UBYTE:
        raise DataError(
            f"{path}: not an IDX file of unsigned bytes (starts with {data[:4].hex() or 'nothing'}, "
            "expected 00000801 for labels or 00000803 for images)"
        )
    ndim = data[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataError(
            f"{path}: IDX header says {ndim} dimensions, expected {expected_ndim} "
            f"({'images' if expected_ndim == 3 else 'labels'})"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: IDX header is truncated ({len(data)} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    size = int(np.prod(shape))
    if len(data) - header != size:
        raise DataError(
            f"{path}: IDX header promises shape {shape} ({size} bytes of data), "
            f"the file holds {len(data) - header}: truncated or padded"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: the bytes of the file it would be."""
    header = bytes([0, 0, _IDX_UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
