"""The pure-NumPy backend runs what the converter makes of common Keras layers on RGB input.

Two small conv nets cover Conv2D, DepthwiseConv2D (multiplier 1 and 2),
SeparableConv2D, BatchNormalization, MaxPooling2D, AveragePooling2D,
GlobalAveragePooling2D, Dense, ReLU / ReLU6, Softmax, Add (an identity shortcut
and a sum of two branches), Concatenate, Reshape and Flatten, on a square 32×32×3
and a non-square 48×64×3 input. Both are trained for a few epochs on synthetic
coloured shapes, so batch-norm statistics and activation ranges are real ones, and
converted with the converter's own functions to every artifact kind, ONNX static
int8 both per channel (the converter's choice) and per tensor.

The converter's ONNX int8 artifacts (7-bit weights for static QDQ, uint8 weights
for dynamic) are ones ONNX Runtime computes exactly even on x86 CPUs without VNNI,
whose u8 × s8 ``vpmaddubsw`` saturates full-range int8 weights; so the NumPy
backend must reproduce ONNX Runtime bit for bit, as it must LiteRT's full-int8.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edge_runtime
from edge_runtime import BackendError

# Test images per model: coloured shapes, blends of two shapes and plain noise, so
# that many outputs are not saturated probabilities and rounding differences show.
NUM_IMAGES = 96
# One int8 step of a probability (ONNX QDQ: 1/255, TFLite: 1/256), as in test_numpy_backend.
INT8_STEP = 1 / 255
EXACT = {"tflite_int8.tflite", "onnx_int8_static.onnx", "onnx_int8_static_per_tensor.onnx"}
FLOAT = {"tflite_float32.tflite", "tflite_float16.tflite", "onnx_float32.onnx"}
DYNAMIC = {"tflite_dynamic_int8.tflite", "onnx_int8_dynamic.onnx"}
ARTIFACTS = sorted(EXACT | FLOAT | DYNAMIC)
MODELS = ["branchy_32x32", "plain_48x64"]


def _shapes(n: int, height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Coloured squares (0), discs (1) and bars (2) on a dark noisy background, uint8 (N, H, W, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    images = rng.integers(0, 60, (n, height, width, 3)).astype(np.uint8)
    labels = rng.integers(0, 3, n)
    for image, label in zip(images, labels):
        cy, cx = rng.integers(height // 4, 3 * height // 4), rng.integers(width // 4, 3 * width // 4)
        r = int(rng.integers(min(height, width) // 8, min(height, width) // 4))
        if label == 0:
            mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
        elif label == 1:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            mask = (abs(yy - cy) <= r // 3) & (abs(xx - cx) <= 2 * r)
        image[mask] = rng.integers(80, 256, 3)
    return images, labels


def _test_images(height: int, width: int) -> np.ndarray:
    shapes, _ = _shapes(NUM_IMAGES, height, width, seed=2)
    third = NUM_IMAGES // 3
    blends = (shapes[:third].astype(np.uint16) + shapes[third : 2 * third]) // 2
    noise = np.random.default_rng(3).integers(0, 256, (NUM_IMAGES - 2 * third, height, width, 3))
    return np.concatenate([shapes[:third], blends, noise]).astype(np.uint8)


def _branchy_32x32():
    """Square RGB input; residual and two-branch adds, separable conv with multiplier 8, concat."""
    import keras
    from keras import layers

    inputs = keras.Input((32, 32, 3), name="image")
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(layers.BatchNormalization(momentum=0.8)(x))
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = layers.ReLU(max_value=6.0)(layers.BatchNormalization(momentum=0.8)(x))
    x = layers.Add()([x, layers.Conv2D(16, 1)(x)])  # identity shortcut: x is read twice
    x = layers.MaxPooling2D(2)(x)
    # depth multiplier 8 makes the depthwise and pointwise filters big enough (>= 1024
    # weights) for TFLite's dynamic-range quantisation, so their hybrid kernels run too.
    a = layers.SeparableConv2D(32, 3, padding="same", depth_multiplier=8, activation="relu")(x)
    b = layers.Conv2D(32, 1, activation="relu6")(x)
    x = layers.Concatenate()([layers.Add()([a, b]), layers.Conv2D(8, 1)(x)])
    x = layers.AveragePooling2D(2)(x)
    x = layers.ReLU(max_value=6.0)(layers.GlobalAveragePooling2D()(x))  # a standalone RELU6
    outputs = layers.Softmax()(layers.Dense(3)(x))
    return keras.Model(inputs, outputs)


def _plain_48x64():
    """Non-square RGB input; strided and SAME-padded convolutions and pools, reshape and flatten."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((48, 64, 3), name="image"),
            layers.Conv2D(8, 5, strides=2, activation="relu"),
            layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2),
            layers.BatchNormalization(momentum=0.8),
            layers.Activation("relu6"),
            layers.SeparableConv2D(16, 3),
            layers.AveragePooling2D(3, strides=2, padding="same"),
            layers.MaxPooling2D(2, padding="same"),
            layers.Flatten(),
            layers.Dense(32, activation="relu"),
            layers.Reshape((4, 8)),
            layers.Flatten(),
            layers.Dense(3, activation="softmax"),
        ]
    )


BUILDERS = {"branchy_32x32": _branchy_32x32, "plain_48x64": _plain_48x64}


def _convert_all(model_name: str, out: Path) -> None:
    """Train the model briefly and write every artifact kind into ``out`` (no manifest)."""
    import keras

    from convert.calibration import CalibrationData
    from convert.formats import ArtifactKind
    from convert.onnx_export import export_onnx
    from convert.quantize_onnx import preprocess_for_quantization, quantize_dynamic_int8, quantize_static_qdq
    from convert.source import load_source_model
    from convert.tflite import convert_tflite
    from edge_runtime.records.manifest import Preprocessing
    from train.data import Dataset

    keras.utils.set_random_seed(0)
    model = BUILDERS[model_name]()
    height, width = model.input_shape[1:3]
    x, y = _shapes(900, height, width, seed=0)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x / np.float32(255), y, epochs=5, batch_size=32, verbose=0)
    out.mkdir(parents=True)
    model.save(out / "model.keras")
    source = load_source_model(out / "model.keras")
    preprocessing = Preprocessing.for_mode("unit", "nhwc", source.input_shape)  # pixels / 255, as trained
    calibration = CalibrationData(
        Dataset(x, y, x[:1], y[:1], "synthetic coloured shapes"), preprocessing, samples=100, seed=0
    )
    for kind in ArtifactKind:
        if kind.format == "tflite":
            (out / kind.file_name).write_bytes(convert_tflite(source.model, kind, calibration))
    float_path = out / "onnx_float32.onnx"
    float_path.write_bytes(export_onnx(source))
    prepared = out / "prepared.onnx"
    preprocess_for_quantization(float_path, prepared)
    quantize_static_qdq(prepared, out / "onnx_int8_static.onnx", calibration, source.input_name)
    quantize_static_qdq(prepared, out / "onnx_int8_static_per_tensor.onnx", calibration, source.input_name,
                        per_channel=False)
    quantize_dynamic_int8(prepared, out / "onnx_int8_dynamic.onnx")


@pytest.fixture(scope="module")
def rgb_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rgb_nets")
    for name in MODELS:
        _convert_all(name, root / name)
    return {name: root / name for name in MODELS}


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_numpy_backend_matches_native_backend_on_rgb_conv_nets(rgb_dirs, model_name, artifact):
    path = rgb_dirs[model_name] / artifact
    native, ours = edge_runtime.load(path), edge_runtime.load(path, backend="numpy")
    assert native.backend != "numpy" and ours.backend == "numpy"
    images = _test_images(*native.input.image_size)
    expected, got = native.predict(images), ours.predict(images)
    assert (expected.max(axis=1) < 0.9).sum() >= 10  # enough undecided outputs for rounding to show
    if artifact in EXACT:
        np.testing.assert_array_equal(got, expected)
    else:
        assert np.abs(got - expected).max() <= (1e-5 if artifact in FLOAT else INT8_STEP + 1e-6)
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))


def _tflite_ops(path: Path) -> set[tuple[str, ...]]:
    """(operator, input dtypes...) of every operator in a .tflite file."""
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator
    from tflite.TensorType import TensorType

    names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(TensorType).items() if not k.startswith("_")}
    model = tflite.Model.GetRootAs(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    ops = set()
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        inputs = [types[graph.Tensors(t).Type()] for t in op.InputsAsNumpy() if t >= 0]
        ops.add((names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())], *inputs[:2]))
    return ops


def test_rgb_nets_exercise_every_operator_flavour(rgb_dirs):
    """The parity test above is only as good as its coverage: pin what the artifacts contain."""
    branchy, plain = rgb_dirs["branchy_32x32"], rgb_dirs["plain_48x64"]
    float_ops = {
        op[0] for op in _tflite_ops(branchy / "tflite_float32.tflite") | _tflite_ops(plain / "tflite_float32.tflite")
    }
    assert float_ops >= {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN", "ADD",
                         "CONCATENATION", "RELU6", "FULLY_CONNECTED", "SOFTMAX", "RESHAPE"}
    assert {("CONV_2D", "INT8", "INT8"), ("DEPTHWISE_CONV_2D", "INT8", "INT8"), ("ADD", "INT8", "INT8"),
            ("MEAN", "INT8", "INT32"), ("RELU6", "INT8"), ("CONCATENATION", "INT8", "INT8"),
            ("AVERAGE_POOL_2D", "INT8")} <= _tflite_ops(branchy / "tflite_int8.tflite")
    # Hybrid (float input, int8 filters) kernels in the dynamic-range artifact.
    assert ({("CONV_2D", "FLOAT32", "INT8"), ("DEPTHWISE_CONV_2D", "FLOAT32", "INT8")}
            <= _tflite_ops(branchy / "tflite_dynamic_int8.tflite"))

    def numpy_ops(path: Path) -> set[str]:
        return set(edge_runtime.load(path, backend="numpy").info()["backend_details"]["operators"])

    assert numpy_ops(branchy / "onnx_float32.onnx") >= {"Conv", "Clip", "Relu", "Add", "MaxPool", "Concat",
                                                         "AveragePool", "GlobalAveragePool", "Softmax"}
    # On x86 ONNX Runtime fuses a QDQ group into an integer kernel only where the
    # graph does not branch; the shortcut's Conv and Add run in float between Q/DQ.
    static = numpy_ops(branchy / "onnx_int8_static.onnx")
    assert {"QDQ:Conv", "QDQ:Add", "QDQ:AveragePool", "QDQ:GlobalAveragePool", "QDQ:Gemm", "QDQ:Softmax",
            "Conv", "Add"} <= static
    assert {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"} <= numpy_ops(branchy / "onnx_int8_dynamic.onnx")


@pytest.mark.parametrize(
    ("layer", "formats", "named"),
    [
        ("leaky_relu", ("tflite", "onnx"), {"tflite": "TFLite operator LEAKY_RELU", "onnx": "ONNX operator LeakyRelu"}),
        ("elu", ("tflite", "onnx"), {"tflite": "TFLite operator ELU", "onnx": "ONNX operator Elu"}),
        # A grouped (not depthwise) convolution: tf2onnx cannot export it, TFLite keeps one CONV_2D.
        ("grouped_conv", ("tflite",), {"tflite": "grouped CONV_2D"}),
    ],
)
def test_unsupported_layer_is_refused_at_load_naming_the_operator(tmp_path, layer, formats, named):
    import keras
    from keras import layers

    from convert.formats import ArtifactKind
    from convert.onnx_export import export_onnx
    from convert.source import load_source_model
    from convert.tflite import convert_tflite

    extra = {
        "leaky_relu": layers.LeakyReLU(0.1), "elu": layers.ELU(), "grouped_conv": layers.Conv2D(8, 3, groups=2)
    }[layer]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 4)), layers.Conv2D(8, 3), extra, layers.GlobalAveragePooling2D(),
                              layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "model.keras")
    source = load_source_model(tmp_path / "model.keras")
    writers = {"tflite": lambda: convert_tflite(source.model, ArtifactKind.TFLITE_FLOAT32),
               "onnx": lambda: export_onnx(source)}
    for fmt in formats:
        path = tmp_path / f"model.{fmt}"
        path.write_bytes(writers[fmt]())
        # the native runtime runs it
        assert edge_runtime.load(path).predict(np.zeros((2, 8, 8, 4), np.float32)).shape == (2, 3)
        with pytest.raises(BackendError, match=named[fmt]):
            edge_runtime.load(path, backend="numpy")


def _qdq_group(op_nodes: list, extra: dict[str, np.ndarray], shape: tuple[int, ...]) -> bytes:
    """uint8 input ``x`` → DequantizeLinear ``xf`` → ``op_nodes`` (ending in ``f``) → QuantizeLinear →
    DequantizeLinear ``y``."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("DequantizeLinear", ["x", "xs", "xz"], ["xf"]),
        *op_nodes,
        helper.make_node("QuantizeLinear", ["f", "ys", "yz"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "ys", "yz"], ["y"]),
    ]
    constants = {"xs": np.float32(0.0597), "xz": np.uint8(137), "ys": np.float32(0.0417), "yz": np.uint8(121), **extra}
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [None, *shape[1:]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _depthwise_qlinear_conv() -> tuple[list, dict[str, np.ndarray]]:
    from onnx import helper

    rng = np.random.default_rng(5)
    w_scale = rng.uniform(0.005, 0.02, 16).astype(np.float32)
    extra = {
        # |w| <= 63 keeps ONNX Runtime's u8 x s8 pair sums from saturating on AVX2.
        "w": rng.integers(-63, 64, (16, 1, 3, 3)).astype(np.int8), "ws": w_scale, "wz": np.zeros(16, np.int8),
        "b": rng.integers(-500, 500, 16).astype(np.int32), "bs": (np.float32(0.0597) * w_scale).astype(np.float32),
        "bz": np.zeros(16, np.int32),
    }
    nodes = [
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=0),
        helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bf"], axis=0),
        helper.make_node("Conv", ["xf", "wf", "bf"], ["f"], group=16, pads=[1, 1, 1, 1], strides=[2, 2]),
    ]
    return nodes, extra


def _uint8_weight_qlinear(op: str) -> tuple[list, dict[str, np.ndarray]]:
    """uint8 weights with zero points (what ``weight_type=QUInt8`` makes): per tensor for Conv, per column for Gemm."""
    from onnx import helper

    rng = np.random.default_rng(6)
    if op == "Conv":
        extra = {
            "w": rng.integers(0, 256, (12, 8, 3, 3)).astype(np.uint8), "ws": np.float32(0.004), "wz": np.uint8(131)
        }
        return [
            helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"]),
            helper.make_node("Conv", ["xf", "wf"], ["f"], pads=[1, 1, 1, 1]),
        ], extra
    extra = {
        "w": rng.integers(0, 256, (64, 10)).astype(np.uint8),
        "ws": rng.uniform(0.001, 0.004, 10).astype(np.float32),
        "wz": rng.integers(100, 156, 10).astype(np.uint8),
    }
    return [
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=1),
        helper.make_node("Gemm", ["xf", "wf"], ["f"]),
    ], extra


def _qdq_cases() -> dict[str, tuple[list, dict[str, np.ndarray], tuple[int, ...]]]:
    from onnx import helper

    add = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 1, 3, 2]),
        helper.make_node("DequantizeLinear", ["xt", "ts", "tz"], ["tf"]),
        helper.make_node("Add", ["xf", "tf"], ["f"]),
    ]
    return {
        "AveragePool padded": (
            [helper.make_node("AveragePool", ["xf"], ["f"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
            {},
            (16, 8, 9, 13),
        ),
        # Same scale in and out and 16 cells: every 16th average is an exact tie, which
        # the global-average kernel ONNX Runtime switches to rounds to even.
        "AveragePool over the whole image": (
            [helper.make_node("AveragePool", ["xf"], ["f"], kernel_shape=[4, 4])],
            {"ys": np.float32(0.0597)},
            (64, 32, 4, 4),
        ),
        "GlobalAveragePool": (
            [helper.make_node("GlobalAveragePool", ["xf"], ["f"])], {"ys": np.float32(0.0597)}, (64, 32, 2, 4)
        ),
        "Add": (add, {"ts": np.float32(0.0311), "tz": np.uint8(101)}, (16, 8, 9, 9)),
        "depthwise Conv per channel": (*_depthwise_qlinear_conv(), (16, 16, 9, 13)),
        "Conv with uint8 weights": (*_uint8_weight_qlinear("Conv"), (16, 8, 9, 13)),
        "Gemm with uint8 weights per column": (*_uint8_weight_qlinear("Gemm"), (256, 64)),
    }


@pytest.mark.parametrize(
    "case",
    ["AveragePool padded", "AveragePool over the whole image", "GlobalAveragePool", "Add", "depthwise Conv per channel",
     "Conv with uint8 weights", "Gemm with uint8 weights per column"],
)
def test_fused_qdq_kernels_round_like_onnxruntime(case):
    """Each integer kernel ONNX Runtime fuses a QDQ group into, on thousands of random inputs: bit for bit."""
    import onnxruntime as ort

    from edge_runtime.backends.numpy_onnx import OnnxGraph

    nodes, extra, shape = _qdq_cases()[case]
    data = _qdq_group(nodes, extra, shape)
    graph = OnnxGraph(data)
    fused = [name for name in graph.op_names if name.startswith("QDQ:")]
    assert len(fused) == 1  # the group runs as one integer kernel, as in ONNX Runtime
    x = np.random.default_rng(4).integers(0, 256, shape).astype(np.uint8)
    expected = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(graph.run(x), expected)


@pytest.mark.filterwarnings("ignore:Warning. Enabling `experimental_preserve_all_tensors`:UserWarning")
@pytest.mark.parametrize("model_name", MODELS)
def test_every_int8_tensor_of_a_full_integer_tflite_model_matches_litert(rgb_dirs, model_name):
    """Bit-identical layer by layer, not only at the output where a softmax can hide a step."""
    from ai_edge_litert.interpreter import Interpreter

    from edge_runtime.backends.numpy_tflite import TFLiteGraph
    from edge_runtime.preprocessing import quantize

    path = rgb_dirs[model_name] / "tflite_int8.tflite"
    model = edge_runtime.load(path)
    scale, zero_point = model.input_spec.quantization
    x = quantize(_test_images(*model.input.image_size) / 255.0, scale, zero_point, np.dtype(np.int8))
    interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    graph = TFLiteGraph(path.read_bytes())
    values = [t.value for t in graph.tensors]
    values[graph.input_ids[0]] = x
    compared = 0
    for kernel, inputs, outputs in graph.steps:
        values[outputs[0]] = kernel(*[values[i] for i in inputs])
        if values[outputs[0]].dtype == np.int8:
            np.testing.assert_array_equal(values[outputs[0]], interpreter.get_tensor(outputs[0]),
                                          err_msg=graph.tensors[outputs[0]].name)
            compared += 1
    assert compared >= 8
