"""Export a full-integer ``.tflite`` artifact for TensorFlow Lite Micro (``python -m convert mcu``).

Importing this package needs neither TensorFlow nor tflite-micro; the export imports
the TensorFlow Lite Micro interpreter when it runs.

Examples
--------
>>> from convert.mcu import export_mcu  # doctest: +SKIP
>>> export_mcu("out/artifacts", "out/mcu")["flash"]["model_bytes"]  # doctest: +SKIP
580912
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from convert.mcu.export import export_mcu

__all__ = ["export_mcu"]


def __getattr__(name: str) -> Any:
    if name == "export_mcu":
        from convert.mcu.export import export_mcu

        return export_mcu
    raise AttributeError(f"module 'convert.mcu' has no attribute {name!r}")
