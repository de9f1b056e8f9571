"""The record modules: every file format round-trips, old schemas load, bad fields fail in one line."""

from __future__ import annotations

import json

import pytest

from edge_runtime.errors import ManifestError, RecordError
from edge_runtime.records.bundle import BundleRecord, Reference
from edge_runtime.records.manifest import (
    MNIST_INPUT,
    ArtifactRecord,
    InputSpec,
    Manifest,
    Preprocessing,
    TensorRecord,
)
from edge_runtime.records.parity import ArtifactParity, ParityRecord
from edge_runtime.records.training import TrainingRecord

SHA = "ab" * 32


def _manifest(**changes) -> Manifest:
    spec = InputSpec("image", (48, 64, 3), "rgb", digits=False)
    record = Manifest(
        input=spec,
        preprocessing=Preprocessing.for_mode("imagenet", "nhwc", (48, 64, 3)),
        class_labels=("cat", "dog"),
        artifacts=(
            ArtifactRecord("tflite_int8", "tflite_int8.tflite", "tflite", "int8", "full_integer", 10, SHA,
                           (TensorRecord("in", (-1, 48, 64, 3), "int8", (0.02, -3)),),
                           (TensorRecord("out", (-1, 2), "int8", (1 / 256, -128)),),
                           Preprocessing.for_mode("mean_std", "nhwc", (48, 64, 3), (1.0, 2.0, 3.0), (4.0, 5.0, 6.0))),
        ),
        output_kind="logits",
        source_model={"file": "m.keras", "sha256": SHA},
        created="2026-11-29T00:00:00+00:00",
    )
    return record._replace(**changes)


def test_manifest_round_trips_through_json():
    original = _manifest()
    again = Manifest.from_json(json.loads(json.dumps(original.to_json())))
    assert again == original
    assert again.preprocessing_for(again.artifacts[0]).mean == (1.0, 2.0, 3.0)


def test_schema_1_manifest_loads_as_mnist_digits():
    doc = {
        "schema_version": 1,
        "preprocessing": {"image_shape": [28, 28], "channels": 1, "scale": 1 / 255, "offset": 0.0,
                          "model_input_shape": [784], "layout": "flat", "foreground": "light-on-dark"},
        "class_labels": [str(i) for i in range(10)],
        "artifacts": [{"name": "tflite_int8", "file": "tflite_int8.tflite", "format": "tflite", "precision": "int8",
                       "sha256": SHA}],
    }
    manifest = Manifest.from_json(doc)
    assert manifest.input == MNIST_INPUT and manifest.preprocessing.mode == "unit"
    assert manifest.to_json()["schema_version"] == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["input"].update(shape=[48, 64, 4]),
         r"'input.shape' of an image must be \[height, width, 1 or 3\]"),
        (lambda d: d["input"].update(color_mode="grayscale"), "'input.color_mode' grayscale does not match 3 channel"),
        (lambda d: d["preprocessing"].update(scale=0.5), "'preprocessing.mode' imagenet does not match"),
        (lambda d: d["preprocessing"].update(mean=[0.1, 0.2]), r"'preprocessing.mean' has 2 entries; expected 1 or 3"),
        (lambda d: d["preprocessing"].update(std=[1, 0, 1]),
         "'preprocessing.std' must be a non-empty list of positive numbers"),
        (lambda d: d["artifacts"][0].update(file="../x.tflite"), "'artifacts\\[0\\].file' must be a plain file name"),
        (lambda d: d["artifacts"][0].update(sha256="xyz"), "'artifacts\\[0\\].sha256' is not a hex sha256"),
        (lambda d: d.update(output_kind="scores"), "'output_kind' must be one of probabilities, logits"),
        (lambda d: d.update(schema_version=3), "unsupported schema_version 3"),
        (lambda d: d.pop("class_labels"), "'class_labels' is missing"),
    ],
)
def test_bad_manifest_field_is_one_line_naming_the_key(edit, message):
    doc = json.loads(json.dumps(_manifest().to_json()))
    edit(doc)
    with pytest.raises(ManifestError, match=message) as info:
        Manifest.from_json(doc, "out/manifest.json")
    assert "\n" not in str(info.value) and str(info.value).startswith("out/manifest.json: ")


def test_missing_manifest_names_the_directory(tmp_path):
    with pytest.raises(ManifestError, match=r"no manifest.json; pass a directory written by 'python -m convert'"):
        Manifest.read(tmp_path)


def test_unknown_artifact_name_lists_the_available_ones():
    with pytest.raises(ManifestError, match=r"no artifact named 'onnx_float32' \(available: tflite_int8\)"):
        _manifest().artifact(name="onnx_float32")


def test_feature_input_with_names_round_trips():
    spec = InputSpec("features", (3,), None, digits=False, feature_names=("t", "a", "b"))
    manifest = _manifest(input=spec,
                         preprocessing=Preprocessing.for_mode("standardize", "flat", (3,), (1, 2, 3), (1, 1, 1)),
                         artifacts=())
    assert Manifest.from_json(manifest.to_json()).input == spec
    assert spec.describe() == "3 features"


def test_parity_record_round_trips_and_reports_failures(tmp_path):
    record = ParityRecord(0.97, 100, {
        "a": ArtifactParity("int8", 0.95, -0.02, 0.98, 0.1, 0.01, {"min_agreement": 0.99}, False, ("agreement low",)),
        "b": ArtifactParity("float32", 0.97, 0.0, 1.0, 1e-6, 1e-8, {}, True),
    })
    record.write(tmp_path)
    again = ParityRecord.read(tmp_path)
    assert again == record and not again.passed and again.failures() == ["a: agreement low"]
    assert again.only("b").passed
    with pytest.raises(RecordError, match="no entry for 'c'"):
        record.only("c")


def test_training_record_schema_1_loads_with_mnist_input():
    doc = {"schema_version": 1, "architecture": "cnn", "test_accuracy": 0.9, "test_loss": 0.3,
           "dataset": {"image_shape": [28, 28], "num_classes": 10}}
    record = TrainingRecord.from_json(doc)
    assert record.input == MNIST_INPUT
    assert record.preprocessing.layout == "nhwc" and record.preprocessing.model_input_shape == (28, 28, 1)
    assert record.class_names == tuple(str(i) for i in range(10))


def test_bundle_record_round_trips_and_refuses_a_ragged_reference(tmp_path):
    record = BundleRecord("arm64", "arm64", "0.1.0", {"name": "tflite_int8", "file": "tflite_int8.tflite"},
                          {"file": "k.whl", "sha256": SHA}, "requirements-arm64.txt",
                          Reference(((0.25, 0.75), (1.0, 0.0)), 0.01, "x86_64", "litert"))
    record.write(tmp_path)
    assert BundleRecord.read(tmp_path) == record
    doc = json.loads((tmp_path / "bundle.json").read_text())
    doc["reference"]["probabilities"] = [[0.5], [0.5, 0.5]]
    with pytest.raises(RecordError, match="rows differ in length"):
        BundleRecord.from_json(doc)
