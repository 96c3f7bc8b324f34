"""load_data: built-in names and users' own files, bad input named by line and column, views by name."""

import gzip
import struct
import zipfile

import numpy as np
import pytest
import torch

from secsplit.data import (
    FORMAT_OPTIONS,
    FeatureView,
    describe_data_options,
    load_data,
    load_dataset,
    resolve_views,
    select_columns,
)
from secsplit.errors import ConfigError, DataError, UnknownNameError


def _write_csv(path, header, rows, delimiter=","):
    lines = [delimiter.join(header)] + [delimiter.join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _patients(tmp_path, n=40, name="patients.csv", delimiter=","):
    """pid, age, sex (text), bmi, glucose, outcome; ids are not row numbers."""
    rng = np.random.default_rng(0)
    rows = [(1000 + i, 20 + i, "FM"[i % 2], round(float(rng.normal(25, 3)), 3), round(float(rng.normal(5, 1)), 3),
             ["healthy", "sick"][i % 2]) for i in range(n)]
    return _write_csv(tmp_path / name, ["pid", "age", "sex", "bmi", "glucose", "outcome"], rows, delimiter), rows


def _by_id(data):
    """Rows of x and y keyed by sample id, train and test together."""
    x = torch.cat([data.x_train, data.x_test])
    y = torch.cat([data.y_train, data.y_test])
    ids = torch.cat([data.ids_train, data.ids_test]).tolist()
    return {i: (x[k], int(y[k])) for k, i in enumerate(ids)}


# -- tables --------------------------------------------------------------------------------------
def test_csv_round_trip_with_label_id_features_and_onehot(tmp_path):
    path, rows = _patients(tmp_path)
    data = load_data(str(path), label="outcome", id="pid", categorical="onehot", test_fraction=0.25, seed=3)
    assert data.kind == "tabular" and data.name == "patients" and data.num_classes == 2
    assert data.feature_names == ("age", "sex=F", "sex=M", "bmi", "glucose")
    assert len(data.x_train) == 30 and len(data.x_test) == 10
    rows_by_id = {r[0]: r for r in rows}
    by_id = _by_id(data)
    assert set(by_id) == set(rows_by_id)  # ids are the pid column, not row numbers
    for pid, (_, label) in by_id.items():
        assert label == ["healthy", "sick"].index(rows_by_id[pid][5])  # class names in sorted order
    # un-standardize the age column and compare with the file
    ages = torch.tensor([float(rows_by_id[i][1]) for i in data.ids_train.tolist()])
    recovered = data.x_train[:, 0] * ages.std(unbiased=False) + ages.mean()
    assert torch.allclose(recovered, ages, atol=1e-3)
    sex_f = torch.tensor([rows_by_id[i][2] == "F" for i in data.ids_train.tolist()])
    assert torch.equal(data.x_train[:, 1] > 0, sex_f)  # one-hot column, standardized: positive where 1


@pytest.mark.parametrize("features,expected", [
    (["bmi", "age"], ("bmi", "age")),  # the order given
    ("age:bmi", ("age", "sex=F", "sex=M", "bmi")),  # a name range includes both ends
    ("3:5", ("bmi", "glucose")),  # an index range of the file's columns, half-open
    ([1, "glucose"], ("age", "glucose")),
    ("0:", ("age", "sex=F", "sex=M", "bmi", "glucose")),  # ranges skip the label and id columns
])
def test_feature_selection_by_names_indices_and_ranges(tmp_path, features, expected):
    path, _ = _patients(tmp_path)
    data = load_data(str(path), label="outcome", id="pid", features=features, categorical="onehot")
    assert data.feature_names == expected and data.input_shape == (len(expected),)


def test_tsv_gzip_prefix_and_default_label(tmp_path):
    _patients(tmp_path, name="p.tsv", delimiter="\t")
    text = (tmp_path / "p.tsv").read_text().replace("outcome", "label")
    (tmp_path / "p.tsv.gz").write_bytes(gzip.compress(text.encode()))
    data = load_data(str(tmp_path / "p.tsv.gz"), id="pid", features=["age", "bmi"])
    assert data.feature_names == ("age", "bmi") and data.name == "p"
    (tmp_path / "p.txt").write_text(text)  # no telling suffix: the prefix says the format
    same = load_data(f"tsv:{tmp_path / 'p.txt'}", id="pid", features=["age", "bmi"])
    assert torch.equal(same.x_train, data.x_train)
    semicolons = _write_csv(tmp_path / "s.csv", ["a", "b", "y"], [(i, i * 2, i % 2) for i in range(8)], ";")
    assert load_data(str(semicolons), delimiter=";").feature_names == ("a", "b")
    with pytest.raises(DataError, match=r"the header reads as one column 'a;b;y'; .* pass delimiter=';'"):
        load_data(str(semicolons))


def test_standardization_uses_training_statistics_only(tmp_path):
    rng = np.random.default_rng(1)
    rows = [(float(rng.normal(50, 10)), float(rng.normal(-3, 2)), i % 2) for i in range(60)]
    data = load_data(str(_write_csv(tmp_path / "t.csv", ["a", "b", "y"], rows)), test_fraction=0.3)
    assert torch.allclose(data.x_train.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(data.x_train.std(0, unbiased=False), torch.ones(2), atol=1e-4)
    assert (data.x_test.mean(0) != 0).all()  # the test split did not feed the statistics
    raw = np.array([r[:2] for r in rows])
    train = raw[data.ids_train.numpy()]
    test = raw[data.ids_test.numpy()]
    expected = (test - train.mean(0)) / train.std(0)
    assert np.allclose(data.x_test.numpy(), expected, atol=1e-4)


def test_image_shape_turns_a_flat_csv_into_images(tmp_path):
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, size=(12, 4 * 5))
    rows = [(i % 3, *p) for i, p in enumerate(pixels)]
    path = _write_csv(tmp_path / "pix.csv", ["label"] + [f"p{i}" for i in range(20)], rows)
    data = load_data(str(path), image_shape=[4, 5], test_fraction=0.25)
    assert data.kind == "image" and data.input_shape == (1, 4, 5) and data.feature_names is None
    x = torch.cat([data.x_train, data.x_test])[torch.argsort(torch.cat([data.ids_train, data.ids_test]))]
    assert torch.allclose(x * 255, torch.from_numpy(pixels.reshape(12, 1, 4, 5)).float(), atol=1e-3)
    with pytest.raises(DataError, match=r"image_shape \[1, 4, 4\] needs 16 values per sample, but each sample has 20"):
        load_data(str(path), image_shape=[1, 4, 4])
    floats = _write_csv(tmp_path / "f.csv", ["y", "a", "b", "c", "d"], [(i % 2, 0.5, -3, 7, 1) for i in range(8)])
    with pytest.raises(ConfigError, match=r"pixel values run -3\.\.7.*pass scale=\[low, high\]"):
        load_data(str(floats), image_shape=[2, 2])
    assert load_data(str(floats), image_shape=[2, 2], scale=[-3, 7]).x_train.max() <= 1


# -- bad cells and other bad input ---------------------------------------------------------------
def test_empty_non_numeric_and_nan_cells_in_one_message(tmp_path):
    rows = [(1, 2, 0), (3, "", 1), (5, 6, 0), ("x7", 8, 1), (9, "nan", 0), (11, 12, 1), (13, 14, 0), (15, 16, 1)]
    path = _write_csv(tmp_path / "bad.csv", ["a", "b", "y"], rows)
    with pytest.raises(DataError) as info:
        load_data(str(path))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: 3 bad cells")
    assert message.endswith("line 3, column 'b': ''; line 5, column 'a': 'x7'; line 6, column 'b': 'nan'")


def test_more_than_ten_bad_cells_lists_ten_then_counts(tmp_path):
    rows = [(i, "inf" if i < 13 else i, i % 2) for i in range(20)]
    path = _write_csv(tmp_path / "inf.csv", ["a", "b", "y"], rows)
    with pytest.raises(DataError) as info:
        load_data(str(path))
    message = str(info.value)
    assert "13 bad cells" in message and message.count("column 'b': 'inf'") == 10
    assert "line 2, column 'b'" in message and "line 11, column 'b'" in message and "line 12," not in message
    assert message.endswith("; and 3 more")


def test_text_columns_are_refused_unless_onehot(tmp_path):
    path, _ = _patients(tmp_path)
    with pytest.raises(DataError, match=r"column 'sex' is not numeric \(e\.g\. 'sex': 'F', 'M'\); pass "
                                        r'categorical="onehot" to one-hot encode it'):
        load_data(str(path), label="outcome", id="pid")
    with pytest.raises(ConfigError, match="option categorical must be one of 'refuse', 'onehot'"):
        load_data(str(path), label="outcome", categorical="yes")


def test_column_problems_list_the_columns(tmp_path):
    path, _ = _patients(tmp_path)
    columns = "columns: pid, age, sex, bmi, glucose, outcome"
    with pytest.raises(DataError, match=f"unknown label column 'diagnosis'; {columns}"):
        load_data(str(path), label="diagnosis")
    with pytest.raises(DataError, match=f"unknown id column 'patient'; {columns}"):
        load_data(str(path), label="outcome", id="patient")
    with pytest.raises(DataError, match=f"features=\\['age', 'weight'\\]: unknown column 'weight'; {columns}"):
        load_data(str(path), label="outcome", features=["age", "weight"])
    with pytest.raises(DataError, match="column 'outcome' is the label column; it cannot be a feature"):
        load_data(str(path), label="outcome", features=["age", "outcome"])
    with pytest.raises(ConfigError, match="which column holds the labels\\? pass label=COLUMN .*no column is named"):
        load_data(str(path))


def test_ragged_empty_and_header_only_files(tmp_path):
    (tmp_path / "ragged.csv").write_text("a,b,y\n1,2,0\n\n3,4\n5,6,1,7\n")
    with pytest.raises(DataError, match=r"line 4 has 2 fields, the header has 3 \(1 more rows"):
        load_data(str(tmp_path / "ragged.csv"))
    (tmp_path / "empty.csv").write_text("\n\n")
    with pytest.raises(DataError, match="empty.csv: empty file"):
        load_data(str(tmp_path / "empty.csv"))
    (tmp_path / "header.csv").write_text("a,b,y\n")
    with pytest.raises(DataError, match="header.csv: the file has a header but no rows"):
        load_data(str(tmp_path / "header.csv"))
    (tmp_path / "twice.csv").write_text("a,a,y\n1,2,0\n")
    with pytest.raises(DataError, match=r"column name 'a' appears twice in the header \(columns 1 and 2\)"):
        load_data(str(tmp_path / "twice.csv"))


def test_label_classes_one_class_and_too_small_to_stratify(tmp_path):
    one = _write_csv(tmp_path / "one.csv", ["a", "y"], [(i, "yes") for i in range(6)])
    with pytest.raises(DataError, match=r"label column 'y' holds a single class \('yes'\); a classifier needs at least 2"):
        load_data(str(one))
    lonely = _write_csv(tmp_path / "lonely.csv", ["a", "y"], [(i, ["cat", "dog"][i % 2]) for i in range(8)]
                        + [(9, "emu")])
    with pytest.raises(DataError, match="class 'emu' has 1 sample; a stratified train/test split needs at least 2"):
        load_data(str(lonely))
    many = _write_csv(tmp_path / "many.csv", ["a", "y"], [(i, i % 5) for i in range(10)])
    with pytest.raises(DataError, match=r"test_fraction=0\.2 leaves 2 of 10 samples for the test split, fewer than "
                                        r"the 5 classes .*raise test_fraction"):
        load_data(str(many))


def test_ids_must_be_unique_and_strings_map_to_stable_integers(tmp_path):
    dup = _write_csv(tmp_path / "dup.csv", ["id", "a", "y"], [(i % 5, i, i % 2) for i in range(8)])
    with pytest.raises(DataError, match=r"id column 'id' repeats '0' \(lines 2 and 7\) \(2 other ids repeat too\)"):
        load_data(str(dup), id="id")
    names = _write_csv(tmp_path / "names.csv", ["id", "a", "y"], [(f"p{i}", i, i % 2) for i in range(8)])
    a = load_data(str(names), id="id")
    shuffled = _write_csv(tmp_path / "shuffled.csv", ["id", "a", "y"], [(f"p{i}", i, i % 2) for i in reversed(range(8))])
    b = load_data(str(shuffled), id="id")
    assert set(_by_id(a)) == set(_by_id(b))  # the same strings give the same ids in every file
    assert len(set(_by_id(a))) == 8 and min(_by_id(a)) >= 0


def test_missing_files_bad_gzip_and_unknown_sources(tmp_path):
    with pytest.raises(DataError, match="file not found: .*nope.csv"):
        load_data(f"csv:{tmp_path / 'nope.csv'}")
    with pytest.raises(UnknownNameError, match=r"unknown data set 'nope'; not a built-in name \(breast-cancer, .*\) "
                                               r"and no such file"):
        load_data("nope")
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(b"a,y\n1,0\n" * 100)[:-12])
    with pytest.raises(DataError, match="t.csv.gz: cannot decompress gzip data"):
        load_data(str(tmp_path / "t.csv.gz"))
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    with pytest.raises(ConfigError, match="cannot tell the file format from its name; prefix the source with one of csv:"):
        load_data(str(tmp_path / "t.parquet"))


def test_unknown_and_malformed_options_list_the_valid_ones(tmp_path):
    path, _ = _patients(tmp_path)
    with pytest.raises(ConfigError, match=r"bad options for csv file .*: colour; it takes: label, id, features, "
                                          r"categorical, delimiter, image_shape, scale, test_fraction, name"):
        load_data(str(path), colour="red")
    with pytest.raises(ConfigError, match="bad options for npz file"):
        load_data(f"npz:{path}", categorical="onehot")
    with pytest.raises(ConfigError, match=r"option test_fraction must be a number in \(0, 1\)"):
        load_data(str(path), label="outcome", test_fraction=2)
    with pytest.raises(ConfigError, match=r"option image_shape must be \[C, H, W\] or \[H, W\]"):
        load_data(str(path), label="outcome", image_shape=[0, 3])


# -- npz -----------------------------------------------------------------------------------------
def test_truncated_and_non_zip_npz_are_data_errors(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, x=np.zeros((50, 4)), y=np.arange(50) % 2)
    path.write_bytes(path.read_bytes()[:-40])  # lost the end: numpy's np.load raises BadZipFile here
    with pytest.raises(zipfile.BadZipFile):
        np.load(path)
    with pytest.raises(DataError, match=r"t.npz: not a valid .npz file \(File is not a zip file\)"):
        load_data(str(path))
    fake = tmp_path / "fake.npz"
    fake.write_text("x,y\n1,0\n")
    with pytest.raises(DataError, match=r"fake.npz: not a valid .npz file"):
        load_data(str(fake))


def test_npz_keys_ids_features_images_and_object_arrays(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 6))
    np.savez(tmp_path / "t.npz", features=x, target=np.array(["no", "yes"] * 10), pid=np.arange(100, 120),
             feature_names=np.array(list("abcdef")))
    data = load_data(str(tmp_path / "t.npz"), features_key="features", id="pid", features="b:d")
    assert data.feature_names == ("b", "c", "d") and sorted(_by_id(data)) == list(range(100, 120))
    with pytest.raises(DataError, match="no array named 'x'; arrays present: features, target, pid, feature_names"):
        load_data(str(tmp_path / "t.npz"))
    images = rng.integers(0, 256, size=(12, 1, 3, 3), dtype=np.uint8)
    np.savez(tmp_path / "img.npz", x=images, y=np.arange(12) % 2)
    assert load_data(str(tmp_path / "img.npz"), test_fraction=0.5).input_shape == (1, 3, 3)
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.arange(4))
    with pytest.raises(DataError, match="array 'x' holds Python objects .*without unpickling"):
        load_data(str(tmp_path / "obj.npz"))
    np.savez(tmp_path / "nan.npz", x=np.where(np.eye(4, 3) > 0, np.nan, 1.0), y=np.arange(4) % 2)
    with pytest.raises(DataError, match=r"array 'x' holds 3 NaN or infinite value\(s\), the first at sample 0, feature 0"):
        load_data(str(tmp_path / "nan.npz"))


# -- idx, CIFAR-10, built-ins ------------------------------------------------------------------
def _idx(path, array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())
    return path


def test_mnist_idx_finds_its_labels_file_and_cifar_reads_a_folder(tmp_path):
    rng = np.random.default_rng(4)
    images = _idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, size=(10, 4, 4)))
    _idx(tmp_path / "train-labels-idx1-ubyte", np.arange(10) % 2)
    data = load_data(str(images), test_fraction=0.5)
    assert data.input_shape == (1, 4, 4) and data.name == "train-images-idx3-ubyte"
    lonely = _idx(tmp_path / "other-images-idx3-ubyte", rng.integers(0, 256, size=(10, 4, 4)))
    with pytest.raises(ConfigError, match="no labels file other-labels-idx1-ubyte beside the images; pass labels=PATH"):
        load_data(str(lonely))
    assert load_data(str(lonely), labels=str(tmp_path / "train-labels-idx1-ubyte"), test_fraction=0.5).num_classes == 2
    folder = tmp_path / "cifar"
    folder.mkdir()
    for i in (1, 2):
        y = np.array([0, 1, 0, 1], dtype=np.uint8)
        x = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
        (folder / f"data_batch_{i}.bin").write_bytes(np.concatenate([y[:, None], x], axis=1).tobytes())
    cifar = load_data(f"cifar10:{folder}", test_fraction=0.5)
    assert cifar.input_shape == (3, 32, 32) and len(cifar.x_train) + len(cifar.x_test) == 8


def test_builtin_name_equals_load_dataset_and_breast_cancer_has_names():
    a = load_data("breast-cancer", seed=2)
    b = load_dataset("breast-cancer", seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.ids_test, b.ids_test)
    assert a.feature_names is not None and len(a.feature_names) == 30 and a.feature_names[0] == "mean radius"
    with pytest.raises(ConfigError, match="bad options for data set 'breast-cancer'"):
        load_data("breast-cancer", label="y")


def test_describe_data_options():
    assert describe_data_options("csv") == FORMAT_OPTIONS["csv"]
    assert set(describe_data_options("data/x.npz")) >= {"label", "features_key", "image_shape"}
    assert set(describe_data_options("mnist-idx:whatever")) == {"labels", "test_fraction", "name"}
    options = describe_data_options("synthetic")
    assert "seed" not in options and options["n_samples"] == "default 512" and "test_fraction" in options
    assert all("\n" not in help for help in options.values())
    with pytest.raises(UnknownNameError, match="unknown data set 'nope'"):
        describe_data_options("nope")


# -- vertical views ------------------------------------------------------------------------------
def test_views_by_name_resolve_to_column_indices(tmp_path):
    path, _ = _patients(tmp_path)
    data = load_data(str(path), label="outcome", id="pid", categorical="onehot")
    views = resolve_views(data, [["age", "sex"], ["bmi", "glucose"]])  # "sex" stands for its one-hot columns
    assert [v.columns for v in views] == [(0, 1, 2), (3, 4)] and [v.name for v in views] == ["client0", "client1"]
    views = resolve_views(data, {"clinic": "age:sex=M", "lab": [3, "4:5"]})
    assert [(v.name, v.columns) for v in views] == [("clinic", (0, 1, 2)), ("lab", (3, 4))]
    assert resolve_views(data, [["glucose"]])[0].columns == (4,)  # unassigned columns are allowed
    given = FeatureView("mine", columns=(0,))
    assert resolve_views(data, [given, ["bmi"]])[0] is given
    with pytest.raises(ConfigError, match="column 'bmi' is in views 'client0' and 'client1'; views must be disjoint"):
        resolve_views(data, [["age", "bmi"], ["bmi", "glucose"]])
    with pytest.raises(ConfigError, match="view 'client1': unknown column 'insulin'; columns: age, sex=F, sex=M, bmi"):
        resolve_views(data, [["age"], ["insulin"]])
    with pytest.raises(ConfigError, match="column 'age' is picked twice"):
        resolve_views(data, [["age", 0]])


def test_image_views_are_boxes_checked_against_the_image():
    data = load_dataset("digits")
    views = resolve_views(data, [[0, 8, 0, 4], [0, 8, 4, 8]])
    assert [v.region for v in views] == [(0, 8, 0, 4), (0, 8, 4, 8)]
    with pytest.raises(ConfigError, match=r"box \[0, 9, 0, 4\] does not fit the 8x8 image"):
        resolve_views(data, [[0, 9, 0, 4]])
    with pytest.raises(ConfigError, match="views 'client0' and 'client1' overlap in rows 0:8, columns 3:4"):
        resolve_views(data, [[0, 8, 0, 4], [0, 8, 3, 8]])
    with pytest.raises(ConfigError, match=r"an image view is \[row_start, row_stop, col_start, col_stop\]"):
        resolve_views(data, [["age"]])


def test_select_columns_ranges_and_errors():
    names = ["a", "b", "c", "d"]
    assert select_columns("b:", count=4, names=names) == [1, 2, 3]
    assert select_columns(":2", count=4, names=names) == [0, 1]
    assert select_columns(["1:3"], count=4, names=names, reserved={2: "label"}) == [1]
    assert select_columns([2, 0], count=4) == [2, 0]
    with pytest.raises(ConfigError, match="mixes a column name and an index"):
        select_columns("a:3", count=4, names=names)
    with pytest.raises(ConfigError, match="picks no columns"):
        select_columns("c:a", count=4, names=names)
    with pytest.raises(ConfigError, match="runs past the last column"):
        select_columns("2:9", count=4, names=names)
    with pytest.raises(ConfigError, match=r"unknown column 'x'; the columns have no names: use indices 0\.\.3"):
        select_columns("x", count=4)


def test_dataset_feature_names_are_checked_and_small_classes_named():
    from secsplit.data import dataset_from_arrays

    x, y = np.arange(16.0).reshape(8, 2), np.arange(8) % 2
    data = dataset_from_arrays("t", x, y, kind="tabular", test_fraction=0.5, feature_names=["a", "b"])
    assert data.feature_names == ("a", "b")
    with pytest.raises(DataError, match="need 2 feature names"):
        dataset_from_arrays("t", x, y, kind="tabular", test_fraction=0.5, feature_names=["a"])
    with pytest.raises(DataError, match="feature names must be unique, got 'a' more than once"):
        dataset_from_arrays("t", x, y, kind="tabular", test_fraction=0.5, feature_names=["a", "a"])
    with pytest.raises(DataError, match="t: class 2 has 1 sample"):
        dataset_from_arrays("t", x, np.array([0, 1] * 3 + [0, 2]), kind="tabular", test_fraction=0.5)
