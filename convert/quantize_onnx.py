"""ONNX float32 → int8 with ``onnxruntime.quantization``: static QDQ and dynamic.

Both start from the float model after ``quant_pre_process`` (shape inference and
graph optimisation), which lets the quantiser see every tensor's shape. Static
quantisation measures activation ranges on training-split samples and writes QDQ
(QuantizeLinear/DequantizeLinear) pairs any ONNX runtime can execute; dynamic
quantisation stores int8 weights and computes activation scales per batch.
"""

from __future__ import annotations

from pathlib import Path

from convert._quiet import captured_output
from convert.calibration import CalibrationData


def preprocess_for_quantization(float_path: Path, out_path: Path) -> None:
    """Run ONNX Runtime's recommended pre-processing (shape inference, optimisation)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with captured_output():
        quant_pre_process(str(float_path), str(out_path), skip_symbolic_shape=True)


def quantize_static_qdq(prepared_path: Path, out_path: Path, calibration: CalibrationData, input_name: str) -> None:
    """Static int8 QDQ quantisation, per-tensor weights, MinMax ranges from ``calibration``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with captured_output():
        quantize_static(
            str(prepared_path),
            str(out_path),
            calibration.onnx_reader(input_name),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )


def quantize_dynamic_int8(prepared_path: Path, out_path: Path) -> None:
    """Dynamic int8 quantisation: int8 weights, activations quantised at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with captured_output():
        quantize_dynamic(str(prepared_path), str(out_path), weight_type=QuantType.QInt8)
