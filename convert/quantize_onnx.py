"""ONNX float32 → int8 with ``onnxruntime.quantization``: static QDQ and dynamic.

Both start from the float model after ``quant_pre_process`` (shape inference and
graph optimisation), which lets the quantiser see every tensor's shape. Static
quantisation measures activation ranges on training-split samples and writes QDQ
(QuantizeLinear/DequantizeLinear) pairs any ONNX runtime can execute; dynamic
quantisation stores 8-bit weights and computes activation scales per batch.
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


def quantize_static_qdq(prepared_path: Path, out_path: Path, calibration: CalibrationData, input_name: str, *,
                        per_channel: bool = True) -> None:
    """Static int8 QDQ quantisation: per-channel 7-bit weights, MinMax ranges from ``calibration``.

    ``per_channel=False`` gives one weight scale per tensor instead (the runtime's
    tests use it to cover both QDQ forms).

    Per-channel weight scales keep a conv net's small filters from being rounded
    away by the largest one (as TFLite does by default). ``reduce_range`` (weights
    in [-64, 63]) is what makes the artifact compute the same numbers on every CPU:
    on x86-64 without VNNI, ONNX Runtime multiplies int8 with ``vpmaddubsw``, whose
    16-bit pair sums saturate for full-range weights. Measured on an AVX2 EPYC with
    the small test CNN: full-range weights disagreed with exact integer arithmetic by
    up to 0.15 in probability and dropped top-1 agreement with Keras to 97.7 %;
    reduced range matched it exactly, at 99.45 % agreement.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with captured_output():
        quantize_static(
            str(prepared_path),
            str(out_path),
            calibration.onnx_reader(input_name),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=True,
            calibrate_method=CalibrationMethod.MinMax,
        )


def quantize_dynamic_int8(prepared_path: Path, out_path: Path) -> None:
    """Dynamic quantisation: uint8 weights, activations quantised at run time.

    uint8 weights (U8U8) rather than int8: ONNX Runtime's u8s8 kernels on x86-64
    without VNNI saturate (see :func:`quantize_static_qdq`), so int8 weights gave
    answers that depend on the CPU; U8U8 matched exact integer arithmetic on the
    same machine, at the same agreement with Keras.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with captured_output():
        quantize_dynamic(str(prepared_path), str(out_path), weight_type=QuantType.QUInt8)
