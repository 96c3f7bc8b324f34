"""Loaders for users' own files: MNIST idx, CIFAR-10 binary batches, CSV and NPZ tables.

Every malformed file ends in a DataError naming the file and the problem. Nothing is unpickled.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from secsplit.data.dataset import Dataset, dataset_from_arrays
from secsplit.errors import DataError

#: idx type codes -> numpy big-endian dtypes (the idx format of LeCun's MNIST files)
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
#: magic numbers of the MNIST files: unsigned bytes, 1 dimension (labels) or 3 (images)
MNIST_LABELS_MAGIC, MNIST_IMAGES_MAGIC = 2049, 2051
CIFAR_RECORD = 1 + 3 * 32 * 32


def _read_bytes(path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError) as error:  # bad gzip stream, truncated archive
        raise DataError(f"{path}: cannot read ({error})") from None


def read_idx(path, *, expected_magic: int | None = None) -> np.ndarray:
    """Read an idx file (plain or .gz): 2 zero bytes, a type code, the number of dimensions, dims."""
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: truncated idx file ({len(raw)} bytes, the header alone needs 4)")
    magic = int.from_bytes(raw[:4], "big")
    type_code, ndim = raw[2], raw[3]
    if expected_magic is not None and magic != expected_magic:
        raise DataError(f"{path}: wrong magic number {magic}, expected {expected_magic}")
    if raw[0] != 0 or raw[1] != 0 or type_code not in IDX_DTYPES or ndim == 0:
        raise DataError(f"{path}: wrong magic number {magic} (0x{magic:08x}); not an idx file")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated idx header: {len(raw)} bytes, expected at least {header}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_DTYPES[type_code])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "oversized"
        raise DataError(f"{path}: {kind} idx file: {len(raw)} bytes, expected {expected} for shape {dims}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def load_mnist_idx(images_path, labels_path, *, name: str = "mnist-idx", seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """MNIST-format images (N x rows x cols, uint8) and labels (N) -> a Dataset of 1xHxW images."""
    images = read_idx(images_path, expected_magic=MNIST_IMAGES_MAGIC)
    labels = read_idx(labels_path, expected_magic=MNIST_LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    return dataset_from_arrays(name, images[:, None], labels.astype(np.int64), kind="image", seed=seed, test_fraction=test_fraction)


def read_cifar10_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch: records of 1 label byte + 3072 pixel bytes (3x32x32, channel-major)."""
    raw = _read_bytes(path)
    if len(raw) == 0 or len(raw) % CIFAR_RECORD:
        raise DataError(f"{path}: truncated CIFAR-10 batch: {len(raw)} bytes is not a multiple of the {CIFAR_RECORD}-byte record")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{path}: label byte {labels.max()} out of range 0..9; not a CIFAR-10 batch")
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), labels


def load_cifar10(paths: Sequence, *, name: str = "cifar10", seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """Concatenate CIFAR-10 binary batches into one Dataset (3x32x32 in [0, 1])."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    parts = [read_cifar10_batch(p) for p in paths]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return dataset_from_arrays(name, x, y, kind="image", seed=seed, test_fraction=test_fraction)


def load_table(path, *, label_column: str = "y", features_key: str = "x", name: str | None = None,
               seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """A CSV (header row; ``label_column`` names the label) or NPZ (``features_key`` and ``label_column``
    arrays) table -> a tabular Dataset. Non-integer labels are mapped to 0..K-1 in sorted order."""
    path = Path(path)
    name = name or path.stem
    if path.suffix == ".npz":
        x, y = _read_npz(path, features_key, label_column)
    elif path.suffix in (".csv", ".gz") or path.name.endswith(".csv.gz"):
        x, y = _read_csv(path, label_column)
    else:
        raise DataError(f"{path}: unsupported table format {path.suffix!r}; use .csv or .npz")
    return dataset_from_arrays(name, x, _encode_labels(y), kind="tabular", seed=seed, test_fraction=test_fraction)


def _read_npz(path: Path, features_key: str, label_key: str):
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            for key in (features_key, label_key):
                if key not in keys:
                    raise DataError(f"{path}: no array named {key!r}; arrays present: {', '.join(keys)}")
            x, y = archive[features_key], archive[label_key]
    except ValueError as error:  # object arrays need pickle: refused
        raise DataError(f"{path}: cannot read without unpickling ({error})") from None
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: not a valid .npz file ({error})") from None
    return x.reshape(len(x), -1), y


def _read_csv(path: Path, label_column: str):
    text = _read_bytes(path).decode("utf-8", errors="replace").splitlines()
    rows = list(csv.reader(text))
    if not rows:
        raise DataError(f"{path}: empty CSV file")
    header, body = rows[0], [r for r in rows[1:] if r]
    if label_column not in header:
        raise DataError(f"{path}: unknown label column {label_column!r}; columns: {', '.join(header)}")
    if not body:
        raise DataError(f"{path}: CSV file has a header but no rows")
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataError(f"{path}: line {number} has {len(row)} fields, the header has {len(header)}")
    label_index = header.index(label_column)
    labels = np.array([r[label_index] for r in body])
    try:
        features = np.array([[float(v) for i, v in enumerate(r) if i != label_index] for r in body], dtype=np.float64)
    except ValueError as error:
        raise DataError(f"{path}: non-numeric feature value ({error})") from None
    return features, labels


def _encode_labels(y: np.ndarray) -> np.ndarray:
    """Integer labels stay; anything else (strings, floats like '1.0') maps to 0..K-1 in sorted order."""
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64)
    try:
        as_float = y.astype(np.float64)
        if np.all(as_float == np.round(as_float)) and as_float.min() >= 0:
            return as_float.astype(np.int64)
    except ValueError:
        pass
    _, codes = np.unique(y.astype(str), return_inverse=True)
    return codes.astype(np.int64)
