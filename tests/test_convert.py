"""Conversion of small trained models: every artifact written, validated and described."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from convert.formats import ALL_KINDS, ArtifactKind, parse_formats
from edge_runtime.errors import Keras2EdgeError

pytestmark = pytest.mark.slow


def _manifest(directory):
    return json.loads((directory / "manifest.json").read_text())


@pytest.mark.parametrize("fixture", ["small_mlp_artifacts", "small_cnn_artifacts"])
def test_manifest_sizes_and_sha256_match_the_files(request, fixture):
    directory = request.getfixturevalue(fixture)
    manifest = _manifest(directory)
    assert [a["name"] for a in manifest["artifacts"]] == [k.artifact_name for k in ALL_KINDS]
    for record in manifest["artifacts"]:
        data = (directory / record["file"]).read_bytes()
        assert record["bytes"] == len(data)
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        ["manifest.json", "samples.npz", *(a["file"] for a in manifest["artifacts"])]
    )


def test_manifest_records_source_model_digest_and_preprocessing(small_mlp_artifacts, small_mlp_path):
    manifest = _manifest(small_mlp_artifacts)
    assert manifest["source_model"]["sha256"] == hashlib.sha256(small_mlp_path.read_bytes()).hexdigest()
    assert manifest["source_model"]["path"] == str(small_mlp_path.absolute())
    assert manifest["preprocessing"]["model_input_shape"] == [784]
    assert manifest["preprocessing"]["layout"] == "flat"
    assert manifest["output_kind"] == "probabilities"
    assert manifest["calibration"] == {"split": "train", "samples": 200, "seed": 0, "draw": "uniform random"}
    assert manifest["schema_version"] == 2
    assert manifest["input"] == {"kind": "image", "shape": [28, 28, 1], "color_mode": "grayscale",
                                 "interpolation": "bilinear", "crop_to_aspect_ratio": False, "digits": True}
    assert manifest["preprocessing"]["mode"] == "unit" and manifest["preprocessing"]["scale"] == 1 / 255


def test_cnn_manifest_describes_nhwc_input(small_cnn_artifacts):
    manifest = _manifest(small_cnn_artifacts)
    assert manifest["preprocessing"]["model_input_shape"] == [28, 28, 1]
    assert manifest["preprocessing"]["layout"] == "nhwc"
    shapes = {a["name"]: a["inputs"][0]["shape"] for a in manifest["artifacts"]}
    assert all(shape == [-1, 28, 28, 1] for shape in shapes.values()), shapes


def test_full_integer_tflite_has_int8_io_with_recorded_scale(small_mlp_artifacts):
    from ai_edge_litert.interpreter import Interpreter

    record = next(a for a in _manifest(small_mlp_artifacts)["artifacts"] if a["name"] == "tflite_int8")
    interpreter = Interpreter(model_path=str(small_mlp_artifacts / record["file"]))
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    for tensor, described in ((inp, record["inputs"][0]), (out, record["outputs"][0])):
        assert tensor["dtype"] == np.int8
        assert described["dtype"] == "int8"
        assert described["quantization"] == {"scale": pytest.approx(tensor["quantization"][0]),
                                             "zero_point": tensor["quantization"][1]}


def test_onnx_artifacts_have_dynamic_batch_dimension(small_mlp_artifacts):
    import onnxruntime as ort

    for record in _manifest(small_mlp_artifacts)["artifacts"]:
        if record["format"] != "onnx":
            continue
        assert record["inputs"][0]["shape"][0] == -1
        session = ort.InferenceSession(str(small_mlp_artifacts / record["file"]), providers=["CPUExecutionProvider"])
        (probs,) = session.run(None, {record["inputs"][0]["name"]: np.zeros((5, 784), np.float32)})
        assert probs.shape == (5, 10)


def test_int8_artifacts_are_about_a_quarter_of_float32_tflite(small_mlp_artifacts):
    sizes = {a["name"]: a["bytes"] for a in _manifest(small_mlp_artifacts)["artifacts"]}
    for kind in ALL_KINDS:
        if kind.precision == "int8":
            assert sizes[kind.artifact_name] <= 0.27 * sizes["tflite_float32"], (kind, sizes)


def test_parse_formats_keeps_table_order_and_rejects_unknown_names():
    assert parse_formats("onnx_int8_dynamic, tflite_float16") == (
        ArtifactKind.TFLITE_FLOAT16, ArtifactKind.ONNX_INT8_DYNAMIC
    )
    assert parse_formats("all") == ALL_KINDS
    with pytest.raises(Keras2EdgeError, match="unknown artifact format 'tflite_int4'"):
        parse_formats("tflite_int4")


def test_samples_hold_raw_test_inputs_with_their_labels_and_keras_probabilities(
    small_mlp_artifacts, small_mlp_path, mnist
):
    import keras

    from edge_runtime.sample_set import load_samples

    samples = load_samples(small_mlp_artifacts, (28, 28, 1))
    assert len(samples) == 32 and samples.inputs.dtype == np.uint8 and samples.inputs.shape == (32, 28, 28)
    np.testing.assert_array_equal(samples.inputs, mnist.x_test[samples.indices])
    np.testing.assert_array_equal(samples.labels, mnist.y_test[samples.indices])
    model = keras.models.load_model(small_mlp_path)
    expected = model.predict(samples.inputs.reshape(32, 784).astype(np.float32) / np.float32(255), verbose=0)
    np.testing.assert_allclose(samples.probabilities, expected, atol=1e-6)
