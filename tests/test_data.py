"""Built-in data sets, file loaders and partitions: shapes, determinism, and clear errors."""

import gzip
import struct

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from secsplit.data import (
    DATASETS,
    Dataset,
    dataset_from_arrays,
    list_datasets,
    load_cifar10,
    load_dataset,
    load_mnist_idx,
    load_table,
    partition_dirichlet,
    partition_iid,
    read_cifar10_batch,
    read_idx,
    vertical_columns,
    vertical_image_regions,
)
from secsplit.errors import ConfigError, DataError, UnknownNameError


@pytest.mark.parametrize(
    "name,shape,classes,total",
    [("mnist", (1, 28, 28), 10, 5000), ("digits", (1, 8, 8), 10, 1797), ("breast-cancer", (30,), 2, 569)],
)
def test_builtin_datasets_load_offline_with_expected_shapes(name, shape, classes, total):
    data = load_dataset(name, seed=0)
    assert data.input_shape == shape and data.num_classes == classes
    assert len(data.x_train) + len(data.x_test) == total
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert set(data.y_train.unique().tolist()) == set(range(classes))
    if data.kind == "image":
        assert data.x_train.min() >= 0 and data.x_train.max() <= 1
    else:  # standardized with training statistics
        assert torch.allclose(data.x_train.mean(0), torch.zeros(shape), atol=1e-4)
    ids = torch.cat([data.ids_train, data.ids_test])
    assert sorted(ids.tolist()) == list(range(total))


def test_split_is_deterministic_stratified_and_seed_dependent():
    a, b, c = (load_dataset("digits", seed=s) for s in (0, 0, 1))
    assert torch.equal(a.ids_test, b.ids_test) and torch.equal(a.x_train, b.x_train)
    assert not torch.equal(a.ids_test, c.ids_test)
    train_share = torch.bincount(a.y_train) / len(a.y_train)
    test_share = torch.bincount(a.y_test) / len(a.y_test)
    assert (train_share - test_share).abs().max() < 0.01


def test_loads_do_not_share_mutable_tensors():
    a = load_dataset("mnist")
    a.x_train[0].fill_(7.0)
    assert load_dataset("mnist").x_train.max() <= 1.0


def test_imbalanced_breast_cancer_has_about_ten_percent_positives():
    data = load_dataset("breast-cancer-imbalanced", seed=0)
    share = float(torch.cat([data.y_train, data.y_test]).float().mean())
    assert 0.09 <= share <= 0.11
    assert data.ids_train.max() < 569  # IDs are rows of the original table


def test_synthetic_is_seeded_and_learnable_shapes():
    a = load_dataset("synthetic", seed=3, n_samples=120, num_classes=4)
    b = load_dataset("synthetic", seed=3, n_samples=120, num_classes=4)
    assert torch.equal(a.x_train, b.x_train) and a.num_classes == 4
    image = load_dataset("synthetic", kind="image", image_shape=(3, 8, 8))
    assert image.input_shape == (3, 8, 8) and image.kind == "image"


def test_unknown_dataset_and_bad_options_are_clear():
    with pytest.raises(UnknownNameError, match="unknown data set 'imagenet'; valid names: .*mnist"):
        load_dataset("imagenet")
    with pytest.raises(ConfigError, match="bad options for data set 'mnist'"):
        load_dataset("mnist", colour=True)
    with pytest.raises(ConfigError, match="test_fraction"):
        load_dataset("digits", test_fraction=1.5)


# -- idx ---------------------------------------------------------------------------------------
def _write_idx(path, array, *, magic=None, truncate=0, compress=False):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    if magic is not None:
        header = struct.pack(">I", magic) + header[4:]
    payload = (header + array.tobytes())[: len(header) + array.nbytes - truncate]
    (gzip.open if compress else open)(path, "wb").write(payload)
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip_plain_and_gzip(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    labels = np.arange(20) % 10
    suffix = ".gz" if compress else ""
    img = _write_idx(tmp_path / f"img.idx{suffix}", images, compress=compress)
    lab = _write_idx(tmp_path / f"lab.idx{suffix}", labels, compress=compress)
    assert np.array_equal(read_idx(img), images) and np.array_equal(read_idx(lab), labels)
    data = load_mnist_idx(img, lab, test_fraction=0.5)
    assert data.input_shape == (1, 28, 28)
    recovered = torch.zeros(20, 1, 28, 28)
    recovered[data.ids_train], recovered[data.ids_test] = data.x_train, data.x_test
    assert torch.allclose(recovered[:, 0] * 255, torch.from_numpy(images).float(), atol=1e-3)


def test_idx_errors_name_the_problem(tmp_path):
    images = np.zeros((4, 5, 5), dtype=np.uint8)
    labels = np.arange(3) % 2
    with pytest.raises(DataError, match="file not found: .*missing.idx"):
        read_idx(tmp_path / "missing.idx")
    bad = _write_idx(tmp_path / "bad.idx", images, magic=0x12345678)
    with pytest.raises(DataError, match="wrong magic number"):
        read_idx(bad)
    short = _write_idx(tmp_path / "short.idx", images, truncate=7)
    with pytest.raises(DataError, match="truncated idx file: .* expected 116"):
        read_idx(short)
    img = _write_idx(tmp_path / "img.idx", images)
    lab = _write_idx(tmp_path / "lab.idx", labels)
    with pytest.raises(DataError, match="wrong magic number 2049, expected 2051"):
        load_mnist_idx(lab, lab)
    with pytest.raises(DataError, match="4 images but .* 3 labels"):
        load_mnist_idx(img, lab)


# -- CIFAR-10 ----------------------------------------------------------------------------------
def test_cifar10_batch_round_trip_and_truncation(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(10, 3, 32, 32), dtype=np.uint8)
    y = (np.arange(10) % 5).astype(np.uint8)  # two of each class, so a stratified split exists
    records = np.concatenate([y[:, None], x.reshape(10, -1)], axis=1)
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(records.tobytes())
    got_x, got_y = read_cifar10_batch(path)
    assert np.array_equal(got_x, x) and np.array_equal(got_y, y)
    data = load_cifar10([path], test_fraction=0.5)
    assert data.input_shape == (3, 32, 32)
    path.write_bytes(records.tobytes()[:-5])
    with pytest.raises(DataError, match="truncated CIFAR-10 batch"):
        read_cifar10_batch(path)


# -- tables ------------------------------------------------------------------------------------
def test_csv_and_npz_tables(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 3))
    names = np.array(["benign", "malignant"])[np.arange(40) % 2]
    lines = ["a,b,diagnosis,c"] + [f"{r[0]},{r[1]},{n},{r[2]}" for r, n in zip(x, names)]
    (tmp_path / "t.csv").write_text("\n".join(lines))
    data = load_table(tmp_path / "t.csv", label_column="diagnosis")
    assert data.input_shape == (3,) and data.num_classes == 2
    assert data.y_train[data.ids_train == 1].tolist() in ([1], [])  # 'malignant' -> 1 (sorted order)
    with pytest.raises(DataError, match="unknown label column 'label'; columns: a, b, diagnosis, c"):
        load_table(tmp_path / "t.csv", label_column="label")
    np.savez(tmp_path / "t.npz", x=x, y=np.arange(40) % 2)
    assert load_table(tmp_path / "t.npz", label_column="y").input_shape == (3,)
    with pytest.raises(DataError, match="no array named 'target'; arrays present: x, y"):
        load_table(tmp_path / "t.npz", label_column="target")
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.arange(4))
    with pytest.raises(DataError, match="without unpickling"):
        load_table(tmp_path / "obj.npz", label_column="y")
    with pytest.raises(DataError, match="file not found"):
        load_table(tmp_path / "none.csv", label_column="y")


def test_array_validation_errors():
    with pytest.raises(DataError, match="3 samples but 2 labels"):
        dataset_from_arrays("t", np.zeros((3, 2)), np.array([0, 1]), kind="tabular")
    with pytest.raises(DataError, match="NaN"):
        dataset_from_arrays("t", np.array([[np.nan], [1.0], [2.0], [3.0]]), np.array([0, 1, 0, 1]), kind="tabular")
    with pytest.raises(DataError, match="at least 2 classes"):
        dataset_from_arrays("t", np.zeros((4, 2)), np.zeros(4, dtype=int), kind="tabular")
    with pytest.raises(DataError, match="labels must be integers"):
        dataset_from_arrays("t", np.zeros((4, 2)), np.array([0.5, 1, 0, 1]), kind="tabular")


# -- partitions --------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 500), k=st.integers(1, 50), seed=st.integers(0, 10))
def test_iid_partition_is_disjoint_covering_and_balanced(n, k, seed):
    if k > n:
        with pytest.raises(ConfigError):
            partition_iid(n, k, seed=seed)
        return
    parts = partition_iid(n, k, seed=seed)
    assert sorted(torch.cat(parts).tolist()) == list(range(n))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert all(torch.equal(a, b) for a, b in zip(parts, partition_iid(n, k, seed=seed)))


def _label_skew(parts, labels, num_classes):
    """Mean total-variation distance between each client's label distribution and the global one."""
    labels = torch.as_tensor(labels)
    overall = torch.bincount(labels, minlength=num_classes).float() / len(labels)
    dists = [torch.bincount(labels[p], minlength=num_classes).float() / len(p) for p in parts]
    return float(torch.stack([(d - overall).abs().sum() / 2 for d in dists]).mean())


def test_dirichlet_small_alpha_skews_labels_large_alpha_does_not():
    labels = np.arange(2000) % 10
    skewed = partition_dirichlet(labels, 10, alpha=0.1, seed=0)
    even = partition_dirichlet(labels, 10, alpha=1000.0, seed=0)
    for parts in (skewed, even):
        assert sorted(torch.cat(parts).tolist()) == list(range(2000))
    assert _label_skew(skewed, labels, 10) > 0.5
    assert _label_skew(even, labels, 10) < 0.05
    assert all(torch.equal(a, b) for a, b in zip(skewed, partition_dirichlet(labels, 10, alpha=0.1, seed=0)))
    with pytest.raises(ConfigError, match="alpha must be > 0"):
        partition_dirichlet(labels, 10, alpha=0.0, seed=0)


def test_vertical_columns_cover_every_feature_once():
    views = vertical_columns(30, 4)
    x = torch.randn(5, 30)
    parts = [v(x) for v in views]
    assert [p.shape[1] for p in parts] == [8, 8, 7, 7]
    assert torch.equal(torch.cat(parts, dim=1), x)
    assert views[0].output_shape((30,)) == (8,)
    with pytest.raises(ConfigError, match="need 1 <= k <= 30"):
        vertical_columns(30, 31)
    with pytest.raises(ConfigError, match="exactly once"):
        vertical_columns(4, groups=[[0, 1], [1, 2, 3]])


def test_image_halves_and_quadrants_reassemble_the_image():
    x = torch.rand(2, 1, 28, 28)
    left, right = vertical_image_regions((1, 28, 28), 2)
    assert torch.equal(torch.cat([left(x), right(x)], dim=3), x)
    assert left.output_shape((1, 28, 28)) == (1, 28, 14)
    quads = [v(x) for v in vertical_image_regions((1, 28, 28), 4, layout="grid")]
    top = torch.cat(quads[:2], dim=3)
    bottom = torch.cat(quads[2:], dim=3)
    assert torch.equal(torch.cat([top, bottom], dim=2), x)
    with pytest.raises(ConfigError, match="grid layout splits images into 4"):
        vertical_image_regions((1, 28, 28), 3, layout="grid")
    with pytest.raises(ConfigError, match="unknown layout 'rings'"):
        vertical_image_regions((1, 28, 28), 2, layout="rings")


# -- arrays and registry options ---------------------------------------------------------------
def test_num_classes_can_exceed_observed_labels_but_not_fall_below():
    x, y = np.zeros((8, 2)), np.array([0, 1] * 4)
    assert dataset_from_arrays("t", x, y, kind="tabular", num_classes=5, test_fraction=0.5).num_classes == 5
    with pytest.raises(ConfigError, match="num_classes=1 but labels go up to 1"):
        dataset_from_arrays("t", x, y, kind="tabular", num_classes=1)


def test_image_scaling_rules():
    x = np.full((4, 1, 2, 2), 8.0)
    y = np.array([0, 1, 0, 1])
    with pytest.raises(DataError, match="float64 images need scale=\\(low, high\\)"):
        dataset_from_arrays("t", x, y, kind="image")
    data = dataset_from_arrays("t", x, y, kind="image", scale=(0.0, 16.0), test_fraction=0.5)
    assert torch.allclose(data.x_train, torch.full_like(data.x_train, 0.5))
    with pytest.raises(ConfigError, match="scale applies to images only"):
        dataset_from_arrays("t", np.zeros((4, 2)), y, kind="tabular", scale=(0, 1))
    with pytest.raises(ConfigError, match="test_fraction must be in \\(0, 1\\)"):
        dataset_from_arrays("t", x, y, kind="image", scale=(0, 16), test_fraction=0.0)


def test_constant_tabular_column_standardizes_to_zero_not_nan():
    x = np.stack([np.ones(20), np.arange(20.0)], axis=1)
    data = dataset_from_arrays("t", x, np.arange(20) % 2, kind="tabular")
    assert torch.isfinite(data.x_train).all() and (data.x_train[:, 0] == 0).all()


def test_dataset_rejects_labels_outside_num_classes():
    data = load_dataset("synthetic", n_samples=30, num_classes=3)
    with pytest.raises(DataError, match="train labels must lie in 0..1"):
        Dataset(**{**data.__dict__, "num_classes": 2})


def test_bad_options_list_what_the_data_set_takes():
    with pytest.raises(ConfigError, match="colour; it takes: n_samples, num_classes, kind"):
        load_dataset("synthetic", colour=True)
    with pytest.raises(ConfigError, match="synthetic kind must be 'tabular' or 'image'"):
        load_dataset("synthetic", kind="audio")


def test_synthetic_is_learnable_by_a_linear_model():
    from sklearn.linear_model import LogisticRegression

    data = load_dataset("synthetic", seed=0)
    model = LogisticRegression(max_iter=500).fit(data.x_train.numpy(), data.y_train.numpy())
    assert model.score(data.x_test.numpy(), data.y_test.numpy()) > 0.9


def test_cached_tabular_arrays_are_not_shared_between_loads():
    a = load_dataset("breast-cancer")
    a.x_train.fill_(99.0)
    a.ids_train.fill_(0)
    b = load_dataset("breast-cancer")
    assert b.x_train.abs().max() < 99 and len(b.ids_train.unique()) == len(b.ids_train)


def test_list_datasets_describes_every_registered_name():
    listed = dict(list_datasets())
    builtin = {"mnist", "digits", "breast-cancer", "breast-cancer-imbalanced", "synthetic"}
    assert set(listed) == set(DATASETS.names()) >= builtin
    assert all(description and "\n" not in description for description in listed.values())
