"""The Dataset every trainer, attack and audit consumes, and building one from arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split

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

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DataError(f"data set kind must be one of {KINDS}, got {self.kind!r}")
        for split in ("train", "test"):
            x, y, ids = (getattr(self, f"{p}_{split}") for p in ("x", "y", "ids"))
            if not (len(x) == len(y) == len(ids)):
                raise DataError(f"{self.name}: {split} features, labels and ids differ in length ({len(x)}, {len(y)}, {len(ids)})")
            if x.dtype != torch.float32 or y.dtype != torch.int64 or ids.dtype != torch.int64:
                raise DataError(f"{self.name}: {split} needs float32 x and int64 y and ids, got {x.dtype}, {y.dtype}, {ids.dtype}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(f"{self.name}: train and test samples differ in shape ({tuple(self.x_train.shape[1:])} vs {tuple(self.x_test.shape[1:])})")
        expected_dims = 3 if self.kind == "image" else 1
        if self.x_train.dim() - 1 != expected_dims:
            raise DataError(f"{self.name}: {self.kind} samples need {expected_dims} dimension(s), got shape {tuple(self.x_train.shape[1:])}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample shape, e.g. (1, 28, 28) or (30,)."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, kind={self.kind}, input_shape={self.input_shape}, classes={self.num_classes}, "
                f"train={len(self.x_train)}, test={len(self.x_test)})")


def dataset_from_arrays(name: str, x, y, *, kind: str, seed: int = 0, test_fraction: float = 0.2,
                        scale: tuple[float, float] | None = None, ids=None) -> Dataset:
    """Stratified, seeded train/test split of arrays ``x`` (N, ...) and integer labels ``y`` (N,).

    Images: uint8 pixels are divided by 255; other ranges need ``scale=(low, high)``, mapped to [0, 1].
    Tabular: standardized with the training split's mean and std (constant columns left at 0).
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
    ids = np.arange(len(y)) if ids is None else np.asarray(ids)
    if kind == "image":
        x = _scale_images(name, x, scale)
    idx_train, idx_test = _stratified_split(name, y, seed, test_fraction)
    x = x.astype(np.float32)
    x_train, x_test = x[idx_train], x[idx_test]
    if kind == "tabular":
        if x.ndim != 2:
            raise DataError(f"{name}: tabular features must be (N, D), got shape {x.shape}")
        mean, std = x_train.mean(0), x_train.std(0)
        std[std == 0] = 1.0
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    as_long = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.int64)
    return Dataset(name=name, kind=kind,
                   x_train=torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32)),
                   y_train=as_long(y[idx_train]),
                   x_test=torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.float32)),
                   y_test=as_long(y[idx_test]),
                   ids_train=as_long(ids[idx_train]), ids_test=as_long(ids[idx_test]),
                   num_classes=int(classes.max()) + 1)


def _scale_images(name: str, x: np.ndarray, scale) -> np.ndarray:
    if x.ndim != 4:
        raise DataError(f"{name}: images must be (N, C, H, W), got shape {x.shape}")
    if scale is None:
        if x.dtype != np.uint8:
            raise DataError(f"{name}: non-uint8 images need scale=(low, high) to map them to [0, 1]")
        return x.astype(np.float32) / 255.0
    low, high = scale
    if not high > low:
        raise ConfigError(f"scale must be (low, high) with high > low, got {scale}")
    return ((x.astype(np.float32) - low) / (high - low)).clip(0.0, 1.0)


def _stratified_split(name: str, y: np.ndarray, seed: int, test_fraction: float):
    index = np.arange(len(y))
    try:
        return train_test_split(index, test_size=test_fraction, random_state=seed, stratify=y)
    except ValueError as error:
        raise DataError(f"{name}: cannot make a stratified split with test_fraction={test_fraction}: {error}") from None
