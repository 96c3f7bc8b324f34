"""Readers for users' own files: MNIST idx, CIFAR-10 binary batches, delimited text and NPZ archives.

Every malformed file ends in a DataError naming the file and the problem, raised here at the
boundary rather than from deep inside numpy. Nothing is ever unpickled. Turning a table into a
Dataset (label, id and feature columns, one-hot encoding) is :mod:`secsplit.data.source`'s job.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class TextTable:
    """A delimited text file as strings: its header, its rows and each row's line number (for messages).

    Attributes:
        path: the file, named in every message about it.
        header: column names, stripped of surrounding spaces.
        rows: one list of raw cells per non-blank row, each as long as the header.
        lines: the line each row starts on (1-based, the header is line 1 unless blank lines precede it).
    """

    path: Path
    header: tuple[str, ...]
    rows: list[list[str]]
    lines: list[int]

    def column(self, index: int) -> list[str]:
        """The cells of column ``index``, stripped of surrounding spaces."""
        return [row[index].strip() for row in self.rows]


#: delimiters that hint at a wrong ``delimiter`` when a header reads as one column holding them
_OTHER_DELIMITERS = (";", "\t", "|", ",")


def read_text(path: PathArg) -> str:
    """A text file (plain or gzip) decoded as UTF-8, a spreadsheet's byte-order mark dropped."""
    try:
        return _read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error})") from None


def read_delimited(path: PathArg, *, delimiter: str = ",") -> TextTable:
    """Read a CSV/TSV file (plain or gzip) with a header row into a :class:`TextTable`.

    Blank lines are skipped; quoted fields may hold delimiters and line breaks.

    Raises:
        DataError: missing, empty or non-UTF-8 file; a header without rows; an unnamed or repeated
            column name; rows whose field count differs from the header's (the first one named by
            line); a header that reads as one column but holds another common delimiter.
    """
    path = Path(path)
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter)
    header, rows, lines = None, [], []
    previous = 0
    try:
        for row in reader:
            line, previous = previous + 1, reader.line_num
            blank = not any(cell.strip() for cell in row)
            if blank and (len(row) <= 1 or header is None):
                continue  # a blank line; a row of empty cells after the header is data, and its cells get named
            if header is None:
                header = tuple(cell.strip() for cell in row)
            else:
                rows.append(row)
                lines.append(line)
    except csv.Error as error:
        raise DataError(f"{path}: line {reader.line_num}: {error}") from None
    if header is None:
        raise DataError(f"{path}: empty file")
    _check_header(path, header, delimiter)
    if not rows:
        raise DataError(f"{path}: the file has a header but no rows")
    _check_field_counts(path, header, rows, lines)
    return TextTable(path, header, rows, lines)


def _check_header(path: Path, header: tuple[str, ...], delimiter: str) -> None:
    if len(header) == 1:
        hint = next((d for d in _OTHER_DELIMITERS if d != delimiter and d in header[0]), None)
        if hint is not None:
            raise DataError(f"{path}: the header reads as one column {header[0]!r}; if fields are separated by "
                            f"{hint!r}, pass delimiter={hint!r}")
    for number, name in enumerate(header, start=1):
        if not name:
            raise DataError(f"{path}: column {number} has no name in the header; name every column (a row index "
                            f"written by pandas? name it and pass it as id=)")
        if header.index(name) != number - 1:
            raise DataError(f"{path}: column name {name!r} appears twice in the header (columns "
                            f"{header.index(name) + 1} and {number})")


def _check_field_counts(path: Path, header: tuple[str, ...], rows: list[list[str]], lines: list[int]) -> None:
    ragged = [i for i, row in enumerate(rows) if len(row) != len(header)]
    if ragged:
        first = ragged[0]
        more = f" ({len(ragged) - 1} more rows have the wrong field count)" if len(ragged) > 1 else ""
        raise DataError(f"{path}: line {lines[first]} has {len(rows[first])} fields, the header has "
                        f"{len(header)}{more}")


def read_npz(path: PathArg, keys: Sequence[str], *, optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (and those of ``optional`` present) of an ``.npz`` archive, never unpickling.

    The archive is opened as a zip and each member read with ``allow_pickle=False``, so a truncated
    or foreign file is a clear error rather than a BadZipFile traceback, and object arrays are refused.

    Raises:
        DataError: missing file, not a valid zip/npz archive, a key not in it (lists those present),
            an array of Python objects.
    """
    def read(archive: zipfile.ZipFile, members: dict[str, str]) -> dict[str, np.ndarray]:
        for key in keys:
            if key not in members:
                raise DataError(f"{path}: no array named {key!r}; arrays present: {', '.join(members) or '(none)'}")
        wanted = list(dict.fromkeys([*keys, *(k for k in optional if k in members)]))
        return {key: _read_npy_member(Path(path), archive, members[key], key) for key in wanted}

    return _with_npz(path, read)


def npz_names(path: PathArg) -> list[str]:
    """Names of the arrays in an ``.npz`` archive, for messages that list them.

    Raises:
        DataError: missing file, or not a valid zip/npz archive.
    """
    return _with_npz(path, lambda archive, members: list(members))


def _with_npz(path: PathArg, use):
    """``use(archive, {array name: member name})`` on the opened archive; every failure a DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            return use(archive, {n.removesuffix(".npy"): n for n in archive.namelist()})
    except DataError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error, ValueError) as error:
        raise DataError(f"{path}: not a valid .npz file ({error})") from None


def _read_npy_member(path: Path, archive: zipfile.ZipFile, member: str, key: str) -> np.ndarray:
    with archive.open(member) as stream:
        version = np.lib.format.read_magic(stream)
        header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                  else np.lib.format.read_array_header_2_0)(stream)
        if header[2].hasobject:
            raise DataError(f"{path}: array {key!r} holds Python objects (dtype object), which cannot be read "
                            f"without unpickling; secsplit never unpickles: save numbers or strings")
    with archive.open(member) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)


def encode_labels(where: str, values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Labels -> (int64 codes, name of each code), so files may hold class indices, numbers or names.

    Non-negative whole numbers stay (also written as '3' or 3.0) and are named by themselves;
    other numbers map to 0..K-1 by value (so -1, 1 -> 0, 1); anything else by string (class names).

    Raises:
        DataError: NaN or infinite numeric labels.
    """
    values = np.asarray(values)
    try:
        numbers = values.astype(np.float64)
    except (TypeError, ValueError):
        names, codes = np.unique(values.astype(str), return_inverse=True)
        return codes.astype(np.int64).reshape(-1), [str(n) for n in names]
    if not np.isfinite(numbers).all():
        raise DataError(f"{where}: labels contain NaN or infinite values")
    if len(numbers) and np.all(numbers == np.round(numbers)) and numbers.min() >= 0:
        codes = numbers.astype(np.int64)
        return codes, [str(c) for c in range(int(codes.max()) + 1)]
    uniques, codes = np.unique(numbers, return_inverse=True)
    return codes.astype(np.int64).reshape(-1), [f"{u:g}" for u in uniques]
