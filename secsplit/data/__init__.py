"""Data sets (registry, offline), users' own files, and partitions over parties."""

from secsplit.data.builtin import DATASETS, list_datasets, load_dataset
from secsplit.data.dataset import Dataset, dataset_from_arrays
from secsplit.data.files import (
    load_cifar10,
    load_mnist_idx,
    read_cifar10_batch,
    read_idx,
)
from secsplit.data.partition import (
    FeatureView,
    partition_dirichlet,
    partition_iid,
    resolve_views,
    select_columns,
    vertical_columns,
    vertical_image_regions,
)
from secsplit.data.source import (
    FORMAT_OPTIONS,
    FORMATS,
    describe_data_options,
    load_data,
    load_table,
)

__all__ = [
    "DATASETS", "FORMATS", "FORMAT_OPTIONS", "Dataset", "FeatureView", "dataset_from_arrays", "describe_data_options",
    "list_datasets", "load_cifar10", "load_data", "load_dataset", "load_mnist_idx", "load_table", "partition_dirichlet",
    "partition_iid", "read_cifar10_batch", "read_idx", "resolve_views", "select_columns", "vertical_columns",
    "vertical_image_regions",
]
