"""``load()`` and :class:`Model`: one artifact, one backend, preprocessing included.

Everything that can be decided once is decided in :func:`load`: the file is read
and identified, its sha256 is checked against ``manifest.json``, the backend is
opened, and the input conversion (scaling, layout, int8 quantisation) and output
dequantisation are reduced to precomputed constants. ``predict`` then does only
the per-call work, so it costs no more than the hand-written interpreter loop.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_runtime.backends import Backend, TensorSpec, check_name, open_backend
from edge_runtime.errors import BackendError, InputError, ManifestError, ModelLoadError
from edge_runtime.files import read_user_file
from edge_runtime.preprocessing import InputAdapter
from edge_runtime.records.manifest import (
    MANIFEST_NAME,
    ArtifactRecord,
    InputSpec,
    Manifest,
    Preprocessing,
    default_input,
    sha256_hex,
)

if TYPE_CHECKING:  # pathlib costs milliseconds of a cold start: Model.path makes its Path on first use
    from pathlib import Path

TFLITE_IDENTIFIER = b"TFL3"
_FLOAT32 = np.dtype(np.float32)
# An ONNX ModelProto starts with field 1 (ir_version, varint): tag byte 0x08.
_ONNX_FIRST_BYTE = 0x08


def detect_format(data: bytes, path: str) -> str:
    """``"tflite"`` or ``"onnx"`` from the content (and, for ONNX, the suffix).

    A TFLite flatbuffer carries the file identifier ``TFL3`` at bytes 4-8; it is
    checked before any native interpreter sees the bytes. ONNX has no magic number,
    so a file is taken for ONNX when its suffix says so or its first byte is the
    ``ir_version`` tag; the protobuf parser of the backend validates the rest.

    Raises
    ------
    ModelLoadError
        The content is neither.
    """
    if data[4:8] == TFLITE_IDENTIFIER:
        return "tflite"
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".tflite":
        raise ModelLoadError(
            f"{path}: not a TFLite model (no 'TFL3' flatbuffer identifier); the file is damaged or of another format"
        )
    if suffix == ".onnx" or data[0] == _ONNX_FIRST_BYTE:
        return "onnx"
    raise ModelLoadError(
        f"{path}: not a TFLite or ONNX model; expected a .tflite or .onnx file made by python -m convert"
    )


def _read(path: str) -> bytes:
    data = read_user_file(path, ModelLoadError, "one artifact file (.tflite or .onnx)")
    if len(data) < 16:
        raise ModelLoadError(f"{path}: file is {len(data)} bytes, too short to be a model (truncated?)")
    return data


def _io_quantization(entry: ArtifactRecord | None) -> tuple[tuple[float, int] | None, tuple[float, int] | None]:
    """(input, output) (scale, zero_point) recorded in the manifest (ONNX graphs do not carry int8 I/O's)."""
    if entry is None:
        return None, None
    first = lambda tensors: tensors[0].quantization if tensors else None  # noqa: E731
    return first(entry.inputs), first(entry.outputs)


def _check_threads(threads: int | None) -> None:
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise BackendError(f"threads must be a positive integer or None, got {threads!r}")


class Model:
    """A loaded artifact ready for inference; create it with :func:`load`.

    Attributes
    ----------
    path : Path
        The artifact file.
    format : str
        ``"tflite"`` or ``"onnx"``.
    backend : str
        The backend actually running it (``"litert"``, ``"onnxruntime"``, ``"numpy"``...).
    num_classes : int
        Width of the output.
    class_labels : tuple of str
        From the manifest, else ``"0"``, ``"1"``, ...
    sha256 : str
        Hex digest of the artifact bytes.
    manifest : Manifest or None
        The ``manifest.json`` record beside the artifact, or None when there is none.
    artifact : ArtifactRecord or None
        This artifact's entry in the manifest.
    input : InputSpec
        What ``predict`` takes: an image (size, colour mode, whether MNIST-style
        digits) or a feature vector (manifest, or MNIST-like defaults).
    preprocessing : Preprocessing
        Scale, offset, mean/std and layout applied to ``predict`` input.
    threads : int or None
        The thread count given to the backend.
    size_bytes : int
        Size of the artifact file.

    Notes
    -----
    A ``Model`` is **not thread-safe**: native interpreters hold one set of tensors
    and ``predict`` reuses its input buffer. Use one ``Model`` per thread or worker,
    or guard calls with a lock.
    """

    def __init__(
        self,
        path: str,
        fmt: str,
        data_size: int,
        sha256: str,
        backend: Backend,
        manifest: Manifest | None,
        artifact: ArtifactRecord | None,
        spec: InputSpec,
        pre: Preprocessing,
    ) -> None:
        self._file = path
        self.format = fmt
        self.sha256 = sha256
        self.size_bytes = data_size
        self._backend = backend
        self._run = backend.run
        self.backend: str = backend.name
        self.threads = backend.threads
        self.manifest = manifest
        self.artifact = artifact
        self.input = spec
        self.preprocessing = pre
        in_spec, out_spec = backend.inputs[0], backend.outputs[0]
        per_sample = math.prod(in_spec.shape[1:])
        if any(d < 0 for d in in_spec.shape[1:]) or per_sample != math.prod(pre.model_input_shape):
            source = "manifest model_input_shape" if manifest else "default preprocessing"
            error = ManifestError if manifest else ModelLoadError
            raise error(
                f"{path}: model input {list(in_spec.shape)} does not match the {source} {list(pre.model_input_shape)}"
            )
        self._adapter = InputAdapter(spec, pre, in_spec.dtype, in_spec.quantization)
        self._prepare = self._adapter.__call__  # a bound method is the cheapest call
        if len(out_spec.shape) != 2 or out_spec.shape[1] < 1:
            raise ModelLoadError(f"{path}: expected an output of shape (batch, classes), got {list(out_spec.shape)}")
        self.num_classes = int(out_spec.shape[1])
        if manifest is not None:
            if len(manifest.class_labels) != self.num_classes:
                raise ManifestError(
                    f"{manifest.path}: {len(manifest.class_labels)} class_labels for a model with "
                    f"{self.num_classes} outputs"
                )
            self.class_labels: tuple[str, ...] = manifest.class_labels
            self._logits = manifest.output_kind == "logits"
        else:
            self.class_labels = tuple(str(i) for i in range(self.num_classes))
            self._logits = False
        self._labels = np.array(self.class_labels, dtype=object)
        if out_spec.dtype in (np.int8, np.uint8):
            if out_spec.quantization is None:
                raise ModelLoadError(f"{path}: output is {out_spec.dtype.name} but has no quantisation parameters")
            self._out_scale = np.float32(out_spec.quantization[0])
            self._out_zero = np.float32(out_spec.quantization[1])
        else:
            self._out_scale = None
        # float32 probabilities straight from the backend: predict returns them as they are.
        self._plain = self._out_scale is None and not self._logits

    def predict(self, x: Any) -> np.ndarray:
        """Class probabilities for one image or a batch.

        Parameters
        ----------
        x : array_like
            Images as uint8 pixels ``(H, W, C)`` or a batch ``(N, H, W, C)``
            (``(H, W)`` / ``(N, H, W)`` for one channel, or flat rows), or float
            pixels in [0, 1] in the same layouts; for a feature model, raw feature
            vectors ``(F,)`` or ``(N, F)``. The manifest's preprocessing is applied.

        Returns
        -------
        numpy.ndarray
            float32 ``(N, num_classes)``; rows sum to 1 (softmax is applied for
            models whose manifest says their output is logits).

        Raises
        ------
        InputError
            Wrong shape (the message names the expected ones) or dtype, empty batch,
            NaN/inf, or float pixels outside [0, 1].
        BackendError
            The backend failed while running the model.

        Examples
        --------
        >>> model = load("out/tflite_int8.tflite")  # doctest: +SKIP
        >>> model.predict(images[:3]).shape  # doctest: +SKIP
        (3, 10)
        """
        try:
            raw = self._run(self._prepare(x))
        except InputError:
            raise
        except (RuntimeError, ValueError) as exc:
            raise BackendError(
                f"{self.backend} failed to run {os.path.basename(self._file)}: {' '.join(str(exc).split())}"
            ) from None
        if self._plain and raw.dtype is _FLOAT32:
            return raw
        return self._postprocess(raw)

    def prepare(self, x: Any) -> np.ndarray:
        """The model-input tensor ``predict`` would feed the backend, as a copy.

        Another interpreter of the same artifact (TensorFlow Lite Micro on a
        microcontroller, a C program) must be fed exactly these values, scaling and
        int8 rounding included, for its outputs to be comparable with this runtime's.
        A copy, because ``predict`` reuses the buffer behind it on the next call.

        Parameters
        ----------
        x : array_like
            As for :meth:`predict`.

        Returns
        -------
        numpy.ndarray
            ``(N, *model input shape)`` in the model's input dtype (int8 already
            quantised for full-integer models).

        Raises
        ------
        InputError
            As for :meth:`predict`.

        Examples
        --------
        >>> load("out/tflite_int8.tflite").prepare(images[:2]).dtype  # doctest: +SKIP
        dtype('int8')
        """
        return np.array(self._prepare(x), copy=True)

    def _postprocess(self, raw: np.ndarray) -> np.ndarray:
        """Dequantise int8 output and apply softmax to logits: float32 probabilities."""
        if self._out_scale is not None:
            out = raw.astype(np.float32)
            out -= self._out_zero
            out *= self._out_scale
        else:
            out = raw.astype(np.float32, copy=False)
        if self._logits:
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        return out

    def classify(self, x: Any) -> list[str]:
        """The most probable class label for each sample of ``x``.

        Parameters
        ----------
        x : array_like
            As for :meth:`predict`.

        Returns
        -------
        list of str
            One label per sample (a single image gives a one-element list).

        Examples
        --------
        >>> load("out/onnx_float32.onnx").classify(images[:2])  # doctest: +SKIP
        ['7', '2']
        """
        return self._labels[self.predict(x).argmax(axis=1)].tolist()

    def info(self) -> dict[str, Any]:
        """Everything a user or a tool needs to know about the loaded model.

        Returns
        -------
        dict
            JSON-ready: ``path``, ``format``, ``backend``, ``backend_details``,
            ``threads``, ``bytes``, ``sha256``, ``inputs``/``outputs`` (name, shape,
            dtype, quantization), ``num_classes``, ``class_labels``, ``output_kind``,
            ``input`` (the input description and a one-line summary),
            ``preprocessing`` and ``manifest`` (path, artifact entry, source model,
            creation time and tool versions; None without a manifest).
        """
        manifest = None
        if self.manifest is not None:
            m = self.manifest
            manifest = {
                "path": str(m.path),
                "schema_version": m.schema_version,
                "artifact": self.artifact.to_json() if self.artifact else None,
                "source_model": m.source_model,
                "created": m.created,
                "tool_versions": m.tool_versions,
                "calibration": m.calibration,
                "data": m.data,
            }
        return {
            "path": str(self.path),
            "format": self.format,
            "backend": self.backend,
            "backend_details": self._backend.details(),
            "threads": self.threads,
            "bytes": self.size_bytes,
            "sha256": self.sha256,
            "inputs": [t.to_dict() for t in self._backend.inputs],
            "outputs": [t.to_dict() for t in self._backend.outputs],
            "num_classes": self.num_classes,
            "class_labels": list(self.class_labels),
            "output_kind": "logits" if self._logits else "probabilities",
            "input": {**self.input.to_json(), "description": self.input.describe()},
            "preprocessing": {
                **self.preprocessing.to_json(),
                "description": self.preprocessing.describe(),
                "source": "manifest" if self.manifest else "defaults",
            },
            "manifest": manifest,
        }

    @property
    def path(self) -> Path:
        """The artifact file (made on first use: pathlib is not needed to load and predict)."""
        from pathlib import Path

        return Path(self._file)

    @property
    def input_spec(self) -> TensorSpec:
        """The backend's view of the model input (name, shape, dtype, quantisation)."""
        return self._backend.inputs[0]

    @property
    def output_spec(self) -> TensorSpec:
        """The backend's view of the model output."""
        return self._backend.outputs[0]

    def __repr__(self) -> str:
        return f"Model({str(self.path)!r}, backend={self.backend!r}, classes={self.num_classes})"


def load(path: str | os.PathLike[str], backend: str = "auto", threads: int | None = None) -> Model:
    """Load a ``.tflite`` or ``.onnx`` artifact for inference.

    If a ``manifest.json`` sits beside the file, the artifact's sha256 must match
    its entry there, and its input description, preprocessing, class labels and
    output kind are used; otherwise MNIST-like defaults apply (an image of the
    model's input size, pixels / 255, labels ``"0"``, ``"1"``, ...).

    Parameters
    ----------
    path : str or path-like
        The artifact file.
    backend : str
        ``"auto"`` (default: LiteRT, tflite_runtime, TensorFlow Lite, NumPy for
        .tflite; ONNX Runtime, NumPy for .onnx) or one of ``"litert"``,
        ``"tflite_runtime"``, ``"tensorflow"``, ``"onnxruntime"``, ``"numpy"``.
    threads : int or None
        Inference threads for LiteRT/tflite_runtime/TensorFlow (``num_threads``)
        and ONNX Runtime (``intra_op_num_threads``); None lets them choose. The
        NumPy backend follows the BLAS library's own thread setting.

    Returns
    -------
    Model

    Raises
    ------
    ModelLoadError
        Missing, unreadable, truncated, corrupt or wrong-format file.
    ManifestError
        The manifest beside it is invalid, does not list it, or its sha256 differs.
    BackendError
        Unknown or uninstalled backend, or one that cannot run this artifact.

    Examples
    --------
    >>> model = load("out/tflite_int8.tflite", threads=1)  # doctest: +SKIP
    >>> model.classify(image)  # doctest: +SKIP
    ['7']
    """
    _check_threads(threads)
    check_name(backend)
    artifact = os.fspath(path)
    data = _read(artifact)
    fmt = detect_format(data, artifact)
    digest = sha256_hex(data)
    manifest_path = os.path.join(os.path.dirname(artifact), MANIFEST_NAME)
    manifest = Manifest.read(manifest_path) if os.path.isfile(manifest_path) else None
    entry = manifest.artifact(os.path.basename(artifact)) if manifest is not None else None
    if entry is not None:
        entry.verify(digest, artifact)
    engine = open_backend(backend, fmt, data, threads, _io_quantization(entry))
    if manifest is not None and entry is not None:
        spec, pre = manifest.input, manifest.preprocessing_for(entry)
    else:
        shape = engine.inputs[0].shape[1:]
        if not shape or any(d < 1 for d in shape):
            raise ModelLoadError(
                f"{artifact}: model input shape {list(engine.inputs[0].shape)} is not fixed per sample; "
                "add a manifest.json"
            )
        spec, pre = default_input(tuple(shape))
    return Model(artifact, fmt, len(data), digest, engine, manifest, entry, spec, pre)
