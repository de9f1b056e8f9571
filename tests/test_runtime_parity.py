"""Every backend × artifact pair matches the Keras model per the converter's parity gates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edge_runtime
from convert.parity import DEFAULT_GATES

NUM_IMAGES = 2000
PRECISION = {
    "tflite_float32": "float32",
    "tflite_float16": "float16",
    "tflite_dynamic_int8": "int8",
    "tflite_int8": "int8",
    "onnx_float32": "float32",
    "onnx_int8_static": "int8",
    "onnx_int8_dynamic": "int8",
}
PAIRS = [
    (name, backend)
    for name in PRECISION
    for backend in (("litert", "tensorflow", "numpy") if name.startswith("tflite") else ("onnxruntime", "numpy"))
]


@pytest.fixture(scope="module")
def reference(mnist, small_mlp_path, small_cnn_path, small_mlp_artifacts, small_cnn_artifacts):
    """Keras probabilities on the first 2,000 MNIST test images, per architecture."""
    import keras

    images, labels = mnist.x_test[:NUM_IMAGES], mnist.y_test[:NUM_IMAGES]
    out: dict[str, tuple[Path, np.ndarray]] = {}
    for arch, model_path, directory in (("mlp", small_mlp_path, small_mlp_artifacts),
                                        ("cnn", small_cnn_path, small_cnn_artifacts)):
        model = keras.saving.load_model(model_path)
        shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        probs = model.predict((images.astype(np.float32) / 255.0).reshape((-1, *shape)), batch_size=500, verbose=0)
        out[arch] = (directory, probs)
    return images, labels, out


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize(("name", "backend"), PAIRS)
def test_backend_artifact_pair_meets_the_parity_gate(reference, arch, name, backend):
    images, labels, per_arch = reference
    directory, keras_probs = per_arch[arch]
    if backend == "tensorflow":
        pytest.importorskip("tensorflow")
    model = edge_runtime.load(directory / f"{name}.{'tflite' if name.startswith('tflite') else 'onnx'}",
                              backend=backend)
    assert model.backend == backend
    probs = model.predict(images)
    keras_top1, top1 = keras_probs.argmax(axis=1), probs.argmax(axis=1)
    metrics = {
        "agreement": float((top1 == keras_top1).mean()),
        "max_abs_diff": float(np.abs(probs - keras_probs).max()),
        "accuracy_delta": float((top1 == labels).mean() - (keras_top1 == labels).mean()),
    }
    problems = DEFAULT_GATES[PRECISION[name]].failures(metrics)
    assert not problems, f"{arch}/{name} on {backend}: {problems} ({metrics})"
