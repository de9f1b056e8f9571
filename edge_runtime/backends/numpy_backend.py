"""The pure-NumPy backend: runs keras2edge artifacts where no native wheel exists.

32-bit Raspberry Pi OS has no ai-edge-litert or onnxruntime wheel; this backend
needs only numpy plus the pure-Python ``tflite`` package (for ``.tflite``, a base
dependency) or ``onnx`` (for ``.onnx``, the ``onnx-numpy`` extra). It executes the
operators the converter emits and refuses anything else at load time, naming the
operator, so it never returns silently wrong numbers for a graph it does not know.
It has no thread setting of its own: BLAS decides (``OPENBLAS_NUM_THREADS``...).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_runtime.backends.base import Backend, TensorSpec
from edge_runtime.errors import BackendError


class NumpyBackend(Backend):
    """A parsed TFLite or ONNX graph executed operator by operator with NumPy.

    Parameters
    ----------
    graph : TFLiteGraph or OnnxGraph
        The parsed graph (see :func:`open_numpy_backend`).
    inputs, outputs : list of TensorSpec
        Its input and output as the Model sees them.
    """

    name = "numpy"

    def __init__(self, graph: Any, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
        self._graph = graph
        self.inputs = inputs
        self.outputs = outputs

    def run(self, x: np.ndarray) -> np.ndarray:
        try:
            out = self._graph.run(x)
        except (ArithmeticError, IndexError, KeyError, TypeError, ValueError) as exc:
            # A damaged graph that parsed (inconsistent shapes, dangling tensors) fails here.
            raise BackendError(
                f"the NumPy backend failed while running the model ({type(exc).__name__}: {exc})"
            ) from None
        # A graph that only reshapes would hand back a view of the caller's (reused)
        # input buffer; the next predict must not overwrite a result already returned.
        return out.copy() if np.may_share_memory(out, x) else out

    def details(self) -> dict[str, Any]:
        return {"library": "numpy", "library_version": np.__version__, "operators": sorted(set(self._graph.op_names))}


def open_numpy_backend(fmt: str, data: bytes, io_quantization: tuple = (None, None)) -> NumpyBackend:
    """Parse ``data`` with ``tflite`` or ``onnx`` and wrap it as a backend.

    Raises
    ------
    ImportError
        ``tflite`` (for .tflite) or ``onnx`` (for .onnx) is not installed.
    ModelLoadError
        The file cannot be parsed.
    BackendError
        The graph uses an operator the NumPy backend does not implement.
    """
    if fmt == "tflite":
        from edge_runtime.backends.numpy_tflite import TFLiteGraph

        graph = TFLiteGraph(data)
        specs = []
        for tid in (graph.input_ids[0], graph.output_ids[0]):
            t = graph.tensors[tid]
            quant = (float(t.scale[0]), int(t.zero_point[0])) if t.scale is not None else None
            specs.append(TensorSpec(t.name, t.shape, t.dtype, quant))
        return NumpyBackend(graph, [specs[0]], [specs[1]])
    from edge_runtime.backends.numpy_onnx import OnnxGraph

    graph = OnnxGraph(data)
    return NumpyBackend(
        graph,
        [TensorSpec(graph.input_name, graph.input_shape, graph.input_dtype, io_quantization[0])],
        [TensorSpec(graph.output_name, graph.output_shape, graph.output_dtype, io_quantization[1])],
    )
