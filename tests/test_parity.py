"""Parity gates: artifacts are measured against Keras on the 10,000 real test images."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from convert.parity import DEFAULT_GATES, Gate, compare, run_parity
from edge_runtime.cli_support import run_cli

ALL_NAMES = [
    "tflite_float32", "tflite_float16", "tflite_dynamic_int8", "tflite_int8",
    "onnx_float32", "onnx_int8_static", "onnx_int8_dynamic",
]


def _copy(artifacts, tmp_path):
    """Parity writes into the directory; work on a copy so the session fixture stays pristine."""
    return shutil.copytree(artifacts, tmp_path / "artifacts")


def test_compare_measures_agreement_accuracy_and_probability_differences():
    reference = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.4, 0.6]])
    metrics = compare(probs, reference, labels=np.array([0, 1, 1]), keras_accuracy=2 / 3)
    assert metrics["agreement"] == pytest.approx(2 / 3)
    assert metrics["accuracy"] == pytest.approx(1.0)
    assert metrics["accuracy_delta"] == pytest.approx(1 / 3)
    assert metrics["max_abs_diff"] == pytest.approx(0.2)
    assert metrics["mean_abs_diff"] == pytest.approx((0.2 * 2 + 0 + 0.2 * 2) / 6)


def test_gate_reports_each_missed_threshold_with_its_margin():
    gate = Gate(min_agreement=0.99, max_abs_diff=1e-4, max_accuracy_drop=0.005)
    problems = gate.failures({"agreement": 0.985, "max_abs_diff": 2e-4, "accuracy_delta": -0.007})
    assert problems == [
        "agreement 98.50% < 99.00% (short by 0.50 pt)",
        "max |Δp| 0.0002 > 0.0001 (2.0× the limit)",
        "accuracy drop 0.70 pt > 0.50 pt (over by 0.20 pt)",
    ]
    assert gate.failures({"agreement": 0.99, "max_abs_diff": 1e-4, "accuracy_delta": -0.005}) == []


def test_default_gates_match_the_issue():
    assert DEFAULT_GATES["float32"] == Gate(min_agreement=0.999, max_abs_diff=1e-4)
    assert DEFAULT_GATES["float16"] == Gate(min_agreement=0.998)
    assert DEFAULT_GATES["int8"] == Gate(min_agreement=0.99, max_accuracy_drop=0.005)


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["small_mlp_artifacts", "small_cnn_artifacts"])
def test_every_artifact_passes_default_gates_on_real_test_images(request, fixture, mnist, tmp_path):
    directory = _copy(request.getfixturevalue(fixture), tmp_path)
    report = run_parity(directory, dataset=mnist)
    assert report.failures() == []
    assert list(report.artifacts) == ALL_NAMES
    assert report.num_images == 10000
    written = json.loads((directory / "parity.json").read_text())
    assert written["schema_version"] == 1
    assert written["keras"]["accuracy"] == pytest.approx(report.keras_accuracy)
    assert written["keras"]["accuracy"] > 0.5  # a trained model, far above the 10% of chance
    for name in ALL_NAMES:
        entry = written["artifacts"][name]
        assert entry["passed"] is True
        assert set(entry) >= {"accuracy", "accuracy_delta", "agreement", "max_abs_diff", "mean_abs_diff", "gate",
                              "passed"}
    markdown = (directory / "parity.md").read_text()
    assert all(f"| {name} |" in markdown for name in ALL_NAMES)


@pytest.mark.slow
def test_failed_int8_gate_exits_nonzero_naming_artifact_margin_and_layers(small_mlp_artifacts, tmp_path, capsys):
    from convert.__main__ import PROG, main

    directory = _copy(small_mlp_artifacts, tmp_path)
    # No int8 artifact reproduces float probabilities to 1e-6, so every int8 gate fails.
    code = run_cli(PROG, main, ["parity", str(directory), "--gate-int8-max-diff", "1e-6"])
    captured = capsys.readouterr()
    assert code == 1
    failed = [line for line in captured.err.splitlines() if "FAILED" in line]
    assert [line.split("FAILED ")[1].split(":")[0] for line in failed] == [
        "tflite_dynamic_int8", "tflite_int8", "onnx_int8_static", "onnx_int8_dynamic",
    ]
    assert all("× the limit" in line for line in failed)
    report = json.loads((directory / "parity.json").read_text())
    assert report["artifacts"]["tflite_float32"]["passed"] is True
    for name in ("tflite_dynamic_int8", "tflite_int8", "onnx_int8_static", "onnx_int8_dynamic"):
        entry = report["artifacts"][name]
        assert entry["passed"] is False
        assert entry["gate"]["max_abs_diff"] == 1e-6
        # One diagnostic line per layer, naming a layer of the MLP.
        assert any("dense_512" in line for line in entry["diagnostics"]), entry["diagnostics"]
    assert "tflite_int8 failed" in (directory / "parity.md").read_text()


@pytest.mark.slow
def test_parity_refuses_a_model_other_than_the_converted_one(small_mlp_artifacts, small_cnn_path, tmp_path, capsys):
    from convert.__main__ import PROG, main

    directory = _copy(small_mlp_artifacts, tmp_path)
    code = run_cli(PROG, main, ["parity", str(directory), "--model", str(small_cnn_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "differs from the model these artifacts were converted from" in err
    assert not (directory / "parity.json").exists()


@pytest.mark.slow
def test_functional_model_with_logit_output_converts_and_passes_parity(mnist, tmp_path):
    import keras

    from convert import convert_model

    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    logits = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, logits, name="functional_logits")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = mnist.x_train[:6000].astype(np.float32)[..., None] / np.float32(255)
    model.fit(x, mnist.y_train[:6000], epochs=1, batch_size=64, verbose=0)
    path = tmp_path / "logits.keras"
    model.save(path)

    manifest = convert_model(path, tmp_path / "artifacts", dataset=mnist, calibration_samples=200)
    assert manifest.output_kind == "logits"
    report = run_parity(tmp_path / "artifacts", dataset=mnist)
    assert report.failures() == []
    assert list(report.artifacts) == ALL_NAMES


def test_a_manifest_that_misstates_the_preprocessing_fails_parity(small_mlp_artifacts, mnist, tmp_path):
    directory = _copy(small_mlp_artifacts, tmp_path)
    manifest = json.loads((directory / "manifest.json").read_text())
    # Half the real scale: the runtime would feed dimmed digits.
    manifest["preprocessing"].update(mode="custom", scale=1 / 510)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    from dataclasses import replace

    images = replace(mnist, x_test=mnist.x_test[:1000], y_test=mnist.y_test[:1000])
    report = run_parity(directory, dataset=images)
    assert any(line.startswith("tflite_float32: ") for line in report.failures()), report.failures()


@pytest.mark.slow
def test_qdq_diagnostics_rank_conv_layers_even_when_reexported_names_differ(small_cnn_artifacts, small_cnn_path, mnist):
    from convert.diagnostics import diagnose_int8
    from edge_runtime.records.manifest import Manifest

    manifest = Manifest.read(small_cnn_artifacts)
    record = manifest.artifact(name="onnx_int8_static")
    # Exported again in this process, the float graph's name scopes differ from the
    # artifact's (`mnist_cnn_1/` vs `mnist_cnn_2/`); this used to raise KeyError 'float'.
    lines = diagnose_int8(small_cnn_artifacts, record, manifest, small_cnn_path, mnist)
    assert lines and all("SQNR" in line for line in lines)
    assert any("conv" in line for line in lines), lines
