"""One entry point for data: a built-in data set name, or a user's own file with checked options.

``load_data("breast-cancer")`` and ``load_data("patients.csv", label="outcome", id="pid")`` give the
same kind of :class:`~secsplit.data.Dataset`, so every entry point (train, attack, audit) takes
either. A file's problems are reported the way a person fixes them: by file, line and column name,
all bad cells of a table in one message.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from secsplit.data.builtin import DATASETS, load_dataset
from secsplit.data.dataset import Dataset, check_stratifiable, dataset_from_arrays
from secsplit.data.files import (
    PathArg,
    TextTable,
    encode_labels,
    load_cifar10,
    load_mnist_idx,
    npz_names,
    read_delimited,
    read_npz,
)
from secsplit.data.partition import select_columns
from secsplit.errors import ConfigError, DataError, UnknownNameError

#: file formats a source may name with a prefix (``csv:data.txt``); ``file:`` infers it from the suffix
FORMATS = ("csv", "tsv", "npz", "mnist-idx", "cifar10")
#: columns (or NPZ arrays) taken as the label when no ``label`` option is given, case-insensitive
LABEL_NAMES = ("label", "target", "y", "class")
#: how a table's non-numeric feature columns are treated
CATEGORICAL = ("refuse", "onehot")
#: bad cells a message lists one by one before "and N more"
BAD_CELLS_LISTED = 10

_COMMON_OPTIONS = {
    "test_fraction": "share of samples held out for testing, in (0, 1) (default 0.2)",
    "name": "the data set's name in results (default: the file name without its suffix)",
}
_TABLE_OPTIONS = {
    "label": "label column (default: the column named label, target, y or class)",
    "id": "column of unique sample ids (integers or strings), kept as the ids and not used as a feature",
    "features": 'feature columns: names, "A:B" name ranges (ends included), indices or "2:10" index ranges '
                "(half-open); default: every column but the label and id",
    "categorical": '"refuse" (default: a non-numeric feature column is an error) or "onehot" (one 0/1 column per '
                   "value, named column=value)",
    "delimiter": 'field separator (default "," for csv, tab for tsv)',
    "image_shape": "[C, H, W] or [H, W]: read each row's features as an image (default: a table)",
    "scale": "images only: [low, high] pixel range mapped onto [0, 1] (default: whole numbers 0..255, or 0..1)",
}
_NPZ_OPTIONS = {
    "label": "array of labels, shape (N,) (default: the array named label, target, y or class)",
    "features_key": 'array of features, shape (N, ...) (default "x")',
    "id": "array of unique sample ids (integers or strings), shape (N,)",
    "features": "feature columns of the flattened features: indices or \"2:10\" index ranges (half-open), or "
                "names when the archive has a feature_names array",
    "image_shape": "[C, H, W] or [H, W]: read each sample as an image (default: 4-d arrays are images, others "
                   "are flattened into tables)",
    "scale": _TABLE_OPTIONS["scale"],
}
#: option name -> one-line help, per file format
FORMAT_OPTIONS: dict[str, dict[str, str]] = {
    "csv": {**_TABLE_OPTIONS, **_COMMON_OPTIONS},
    "tsv": {**_TABLE_OPTIONS, **_COMMON_OPTIONS},
    "npz": {**_NPZ_OPTIONS, **_COMMON_OPTIONS},
    "mnist-idx": {"labels": "the labels idx file (default: the images file's name with images-idx3 -> labels-idx1)",
                  **_COMMON_OPTIONS},
    "cifar10": dict(_COMMON_OPTIONS),
}
_INTEGER = re.compile(r"[+-]?\d+")


# -- the entry points ----------------------------------------------------------------------------
def load_data(source: str | PathLike, *, seed: int = 0, **options) -> Dataset:
    """Load a built-in data set or a user's file as a Dataset with a seeded, stratified split.

    Args:
        source: a built-in name (``secsplit list``), or a file path, optionally prefixed with its
            format: ``csv:``, ``tsv:``, ``npz:``, ``mnist-idx:``, ``cifar10:`` or ``file:`` (format
            from the suffix: .csv/.csv.gz, .tsv/.tsv.gz, .npz, *idx3-ubyte(.gz)/.idx, .bin or a
            folder of CIFAR-10 batches). A built-in name wins over a file of the same name; write
            ``file:NAME`` for the file.
        seed: seed of the train/test split.
        **options: the data set's options, or the file format's (see :func:`describe_data_options`).
            Tabular features are standardized with the training split's statistics only.

    Returns:
        The Dataset; tables carry ``feature_names`` (after one-hot encoding).

    Raises:
        UnknownNameError: ``source`` is neither a built-in name nor an existing file.
        ConfigError: an unknown option (lists the valid ones) or a malformed option value.
        DataError: a file that is missing, malformed or does not fit its options; one line naming
            the file and, for tables, the line and column of each bad cell.
    """
    fmt, target = _parse_source(source, must_exist=True)
    if fmt is None:
        return load_dataset(target, seed=seed, **options)
    path = Path(target)
    if not path.exists():
        raise DataError(f"file not found: {path}")
    return _load_file(fmt, path, seed, _parse_options(fmt, path, options))


def describe_data_options(source: str | PathLike) -> dict[str, str]:
    """Option name -> one-line help for ``source``: a built-in name, a file path, or a format name.

    For ``secsplit list`` and the docs; the file need not exist (its format comes from its name).

    Raises:
        UnknownNameError: not a built-in name, a format name or a path with a known suffix.
        ConfigError: a path whose format cannot be told from its name.
    """
    if isinstance(source, str) and source.removesuffix(":") in FORMATS:
        return dict(FORMAT_OPTIONS[source.removesuffix(":")])
    fmt, target = _parse_source(source, must_exist=False)
    if fmt is None:
        return _builtin_options(target)
    return dict(FORMAT_OPTIONS[fmt])


def load_table(path: PathArg, *, label_column: str = "y", features_key: str = "x", name: str | None = None,
               seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """A user's table (.csv, .csv.gz, .tsv or .npz) -> a tabular Dataset; :func:`load_data` does more.

    Kept for callers of the first file API. NPZ features are always flattened into a table here.

    Raises:
        DataError: an unsupported suffix, or anything :func:`load_data` refuses.
    """
    path = Path(path)
    fmt = _format_from_name(path)
    if fmt not in ("csv", "tsv", "npz"):
        raise DataError(f"{path}: unsupported table format; use .csv, .csv.gz, .tsv or .npz")
    options = {"label": label_column, "test_fraction": test_fraction, "name": name}
    if fmt == "npz":
        options["features_key"] = features_key
        return _load_npz(path, seed, _parse_options(fmt, path, options), auto_images=False)
    return _load_file(fmt, path, seed, _parse_options(fmt, path, options))


# -- sources and options -------------------------------------------------------------------------
def _parse_source(source, *, must_exist: bool) -> tuple[str | None, str]:
    """(None, name) for a built-in data set, else (format, path)."""
    if not isinstance(source, (str, PathLike)) or not os.fspath(source):
        raise ConfigError(f"a data source is a built-in name or a file path, got {source!r}")
    source = os.fspath(source)
    if source in DATASETS:
        return None, source
    prefix, colon, rest = source.partition(":")
    if colon and prefix in (*FORMATS, "file"):
        if not rest:
            raise ConfigError(f"data source {source!r} names no file after {prefix}:")
        return (prefix if prefix != "file" else _format_from_name(Path(rest), required=True)), rest
    path = Path(source)
    if path.exists() or (not must_exist and _format_from_name(path)):
        return _format_from_name(path, required=True), source
    raise UnknownNameError(f"unknown data set {source!r}; not a built-in name ({', '.join(DATASETS.names())}) "
                           f"and no such file")


def _format_from_name(path: Path, *, required: bool = False) -> str | None:
    """The format a file's name (or a folder of CIFAR-10 batches) implies; None, or an error if ``required``."""
    name = path.name.lower().removesuffix(".gz")
    for suffixes, fmt in (((".csv",), "csv"), ((".tsv", ".tab"), "tsv"), ((".npz",), "npz"),
                          (("idx3-ubyte", ".idx"), "mnist-idx"), ((".bin",), "cifar10")):
        if name.endswith(suffixes):
            return fmt
    if path.is_dir():
        return "cifar10"
    if required:
        prefixes = ", ".join(f"{f}:" for f in FORMATS)
        raise ConfigError(f"{path}: cannot tell the file format from its name; prefix the source with one of "
                          f"{prefixes}")
    return None


@dataclass(frozen=True)
class _Options:
    """A file source's options, checked; defaults as documented in FORMAT_OPTIONS."""

    test_fraction: float = 0.2
    name: str | None = None
    label: str | None = None
    id: str | None = None
    features: object = None
    categorical: str = "refuse"
    delimiter: str | None = None
    features_key: str = "x"
    labels: Path | None = None
    image_shape: tuple[int, int, int] | None = None
    scale: tuple[float, float] | None = None


def _parse_options(fmt: str, path: Path, options: dict) -> _Options:
    valid = FORMAT_OPTIONS[fmt]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"bad options for {fmt} file {str(path)!r}: {', '.join(unknown)}; it takes: "
                          f"{', '.join(valid)}")
    return _Options(**{key: _OPTION_CHECKS[key](key, value) for key, value in options.items() if value is not None})


def _text(key: str, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"option {key} must be a non-empty string, got {value!r}")
    return value.strip()


def _path(key: str, value) -> Path:
    if not isinstance(value, (str, PathLike)) or not os.fspath(value):
        raise ConfigError(f"option {key} must be a file path, got {value!r}")
    return Path(value)


def _columns(key: str, value):
    items = [value] if isinstance(value, (str, int)) else value
    if (not isinstance(items, (list, tuple)) or not items
            or not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in items)):
        raise ConfigError(f'option {key} must be a column name, index or "A:B" range, or a non-empty list of them, '
                          f"got {value!r}")
    return value


def _categorical(key: str, value) -> str:
    if value not in CATEGORICAL:
        raise ConfigError(f"option {key} must be one of {', '.join(map(repr, CATEGORICAL))}, got {value!r}")
    return value


def _delimiter(key: str, value) -> str:
    value = {"\\t": "\t", "tab": "\t"}.get(value, value) if isinstance(value, str) else value
    if not isinstance(value, str) or len(value) != 1 or value in "\r\n\"":
        raise ConfigError(f'option {key} must be one character (or "tab"), got {value!r}')
    return value


def _image_shape(key: str, value) -> tuple[int, int, int]:
    if isinstance(value, str):  # from the command line: image_shape=1,28,28
        try:
            value = [int(part) for part in value.replace("x", ",").split(",")]
        except ValueError:
            pass
    if (not isinstance(value, (list, tuple)) or len(value) not in (2, 3)
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in value)):
        raise ConfigError(f"option {key} must be [C, H, W] or [H, W] of positive integers, got {value!r}")
    return tuple(value) if len(value) == 3 else (1, *value)


def _scale(key: str, value) -> tuple[float, float]:
    numbers = (isinstance(value, (list, tuple)) and len(value) == 2
               and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))
    if not numbers or not value[1] > value[0]:
        raise ConfigError(f"option {key} must be [low, high] with high > low, got {value!r}")
    return float(value[0]), float(value[1])


def _fraction(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError(f"option {key} must be a number in (0, 1), got {value!r}")
    return float(value)


_OPTION_CHECKS = {
    "test_fraction": _fraction, "name": _text, "label": _text, "id": _text, "features": _columns,
    "categorical": _categorical, "delimiter": _delimiter, "features_key": _text, "labels": _path,
    "image_shape": _image_shape, "scale": _scale,
}


def _builtin_options(name: str) -> dict[str, str]:
    """A built-in data set's factory parameters (but ``seed``, which load_data takes) with their defaults."""
    parameters = inspect.signature(DATASETS.lookup(name)).parameters.values()
    return {p.name: _COMMON_OPTIONS.get(p.name, f"default {p.default!r}") for p in parameters
            if p.name != "seed" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


# -- loading each format -------------------------------------------------------------------------
def _load_file(fmt: str, path: Path, seed: int, options: _Options) -> Dataset:
    if fmt in ("csv", "tsv"):
        return _load_delimited(path, seed, options, default_delimiter="," if fmt == "csv" else "\t")
    if fmt == "npz":
        return _load_npz(path, seed, options, auto_images=True)
    name = options.name or path.name.split(".")[0]
    if fmt == "mnist-idx":
        labels = options.labels or _labels_beside(path)
        return load_mnist_idx(path, labels, name=name, seed=seed, test_fraction=options.test_fraction)
    return load_cifar10(_cifar_batches(path), name=name, seed=seed, test_fraction=options.test_fraction)


def _labels_beside(images: Path) -> Path:
    """MNIST's naming (train-images-idx3-ubyte -> train-labels-idx1-ubyte), so the labels option is rarely needed."""
    name = images.name
    for old, new in (("images-idx3", "labels-idx1"), ("images.idx3", "labels.idx1"), ("images", "labels")):
        if old in name:
            guess = images.with_name(name.replace(old, new, 1))
            for candidate in (guess, guess.with_name(guess.name + ".gz"), guess.with_name(guess.name.removesuffix(".gz"))):
                if candidate.is_file():
                    return candidate
            raise ConfigError(f"{images}: no labels file {guess.name} beside the images; pass labels=PATH")
    raise ConfigError(f"{images}: cannot guess the labels file from the images file's name; pass labels=PATH")


def _cifar_batches(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    batches = sorted(path.glob("data_batch_*.bin")) + sorted(path.glob("test_batch.bin"))
    if not batches:
        raise DataError(f"{path}: no CIFAR-10 batches (data_batch_*.bin, test_batch.bin) in this folder")
    return batches


@dataclass
class _Columns:
    """What a file holds once its columns are sorted out: features, label codes and their names, ids."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    ids: np.ndarray | None
    feature_names: list[str] | None
    label_what: str


def _load_delimited(path: Path, seed: int, options: _Options, *, default_delimiter: str) -> Dataset:
    table = read_delimited(path, delimiter=options.delimiter or default_delimiter)
    return _finish(path, seed, options, _table_columns(table, options), images=options.image_shape)


def _finish(path: Path, seed: int, options: _Options, columns: _Columns, *, images) -> Dataset:
    """Checks that need the labels, then the split: one class, classes too small to stratify, image pixels."""
    classes = np.unique(columns.y)
    if len(classes) < 2:
        raise DataError(f"{path}: {columns.label_what} holds a single class "
                        f"({columns.class_names[classes[0]]!r}); a classifier needs at least 2")
    check_stratifiable(str(path), columns.y, options.test_fraction, columns.class_names)
    name = options.name or path.name.split(".")[0]
    common = {"seed": seed, "test_fraction": options.test_fraction, "ids": columns.ids}
    if images is None:
        if options.scale is not None:
            raise ConfigError(f"{path}: scale applies to images (with image_shape); table features are standardized")
        return dataset_from_arrays(name, columns.x, columns.y, kind="tabular", feature_names=columns.feature_names,
                                   **common)
    x = _as_images(path, columns.x, images)
    pixels, scale = _pixel_range(path, x, options.scale)
    return dataset_from_arrays(name, pixels, columns.y, kind="image", scale=scale, **common)


def _as_images(path: Path, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    per_sample = math.prod(x.shape[1:])
    if per_sample != math.prod(shape):
        raise DataError(f"{path}: image_shape {list(shape)} needs {math.prod(shape)} values per sample, but each "
                        f"sample has {per_sample} features")
    return x.reshape(len(x), *shape)


def _pixel_range(path: Path, x: np.ndarray, scale) -> tuple[np.ndarray, tuple[float, float] | None]:
    """uint8 as is; whole numbers 0..255 as uint8; values within [0, 1] as they are; otherwise ask for scale."""
    if scale is not None or x.dtype == np.uint8:
        return x, scale
    low, high = float(x.min()), float(x.max())
    if 0 <= low and high <= 255 and np.all(x == np.round(x)) and high > 1:
        return x.astype(np.uint8), None
    if 0 <= low and high <= 1:
        return x, (0.0, 1.0)
    raise ConfigError(f"{path}: pixel values run {low:g}..{high:g}, neither whole numbers 0..255 nor within "
                      f"[0, 1]; pass scale=[low, high], the range to map onto [0, 1]")


# -- CSV/TSV columns -----------------------------------------------------------------------------
def _table_columns(table: TextTable, options: _Options) -> _Columns:
    """Label, id and feature columns of a text table, every bad cell gathered into one message."""
    label = _label_column(table, options.label)
    id_column = _named_column(table, options.id, "id") if options.id is not None else None
    if id_column == label:
        raise ConfigError(f"{table.path}: the label and id options both name column {table.header[label]!r}")
    reserved = {label: "label"} | ({id_column: "id"} if id_column is not None else {})
    chosen = _feature_columns(table, options.features, reserved)
    texts = [c for c in chosen if _is_text(table.column(c))]
    if texts and options.categorical == "refuse":
        raise _text_columns_error(table, texts)
    bad = [(row, label) for row, cell in enumerate(table.column(label)) if not cell or _non_finite(cell)]
    if id_column is not None:
        bad += [(row, id_column) for row, cell in enumerate(table.column(id_column)) if not cell]
    blocks, names = [], []
    for column in chosen:
        cells = table.column(column)
        if column in texts:
            bad += [(row, column) for row, cell in enumerate(cells) if not cell]
            block, block_names = _one_hot(table.header[column], cells)
        else:
            values = _floats(cells)
            bad += [(row, column) for row in np.flatnonzero(~np.isfinite(values)).tolist()]
            block, block_names = values[:, None], [table.header[column]]
        blocks.append(block)
        names += block_names
    if bad:
        raise _bad_cells_error(table, bad)
    y, class_names = encode_labels(str(table.path), np.array(table.column(label)))
    ids = _ids(table, id_column) if id_column is not None else None
    return _Columns(np.concatenate(blocks, axis=1), y, class_names, ids, names,
                    f"label column {table.header[label]!r}")


def _label_column(table: TextTable, label: str | None) -> int:
    if label is not None:
        return _named_column(table, label, "label")
    found = [i for i, name in enumerate(table.header) if name.lower() in LABEL_NAMES]
    if len(found) != 1:
        why = ("no column is named " + ", ".join(LABEL_NAMES[:-1]) + " or " + LABEL_NAMES[-1] if not found
               else "several could be: " + ", ".join(table.header[i] for i in found))
        raise ConfigError(f"{table.path}: which column holds the labels? pass label=COLUMN ({why}); columns: "
                          f"{', '.join(table.header)}")
    return found[0]


def _named_column(table: TextTable, name: str, role: str) -> int:
    if name not in table.header:
        raise DataError(f"{table.path}: unknown {role} column {name!r}; columns: {', '.join(table.header)}")
    return table.header.index(name)


def _feature_columns(table: TextTable, spec, reserved: dict[int, str]) -> list[int]:
    if spec is None:
        chosen = [i for i in range(len(table.header)) if i not in reserved]
        if not chosen:
            raise DataError(f"{table.path}: no feature columns; the file holds only the "
                            f"{' and '.join(reserved.values())} column(s)")
        return chosen
    try:
        return select_columns(spec, count=len(table.header), names=table.header, reserved=reserved)
    except ConfigError as error:
        raise DataError(f"{table.path}: features={spec!r}: {error}") from None


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _is_text(cells: list[str]) -> bool:
    """A column of words (most non-empty cells not numbers), as opposed to numbers with a few bad cells."""
    try:
        np.array(cells, dtype=np.float64)
        return False
    except ValueError:
        pass
    numbers = sum(1 for cell in cells if cell and _is_number(cell))
    words = sum(1 for cell in cells if cell and not _is_number(cell))
    return words > numbers


def _non_finite(cell: str) -> bool:
    return _is_number(cell) and not math.isfinite(float(cell))


def _floats(cells: list[str]) -> np.ndarray:
    """The cells as float64, NaN where a cell is empty or not a number (so bad cells all read as non-finite)."""
    try:
        return np.array(cells, dtype=np.float64)
    except ValueError:
        return np.array([float(cell) if _is_number(cell) else math.nan for cell in cells])


def _one_hot(name: str, cells: list[str]) -> tuple[np.ndarray, list[str]]:
    """One 0/1 column per distinct value, in sorted order, named ``name=value``."""
    values = sorted({cell for cell in cells if cell})
    block = (np.array(cells, dtype=object)[:, None] == np.array(values, dtype=object)[None, :]).astype(np.float64)
    return block, [f"{name}={value}" for value in values]


def _text_columns_error(table: TextTable, columns: list[int]) -> DataError:
    names = ", ".join(repr(table.header[c]) for c in columns)
    examples = sorted({cell for cell in table.column(columns[0]) if cell and not _is_number(cell)})[:3]
    shown = ", ".join(_show(e) for e in examples)
    noun, verb, pronoun = ("column", "is", "it") if len(columns) == 1 else ("columns", "are", "them")
    return DataError(f"{table.path}: {noun} {names} {verb} not numeric (e.g. {table.header[columns[0]]!r}: {shown}); "
                     f'pass categorical="onehot" to one-hot encode {pronoun}, or leave {pronoun} out with features=')


def _bad_cells_error(table: TextTable, bad: list[tuple[int, int]]) -> DataError:
    """One message for every bad cell: the first BAD_CELLS_LISTED by line and column name, then a count."""
    bad = sorted(set(bad))
    listed = "; ".join(f"line {table.lines[row]}, column {table.header[column]!r}: {_show(table.rows[row][column])}"
                       for row, column in bad[:BAD_CELLS_LISTED])
    more = f"; and {len(bad) - BAD_CELLS_LISTED} more" if len(bad) > BAD_CELLS_LISTED else ""
    noun = "bad cell" if len(bad) == 1 else "bad cells"
    return DataError(f"{table.path}: {len(bad)} {noun} (empty, not a number, NaN or infinite): {listed}{more}")


def _show(cell: str, limit: int = 40) -> str:
    cell = cell.strip()
    return repr(cell if len(cell) <= limit else cell[:limit - 3] + "...")


def _ids(table: TextTable, column: int) -> np.ndarray:
    """Integer ids as they are; other ids as stable 63-bit hashes, equal in every file (parties align on them)."""
    cells = table.column(column)
    keys = _integer_ids(cells)
    counts = Counter(keys)
    repeated = [key for key, n in counts.items() if n > 1]
    if repeated:
        rows = [row for row, key in enumerate(keys) if key == repeated[0]]
        more = f" ({len(repeated) - 1} other ids repeat too)" if len(repeated) > 1 else ""
        raise DataError(f"{table.path}: id column {table.header[column]!r} repeats {cells[rows[0]]!r} (lines "
                        f"{table.lines[rows[0]]} and {table.lines[rows[1]]}){more}; ids must be unique")
    if all(isinstance(key, int) for key in keys):
        return np.array(keys, dtype=np.int64)
    return np.array([_hash_id(cell) for cell in cells], dtype=np.int64)


def _integer_ids(cells: list[str]) -> list:
    """Ints when every cell is an integer fitting int64 (so '7' and '07' are the same id), else the strings."""
    if all(_INTEGER.fullmatch(cell) for cell in cells):
        values = [int(cell) for cell in cells]
        if all(-2 ** 63 <= v < 2 ** 63 for v in values):
            return values
    return list(cells)


def _hash_id(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


# -- NPZ arrays ----------------------------------------------------------------------------------
def _load_npz(path: Path, seed: int, options: _Options, *, auto_images: bool) -> Dataset:
    key = options.features_key
    wanted = [key] + [k for k in (options.label, options.id) if k is not None]
    optional = ("feature_names",) if options.label is not None else (*LABEL_NAMES, "feature_names")
    arrays = read_npz(path, wanted, optional=optional)
    label = options.label or _npz_label(path, arrays)
    x = _npz_features(path, key, arrays[key])
    y, class_names = _npz_labels(path, label, arrays[label], len(x))
    ids = _npz_ids(path, options.id, arrays[options.id], len(x)) if options.id is not None else None
    images = options.image_shape
    if images is None and auto_images and x.ndim == 4 and options.features is None:
        images = x.shape[1:]
    x = x.reshape(len(x), -1)
    names = _npz_feature_names(path, arrays.get("feature_names"), x.shape[1])
    if options.features is not None:
        try:
            chosen = select_columns(options.features, count=x.shape[1], names=names)
        except ConfigError as error:
            raise DataError(f"{path}: features={options.features!r}: {error}") from None
        x, names = x[:, chosen], None if names is None else [names[i] for i in chosen]
    columns = _Columns(x, y, class_names, ids, names, f"label array {label!r}")
    return _finish(path, seed, options, columns, images=images)


def _npz_label(path: Path, arrays: dict[str, np.ndarray]) -> str:
    found = [k for k in LABEL_NAMES if k in arrays]
    if len(found) != 1:
        why = "no array is named label, target, y or class" if not found else "several could be: " + ", ".join(found)
        raise ConfigError(f"{path}: which array holds the labels? pass label=ARRAY ({why}); arrays present: "
                          f"{', '.join(npz_names(path))}")
    return found[0]


def _npz_features(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    if x.ndim < 2 or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"{path}: array {key!r} must hold numbers shaped (N, ...), got dtype {x.dtype} and shape "
                        f"{x.shape}")
    if np.issubdtype(x.dtype, np.inexact):
        bad = np.argwhere(~np.isfinite(x.reshape(len(x), -1)))
        if len(bad):
            raise DataError(f"{path}: array {key!r} holds {len(bad)} NaN or infinite value(s), the first at sample "
                            f"{bad[0][0]}, feature {bad[0][1]}")
    return x


def _npz_labels(path: Path, key: str, y: np.ndarray, n: int) -> tuple[np.ndarray, list[str]]:
    if y.shape != (n,):
        raise DataError(f"{path}: label array {key!r} must have shape ({n},), one label per sample, got {y.shape}")
    return encode_labels(f"{path}: label array {key!r}", y)


def _npz_ids(path: Path, key: str, ids: np.ndarray, n: int) -> np.ndarray:
    if ids.shape != (n,) or not (np.issubdtype(ids.dtype, np.integer) or ids.dtype.kind in "US"):
        raise DataError(f"{path}: id array {key!r} must hold {n} integers or strings, got dtype {ids.dtype} and "
                        f"shape {ids.shape}")
    values, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{path}: id array {key!r} repeats {values[counts > 1][0].item()!r} "
                        f"({int((counts > 1).sum())} id(s) repeat); ids must be unique")
    if np.issubdtype(ids.dtype, np.integer):
        return ids.astype(np.int64)
    return np.array([_hash_id(str(i)) for i in ids], dtype=np.int64)


def _npz_feature_names(path: Path, names, count: int) -> list[str] | None:
    if names is None:
        return None
    if names.shape != (count,) or names.dtype.kind not in "US":
        raise DataError(f"{path}: array 'feature_names' must hold {count} strings, one per feature column, got "
                        f"dtype {names.dtype} and shape {names.shape}")
    return [str(n) for n in names]

