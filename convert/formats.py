"""The seven artifact kinds the converter can produce, and what each one is.

One explicit table keeps file names, precision and quantisation scheme in a single
place: the converter, the manifest, parity gates and the CLI's ``--formats`` all read
it, so a new kind is added here and nowhere else.
"""

from __future__ import annotations

from enum import Enum

from edge_runtime.errors import Keras2EdgeError


class ArtifactKind(Enum):
    """An artifact kind: ``(format, precision, quantization)``.

    The member name (``tflite_int8`` ...) is the artifact's name in the manifest and
    parity report, and ``<name>.<format>`` is its file name.

    Examples
    --------
    >>> ArtifactKind.TFLITE_INT8.file_name, ArtifactKind.TFLITE_INT8.quantization
    ('tflite_int8.tflite', 'full_integer')
    """

    TFLITE_FLOAT32 = ("tflite", "float32", "none")
    TFLITE_FLOAT16 = ("tflite", "float16", "float16_weights")
    TFLITE_DYNAMIC_INT8 = ("tflite", "int8", "dynamic_range")
    TFLITE_INT8 = ("tflite", "int8", "full_integer")
    ONNX_FLOAT32 = ("onnx", "float32", "none")
    ONNX_INT8_STATIC = ("onnx", "int8", "static_qdq")
    ONNX_INT8_DYNAMIC = ("onnx", "int8", "dynamic")

    def __init__(self, fmt: str, precision: str, quantization: str) -> None:
        self.format = fmt
        self.precision = precision
        self.quantization = quantization

    @property
    def artifact_name(self) -> str:
        """The manifest name, e.g. ``"onnx_int8_static"``."""
        return self.name.lower()

    @property
    def file_name(self) -> str:
        """The file written next to ``manifest.json``, e.g. ``"onnx_int8_static.onnx"``."""
        return f"{self.artifact_name}.{self.format}"

    @property
    def needs_calibration(self) -> bool:
        """True when activation ranges must be measured on representative (training) data."""
        return self.quantization in ("full_integer", "static_qdq")

    @classmethod
    def from_name(cls, name: str) -> ArtifactKind:
        """Look up a kind by its manifest name.

        Raises
        ------
        Keras2EdgeError
            ``name`` is not one of the seven artifact names.
        """
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise Keras2EdgeError(
                f"unknown artifact format '{name}'; choose from {', '.join(k.artifact_name for k in cls)}"
            ) from None


ALL_KINDS: tuple[ArtifactKind, ...] = tuple(ArtifactKind)


def parse_formats(spec: str | None) -> tuple[ArtifactKind, ...]:
    """Parse a ``--formats`` value (comma-separated names, or ``all``) in table order.

    Examples
    --------
    >>> [k.artifact_name for k in parse_formats("onnx_float32,tflite_int8")]
    ['tflite_int8', 'onnx_float32']
    """
    if spec is None or spec.strip() in ("", "all"):
        return ALL_KINDS
    wanted = {ArtifactKind.from_name(part) for part in spec.split(",") if part.strip()}
    if not wanted:
        raise Keras2EdgeError("--formats is empty; name at least one artifact or use 'all'")
    return tuple(k for k in ALL_KINDS if k in wanted)
