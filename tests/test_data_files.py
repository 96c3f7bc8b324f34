"""File loaders at the edges: gzip by content, full idx dtypes, CSV quirks, label encoding, refusals."""

import gzip
import struct

import numpy as np
import pytest

from secsplit.data import load_cifar10, load_table, read_cifar10_batch, read_idx
from secsplit.errors import DataError


def _idx_bytes(array: np.ndarray, type_code: int) -> bytes:
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("dtype,code", [(np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B), (np.int32, 0x0C),
                                        (np.float32, 0x0D), (np.float64, 0x0E)])
def test_read_idx_decodes_every_idx_type_code_big_endian(tmp_path, dtype, code):
    values = np.arange(24).reshape(2, 3, 4)
    array = (values if code == 0x08 else values - 5).astype(dtype)  # negatives where the type allows them
    path = tmp_path / "a.idx"
    path.write_bytes(_idx_bytes(array, code))
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    assert np.array_equal(got, array)


def test_read_idx_detects_gzip_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "labels-idx1-ubyte"  # no .gz suffix, as after some downloads
    path.write_bytes(gzip.compress(_idx_bytes(array, 0x08)))
    assert np.array_equal(read_idx(path), array)


def test_read_idx_reports_corrupt_gzip_and_non_idx_header(tmp_path):
    broken = tmp_path / "x.idx.gz"
    broken.write_bytes(gzip.compress(_idx_bytes(np.zeros((50, 50), np.uint8), 0x08))[:-20])
    with pytest.raises(DataError, match="cannot decompress gzip data"):
        read_idx(broken)
    text = tmp_path / "x.idx"
    text.write_bytes(b"hello world")
    with pytest.raises(DataError, match=r"wrong magic number 0x68656C6C; expected an idx header 0x0000TTNN"):
        read_idx(text)
    tiny = tmp_path / "tiny.idx"
    tiny.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="truncated idx file: 2 bytes, expected at least 4"):
        read_idx(tiny)
    oversized = tmp_path / "big.idx"
    oversized.write_bytes(_idx_bytes(np.zeros(3, np.uint8), 0x08) + b"\x00")
    with pytest.raises(DataError, match="oversized idx file: 12 bytes, expected 11"):
        read_idx(oversized)


def test_cifar_truncation_message_gives_expected_and_actual_bytes(tmp_path):
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(bytes(3073 + 100))
    with pytest.raises(DataError, match="3173 bytes, expected a multiple .* \\(6146 bytes for 2 record"):
        read_cifar10_batch(path)
    path.write_bytes(bytes([10]) + bytes(3072))
    with pytest.raises(DataError, match="label byte 10 out of range"):
        read_cifar10_batch(path)
    with pytest.raises(DataError, match="file not found: .*nope.bin"):
        read_cifar10_batch(tmp_path / "nope.bin")
    with pytest.raises(DataError, match="at least one batch"):
        load_cifar10([])


def test_cifar_batches_concatenate_and_keep_ten_classes(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        y = np.array([0, 1, 0, 1], dtype=np.uint8)
        x = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
        paths.append(tmp_path / f"data_batch_{i + 1}.bin")
        paths[-1].write_bytes(np.concatenate([y[:, None], x], axis=1).tobytes())
    data = load_cifar10(paths, test_fraction=0.5)
    assert len(data.x_train) + len(data.x_test) == 8 and data.num_classes == 10
    assert data.x_train.min() >= 0 and data.x_train.max() <= 1


def test_csv_with_byte_order_mark_and_gzip(tmp_path):
    lines = ["label,f1,f2"] + [f"{i % 2},{i},{i * 2}" for i in range(10)]
    (tmp_path / "bom.csv").write_bytes("\n".join(lines).encode("utf-8-sig"))
    assert load_table(tmp_path / "bom.csv", label_column="label").input_shape == (2,)
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress("\n".join(lines).encode()))
    data = load_table(tmp_path / "t.csv.gz", label_column="label")
    assert data.name == "t" and data.num_classes == 2


def test_csv_problems_name_the_line_or_value(tmp_path):
    (tmp_path / "ragged.csv").write_text("a,y\n1,0\n2\n")
    with pytest.raises(DataError, match="line 3 has 1 fields, the header has 2"):
        load_table(tmp_path / "ragged.csv", label_column="y")
    (tmp_path / "text.csv").write_text("a,y\n1,0\nabc,1\n")
    with pytest.raises(DataError, match="1 bad cell .*: line 3, column 'a': 'abc'$"):
        load_table(tmp_path / "text.csv", label_column="y")
    (tmp_path / "nolabel.csv").write_text("a,y\n1,0\n2,\n")
    with pytest.raises(DataError, match="line 3, column 'y': ''$"):
        load_table(tmp_path / "nolabel.csv", label_column="y")
    (tmp_path / "t.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="unsupported table format"):
        load_table(tmp_path / "t.parquet", label_column="y")


@pytest.mark.parametrize("labels,expected", [
    (["cat", "dog", "ant", "dog"], [1, 2, 0, 2]),  # names: sorted order
    (["-1", "1", "-1", "1"], [0, 1, 0, 1]),  # numbers that are not class indices: sorted by value
    (["2.5", "10.5", "2.5", "10.5"], [0, 1, 0, 1]),  # by value, not as strings ("10.5" < "2.5")
    (["1", "0", "1", "0"], [1, 0, 1, 0]),  # class indices stay
])
def test_csv_labels_are_encoded_in_sorted_order(tmp_path, labels, expected):
    lines = ["x,y"] + [f"{i},{lab}" for i, lab in enumerate(labels * 3)]
    (tmp_path / "t.csv").write_text("\n".join(lines))
    data = load_table(tmp_path / "t.csv", label_column="y", test_fraction=0.5)
    by_row = dict(zip(data.ids_train.tolist() + data.ids_test.tolist(),
                      data.y_train.tolist() + data.y_test.tolist()))
    assert [by_row[i] for i in range(len(labels))] == expected


def test_npz_custom_keys_string_labels_and_image_arrays_flatten(tmp_path):
    x = np.random.default_rng(0).normal(size=(12, 2, 3))
    np.savez(tmp_path / "t.npz", features=x, target=np.array(["no", "yes"] * 6))
    data = load_table(tmp_path / "t.npz", features_key="features", label_column="target", name="mine")
    assert data.name == "mine" and data.input_shape == (6,) and data.num_classes == 2
    (tmp_path / "fake.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="fake.npz"):
        load_table(tmp_path / "fake.npz")
