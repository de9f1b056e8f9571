"""Where does an int8 artifact's error come from? Per-layer quantisation error.

When an int8 artifact fails its parity gate, the overall numbers say *that* it lost
accuracy, not *where*. These diagnostics run the float and the quantised graph side
by side on training-split samples and rank the layers by how far their outputs
drift:

- ``tflite_int8`` (full integer): TensorFlow Lite's ``QuantizationDebugger``, which
  re-quantises the model with numeric-verify ops and reports each layer's error.
- ``tflite_dynamic_int8``: the float32 and the dynamic-range TFLite models run with
  all intermediate tensors preserved; tensors of the same name are compared.
- ONNX int8 (static QDQ and dynamic): ``onnxruntime.quantization.qdq_loss_debug``
  exposes every intermediate tensor of both graphs (see :func:`onnx_int8_layers`).

Error is given as SQNR (signal-to-quantisation-noise ratio, dB; higher is better,
below ~20 dB a layer is losing information) or as RMSE where TFLite reports that.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from convert._quiet import captured_output
from convert.calibration import CalibrationData
from convert.formats import ArtifactKind
from convert.source import SourceModel, load_source_model
from edge_runtime.records.manifest import ArtifactRecord, Manifest
from train.data import Dataset

DIAGNOSTIC_SAMPLES = 100  # images per comparison batch, and the calibration size when the manifest has none
TOP_LAYERS = 8


def sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """Signal-to-quantisation-noise ratio of ``other`` against ``reference``, in dB.

    Examples
    --------
    >>> round(sqnr_db(np.array([1.0, -1.0]), np.array([1.1, -0.9])), 1)
    20.0
    """
    signal = float(np.sum(np.square(reference, dtype=np.float64)))
    noise = float(np.sum(np.square(reference.astype(np.float64) - other.astype(np.float64))))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _format_sqnr(errors: dict[str, float]) -> list[str]:
    ranked = sorted(errors.items(), key=lambda item: item[1])[:TOP_LAYERS]
    return [f"{name}: SQNR {value:.1f} dB" for name, value in ranked]


def tflite_full_int8_layers(model: Any, calibration: CalibrationData) -> list[str]:
    """Per-layer error of full-integer TFLite quantisation via ``QuantizationDebugger``."""
    import tensorflow as tf

    from convert.tflite import make_converter

    converter = make_converter(model, ArtifactKind.TFLITE_INT8, calibration)
    with captured_output():
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=calibration.representative_dataset
        )
        debugger.run()
    rows = []
    for tensor, stats in debugger.layer_statistics.items():
        name = tensor.removeprefix("NumericVerify/").split(";")[0].rsplit(":", 1)[0]
        rows.append((float(stats["mean_squared_error"]), name, float(stats["max_abs_error"])))
    rows.sort(reverse=True)
    return [f"{name}: RMSE {math.sqrt(mse):.4g}, max abs error {max_abs:.4g}"
            for mse, name, max_abs in rows[:TOP_LAYERS]]


def _tflite_tensors(model_content: bytes, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Every float intermediate tensor of a TFLite model after one batch, by name."""
    from ai_edge_litert.interpreter import Interpreter

    with captured_output():
        interpreter = Interpreter(model_content=model_content, experimental_preserve_all_tensors=True)
    (inp,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(inp["index"], list(inputs.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], inputs)
    interpreter.invoke()
    tensors = {}
    for detail in interpreter.get_tensor_details():
        if detail["dtype"] != np.float32 or detail["index"] == inp["index"]:
            continue
        try:
            tensors[detail["name"]] = interpreter.get_tensor(detail["index"]).copy()
        except ValueError:  # constant or freed tensors have no data to read
            continue
    return tensors


def tflite_dynamic_int8_layers(model: Any, artifact: Path, calibration: CalibrationData) -> list[str]:
    """Per-layer SQNR of the dynamic-range TFLite model against a float32 conversion."""
    from convert.tflite import convert_tflite

    inputs = calibration.inputs[:DIAGNOSTIC_SAMPLES]
    reference = _tflite_tensors(convert_tflite(model, ArtifactKind.TFLITE_FLOAT32), inputs)
    quantized = _tflite_tensors(artifact.read_bytes(), inputs)
    errors = {
        name: sqnr_db(reference[name], quantized[name])
        for name in reference.keys() & quantized.keys()
        if reference[name].shape == quantized[name].shape and reference[name].shape[:1] == (len(inputs),)
    }
    return _format_sqnr(errors)


def onnx_int8_layers(float_model: Path, quantized_model: Path, calibration: CalibrationData, input_name: str,
                     qdq: bool) -> list[str]:
    """Per-layer SQNR of an int8 ONNX model against the float graph.

    ``qdq_loss_debug`` makes every intermediate tensor a graph output. For a QDQ
    model each float tensor is paired with its dequantised value
    (``create_activation_matching``; the QDQ graph may fold a Relu into the
    quantisation range, so the tensor of the same name can hold pre-activation
    values). For a dynamic model, which keeps the float tensors' names, tensors of
    the same name are compared.
    """
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    def reader() -> Any:
        return calibration.onnx_reader(input_name, batch_size=DIAGNOSTIC_SAMPLES)

    with tempfile.TemporaryDirectory(prefix="keras2edge-diag-") as scratch, captured_output():
        float_aug = Path(scratch) / "float.onnx"
        quant_aug = Path(scratch) / "quant.onnx"
        modify_model_output_intermediate_tensors(str(float_model), str(float_aug))
        modify_model_output_intermediate_tensors(str(quantized_model), str(quant_aug))
        float_acts = collect_activations(str(float_aug), reader())
        quant_acts = collect_activations(str(quant_aug), reader())
    if qdq:
        # Tensors are paired by name. A float graph exported again in the same process
        # can carry other name scopes (``model_1/`` vs ``model_2/``): then no pair
        # forms, and each tensor's own quantisation noise (pre- vs post-QDQ) ranks
        # the layers instead.
        matching = create_activation_matching(quant_acts, float_acts)
        paired = {name: m for name, m in matching.items() if "float" in m and name != input_name}
        key = "xmodel_err" if paired else "qdq_err"
        candidates = paired or {name: m for name, m in matching.items() if name != input_name}
        errors = {name: float(e[key]) for name, e in compute_activation_error(candidates).items() if key in e}
    else:
        errors = {}
        for name in float_acts.keys() & quant_acts.keys():
            reference, other = np.concatenate(float_acts[name]), np.concatenate(quant_acts[name])
            if name != input_name and reference.shape == other.shape:
                errors[name] = sqnr_db(reference, other)
    return _format_sqnr(errors)


def diagnose_int8(
    directory: Path, record: ArtifactRecord, manifest: Manifest, model: SourceModel | str | os.PathLike[str],
    dataset: Dataset,
) -> list[str]:
    """Per-layer error lines (worst first) for the int8 artifact ``record`` in ``directory``.

    The samples are the artifact's own calibration set (the manifest's sample count
    and seed over the training split, preprocessed as that artifact expects): the
    full-integer diagnosis re-quantises the model, and only the same calibration
    reproduces the artifact that failed. An artifact made from the model without its
    Normalization layer is diagnosed against that model. ``model`` is the source
    model, or its path (parity passes the one it already loaded).
    """
    from convert.onnx_export import export_onnx

    source = model if isinstance(model, SourceModel) else load_source_model(model)
    if record.preprocessing is not None and source.normalization is not None:
        source = source.without_normalization()
    recorded = manifest.calibration or {}
    samples = min(int(recorded.get("samples", DIAGNOSTIC_SAMPLES)), len(dataset.x_train))
    calibration = CalibrationData(dataset, manifest.preprocessing_for(record), samples, int(recorded.get("seed", 0)))
    kind = ArtifactKind.from_name(record.name)
    artifact = directory / record.file
    if kind is ArtifactKind.TFLITE_INT8:
        return tflite_full_int8_layers(source.model, calibration)
    if kind is ArtifactKind.TFLITE_DYNAMIC_INT8:
        return tflite_dynamic_int8_layers(source.model, artifact, calibration)
    with tempfile.TemporaryDirectory(prefix="keras2edge-diag-") as scratch:
        float_model = Path(scratch) / "float.onnx"
        float_model.write_bytes(export_onnx(source))
        return onnx_int8_layers(float_model, artifact, calibration, record.inputs[0].name,
                                qdq=kind is ArtifactKind.ONNX_INT8_STATIC)
