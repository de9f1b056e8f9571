"""The plain loops a user would write by hand, without edge_runtime.

They exist so that the runtime's own cost is a *measured ratio* in the same run: the
same artifact, the same uint8 images, the same threads, timed alternately with the
edge_runtime call. They are deliberately what the LiteRT / ONNX Runtime documentation
shows (numpy scaling, ``set_tensor`` / ``invoke`` / ``get_tensor``, int8
quantise / dequantise with the tensor's own parameters on every call, or
``session.run``) and are not tuned to be slow or fast: a ratio above 1.0 must mean
the wrapper costs something, not that the baseline was handicapped.

Only numpy is imported at module level; each runtime is imported when its loop is
built, so this module also works on a device with just one of them installed. Not even
``edge_runtime`` is imported up front: the bare-LiteRT cold start imports this module
and must not pay for the package it is compared against.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

# edge_runtime backend name -> the hand-written loop timed against it. Backends
# without an entry (the pure-numpy one) have no separate interpreter to compare with.
TFLITE_INTERPRETERS = {
    "litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
}


def model_input(images: np.ndarray, preprocessing: Mapping[str, Any]) -> np.ndarray:
    """Turn uint8 images ``(N, H, W)`` into the float32 tensor the model was trained on.

    Follows the manifest's ``preprocessing`` block: ``x * scale + offset``, reshaped
    to ``(N, *model_input_shape)``.

    Examples
    --------
    >>> pre = {"scale": 1 / 255, "offset": 0.0, "model_input_shape": [4]}
    >>> model_input(np.array([[[0, 255], [255, 0]]], dtype=np.uint8), pre).tolist()
    [[0.0, 1.0, 1.0, 0.0]]
    """
    shape = (images.shape[0], *preprocessing["model_input_shape"])
    x = images.reshape(shape).astype(np.float32) * np.float32(preprocessing["scale"])
    offset = float(preprocessing.get("offset", 0.0))
    return x + np.float32(offset) if offset else x


def _backend_error(message: str) -> Exception:
    from edge_runtime.errors import BackendError

    return BackendError(message)


def _import_interpreter(backend: str) -> type:
    module_name = TFLITE_INTERPRETERS[backend]
    try:
        module = __import__(module_name, fromlist=["Interpreter"])
    except ImportError as exc:
        raise _backend_error(f"{module_name} is not installed: {exc}") from None
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
        The manifest's preprocessing block.
    batch_size
        Images per call.
    threads
        Interpreter threads; ``None`` keeps the library default.
    backend
        ``"litert"`` (``ai_edge_litert``) or ``"tflite_runtime"``.

    Examples
    --------
    >>> loop = TFLiteLoop("out/artifacts/tflite_int8.tflite", manifest["preprocessing"], 1, 1)  # doctest: +SKIP
    >>> loop(images[:1]).shape  # doctest: +SKIP
    (1, 10)
    """

    def __init__(self, path: str | Path, preprocessing: Mapping[str, Any], batch_size: int,
                 threads: int | None, backend: str = "litert") -> None:
        interpreter_cls = _import_interpreter(backend)
        self._preprocessing = preprocessing
        self._interp = interpreter_cls(model_path=str(path), num_threads=threads)
        inp = self._interp.get_input_details()[0]
        self._interp.resize_tensor_input(inp["index"], [batch_size, *preprocessing["model_input_shape"]])
        self._interp.allocate_tensors()
        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[0]
        self._in_index, self._out_index = inp["index"], out["index"]
        self._in_dtype = np.dtype(inp["dtype"])
        self._in_scale, self._in_zero = inp["quantization"]
        self._out_scale, self._out_zero = out["quantization"]
        self._out_dtype = np.dtype(out["dtype"])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Classify ``images`` (uint8 ``(N, H, W)``); returns float32 ``(N, classes)``."""
        x = model_input(images, self._preprocessing)
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

    Quantised ONNX artifacts (QDQ or dynamic) take float32 input, so the only
    per-call work besides ``run`` is the scaling of the uint8 image.

    Parameters
    ----------
    path
        The ``.onnx`` file.
    preprocessing
        The manifest's preprocessing block.
    threads
        ``intra_op_num_threads``; ``None`` keeps the library default (all cores).
    """

    def __init__(self, path: str | Path, preprocessing: Mapping[str, Any], threads: int | None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise _backend_error(f"onnxruntime is not installed: {exc}") from None
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self._preprocessing = preprocessing
        self._session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self._input_name = self._session.get_inputs()[0].name

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Classify ``images`` (uint8 ``(N, H, W)``); returns float32 ``(N, classes)``."""
        x = model_input(images, self._preprocessing)
        return self._session.run(None, {self._input_name: x})[0]


def has_baseline(backend: str) -> bool:
    """Whether a hand-written loop exists for this edge_runtime backend."""
    return backend in TFLITE_INTERPRETERS or backend == "onnxruntime"


def make_baseline(backend: str, path: str | Path, preprocessing: Mapping[str, Any], batch_size: int,
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
    raise _backend_error(f"no hand-written baseline for backend '{backend}'")
