"""Choosing and opening an inference backend for an artifact.

``auto`` tries, in order, for ``.tflite``: LiteRT (``ai_edge_litert``),
``tflite_runtime``, TensorFlow Lite (last resort: importing TensorFlow costs seconds
and hundreds of MB), then the pure-NumPy backend; for ``.onnx``: ONNX Runtime, then
the pure-NumPy backend. A backend is imported only here, when a model is loaded, so
``import edge_runtime`` stays cheap and TensorFlow is never imported while a native
runtime is present.
"""

from __future__ import annotations

from edge_runtime.backends.base import Backend, TensorSpec
from edge_runtime.backends.tflite_format import verify_tflite
from edge_runtime.errors import BackendError

TFLITE_ORDER = ("litert", "tflite_runtime", "tensorflow", "numpy")
ONNX_ORDER = ("onnxruntime", "numpy")
BACKEND_NAMES = ("auto", "litert", "tflite_runtime", "tensorflow", "onnxruntime", "numpy")

_INSTALL_HINTS = {
    "litert": "pip install ai-edge-litert",
    "tflite_runtime": "pip install tflite-runtime",
    "tensorflow": "pip install tensorflow",
    "onnxruntime": "pip install onnxruntime",
}
# The NumPy backend reads each format with its own pure-Python package.
_NUMPY_READERS = {"tflite": "pip install tflite", "onnx": "pip install onnx (or keras2edge[onnx-numpy])"}


def _install_hint(name: str, fmt: str) -> str:
    return _NUMPY_READERS[fmt] if name == "numpy" else _INSTALL_HINTS[name]

__all__ = ["BACKEND_NAMES", "Backend", "TensorSpec", "candidates", "check_name", "open_backend"]


def check_name(backend: object) -> None:
    """Reject an unknown backend name before any file is read.

    Raises
    ------
    BackendError
        ``backend`` is not one of :data:`BACKEND_NAMES`.
    """
    if not isinstance(backend, str) or backend not in BACKEND_NAMES:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKEND_NAMES)}")


def candidates(backend: str, fmt: str) -> tuple[str, ...]:
    """The backends to try, in order, for ``backend`` (a name or ``"auto"``) and ``fmt``.

    Raises
    ------
    BackendError
        ``backend`` is not a known name, or cannot run ``fmt`` artifacts.
    """
    check_name(backend)
    order = TFLITE_ORDER if fmt == "tflite" else ONNX_ORDER
    if backend == "auto":
        return order
    if backend not in order:
        raise BackendError(f"backend '{backend}' cannot run .{fmt} models; use one of {', '.join(order)} or auto")
    return (backend,)


def _open(name: str, fmt: str, data: bytes, threads: int | None, io_quantization) -> Backend:
    if name == "numpy":
        from edge_runtime.backends.numpy_backend import open_numpy_backend

        return open_numpy_backend(fmt, data, io_quantization)
    if name == "onnxruntime":
        from edge_runtime.backends.ort import OnnxRuntimeBackend

        return OnnxRuntimeBackend(data, threads, io_quantization)
    from edge_runtime.backends.tflite import TFLiteBackend

    return TFLiteBackend(name, data, threads)


def open_backend(
    backend: str,
    fmt: str,
    data: bytes,
    threads: int | None = None,
    io_quantization: tuple = (None, None),
) -> Backend:
    """Open ``data`` (a ``fmt`` artifact) on the first available backend of ``backend``.

    Parameters
    ----------
    backend : str
        A name from :data:`BACKEND_NAMES`.
    fmt : str
        ``"tflite"`` or ``"onnx"``.
    data : bytes
        The artifact's content, already checked to be of ``fmt``.
    threads : int or None
        Threads for backends that have the notion.
    io_quantization : tuple
        ``(input, output)`` ``(scale, zero_point)`` pairs from the manifest, for ONNX
        models with int8 I/O (ONNX graphs do not carry them).

    Raises
    ------
    BackendError
        Unknown name, or none of the candidates is installed.
    ModelLoadError
        A ``.tflite`` file fails :func:`verify_tflite`, or the backend rejected the artifact.
    """
    if fmt == "tflite":
        verify_tflite(data)  # before any native interpreter follows the file's offsets
    missing: list[tuple[str, str]] = []
    for name in candidates(backend, fmt):
        try:
            return _open(name, fmt, data, threads, io_quantization)
        except ImportError as exc:
            missing.append((name, exc.name or str(exc)))
    if backend == "auto":
        tried = ", ".join(f"{name} (no module {module})" for name, module in missing)
        hints = "; ".join(_install_hint(n, fmt) for n in candidates(backend, fmt) if n != "tensorflow")
        raise BackendError(f"no backend for .{fmt} models is installed (tried {tried}); install one: {hints}")
    raise BackendError(
        f"backend '{backend}' is not installed (no module {missing[0][1]}); {_install_hint(backend, fmt)}"
    )
