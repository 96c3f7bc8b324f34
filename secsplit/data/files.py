"""Loaders for users' own files: MNIST idx, CIFAR-10 binary batches, CSV and NPZ tables.

Every malformed file ends in a DataError naming the file and the problem, raised here at the
boundary rather than from deep inside numpy. Nothing is ever unpickled.
"""

from __future__ import annotations

import csv
import gzip
import math
import zlib
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np

from secsplit.data.dataset import Dataset, dataset_from_arrays
from secsplit.errors import DataError

PathArg = str | PathLike

#: idx type codes -> numpy big-endian dtypes (the idx format of LeCun's MNIST files)
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
#: magic numbers of the MNIST files: unsigned bytes, 1 dimension (labels) or 3 (images)
MNIST_LABELS_MAGIC, MNIST_IMAGES_MAGIC = 2049, 2051
#: one CIFAR-10 binary record: a label byte, then 3x32x32 pixel bytes (red plane, green, blue)
CIFAR_RECORD = 1 + 3 * 32 * 32
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: PathArg) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic (whatever the file is named)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:  # corrupt or truncated gzip stream
        raise DataError(f"{path}: cannot decompress gzip data ({error})") from None


def read_idx(path: PathArg, *, expected_magic: int | None = None) -> np.ndarray:
    """Read an idx file (plain or gzip) into an array of its shape and native-endian dtype.

    The header is 2 zero bytes, a type code (0x08 uint8 ... 0x0E float64), the number of
    dimensions, then each dimension as a big-endian uint32; the data follow, big-endian.

    Args:
        path: the file.
        expected_magic: the first 4 bytes read as one big-endian integer must equal this, e.g.
            2051 for MNIST images, 2049 for labels; catches swapped image/label files.

    Raises:
        DataError: missing file, wrong magic number, truncated or oversized file.
    """
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: truncated idx file: {len(raw)} bytes, expected at least 4 for the header")
    magic = int.from_bytes(raw[:4], "big")
    type_code, ndim = raw[2], raw[3]
    if expected_magic is not None and magic != expected_magic:
        raise DataError(f"{path}: wrong magic number {magic}, expected {expected_magic}")
    if raw[0] != 0 or raw[1] != 0 or type_code not in IDX_DTYPES or ndim == 0:
        codes = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{path}: wrong magic number 0x{magic:08X}; expected an idx header 0x0000TTNN with type "
                        f"code TT in ({codes}) and NN >= 1 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated idx file: {len(raw)} bytes, expected at least {header} for the header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_DTYPES[type_code])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "oversized"
        raise DataError(f"{path}: {problem} idx file: {len(raw)} bytes, expected {expected} for shape {dims}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def load_mnist_idx(images_path: PathArg, labels_path: PathArg, *, name: str = "mnist-idx", seed: int = 0,
                   test_fraction: float = 0.2) -> Dataset:
    """MNIST-format idx files (images N x rows x cols uint8, labels N uint8) -> a Dataset of 1xHxW images."""
    images = read_idx(images_path, expected_magic=MNIST_IMAGES_MAGIC)
    labels = read_idx(labels_path, expected_magic=MNIST_LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    return dataset_from_arrays(name, images[:, None], labels.astype(np.int64), kind="image", seed=seed,
                               test_fraction=test_fraction)


def read_cifar10_batch(path: PathArg) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch (e.g. ``data_batch_1.bin``) -> uint8 images (N, 3, 32, 32), int64 labels (N,).

    Raises:
        DataError: missing file, length not a whole number of 3,073-byte records, label byte > 9.
    """
    raw = _read_bytes(path)
    if len(raw) == 0 or len(raw) % CIFAR_RECORD:
        records = len(raw) // CIFAR_RECORD + 1
        raise DataError(f"{path}: truncated CIFAR-10 batch: {len(raw)} bytes, expected a multiple of the "
                        f"{CIFAR_RECORD}-byte record ({records * CIFAR_RECORD} bytes for {records} record(s))")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{path}: label byte {labels.max()} out of range 0..9; not a CIFAR-10 batch")
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def load_cifar10(paths: PathArg | Sequence[PathArg], *, name: str = "cifar10", seed: int = 0,
                 test_fraction: float = 0.2) -> Dataset:
    """Concatenate CIFAR-10 binary batches into one Dataset (3x32x32 in [0, 1], 10 classes)."""
    if isinstance(paths, (str, PathLike)):
        paths = [paths]
    if not paths:
        raise DataError("load_cifar10 needs at least one batch file")
    parts = [read_cifar10_batch(p) for p in paths]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return dataset_from_arrays(name, x, y, kind="image", seed=seed, test_fraction=test_fraction, num_classes=10)


def load_table(path: PathArg, *, label_column: str = "y", features_key: str = "x", name: str | None = None,
               seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """A user's table -> a tabular Dataset (standardized with training statistics).

    Args:
        path: ``.csv`` / ``.csv.gz`` (a header row; every column but the label is a numeric
            feature) or ``.npz`` (read with ``allow_pickle=False``).
        label_column: the CSV column, or the NPZ array, holding the labels. Labels that are not
            non-negative integers (e.g. class names) map to 0..K-1 in sorted order.
        features_key: the NPZ array holding the features (N, ...); flattened to (N, D).
        name: the Dataset's name; defaults to the file name without its suffix.
        seed, test_fraction: the stratified train/test split.

    Raises:
        DataError: missing file, unknown label column or array (lists the ones present),
            non-numeric features, ragged rows, data that would need unpickling.
    """
    path = Path(path)
    if path.name.endswith(".npz"):
        x, y = _read_npz(path, features_key, label_column)
    elif path.name.endswith((".csv", ".csv.gz")):
        x, y = _read_csv(path, label_column)
    else:
        raise DataError(f"{path}: unsupported table format; use .csv, .csv.gz or .npz")
    name = name or path.name.split(".")[0]
    return dataset_from_arrays(name, x, _encode_labels(path, y), kind="tabular", seed=seed,
                               test_fraction=test_fraction)


def _read_npz(path: Path, features_key: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            for key in (features_key, label_key):
                if key not in keys:
                    raise DataError(f"{path}: no array named {key!r}; arrays present: {', '.join(keys)}")
            x, y = archive[features_key], archive[label_key]
    except ValueError as error:  # object arrays (or a non-npz file) would need pickle: refused
        raise DataError(f"{path}: cannot read without unpickling ({error})") from None
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: not a valid .npz file ({error})") from None
    if x.ndim == 0 or y.ndim != 1:
        raise DataError(f"{path}: features need shape (N, ...) and labels (N,), got {x.shape} and {y.shape}")
    return x.reshape(len(x), -1), y


def _read_csv(path: Path, label_column: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        text = _read_bytes(path).decode("utf-8-sig")  # -sig: drop the byte-order mark spreadsheets write
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error})") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise DataError(f"{path}: empty CSV file")
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if r]
    if label_column not in header:
        raise DataError(f"{path}: unknown label column {label_column!r}; columns: {', '.join(header)}")
    if not body:
        raise DataError(f"{path}: CSV file has a header but no rows")
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(f"{path}: line {number} has {len(row)} fields, the header has {len(header)}")
    label_index = header.index(label_column)
    labels = np.array([r[label_index].strip() for r in body])
    missing = np.flatnonzero(labels == "")
    if len(missing):
        raise DataError(f"{path}: line {missing[0] + 2} has no value in label column {label_column!r}")
    try:
        features = np.array([[float(v) for i, v in enumerate(r) if i != label_index] for r in body], dtype=np.float64)
    except ValueError as error:
        raise DataError(f"{path}: non-numeric feature value ({error})") from None
    return features, labels


def _encode_labels(path: Path, y: np.ndarray) -> np.ndarray:
    """Non-negative integer labels stay (also written as '3' or 3.0); others map to 0..K-1 in sorted order.

    Numeric labels sort by value (so -1, 1 -> 0, 1), anything else by string (class names).
    """
    try:
        values = y.astype(np.float64)
    except (TypeError, ValueError):
        return np.unique(y.astype(str), return_inverse=True)[1].astype(np.int64)
    if not np.isfinite(values).all():
        raise DataError(f"{path}: labels contain NaN or infinite values")
    if np.all(values == np.round(values)) and values.min() >= 0:
        return values.astype(np.int64)
    return np.unique(values, return_inverse=True)[1].astype(np.int64)
