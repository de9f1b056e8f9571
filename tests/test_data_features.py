"""CSV feature vectors and .npz arrays: layouts, labels, options that do not fit, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.errors import DataError
from tests.datasets import FEATURE_CLASSES, FEATURES, feature_table, write_feature_csv, write_npz
from train.data import load_dataset


def test_one_csv_is_split_by_class_with_raw_float32_features(feature_csv):
    ds = load_dataset(feature_csv)
    assert ds.class_names == FEATURE_CLASSES  # string labels, sorted
    assert ds.input.kind == "features" and ds.input.shape == (13,)
    assert ds.input.feature_names == tuple(name for name, _, _ in FEATURES)
    assert ds.x_train.dtype == np.float32 and ds.x_train.shape == (1200, 13) and ds.x_test.shape == (300, 13)
    assert np.bincount(ds.y_test).tolist() == [100, 100, 100]
    assert ds.split == {"kind": "stratified", "test_fraction": 0.2, "seed": 0}
    assert list(ds.sha256) == ["sensors.csv"]
    # Raw values, not standardised: the hundreds and the thousandths survive as written.
    values, labels = feature_table(1500)
    rows = np.concatenate([ds.x_train, ds.x_test])
    assert 250 < rows[:, 0].mean() < 350 and 0.002 < rows[:, 1].mean() < 0.006
    expected = {tuple(np.float32(float(f"{v:.6g}")) for v in row) for row in values}
    assert {tuple(row) for row in rows} == expected


def test_csv_folder_with_train_and_test_keeps_the_given_split(tmp_path):
    folder = write_feature_csv(tmp_path / "sensors", split=True)
    ds = load_dataset(folder)
    assert len(ds.x_train) == 240 and len(ds.x_test) == 60
    assert ds.split == {"kind": "given", "shuffle_seed": 0}
    assert sorted(ds.sha256) == ["test.csv", "train.csv"]
    assert set(ds.y_train[-24:].tolist()) == {0, 1, 2}  # rows shuffled: a validation tail sees every class


def test_label_column_can_be_renamed(tmp_path):
    path = write_feature_csv(tmp_path / "wine.csv", label_column="cultivar")
    with pytest.raises(DataError, match=r"no 'label' column \(columns: temperature_k, .*cultivar\); .*--label-column"):
        load_dataset(path)
    assert load_dataset(path, label_column="cultivar").class_names == FEATURE_CLASSES


def test_integer_labels_are_classes_by_value(tmp_path):
    path = tmp_path / "ints.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{i * 2},{i % 3}\n" for i in range(30)))
    ds = load_dataset(path)
    assert ds.class_names == ("0", "1", "2")
    all_x = np.concatenate([ds.x_train, ds.x_test])
    all_y = np.concatenate([ds.y_train, ds.y_test])
    assert all(int(x[0]) % 3 == y for x, y in zip(all_x, all_y))
    gaps = tmp_path / "gaps.csv"
    gaps.write_text("a,label\n" + "".join(f"{i},{(i % 2) * 10 + 2}\n" for i in range(10)))
    assert load_dataset(gaps).class_names == ("2", "12")  # numeric order, not "12" < "2"


def test_spreadsheet_byte_order_mark_and_blank_lines_are_tolerated(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffx,label\r\n1,a\r\n\r\n2,b\r\n3,a\r\n4,b\r\n".encode())
    ds = load_dataset(path, test_fraction=0.5)
    assert ds.input.feature_names == ("x",) and ds.class_names == ("a", "b")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("x,y,label\n1,2,a\n3,oops,b\n", r"row 2 \(line 3\), column 'y': 'oops' is not a number"),
        ("x,y,label\n1,,a\n", r"row 1 \(line 2\), column 'y': '' is not a number"),
        ("x,y,label\n1,nan,a\n", r"column 'y': 'nan' is not a finite number"),
        ("x,y,class\n1,2,a\n", r"no 'label' column \(columns: x, y, class\)"),
        ("x,y,label\n1,2\n", "line 2 has 2 fields, the header has 3"),
        ("x,x,label\n1,2,a\n", "duplicate column names 'x'"),
        ("label\na\nb\n", "no feature columns besides 'label'"),
        ("x,label\n", "no data rows after the header"),
        ("", "empty file"),
        ("x,label\n1,\n", "row 1 \\(line 2\\) has an empty 'label'"),
    ],
)
def test_malformed_csv_is_one_data_error_naming_row_and_column(tmp_path, text, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=fragment):
        load_dataset(path)


def test_csv_with_one_class_only_is_a_data_error(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("x,label\n" + "".join(f"{i},same\n" for i in range(10)))
    with pytest.raises(DataError, match=r"only one class \('same'\)"):
        load_dataset(path)


def test_csv_folder_with_mismatched_files_is_a_data_error(tmp_path):
    folder = write_feature_csv(tmp_path / "sensors", split=True)
    (folder / "test.csv").write_text("temperature_k,label\n1,barolo\n")
    with pytest.raises(DataError, match="test.csv columns .* differ from train.csv columns"):
        load_dataset(folder)
    lines = (folder / "train.csv").read_text().splitlines()
    (folder / "test.csv").write_text("\n".join([lines[0], lines[1].rsplit(",", 1)[0] + ",nebbiolo"]) + "\n")
    with pytest.raises(DataError, match="label 'nebbiolo' does not occur in the training data"):
        load_dataset(folder)
    (folder / "test.csv").unlink()
    with pytest.raises(DataError, match="has no test.csv"):
        load_dataset(folder)


@pytest.mark.parametrize("option, fragment", [
    ({"image_size": (8, 8)}, "--image-size applies to images"),
    ({"color_mode": "rgb"}, "--color-mode applies to images"),
    ({"crop_to_aspect_ratio": True}, "--crop-to-aspect-ratio applies to images"),
])
def test_image_options_on_feature_data_are_refused(feature_csv, tmp_path, option, fragment):
    with pytest.raises(DataError, match=fragment):
        load_dataset(feature_csv, **option)
    with pytest.raises(DataError, match=fragment):
        load_dataset(write_npz(tmp_path / "f.npz", "features"), **option)


# --- npz -----------------------------------------------------------------------------------


def test_npz_rgb_images_with_one_hot_labels_and_class_names(tmp_path):
    path = write_npz(tmp_path / "rgb.npz", "rgb", one_hot=True, class_names=("cat", "dog", "owl"))
    ds = load_dataset(path)
    assert ds.x_train.shape == (60, 24, 32, 3) and ds.x_train.dtype == np.uint8
    assert ds.class_names == ("cat", "dog", "owl") and ds.y_train[:4].tolist() == [0, 1, 2, 0]
    assert ds.input.shape == (24, 32, 3) and ds.input.color_mode == "rgb" and not ds.input.digits
    assert ds.split == {"kind": "given"}


def test_npz_one_hot_without_names_takes_its_width_as_the_class_count(tmp_path):
    path = tmp_path / "wide.npz"
    x = np.zeros((4, 5), np.float32)
    y = np.eye(6, dtype=np.uint8)[[0, 1, 0, 1]]  # six columns, only two classes used
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    assert load_dataset(path).class_names == ("0", "1", "2", "3", "4", "5")


def test_npz_grayscale_with_a_channel_axis_is_stored_without_it(tmp_path):
    path = tmp_path / "gray.npz"
    x = np.arange(4 * 6 * 6, dtype=np.uint8).reshape(4, 6, 6, 1)
    np.savez(path, x_train=x, y_train=np.array([0, 1, 0, 1]), x_test=x, y_test=np.array([1, 0, 1, 0]))
    ds = load_dataset(path)
    assert ds.x_train.shape == (4, 6, 6) and ds.input.shape == (6, 6, 1)
    assert ds.input.color_mode == "grayscale" and not ds.input.digits  # only IDX / bundled data are MNIST digits


def test_npz_features_are_float32_vectors(tmp_path):
    ds = load_dataset(write_npz(tmp_path / "f.npz", "features"))
    assert ds.x_train.dtype == np.float32 and ds.x_train.shape == (60, 13) and ds.input.kind == "features"
    assert ds.class_names == ("0", "1", "2")


def test_array_images_are_never_resized(tmp_path):
    path = write_npz(tmp_path / "rgb.npz", "rgb")
    assert load_dataset(path, image_size=(24, 32), color_mode="rgb").x_train.shape == (60, 24, 32, 3)
    with pytest.raises(DataError,
                       match=r"--image-size 32x32 does not match the 24x32 images .*only image folders are resized"):
        load_dataset(path, image_size=(32, 32))
    with pytest.raises(DataError, match="--color-mode grayscale does not match the rgb images"):
        load_dataset(path, color_mode="grayscale")


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda a: a.pop("y_test"), r"missing arrays \['y_test'\]"),
        (lambda a: a.update(y_train=a["y_train"][:-1]), "train has 60 images but 59 labels"),
        (lambda a: a.update(x_test=a["x_test"][:, :10]),
         r"train images are \(24, 32, 3\) but test images are \(10, 32, 3\)"),
        (lambda a: a.update(y_train=np.full((60, 3), 0.5)), "rows are not one-hot"),
        (lambda a: a.update(class_names=np.array(["a", "b"])), "label 2 is out of range for 2 class names"),
        (lambda a: a.update(x_train=a["x_train"].astype(np.float32)), "train images must be uint8 pixels"),
        (lambda a: a.update(x_train=a["x_train"][..., :2]), "images must have 1 or 3 channels"),
    ],
)
def test_malformed_npz_is_one_data_error(tmp_path, change, fragment):
    source = write_npz(tmp_path / "src.npz", "rgb")
    with np.load(source) as npz:
        arrays = dict(npz)
    change(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=fragment):
        load_dataset(path)


def test_npz_with_one_class_only_is_a_data_error(tmp_path):
    path = tmp_path / "one.npz"
    x = np.zeros((4, 3), np.float32)
    np.savez(path, x_train=x, y_train=np.zeros(4, np.int64), x_test=x, y_test=np.zeros(4, np.int64))
    with pytest.raises(DataError, match=r"only one class \('0'\)"):
        load_dataset(path)


def test_unsupported_file_type_is_a_data_error(tmp_path):
    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(DataError, match="unsupported data source; pass an image folder"):
        load_dataset(path)
