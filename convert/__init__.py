"""Keras → TFLite / ONNX conversion, int8 quantisation, manifest and parity gates.

Importing this package is cheap: TensorFlow, tf2onnx and ONNX Runtime are imported
only when a conversion or parity run starts.

Examples
--------
>>> from convert import convert_model, run_parity  # doctest: +SKIP
>>> manifest = convert_model("model.keras", "artifacts")  # doctest: +SKIP
>>> run_parity("artifacts").passed  # doctest: +SKIP
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from convert.converter import convert_model
    from convert.parity import run_parity

__all__ = ["convert_model", "run_parity"]

_LAZY = {"convert_model": "convert.converter", "run_parity": "convert.parity"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'convert' has no attribute {name!r}")
