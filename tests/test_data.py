"""Data loading: bundled MNIST, IDX directories, .npz files, and every way they can be broken."""

from __future__ import annotations

import gzip
import shutil
import struct

import numpy as np
import pytest

from edge_runtime.errors import DataError
from edge_runtime.idx import parse_idx, read_idx
from train import data as data_mod
from train.data import BUNDLED_DIR, load_dataset, one_hot

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX, the way the MNIST files are laid out."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(directory, x_train, y_train, x_test, y_test, sep="-", gz=True):
    directory.mkdir(parents=True, exist_ok=True)
    names = {
        f"train-images{sep}idx3-ubyte": x_train,
        f"train-labels{sep}idx1-ubyte": y_train,
        f"t10k-images{sep}idx3-ubyte": x_test,
        f"t10k-labels{sep}idx1-ubyte": y_test,
    }
    for name, arr in names.items():
        payload = idx_bytes(arr)
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(payload))
        else:
            (directory / name).write_bytes(payload)
    return directory


@pytest.fixture()
def tiny_arrays():
    rng = np.random.default_rng(0)
    return (
        rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, 20, dtype=np.uint8),
        rng.integers(0, 256, (8, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, 8, dtype=np.uint8),
    )


def test_bundled_mnist_has_the_documented_shapes_and_class_counts(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 28, 28)
    assert np.bincount(mnist.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(mnist.y_test).tolist() == MNIST_TEST_COUNTS
    assert mnist.num_classes == 10
    assert mnist.sha256 == data_mod.BUNDLED_SHA256


def test_idx_directory_with_dot_names_and_raw_files_loads_like_gzip(tmp_path, tiny_arrays):
    gz = load_dataset(write_idx_dir(tmp_path / "gz", *tiny_arrays))
    raw = load_dataset(write_idx_dir(tmp_path / "raw", *tiny_arrays, sep=".", gz=False))
    for a, b, original in zip(
        (gz.x_train, gz.y_train, gz.x_test, gz.y_test), (raw.x_train, raw.y_train, raw.x_test, raw.y_test), tiny_arrays
    ):
        np.testing.assert_array_equal(a, original)
        np.testing.assert_array_equal(b, original)


def test_any_single_channel_idx_dataset_loads_with_its_own_class_count(tmp_path, tiny_arrays):
    x_train, _, x_test, _ = tiny_arrays
    ds = load_dataset(write_idx_dir(tmp_path / "d", x_train, np.arange(20) % 4, x_test, np.arange(8) % 4))
    assert ds.num_classes == 4 and ds.image_shape == (28, 28)


def test_npz_in_keras_layout_loads(tmp_path, tiny_arrays):
    path = tmp_path / "mnist.npz"
    np.savez(path, **dict(zip(("x_train", "y_train", "x_test", "y_test"), tiny_arrays)))
    ds = load_dataset(path)
    np.testing.assert_array_equal(ds.x_test, tiny_arrays[2])
    assert list(ds.sha256) == ["mnist.npz"]


def test_npz_missing_an_array_is_a_data_error(tmp_path, tiny_arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=tiny_arrays[0])
    with pytest.raises(DataError, match="missing arrays"):
        load_dataset(path)


def test_missing_data_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        load_dataset(tmp_path / "nowhere")


def test_directory_without_idx_files_names_the_missing_file(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_dataset(tmp_path)


def test_truncated_idx_data_is_a_data_error(tmp_path, tiny_arrays):
    d = write_idx_dir(tmp_path / "d", *tiny_arrays, gz=False)
    f = d / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated IDX data"):
        load_dataset(d)


def test_truncated_gzip_is_a_data_error(tmp_path, tiny_arrays):
    d = write_idx_dir(tmp_path / "d", *tiny_arrays)
    f = d / "t10k-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-30])
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        load_dataset(d)


def test_corrupt_gzip_payload_is_a_data_error(tmp_path, tiny_arrays):
    d = write_idx_dir(tmp_path / "d", *tiny_arrays)
    f = d / "train-labels-idx1-ubyte.gz"
    raw = bytearray(f.read_bytes())
    raw[12:20] = b"\xff" * 8
    f.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="gzip"):
        load_dataset(d)


def test_wrong_magic_number_is_a_data_error(tmp_path, tiny_arrays):
    d = write_idx_dir(tmp_path / "d", *tiny_arrays, gz=False)
    f = d / "train-labels-idx1-ubyte"
    f.write_bytes(b"\x12\x34" + f.read_bytes()[2:])
    with pytest.raises(DataError, match="bad magic number"):
        load_dataset(d)


def test_image_and_label_count_mismatch_is_a_data_error(tmp_path, tiny_arrays):
    x_train, y_train, x_test, y_test = tiny_arrays
    d = write_idx_dir(tmp_path / "d", x_train, y_train[:-1], x_test, y_test)
    with pytest.raises(DataError, match="20 images but 19 labels"):
        load_dataset(d)


def test_damaged_bundled_file_fails_its_checksum(tmp_path, monkeypatch):
    copy = tmp_path / "mnist"
    shutil.copytree(BUNDLED_DIR, copy)
    f = copy / "t10k-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes() + b"\0")
    monkeypatch.setattr(data_mod, "BUNDLED_DIR", copy)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_dataset()


def test_trailing_bytes_after_idx_data_are_rejected():
    with pytest.raises(DataError, match="unexpected bytes"):
        parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 1, 5, 6]))


def test_read_idx_reads_the_bundled_test_labels():
    labels = read_idx(BUNDLED_DIR / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_one_hot_has_ten_entries():
    encoded = one_hot(np.array([3, 9]), 10)
    assert encoded.shape == (2, 10) and encoded.sum(axis=1).tolist() == [1.0, 1.0] and encoded[0, 3] == 1.0
