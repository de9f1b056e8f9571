"""Bad input to ``python -m convert``: one line, exit 2, no traceback, nothing left behind."""

from __future__ import annotations

import numpy as np
import pytest

from convert.__main__ import PROG, main
from convert.calibration import CalibrationData
from edge_runtime.cli_support import run_cli
from edge_runtime.errors import DataError, ModelLoadError
from edge_runtime.records.manifest import Preprocessing
from train.data import Dataset


def _run(argv, capsys):
    code = run_cli(PROG, main, [str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err


def _assert_one_line_error(code, err, expected):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{PROG}: error: ")
    assert expected in lines[0]
    assert "Traceback" not in err


def _assert_nothing_left(parent, name="out"):
    assert sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}") or p.name == name) == []


def test_non_keras_file_is_rejected_in_one_line(tmp_path, capsys):
    model = tmp_path / "model.keras"
    model.write_text("this is not a model\n")
    code, err = _run([model, "--out", tmp_path / "out"], capsys)
    _assert_one_line_error(code, err, "not a Keras model")
    _assert_nothing_left(tmp_path)


def test_file_without_a_model_suffix_is_rejected(tmp_path, capsys):
    model = tmp_path / "weights.bin"
    model.write_bytes(b"\x89HDF\r\n")
    code, err = _run([model, "--out", tmp_path / "out"], capsys)
    _assert_one_line_error(code, err, "expected a '.keras' or '.h5' file or a SavedModel directory")


def test_h5_file_that_is_not_hdf5_is_rejected(tmp_path, capsys):
    model = tmp_path / "weights.h5"
    model.write_bytes(b"PK\x03\x04 a zip, not HDF5")
    code, err = _run([model, "--out", tmp_path / "out"], capsys)
    _assert_one_line_error(code, err, "not an HDF5 file")


def test_directory_without_saved_model_is_rejected(tmp_path, capsys):
    (tmp_path / "export").mkdir()
    code, err = _run([tmp_path / "export", "--out", tmp_path / "out"], capsys)
    _assert_one_line_error(code, err, "a directory without saved_model.pb")


def test_missing_model_file_is_rejected(tmp_path, capsys):
    code, err = _run([tmp_path / "absent.keras", "--out", tmp_path / "out"], capsys)
    _assert_one_line_error(code, err, "no such model file")


@pytest.mark.slow
def test_truncated_keras_file_raises_model_load_error(small_mlp_path, tmp_path, capsys):
    truncated = tmp_path / "truncated.keras"
    data = small_mlp_path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    code, err = _run([truncated, "--out", tmp_path / "out"], capsys)
    _assert_one_line_error(code, err, "truncated")
    _assert_nothing_left(tmp_path)


@pytest.mark.slow
def test_model_whose_input_is_not_an_image_of_the_data_shape_is_rejected(tmp_path, capsys):
    import keras

    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(10, activation="softmax")])
    path = tmp_path / "vector.keras"
    model.save(path)
    code, err = _run([path, "--out", tmp_path / "out"], capsys)
    _assert_one_line_error(code, err, "model input (10,) does not fit the data's 28×28×1 images")
    _assert_nothing_left(tmp_path)


@pytest.mark.slow
def test_calibration_data_of_the_wrong_shape_is_rejected(small_mlp_path, tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "cifar_like.npz"
    np.savez(
        data,
        x_train=rng.integers(0, 256, (20, 32, 32), dtype=np.uint8), y_train=np.arange(20) % 10,
        x_test=rng.integers(0, 256, (10, 32, 32), dtype=np.uint8), y_test=np.arange(10) % 10,
    )
    code, err = _run([small_mlp_path, "--out", tmp_path / "out", "--data", data], capsys)
    # The model (from training.json: 28×28 grayscale) and the data's 32×32 images, both named.
    _assert_one_line_error(code, err, "32")
    assert "28" in err
    _assert_nothing_left(tmp_path)


def test_unwritable_output_directory_is_rejected_before_loading_the_model(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    # The model does not exist: the output check must come first, before any slow work.
    code, err = _run([tmp_path / "absent.keras", "--out", blocker / "out"], capsys)
    _assert_one_line_error(code, err, "cannot write to")
    assert blocker.read_text() == "x"


def test_existing_output_is_refused_without_force_before_loading_the_model(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, err = _run([tmp_path / "absent.keras", "--out", out], capsys)
    _assert_one_line_error(code, err, "pass --force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_unknown_format_is_rejected(tmp_path, capsys):
    code, err = _run([tmp_path / "m.keras", "--out", tmp_path / "out", "--formats", "tflite_int4"], capsys)
    _assert_one_line_error(code, err, "unknown artifact format 'tflite_int4'")


def test_parity_on_a_directory_without_manifest_is_rejected(tmp_path, capsys):
    code, err = _run(["parity", tmp_path], capsys)
    _assert_one_line_error(code, err, "no manifest.json")


def test_parity_gate_override_must_not_be_negative(tmp_path, capsys):
    code, err = _run(["parity", tmp_path, "--gate-int8-agreement", "-1"], capsys)
    _assert_one_line_error(code, err, "--gate-int8-agreement must be >= 0")


UNIT_FLAT = Preprocessing.for_mode("unit", "flat", (784,))
UNIT_NHWC = Preprocessing.for_mode("unit", "nhwc", (28, 28, 1))


def _toy_dataset(train_value: int, test_value: int) -> Dataset:
    x_train = np.full((50, 28, 28), train_value, dtype=np.uint8)
    x_train[:, 0, 0] = np.arange(50)  # makes every training image distinct
    x_test = np.full((10, 28, 28), test_value, dtype=np.uint8)
    return Dataset(x_train, np.arange(50) % 10, x_test, np.arange(10) % 10, source="toy")


def test_calibration_samples_come_from_the_training_split_only():
    calibration = CalibrationData(_toy_dataset(train_value=7, test_value=200), UNIT_FLAT, samples=20, seed=3)
    pixels = np.rint(calibration.inputs * 255).astype(np.uint8)
    assert np.all(pixels[:, 1:] == 7)  # never a test-split pixel
    assert len(set(pixels[:, 0].tolist())) == 20  # 20 distinct training images, no repeats
    assert calibration.describe() == {"split": "train", "samples": 20, "seed": 3, "draw": "uniform random"}


def test_calibration_sample_depends_on_seed_and_is_repeatable():
    data = _toy_dataset(7, 200)
    first = CalibrationData(data, UNIT_NHWC, samples=10, seed=1).inputs
    assert first.shape == (10, 28, 28, 1)
    assert np.array_equal(first, CalibrationData(data, UNIT_NHWC, samples=10, seed=1).inputs)
    assert not np.array_equal(first, CalibrationData(data, UNIT_NHWC, samples=10, seed=2).inputs)


def test_too_many_calibration_samples_is_a_data_error():
    with pytest.raises(DataError, match="between 1 and 50"):
        CalibrationData(_toy_dataset(7, 200), UNIT_FLAT, samples=51, seed=0)


@pytest.mark.slow
def test_failure_while_converting_leaves_no_output_and_no_staging_dir(small_mlp_path, mnist, tmp_path, monkeypatch):
    import convert.validate
    from convert import convert_model
    from convert.formats import ArtifactKind

    def broken(path, num_classes):
        raise ModelLoadError(f"{path.name}: artifact failed validation: simulated")

    monkeypatch.setattr(convert.validate, "validate_onnx", broken)
    with pytest.raises(ModelLoadError, match="simulated"):
        convert_model(small_mlp_path, tmp_path / "out", dataset=mnist,
                      formats=[ArtifactKind.TFLITE_FLOAT32, ArtifactKind.ONNX_FLOAT32])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_force_replaces_existing_output_with_only_the_requested_formats(small_mlp_path, mnist, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    code = run_cli(PROG, main, [str(small_mlp_path), "--out", str(out), "--force",
                                "--formats", "tflite_float32,onnx_int8_dynamic"])
    captured = capsys.readouterr()
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json", "onnx_int8_dynamic.onnx", "samples.npz", "tflite_float32.tflite"
    ]
    progress = [line.split()[0] for line in captured.out.splitlines() if line.endswith(" s")]
    assert progress == ["tflite_float32", "onnx_int8_dynamic"]
    assert "Traceback" not in captured.err


@pytest.mark.slow
def test_cli_process_prints_only_the_error_line_despite_tensorflow_logging(tmp_path):
    import subprocess
    import sys

    import keras

    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(10)])
    path = tmp_path / "vector.keras"
    model.save(path)
    result = subprocess.run(
        [sys.executable, "-m", "convert", str(path), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{PROG}: error: model input (10,) does not fit the data's 28×28×1 images; "
        "expected (28, 28, 1) (NHWC) or (784,) (flat)"
    ]


def test_parity_on_a_manifest_without_preprocessing_is_rejected(small_mlp_artifacts, tmp_path, capsys):
    import json
    import shutil

    copy = tmp_path / "artifacts"
    shutil.copytree(small_mlp_artifacts, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["preprocessing"]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, err = _run(["parity", copy], capsys)
    _assert_one_line_error(code, err, "'preprocessing' is missing")


def test_calibration_reader_refuses_images_that_do_not_fit_the_model_input():
    from convert.calibration import CalibrationData

    data = _toy_dataset(train_value=1, test_value=2)  # 28×28 images
    with pytest.raises(DataError, match="needs 1024"):
        CalibrationData(data, Preprocessing.for_mode("unit", "nhwc", (32, 32, 1)), samples=10, seed=0)
