"""Training on any data: image folders and CSV features through `python -m train`, the models, and bad options."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.records.manifest import MNIST_INPUT, InputSpec, Preprocessing
from edge_runtime.records.training import TrainingRecord
from tests.datasets import FEATURE_CLASSES, write_npz
from tests.test_train import assert_one_line_error, run_train


def test_cli_trains_a_cnn_on_an_rgb_folder_and_records_the_input(rgb_cnn_run):
    out, proc, data = rgb_cnn_run
    assert sorted(p.name for p in out.iterdir()) == ["model.keras", "training.json"]
    record = TrainingRecord.read(out)  # schema 2, validated
    assert record.input == InputSpec("image", (40, 48, 3), "rgb", "bilinear", False, digits=False)
    assert record.preprocessing == Preprocessing.for_mode("unit", "nhwc", (40, 48, 3))
    assert record.class_names == ("circle", "square", "triangle")
    assert record.architecture == "cnn" and record.config["learning_rate"] == 0.01
    dataset = record.dataset
    assert dataset["split"] == {"kind": "stratified", "test_fraction": 0.2, "seed": 0}
    assert dataset["num_train"] + dataset["num_test"] == 179 and dataset["image_shape"] == [40, 48]
    assert dataset["skipped_images"] == 1 and dataset["skipped_examples"] == ["triangle/007.jpg"]
    assert dataset["load_options"]["image_size"] == [40, 48] and dataset["load_options"]["color_mode"] == "rgb"
    assert list(dataset["sha256"]) == ["shapes/"]
    assert "skipped 1 unreadable image(s), e.g. triangle/007.jpg" in proc.stderr
    assert "test accuracy" in proc.stdout
    # It learned: a hue per class is easy, but three classes at chance would be about 0.33.
    assert record.test_accuracy >= 0.9, record.test_accuracy


def test_rgb_cnn_is_the_depthwise_separable_design(rgb_cnn_run):
    import keras

    model = keras.models.load_model(rgb_cnn_run[0] / "model.keras")
    kinds = [type(layer).__name__ for layer in model.layers]
    assert tuple(model.inputs[0].shape) == (None, 40, 48, 3)
    assert "DepthwiseConv2D" in kinds and "GlobalAveragePooling2D" in kinds and "Flatten" not in kinds
    assert all(layer.max_value == 6.0 for layer in model.layers if type(layer).__name__ == "ReLU")
    assert model.layers[-1].units == 3 and model.layers[-1].activation.__name__ == "softmax"


def test_same_seed_gives_the_same_separable_cnn(rgb_cnn_run):
    import keras

    from train.data import load_dataset
    from train.training import TrainConfig, train_model

    out, _, data = rgb_cnn_run
    record = TrainingRecord.read(out)
    dataset = load_dataset(data, **record.dataset["load_options"])
    config = TrainConfig(**record.config)
    model, again = train_model(dataset, config, verbose=0)
    saved = keras.models.load_model(out / "model.keras")
    for a, b in zip(model.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert again.test_accuracy == record.test_accuracy


def test_cli_trains_a_feature_mlp_that_normalises_inside_the_model(feature_csv, feature_mlp_run):
    import keras

    from train.data import load_dataset

    out, proc = feature_mlp_run
    record = TrainingRecord.read(out)
    assert record.input.kind == "features" and record.input.shape == (13,)
    assert record.input.feature_names[:2] == ("temperature_k", "vibration_g")
    assert record.preprocessing == Preprocessing.for_mode("raw", "flat", (13,))  # the device passes raw values
    assert record.class_names == FEATURE_CLASSES and "image_shape" not in record.dataset
    model = keras.models.load_model(out / "model.keras")
    norm = model.layers[0]
    assert type(norm).__name__ == "Normalization"
    train = load_dataset(feature_csv).x_train
    np.testing.assert_allclose(np.ravel(norm.mean), train.mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(np.ravel(norm.variance), train.var(axis=0), rtol=1e-3)
    assert record.test_accuracy >= 0.8, record.test_accuracy


def test_mlp_on_images_flattens_every_channel():
    from train.models import build_model, preprocessing_for

    spec = InputSpec("image", (40, 48, 3), "rgb", digits=False)
    model = build_model("mlp", spec, 4)
    assert tuple(model.inputs[0].shape) == (None, 40 * 48 * 3)
    assert [layer.units for layer in model.layers] == [512, 256, 128, 4]
    assert preprocessing_for(model, spec) == Preprocessing.for_mode("unit", "flat", (5760,))


def test_mnist_cnn_is_the_small_cnn_and_reads_nhwc():
    from train.models import build_model, preprocessing_for

    model = build_model("cnn")
    assert [layer.name for layer in model.layers][:3] == ["conv1", "bn1", "pool1"]
    assert tuple(model.inputs[0].shape) == (None, 28, 28, 1)
    assert preprocessing_for(model, MNIST_INPUT) == Preprocessing.for_mode("unit", "nhwc", (28, 28, 1))


def test_small_rgb_images_use_the_small_cnn_with_three_channels():
    from train.models import build_model

    model = build_model("cnn", InputSpec("image", (24, 24, 3), "rgb", digits=False), 5)
    assert tuple(model.inputs[0].shape) == (None, 24, 24, 3) and model.layers[0].name == "conv1"


# --- bad options and bad data through the command line: one line, exit 2, nothing written ----------------


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--image-size", "0x32"],
         "argument --image-size: expected HxW (height x width, positive integers), e.g. 32x32, got '0x32'"),
        (["--image-size", "32"], "argument --image-size: expected HxW"),
        (["--test-fraction", "1.5"],
         "argument --test-fraction: expected a number between 0 and 1 (exclusive), got '1.5'"),
        (["--test-fraction", "nan"],
         "argument --test-fraction: expected a number between 0 and 1 (exclusive), got 'nan'"),
        (["--color-mode", "cmyk"], "argument --color-mode: invalid choice: 'cmyk'"),
        (["--arch", "resnet"], "argument --arch: invalid choice: 'resnet'"),
        (["--seed", "-1"], "--seed must be between 0 and 2**32 - 1, got -1"),
        (["--learning-rate", "inf"], "--learning-rate must be a finite number > 0, got inf"),
        (["--train-limit", "1"], "--train-limit must be >= 2, got 1"),
        (["--validation-split", "1"], "--validation-split must be in [0, 1), got 1.0"),
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    ],
)
def test_bad_option_value_is_one_line_naming_the_option(tmp_path, args, fragment):
    proc = run_train("--out", str(tmp_path / "run"), *args)
    assert_one_line_error(proc, fragment)
    assert proc.returncode == 2 and not (tmp_path / "run").exists()


def _bad_folder(root: Path, rgb_folder: Path, kind: str) -> Path:
    data = root / "data"
    if kind == "empty":
        data.mkdir()
    elif kind == "empty_class":
        shutil.copytree(rgb_folder, data)
        (data / "hexagon").mkdir()
    elif kind == "classes_differ":
        for part, classes in (("train", ("circle", "square")), ("test", ("circle", "triangle"))):
            for name in classes:
                shutil.copytree(rgb_folder / name, data / part / name)
    elif kind == "corrupt":
        shutil.copytree(rgb_folder, data)
        (data / "square" / "010.png").write_bytes(b"\x89PNG damaged")
    elif kind == "mixed_sizes":
        shutil.copytree(rgb_folder, data)
        from PIL import Image

        Image.new("RGB", (20, 20)).save(data / "circle" / "small.png")
    elif kind == "one_class":
        shutil.copytree(rgb_folder / "circle", data / "circle")
    return data


@pytest.mark.parametrize(
    "kind, fragment",
    [
        ("empty", "no data found"),
        ("empty_class", "hexagon: class folder has no images"),
        ("classes_differ", "train/ and test/ hold different classes"),
        ("corrupt", "square/010.png: cannot read image"),
        ("mixed_sizes", "pass --image-size HxW"),
        ("one_class", "only one class ('circle')"),
    ],
)
def test_bad_image_folder_fails_cleanly_and_writes_nothing(tmp_path, rgb_folder, kind, fragment):
    data = _bad_folder(tmp_path, rgb_folder, kind)
    proc = run_train("--data", str(data), "--out", str(tmp_path / "run"))
    assert_one_line_error(proc, fragment)
    assert proc.returncode == 2 and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "content, args, fragment",
    [
        ("x,y,label\n1,2,a\n3,abc,b\n", (), "row 2 (line 3), column 'y': 'abc' is not a number"),
        ("x,y,kind\n1,2,a\n3,4,b\n", (), "no 'label' column (columns: x, y, kind)"),
        ("x,label\n1,a\n2,a\n", (), "only one class ('a')"),
        ("x,label\n1,a\n2,b\n", ("--image-size", "8x8"), "--image-size applies to images"),
        ("x,label\n1,a\n2,b\n3,a\n4,b\n", ("--arch", "cnn"),
         "--arch cnn needs image data, but the data are 1 features"),
    ],
)
def test_bad_csv_fails_cleanly_and_writes_nothing(tmp_path, content, args, fragment):
    path = tmp_path / "data.csv"
    path.write_text(content)
    proc = run_train("--data", str(path), "--out", str(tmp_path / "run"), *args)
    assert_one_line_error(proc, fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "damage, fragment", [("missing", "missing arrays ['x_test']"), ("lengths", "60 images but 20 labels")]
)
def test_bad_npz_fails_cleanly_and_writes_nothing(tmp_path, damage, fragment):
    with np.load(write_npz(tmp_path / "good.npz")) as npz:
        arrays = dict(npz)
    if damage == "missing":
        del arrays["x_test"]
    else:
        arrays["y_train"] = arrays["y_test"]
    np.savez(tmp_path / "bad.npz", **arrays)
    proc = run_train("--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "run"))
    assert_one_line_error(proc, fragment)
    assert not (tmp_path / "run").exists()
