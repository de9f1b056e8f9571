"""The pure-NumPy backend reproduces the native backends on the same artifacts."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import edge_runtime
from edge_runtime import BackendError
from tests.test_runtime import ARTIFACTS

ROOT = Path(__file__).resolve().parent.parent
FLOAT_ARTIFACTS = {"tflite_float32.tflite", "tflite_float16.tflite", "onnx_float32.onnx"}
# One int8 step of a probability in [0, 1]: 1/255 (ONNX QDQ) is the coarser of 1/255 and 1/256 (TFLite).
INT8_STEP = 1 / 255
NUM_IMAGES = 1000


@pytest.fixture(scope="module")
def dirs(small_mlp_artifacts, small_cnn_artifacts) -> dict[str, Path]:
    return {"mlp": small_mlp_artifacts, "cnn": small_cnn_artifacts}


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_numpy_backend_matches_native_backend(dirs, mnist, arch, artifact):
    images = mnist.x_test[:NUM_IMAGES]
    native = edge_runtime.load(dirs[arch] / artifact)
    ours = edge_runtime.load(dirs[arch] / artifact, backend="numpy")
    assert ours.backend == "numpy" and native.backend != "numpy"
    expected, got = native.predict(images), ours.predict(images)
    diff = np.abs(expected - got)
    assert diff.max() <= (1e-5 if artifact in FLOAT_ARTIFACTS else INT8_STEP + 1e-6)
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))


def _onnx_model(nodes, initializers, in_shape, out_shape, opset=17):
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v, k) for k, v in initializers.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def test_onnx_ops_beyond_the_artifacts_match_onnxruntime(tmp_path):
    """Padded/strided Conv, unfolded BatchNorm, padded MaxPool, Flatten, Gemm(transB), Transpose."""
    from onnx import helper

    rng = np.random.default_rng(0)
    init = {
        "w": rng.normal(size=(4, 1, 3, 3)).astype(np.float32),
        "b": rng.normal(size=4).astype(np.float32),
        "gamma": rng.uniform(0.5, 1.5, 4).astype(np.float32),
        "beta": rng.normal(size=4).astype(np.float32),
        "mean": rng.normal(size=4).astype(np.float32),
        "var": rng.uniform(0.5, 2.0, 4).astype(np.float32),
        "perm_shape": np.array([-1, 1, 28, 28], np.int64),
        "fc": rng.normal(size=(10, 4 * 7 * 7)).astype(np.float32) * 0.1,
        "fc_b": rng.normal(size=10).astype(np.float32),
    }
    nodes = [
        helper.make_node("Reshape", ["x", "perm_shape"], ["x4"]),
        helper.make_node("Transpose", ["x4"], ["xt"], perm=[0, 1, 3, 2]),
        helper.make_node("Conv", ["xt", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["bn"], epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc", "fc_b"], ["g"], transB=1, alpha=0.5),
        helper.make_node("Softmax", ["g"], ["y"], axis=-1),
    ]
    path = tmp_path / "ops.onnx"
    path.write_bytes(_onnx_model(nodes, init, ["N", 784], ["N", 10]))
    x = rng.uniform(0, 1, (16, 784)).astype(np.float32)
    expected = edge_runtime.load(path, backend="onnxruntime").predict(x)
    got = edge_runtime.load(path, backend="numpy").predict(x)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert np.abs(expected - 0.1).max() > 0.01  # the graph is not trivially uniform


def test_unsupported_onnx_operator_raises_backend_error_naming_it(tmp_path):
    from onnx import helper

    path = tmp_path / "tanh.onnx"
    nodes = [helper.make_node("Tanh", ["x"], ["t"]), helper.make_node("Softmax", ["t"], ["y"])]
    path.write_bytes(_onnx_model(nodes, {}, ["N", 10], ["N", 10]))
    with pytest.raises(BackendError, match="ONNX operator Tanh"):
        edge_runtime.load(path, backend="numpy")


def test_unsupported_tflite_operator_raises_backend_error_naming_it(tmp_path):
    tf = pytest.importorskip("tensorflow")

    @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32)])
    def sine_model(x):
        return tf.nn.softmax(tf.sin(x)[:, :10])

    converter = tf.lite.TFLiteConverter.from_concrete_functions([sine_model.get_concrete_function()], sine_model)
    path = tmp_path / "sine.tflite"
    path.write_bytes(converter.convert())
    assert edge_runtime.load(path).predict(np.zeros((1, 784), np.float32)).shape == (1, 10)  # valid for LiteRT
    with pytest.raises(BackendError, match="TFLite operator SIN"):
        edge_runtime.load(path, backend="numpy")


def _run_blocked(blocked: set[str], body: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(
        f"""
        import importlib.abc, sys
        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {blocked!r}:
                    raise ImportError(f"No module named {{name!r}} (blocked by test)", name=name)
        sys.meta_path.insert(0, Blocker())
        """
    ) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_auto_falls_back_to_numpy_when_no_native_runtime_is_installed(dirs, mnist, tmp_path):
    """The 32-bit Raspberry Pi case: no LiteRT, tflite_runtime, TensorFlow or ONNX Runtime."""
    images = mnist.x_test[:50]
    np.save(tmp_path / "x.npy", images)
    paths = [str(dirs["mlp"] / a) for a in ARTIFACTS]
    result = _run_blocked(
        {"ai_edge_litert", "tflite_runtime", "tensorflow", "onnxruntime", "keras"},
        f"""
        import numpy as np, edge_runtime
        x = np.load({str(tmp_path / 'x.npy')!r})
        for path in {paths!r}:
            model = edge_runtime.load(path)
            np.save({str(tmp_path)!r} + "/" + path.rsplit("/", 1)[-1] + ".npy", model.predict(x))
            print(model.backend)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["numpy"] * len(paths)
    for artifact in ARTIFACTS:
        in_child = np.load(tmp_path / f"{artifact}.npy")
        in_parent = edge_runtime.load(dirs["mlp"] / artifact, backend="numpy").predict(images)
        np.testing.assert_array_equal(in_child, in_parent)


@pytest.mark.parametrize(
    ("missing", "artifact", "hint"),
    [("onnx", "onnx_float32.onnx", "pip install onnx"), ("tflite", "tflite_int8.tflite", "pip install tflite")],
)
def test_numpy_backend_without_its_reader_raises_backend_error(dirs, missing, artifact, hint):
    result = _run_blocked(
        {missing},
        f"""
        import edge_runtime
        try:
            edge_runtime.load({str(dirs['mlp'] / artifact)!r}, backend="numpy")
        except edge_runtime.BackendError as exc:
            print("BackendError:", exc)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("BackendError: backend 'numpy' is not installed") and hint in result.stdout


@pytest.mark.parametrize("flavour", ["float32", "int8"])
def test_tflite_ops_beyond_the_artifacts_match_litert(tmp_path, mnist, flavour):
    """SAME-padded strided CONV_2D with RELU6, SAME MAX_POOL_2D, ADD/MUL with broadcasting."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(2)
    k1 = tf.constant(rng.normal(size=(3, 3, 1, 8)).astype(np.float32) * 0.5)
    k2 = tf.constant(rng.normal(size=(5, 5, 8, 6)).astype(np.float32) * 0.2)
    fc = tf.constant(rng.normal(size=(4 * 4 * 6, 10)).astype(np.float32) * 0.1)
    gain = tf.constant(rng.uniform(0.5, 1.5, 8).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32)])
    def net(x):
        y = tf.nn.relu6(tf.nn.conv2d(x, k1, strides=2, padding="SAME") * 4.0)
        y = y * gain + 0.25
        y = tf.nn.max_pool2d(y, 3, 2, padding="SAME")
        y = tf.nn.relu(tf.nn.conv2d(y, k2, strides=2, padding="SAME"))
        return tf.nn.softmax(tf.reshape(y, [-1, 4 * 4 * 6]) @ fc)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([net.get_concrete_function()], net)
    if flavour == "int8":
        calibration = (mnist.x_train[:64].astype(np.float32) / 255.0)[..., None]
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([calibration[i : i + 1]] for i in range(len(calibration)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    path = tmp_path / f"ops_{flavour}.tflite"
    path.write_bytes(converter.convert())
    ours = edge_runtime.load(path, backend="numpy")
    assert {"CONV_2D", "MAX_POOL_2D"} <= set(ours.info()["backend_details"]["operators"])
    images = mnist.x_test[:300]
    expected, got = edge_runtime.load(path).predict(images), ours.predict(images)
    assert np.abs(expected - got).max() <= (1e-5 if flavour == "float32" else 1 / 256 + 1e-6)
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))


def test_auto_with_no_backend_at_all_lists_what_to_install(dirs):
    result = _run_blocked(
        {"ai_edge_litert", "tflite_runtime", "tensorflow", "onnxruntime", "tflite", "onnx"},
        f"""
        import edge_runtime
        for path in ({str(dirs['mlp'] / 'tflite_int8.tflite')!r}, {str(dirs['mlp'] / 'onnx_float32.onnx')!r}):
            try:
                edge_runtime.load(path)
            except edge_runtime.BackendError as exc:
                print(exc)
        """,
    )
    assert result.returncode == 0, result.stderr
    tflite_line, onnx_line = result.stdout.strip().splitlines()
    assert tflite_line.startswith("no backend for .tflite models is installed")
    assert "pip install ai-edge-litert" in tflite_line and "pip install tflite" in tflite_line
    assert onnx_line.startswith("no backend for .onnx models is installed")
    assert "pip install onnxruntime" in onnx_line and "pip install onnx " in onnx_line
