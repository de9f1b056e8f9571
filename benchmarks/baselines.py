"""The plain loops a user would write by hand, without edge_runtime.

They exist so that the runtime's own cost is a *measured ratio* in the same run: the
same artifact, the same raw inputs, the same threads, timed alternately with the
edge_runtime call. They are deliberately what the LiteRT / ONNX Runtime documentation
shows and are not tuned to be slow or fast: a ratio above 1.0 must mean the wrapper
costs something, not that the baseline was handicapped. Per call they do

- the preprocessing recorded in the manifest, in numpy: ``(raw * scale + offset -
  mean) / std`` per channel or per feature, laid out as the model's input
  (:func:`edge_runtime.preprocessing.apply_preprocessing`, the reference arithmetic
  that training and parity use too), with the artifact's own ``preprocessing`` when
  it has one (the full-integer artifacts of a feature model take standardised
  features);
- for an integer input tensor, quantisation with that tensor's own scale and zero
  point, as the interpreter reports them;
- ``set_tensor`` / ``invoke`` / ``get_tensor`` (or ``session.run``), then
  dequantisation of an integer output.

Each runtime is imported when its loop is built, so this module also works on a
device with just one of them installed. The cold-start comparison does not use this
module: its bare subjects are the user's few lines themselves (:mod:`benchmarks.coldstart`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge_runtime.errors import BackendError
from edge_runtime.preprocessing import apply_preprocessing
from edge_runtime.records.manifest import Preprocessing

# edge_runtime backend name -> module of the interpreter the hand-written loop uses.
# Backends without an entry (the pure-numpy one) have no separate interpreter to compare with.
TFLITE_INTERPRETERS = {
    "litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
}


def _import_interpreter(backend: str) -> type:
    module_name = TFLITE_INTERPRETERS[backend]
    try:
        module = __import__(module_name, fromlist=["Interpreter"])
    except ImportError as exc:
        raise BackendError(f"{module_name} is not installed: {exc}") from None
    return module.Interpreter


class TFLiteLoop:
    """``set_tensor`` / ``invoke`` / ``get_tensor`` on a LiteRT or tflite_runtime Interpreter.

    The interpreter is resized for ``batch_size`` once, up front, as a user
    processing fixed-size batches would do; each call then preprocesses, quantises
    (when the input tensor is integer), runs and dequantises the output.

    Parameters
    ----------
    path
        The ``.tflite`` file.
    preprocessing
        What the artifact expects (``Manifest.preprocessing_for(artifact)``).
    batch_size
        Samples per call.
    threads
        Interpreter threads; ``None`` keeps the library default.
    backend
        ``"litert"`` (``ai_edge_litert``) or ``"tflite_runtime"``.

    Examples
    --------
    >>> pre = manifest.preprocessing_for(manifest.artifact(name="tflite_int8"))  # doctest: +SKIP
    >>> TFLiteLoop("out/artifacts/tflite_int8.tflite", pre, 1, 1)(samples[:1]).shape  # doctest: +SKIP
    (1, 10)
    """

    def __init__(self, path: str | Path, preprocessing: Preprocessing, batch_size: int,
                 threads: int | None, backend: str = "litert") -> None:
        interpreter_cls = _import_interpreter(backend)
        self._preprocessing = preprocessing
        self._interp = interpreter_cls(model_path=str(path), num_threads=threads)
        inp = self._interp.get_input_details()[0]
        self._interp.resize_tensor_input(inp["index"], [batch_size, *preprocessing.model_input_shape])
        self._interp.allocate_tensors()
        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[0]
        self._in_index, self._out_index = inp["index"], out["index"]
        self._in_dtype = np.dtype(inp["dtype"])
        self._in_scale, self._in_zero = inp["quantization"]
        self._out_scale, self._out_zero = out["quantization"]
        self._out_dtype = np.dtype(out["dtype"])

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """Classify a batch of raw inputs; returns the model's float32 ``(N, classes)`` output."""
        x = apply_preprocessing(raw, self._preprocessing)
        if self._in_dtype.kind in "iu":
            info = np.iinfo(self._in_dtype)
            x = np.clip(np.round(x / self._in_scale) + self._in_zero, info.min, info.max).astype(self._in_dtype)
        self._interp.set_tensor(self._in_index, x)
        self._interp.invoke()
        y = self._interp.get_tensor(self._out_index)
        if self._out_dtype.kind in "iu":
            y = (y.astype(np.float32) - self._out_zero) * np.float32(self._out_scale)
        return y


class OnnxRuntimeLoop:
    """``session.run`` on an ONNX Runtime CPU session, with numpy preprocessing.

    keras2edge's ONNX artifacts (float, QDQ or dynamic int8) all take float32
    input, so the only per-call work besides ``run`` is the preprocessing.

    Parameters
    ----------
    path
        The ``.onnx`` file.
    preprocessing
        What the artifact expects (``Manifest.preprocessing_for(artifact)``).
    threads
        ``intra_op_num_threads``; ``None`` keeps the library default (all cores).
    """

    def __init__(self, path: str | Path, preprocessing: Preprocessing, threads: int | None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError(f"onnxruntime is not installed: {exc}") from None
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self._preprocessing = preprocessing
        self._session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self._input_name = self._session.get_inputs()[0].name

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """Classify a batch of raw inputs; returns the model's float32 ``(N, classes)`` output."""
        return self._session.run(None, {self._input_name: apply_preprocessing(raw, self._preprocessing)})[0]


def has_baseline(backend: str) -> bool:
    """Whether a hand-written loop exists for this edge_runtime backend."""
    return backend in TFLITE_INTERPRETERS or backend == "onnxruntime"


def make_baseline(backend: str, path: str | Path, preprocessing: Preprocessing, batch_size: int,
                  threads: int | None) -> Callable[[np.ndarray], np.ndarray]:
    """Build the hand-written loop that matches an edge_runtime ``backend``.

    Raises
    ------
    BackendError
        No baseline exists for ``backend`` or its library is not installed.
    """
    if backend in TFLITE_INTERPRETERS:
        return TFLiteLoop(path, preprocessing, batch_size, threads, backend=backend)
    if backend == "onnxruntime":
        return OnnxRuntimeLoop(path, preprocessing, threads)
    raise BackendError(f"no hand-written baseline for backend '{backend}'")
