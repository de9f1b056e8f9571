"""The device side on any model: RGB images and feature vectors through predict, every backend, the CLI and the
self-test."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

import edge_runtime
from convert.formats import ALL_KINDS
from convert.parity import DEFAULT_GATES
from edge_runtime.cli_support import run_cli
from edge_runtime.errors import InputError
from edge_runtime.preprocessing import InputAdapter, apply_preprocessing, quantize
from edge_runtime.records.manifest import InputSpec, Manifest, Preprocessing
from edge_runtime.sample_set import load_samples

pytestmark = pytest.mark.slow
BACKENDS = {"tflite": ("litert", "numpy"), "onnx": ("onnxruntime", "numpy")}


def _pairs():
    return [(kind.file_name, backend) for kind in ALL_KINDS for backend in BACKENDS[kind.format]]


@pytest.fixture(scope="module")
def keras_reference(rgb_cnn_artifacts, feature_mlp_artifacts):
    """Per artifact directory: its manifest, test inputs and labels, and the Keras model's probabilities."""
    from pathlib import Path

    from convert.parity import keras_probabilities, load_test_data

    out = {}
    for directory in (rgb_cnn_artifacts, feature_mlp_artifacts):
        manifest = Manifest.read(directory)
        data = load_test_data(manifest, None)
        reference = keras_probabilities(Path(manifest.source_model["path"]), manifest, data.x_test)
        out[directory] = (manifest, data.x_test, data.y_test, reference)
    return out


@pytest.mark.parametrize("fixture", ["rgb_cnn_artifacts", "feature_mlp_artifacts"])
@pytest.mark.parametrize(("file", "backend"), _pairs())
def test_every_backend_meets_the_parity_gate_on_the_test_split(request, keras_reference, fixture, file, backend):
    directory = request.getfixturevalue(fixture)
    manifest, inputs, labels, reference = keras_reference[directory]
    model = edge_runtime.load(directory / file, backend=backend)
    assert model.backend == backend
    probs = model.predict(inputs)
    gate = DEFAULT_GATES[manifest.artifact(file).precision]
    agreement = float(np.mean(probs.argmax(1) == reference.argmax(1)))
    drop = float(np.mean(reference.argmax(1) == labels) - np.mean(probs.argmax(1) == labels))
    assert gate.min_agreement is None or agreement >= gate.min_agreement, agreement
    assert gate.max_accuracy_drop is None or drop <= gate.max_accuracy_drop, drop
    assert gate.max_abs_diff is None or float(np.abs(probs - reference).max()) <= gate.max_abs_diff


def test_rgb_model_takes_every_documented_layout(rgb_cnn_artifacts):
    model = edge_runtime.load(rgb_cnn_artifacts / "tflite_int8.tflite")
    images = load_samples(rgb_cnn_artifacts, model.input.shape).inputs[:4]
    batch = model.predict(images)
    np.testing.assert_array_equal(model.predict(images[0]), batch[:1])  # one (H, W, C) image
    np.testing.assert_array_equal(model.predict(images.reshape(4, -1)), batch)  # flat rows
    floats = model.predict(images.astype(np.float32) / 255)  # float pixels in [0, 1]
    assert np.array_equal(floats.argmax(1), batch.argmax(1))
    with pytest.raises(InputError, match=r"expected .*\(40, 48, 3\)"):
        model.predict(np.zeros((2, 40, 48), np.uint8))  # grayscale for an RGB model
    with pytest.raises(InputError, match="float pixels must be in"):
        model.predict(images.astype(np.float32))  # 0-255 floats


def test_feature_model_takes_raw_vectors_and_names_the_expected_shape(feature_mlp_artifacts):
    model = edge_runtime.load(feature_mlp_artifacts / "tflite_int8.tflite")
    assert model.input.kind == "features" and model.preprocessing.mode == "standardize"
    rows = load_samples(feature_mlp_artifacts, (13,)).inputs
    np.testing.assert_array_equal(model.predict(rows[0]), model.predict(rows[:1]))
    np.testing.assert_array_equal(model.predict(rows.astype(np.float64)), model.predict(rows))
    with pytest.raises(InputError, match=r"feature vector; expected \(13,\)"):
        model.predict(np.zeros((2, 12), np.float32))


@pytest.mark.parametrize("mode", ["imagenet", "symmetric"])
@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_pixel_fast_paths_equal_the_reference_arithmetic(mode, dtype):
    spec = InputSpec("image", (5, 6, 3), "rgb", digits=False)
    pre = Preprocessing.for_mode(mode, "flat", (90,))
    quant = (0.02, 3) if dtype == "int8" else None
    adapter = InputAdapter(spec, pre, np.dtype(dtype), quant)
    pixels = np.random.default_rng(0).integers(0, 256, (7, 5, 6, 3), dtype=np.uint8)
    expected = apply_preprocessing(pixels, pre)
    if quant is not None:
        expected = quantize(expected.astype(np.float64), *quant, np.dtype(np.int8))
    np.testing.assert_array_equal(adapter(pixels), expected)
    np.testing.assert_array_equal(adapter(pixels[0]), expected[:1])


def test_cli_predicts_rgb_png_files_and_csv_feature_rows(rgb_cnn_artifacts, feature_mlp_artifacts, tmp_path, capfd):
    from edge_runtime.__main__ import PROG, main

    rgb = edge_runtime.load(rgb_cnn_artifacts / "tflite_int8.tflite")
    images = load_samples(rgb_cnn_artifacts, rgb.input.shape).inputs[:3]
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"shape{i}.png")
        Image.fromarray(image).save(paths[-1])
    assert run_cli(PROG, main, ["predict", str(rgb.path), *map(str, paths)]) == 0
    labels = [line.split("\t")[1] for line in capfd.readouterr().out.strip().splitlines()]
    assert labels == rgb.classify(images)

    features = edge_runtime.load(feature_mlp_artifacts / "tflite_float32.tflite")
    rows = load_samples(feature_mlp_artifacts, (13,)).inputs[:4]
    table = tmp_path / "readings.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        names = list(features.input.feature_names)
        writer.writerow(["label", *reversed(names)])  # columns by name, in any order
        for row in rows:
            writer.writerow(["?", *reversed([repr(float(v)) for v in row])])
    assert run_cli(PROG, main, ["predict", str(features.path), str(table), "--json"]) == 0
    out = json.loads(capfd.readouterr().out)
    assert [p["label"] for p in out["predictions"]] == features.classify(rows)
    assert [p["input"] for p in out["predictions"]] == [f"{table}[{i}]" for i in range(4)]


def test_cli_reads_a_spreadsheet_csv_by_the_rules_training_reads_it(feature_mlp_artifacts, tmp_path, capfd):
    """A byte-order mark, a blank line and a quoted cell: the table that trained the model predicts as it is."""
    from edge_runtime.__main__ import PROG, main

    features = edge_runtime.load(feature_mlp_artifacts / "tflite_float32.tflite")
    rows = load_samples(feature_mlp_artifacts, (13,)).inputs[:2]
    names = list(features.input.feature_names)
    lines = [",".join(names + ["label"])] + [",".join([f'"{float(v)!r}"' for v in row] + ["x"]) for row in rows]
    table = tmp_path / "export.csv"
    table.write_bytes(b"\xef\xbb\xbf" + "\r\n".join([lines[0], lines[1], "", lines[2], ""]).encode())
    assert run_cli(PROG, main, ["predict", str(features.path), str(table), "--json"]) == 0
    out = json.loads(capfd.readouterr().out)
    assert [p["label"] for p in out["predictions"]] == features.classify(rows)


def test_cli_refuses_images_for_a_feature_model_and_non_numeric_csv_cells(feature_mlp_artifacts, tmp_path, capfd):
    from edge_runtime.__main__ import PROG, main

    model = feature_mlp_artifacts / "tflite_int8.tflite"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")
    assert run_cli(PROG, main, ["predict", str(model), str(tmp_path / "x.png")]) == 2
    assert "reads 13 features, not images" in capfd.readouterr().err
    names = edge_runtime.load(model).input.feature_names
    (tmp_path / "bad.csv").write_text(",".join(names) + "\n" + ",".join(["1"] * 12 + ["hot"]) + "\n")
    assert run_cli(PROG, main, ["predict", str(model), str(tmp_path / "bad.csv")]) == 2
    assert f"row 2, column '{names[-1]}': 'hot' is not a number" in capfd.readouterr().err


def test_info_describes_the_input(rgb_cnn_artifacts, feature_mlp_artifacts, capfd):
    from edge_runtime.__main__ import PROG, main

    assert run_cli(PROG, main, ["info", str(rgb_cnn_artifacts / "tflite_int8.tflite")]) == 0
    assert "input:        image 40×48 rgb" in capfd.readouterr().out
    assert run_cli(PROG, main, ["info", str(feature_mlp_artifacts / "tflite_int8.tflite")]) == 0
    out = capfd.readouterr().out
    assert "input:        13 features" in out and "standardize: (x * 1 - mean) / std" in out


@pytest.mark.parametrize("fixture", ["rgb_cnn_artifacts", "feature_mlp_artifacts"])
@pytest.mark.parametrize("file", [kind.file_name for kind in ALL_KINDS])
def test_selftest_passes_on_the_samples_of_any_model(request, fixture, file, capsys):
    from edge_runtime.selftest import main as selftest_main

    directory = request.getfixturevalue(fixture)
    assert run_cli("selftest", selftest_main, [str(directory / file), "--json"]) == 0, capsys.readouterr().out
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] and result["samples"] == 32 and result["sample_source"].endswith("samples.npz")


def test_feature_quantisation_fast_path_is_exact_and_within_a_step_of_the_float32_reference():
    spec = InputSpec("features", (13,), None, digits=False)
    pre = Preprocessing.for_mode("standardize", "flat", (13,), tuple(np.linspace(-5, 300, 13)),
                                 tuple(np.geomspace(1e-3, 50, 13)))
    adapter = InputAdapter(spec, pre, np.dtype(np.int8), (0.037, -4))
    rows = np.random.default_rng(2).normal(np.linspace(-5, 300, 13), np.geomspace(1e-3, 50, 13), (500, 13))
    got = adapter(rows)
    # Exact in float64: (x - mean) / std, quantised.
    exact = quantize((rows - np.asarray(pre.mean)) / np.asarray(pre.std), 0.037, -4, np.dtype(np.int8))
    np.testing.assert_array_equal(got, exact)
    # The float32 reference arithmetic loses digits when a feature sits far from zero with a
    # tiny spread (300 ± 0.001); it stays within one int8 step.
    reference = quantize(apply_preprocessing(rows, pre).astype(np.float64), 0.037, -4, np.dtype(np.int8))
    assert got.dtype == np.int8 and np.abs(got.astype(int) - reference).max() <= 1


def test_non_finite_features_are_refused_but_huge_finite_ones_are_not_taken_for_nan():
    spec = InputSpec("features", (3,), None, digits=False)
    adapter = InputAdapter(spec, Preprocessing.for_mode("raw", "flat", (3,)), np.dtype(np.float32), None)
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(InputError, match="NaN or inf"):
            adapter(np.array([1.0, bad, 2.0]))
    assert adapter(np.array([3e38, 3e38, 1.0], np.float32)).shape == (1, 3)  # huge, finite: not NaN
