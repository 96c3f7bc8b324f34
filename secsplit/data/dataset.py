"""The Dataset every trainer, attack and audit consumes, and building one from arrays."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from secsplit.errors import ConfigError, DataError

KINDS = ("image", "tabular")


@dataclass(frozen=True)
class Dataset:
    """A train/test split ready for training.

    Attributes:
        name: registry name or file-derived name.
        kind: "image" (x is (N, C, H, W) in [0, 1]) or "tabular" (x is (N, D), standardized with
            the training split's mean and std).
        x_train, y_train, x_test, y_test: float32 features and int64 labels.
        ids_train, ids_test: int64 sample IDs (row in the source data), to align vertical partitions.
        num_classes: number of classes.
        feature_names: tabular only: one name per feature column (after one-hot encoding, e.g.
            ``sex=F``), so vertical views can name columns; None when the source has no names.
    """

    name: str
    kind: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    ids_train: torch.Tensor
    ids_test: torch.Tensor
    num_classes: int
    feature_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DataError(f"data set kind must be one of {KINDS}, got {self.kind!r}")
        for split in ("train", "test"):
            x, y, ids = (getattr(self, f"{p}_{split}") for p in ("x", "y", "ids"))
            if not (len(x) == len(y) == len(ids)):
                raise DataError(f"{self.name}: {split} features, labels and ids differ in length "
                                f"({len(x)}, {len(y)}, {len(ids)})")
            if x.dtype != torch.float32 or y.dtype != torch.int64 or ids.dtype != torch.int64:
                raise DataError(f"{self.name}: {split} needs float32 x and int64 y and ids, "
                                f"got {x.dtype}, {y.dtype}, {ids.dtype}")
        if self.num_classes < 2:
            raise DataError(f"{self.name}: need num_classes >= 2, got {self.num_classes}")
        for split, y in (("train", self.y_train), ("test", self.y_test)):
            if len(y) and not (0 <= int(y.min()) and int(y.max()) < self.num_classes):
                raise DataError(f"{self.name}: {split} labels must lie in 0..{self.num_classes - 1}, "
                                f"got {int(y.min())}..{int(y.max())}")
        train_shape, test_shape = tuple(self.x_train.shape[1:]), tuple(self.x_test.shape[1:])
        if train_shape != test_shape:
            raise DataError(f"{self.name}: train and test samples differ in shape ({train_shape} vs {test_shape})")
        expected_dims = 3 if self.kind == "image" else 1
        if self.x_train.dim() - 1 != expected_dims:
            raise DataError(f"{self.name}: {self.kind} samples need {expected_dims} dimension(s), got shape {train_shape}")
        if self.feature_names is not None:
            object.__setattr__(self, "feature_names", _check_feature_names(self.name, self.kind, self.feature_names,
                                                                           train_shape))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample shape, e.g. (1, 28, 28) or (30,)."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, kind={self.kind}, input_shape={self.input_shape}, classes={self.num_classes}, "
                f"train={len(self.x_train)}, test={len(self.x_test)})")


def dataset_from_arrays(name: str, x, y, *, kind: str, seed: int = 0, test_fraction: float = 0.2,
                        num_classes: int | None = None, scale: tuple[float, float] | None = None,
                        ids=None, feature_names: Sequence[str] | None = None) -> Dataset:
    """Stratified, seeded train/test split of arrays ``x`` (N, ...) and integer labels ``y`` (N,).

    Stratifying keeps every class's share equal in both splits, so small or imbalanced data sets
    still test on every class. Statistics come from the training split only, so nothing about the
    test samples leaks into preprocessing.

    Args:
        name: name carried by the Dataset (used in error messages).
        x: features, (N, C, H, W) for images or (N, D) for tables.
        y: integer labels in 0..num_classes-1, shape (N,).
        kind: "image" or "tabular".
        seed: seed of the train/test split.
        test_fraction: share of samples held out for testing, in (0, 1).
        num_classes: number of classes; defaults to max(y) + 1. Give it when a class may be absent.
        scale: images only: (low, high) value range mapped linearly onto [0, 1] (values outside are
            clipped). Needed unless the images are uint8, which are divided by 255.
        ids: sample IDs (N,), default the row index; vertical parties align samples on them.
        feature_names: tabular only: one name per column of ``x``.

    Raises:
        ConfigError: bad ``kind``, ``test_fraction``, ``scale`` or ``num_classes``.
        DataError: mismatched lengths, NaNs, non-integer or negative labels, fewer than 2 classes, a
            class too small for a stratified split, feature names that do not fit the columns.
    """
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {KINDS}, got {kind!r}")
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    x = np.asarray(x)
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{name}: labels must be one-dimensional, got shape {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{name}: {len(x)} samples but {len(y)} labels")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{name}: labels must be integers, got dtype {y.dtype} (map class names to ints first)")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{name}: features must be numeric, got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError(f"{name}: features contain NaN or infinite values")
    classes = np.unique(y)
    if len(classes) < 2:
        raise DataError(f"{name}: need at least 2 classes, got {len(classes)}")
    if classes.min() < 0:
        raise DataError(f"{name}: labels must be >= 0, got {classes.min()}")
    if num_classes is None:
        num_classes = int(classes.max()) + 1
    elif num_classes <= classes.max():
        raise ConfigError(f"{name}: num_classes={num_classes} but labels go up to {classes.max()}")
    if scale is not None and kind != "image":
        raise ConfigError(f"{name}: scale applies to images only; tabular features are standardized")
    ids = _check_ids(name, ids, len(y))
    if kind == "tabular" and x.ndim != 2:
        raise DataError(f"{name}: tabular features must be (N, D), got shape {x.shape}")
    x = _scale_images(name, x, scale) if kind == "image" else x.astype(np.float64)  # float64: exact statistics
    idx_train, idx_test = _stratified_split(name, y, seed, test_fraction)
    x_train, x_test = x[idx_train], x[idx_test]
    if kind == "tabular":
        mean, std = x_train.mean(0), x_train.std(0)
        std[std == 0] = 1.0
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return Dataset(name=name, kind=kind,
                   x_train=_float_tensor(x_train), y_train=_long_tensor(y[idx_train]),
                   x_test=_float_tensor(x_test), y_test=_long_tensor(y[idx_test]),
                   ids_train=_long_tensor(ids[idx_train]), ids_test=_long_tensor(ids[idx_test]),
                   num_classes=int(num_classes),
                   feature_names=None if feature_names is None else tuple(feature_names))


def _float_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32, order="C"))  # a fresh copy: never shares memory


def _long_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.int64, order="C"))


def _check_ids(name: str, ids, n: int) -> np.ndarray:
    if ids is None:
        return np.arange(n)
    ids = np.asarray(ids)
    if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
        raise DataError(f"{name}: ids must be {n} integers, got shape {ids.shape} and dtype {ids.dtype}")
    if len(np.unique(ids)) != n:
        raise DataError(f"{name}: ids must be unique; vertical parties align samples on them")
    return ids


def _scale_images(name: str, x: np.ndarray, scale) -> np.ndarray:
    if x.ndim != 4:
        raise DataError(f"{name}: images must be (N, C, H, W), got shape {x.shape}")
    if scale is None:
        if x.dtype != np.uint8:
            raise DataError(f"{name}: {x.dtype} images need scale=(low, high) to map them to [0, 1] (only uint8 "
                            "images are scaled by 255 without it)")
        return x.astype(np.float32) / 255.0
    low, high = scale
    if not high > low:
        raise ConfigError(f"scale must be (low, high) with high > low, got {scale}")
    return ((x.astype(np.float32) - low) / (high - low)).clip(0.0, 1.0)


def check_stratifiable(name: str, y: np.ndarray, test_fraction: float,
                       class_names: Sequence[str] | None = None) -> None:
    """Refuse, naming the class, labels that sklearn's stratified split would reject with a bare message.

    Every class needs 2 samples (one per split), and each split needs room for one sample of every class.
    ``class_names[c]`` names class ``c`` in the message when given (e.g. the label file's own values).
    """
    classes, counts = np.unique(y, return_counts=True)
    small = np.flatnonzero(counts < 2)
    if len(small):
        c = int(classes[small[0]])
        label = repr(class_names[c]) if class_names is not None else str(c)
        others = f" ({len(small) - 1} more class(es) have 1 sample too)" if len(small) > 1 else ""
        raise DataError(f"{name}: class {label} has {int(counts[small[0]])} sample; a stratified train/test split "
                        f"needs at least 2 per class{others}")
    n, k = len(y), len(classes)
    n_test = math.ceil(test_fraction * n)
    for split, size, fix in (("test", n_test, "raise"), ("train", n - n_test, "lower")):
        if size < k:
            raise DataError(f"{name}: test_fraction={test_fraction} leaves {size} of {n} samples for the {split} "
                            f"split, fewer than the {k} classes (a stratified split needs one of each); "
                            f"{fix} test_fraction or add samples")


def _check_feature_names(name: str, kind: str, names, shape: tuple[int, ...]) -> tuple[str, ...]:
    names = tuple(names)
    if kind != "tabular":
        raise DataError(f"{name}: feature_names apply to tabular data only, not {kind}")
    if len(names) != shape[0] or not all(isinstance(n, str) for n in names):
        raise DataError(f"{name}: need {shape[0]} feature names (strings), one per column, got {len(names)}")
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"{name}: feature names must be unique, got {', '.join(map(repr, repeated))} more than once")
    return names


def _stratified_split(name: str, y: np.ndarray, seed: int, test_fraction: float):
    check_stratifiable(name, y, test_fraction)
    index = np.arange(len(y))
    try:
        from sklearn.model_selection import train_test_split  # imported here: scikit-learn costs ~1 s to import

        return train_test_split(index, test_size=test_fraction, random_state=seed, stratify=y)
    except ValueError as error:
        raise DataError(f"{name}: cannot make a stratified split with test_fraction={test_fraction}: {error}") from None
