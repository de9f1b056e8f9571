"""edge_runtime: run keras2edge models on a CPU or Raspberry Pi, without TensorFlow.

>>> import edge_runtime
>>> model = edge_runtime.load("out/tflite_int8.tflite")  # doctest: +SKIP
>>> model.predict(images).shape, model.classify(images[:1])  # doctest: +SKIP
((100, 10), ['7'])

``load(path, backend="auto", threads=None)`` opens a ``.tflite`` or ``.onnx``
artifact on LiteRT, tflite_runtime, ONNX Runtime or the pure-NumPy backend
(TensorFlow Lite only as a last resort), applies the preprocessing recorded in the
``manifest.json`` beside it after checking the artifact's sha256, and returns a
:class:`Model`. Importing this package imports no backend and no numpy; backends
are imported by ``load``.

Exceptions
----------
Every error a caller can cause is a subclass of :class:`Keras2EdgeError`:

ModelLoadError
    The artifact is missing, unreadable, truncated, corrupt or of the wrong format.
ManifestError
    ``manifest.json`` is invalid, does not list the artifact, or its sha256 differs.
BackendError
    Unknown backend name, backend not installed, or a backend failure while running.
InputError (also a ValueError)
    ``predict`` input of the wrong shape or dtype, an empty batch, NaN/inf, or
    float input that was not scaled.
DataError (also a ValueError)
    An image, ``.npy`` or IDX input file that cannot be read.

Thread safety: a :class:`Model` is not thread-safe; use one per thread or a lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge_runtime.errors import (
    BackendError,
    DataError,
    InputError,
    Keras2EdgeError,
    ManifestError,
    ModelLoadError,
)

if TYPE_CHECKING:
    from edge_runtime.model import Model, load

__all__ = [
    "BackendError",
    "DataError",
    "InputError",
    "Keras2EdgeError",
    "ManifestError",
    "Model",
    "ModelLoadError",
    "load",
]


def __getattr__(name: str) -> Any:
    # Deferred so that `import edge_runtime` (done by train/ and convert/ for the
    # exception types) does not pay for numpy and the model machinery.
    if name in ("load", "Model"):
        from edge_runtime import model

        return getattr(model, name)
    raise AttributeError(f"module 'edge_runtime' has no attribute {name!r}")
