"""Data sets (registry, offline), file loaders, and partitions over parties."""

from secsplit.data.builtin import DATASETS, list_datasets, load_dataset
from secsplit.data.dataset import Dataset, dataset_from_arrays
from secsplit.data.files import load_cifar10, load_mnist_idx, load_table, read_cifar10_batch, read_idx
from secsplit.data.partition import (
    FeatureView,
    partition_dirichlet,
    partition_iid,
    vertical_columns,
    vertical_image_regions,
)

__all__ = [
    "DATASETS", "Dataset", "FeatureView", "dataset_from_arrays", "list_datasets", "load_cifar10", "load_dataset",
    "load_mnist_idx", "load_table", "partition_dirichlet", "partition_iid", "read_cifar10_batch", "read_idx",
    "vertical_columns", "vertical_image_regions",
]
