"""Smoke-testing each artifact right after it is written.

An artifact that fails to load or produces the wrong shape must stop the conversion
before it reaches a device. Each file is loaded by the runtime that will execute it
(LiteRT, ONNX Runtime), run once on a small batch, and its outputs are checked to
be ``(batch, classes)``. The tensors it reports are what the manifest records, so
the manifest describes the file as the runtime sees it rather than as the converter
intended.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import ModelLoadError
from edge_runtime.records.manifest import TensorRecord

_ONNX_DTYPES = {"tensor(float)": "float32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
                "tensor(float16)": "float16"}
_BATCH = 2


def _fail(path: Path, reason: str) -> ModelLoadError:
    return ModelLoadError(f"{path.name}: artifact failed validation: {reason}")


def _check_output(path: Path, output: np.ndarray, batch: int, num_classes: int) -> None:
    if output.shape != (batch, num_classes):
        raise _fail(path, f"output shape {output.shape}, expected {(batch, num_classes)}")
    if not np.all(np.isfinite(output.astype(np.float64))):
        raise _fail(path, "output contains NaN or inf")


def _tflite_tensor(detail: dict[str, Any]) -> TensorRecord:
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"]).name
    quantized = dtype in ("int8", "uint8") and scale != 0.0
    return TensorRecord(detail["name"], tuple(int(d) for d in detail["shape_signature"]), dtype,
                        (float(scale), int(zero_point)) if quantized else None)


def validate_tflite(path: Path, num_classes: int) -> tuple[list[TensorRecord], list[TensorRecord]]:
    """Load ``path`` with LiteRT, run it once and describe its input and output tensors.

    Returns
    -------
    (inputs, outputs) : two lists of the manifest's tensor records.

    Raises
    ------
    ModelLoadError
        The interpreter cannot load or run the file, or the output has the wrong shape.
    """
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=str(path))
        (inp,) = interpreter.get_input_details()
        (out,) = interpreter.get_output_details()
        interpreter.resize_tensor_input(inp["index"], [_BATCH, *inp["shape"][1:]])
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], np.zeros([_BATCH, *inp["shape"][1:]], dtype=inp["dtype"]))
        interpreter.invoke()
        output = interpreter.get_tensor(out["index"])
    except ModelLoadError:
        raise
    except Exception as exc:  # LiteRT reports load/run failures as RuntimeError or ValueError
        raise _fail(path, f"LiteRT could not run it ({type(exc).__name__}: {exc})") from None
    _check_output(path, output, _BATCH, num_classes)
    return [_tflite_tensor(inp)], [_tflite_tensor(out)]


def _onnx_tensor(arg: Any) -> TensorRecord:
    return TensorRecord(arg.name, tuple(d if isinstance(d, int) else -1 for d in arg.shape),
                        _ONNX_DTYPES.get(arg.type, arg.type))


def validate_onnx(path: Path, num_classes: int) -> tuple[list[TensorRecord], list[TensorRecord]]:
    """Check ``path`` with ``onnx.checker``, run it once in ONNX Runtime, describe its tensors.

    Returns
    -------
    (inputs, outputs) : two lists of the manifest's tensor records.

    Raises
    ------
    ModelLoadError
        The checker rejects the graph, ONNX Runtime cannot run it, or the output has
        the wrong shape.
    """
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # onnx.checker.ValidationError and shape-inference errors
        raise _fail(path, f"onnx.checker: {exc}") from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (inp,) = session.get_inputs()
        (out,) = session.get_outputs()
        sample_shape = [_BATCH, *(d if isinstance(d, int) else 1 for d in inp.shape[1:])]
        (output,) = session.run(None, {inp.name: np.zeros(sample_shape, dtype=np.float32)})
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise _fail(path, f"ONNX Runtime could not run it ({type(exc).__name__}: {exc})") from None
    _check_output(path, output, _BATCH, num_classes)
    if isinstance(inp.shape[0], int):
        raise _fail(path, f"batch dimension is fixed ({inp.shape[0]}); expected a dynamic batch")
    return [_onnx_tensor(inp)], [_onnx_tensor(out)]
