"""``manifest.json``: the contract between the converter and everything that runs its artifacts.

The runtime, benchmarks, the device bundle and the microcontroller export never
import TensorFlow, so they learn everything about an artifact from this file:

``input``
    What a device holds before preprocessing: an ``image`` of ``shape`` (H, W, C)
    uint8 pixels in a colour mode, resized as in training (``interpolation``,
    ``crop_to_aspect_ratio``), possibly MNIST-style ``digits``; or ``features``, a
    vector of F raw values (``feature_names``).
``preprocessing``
    How that raw input becomes the model's input tensor, exactly:
    ``x = (raw * scale + offset - mean[c]) / std[c]`` per channel (image) or per
    feature, then laid out ``flat`` or ``nhwc`` as ``model_input_shape``. ``mode``
    names the recipe (``unit`` = x/255, ``symmetric`` = x/127.5 - 1, ``imagenet``,
    ``raw``, ``mean_std``, ``standardize``, ``custom``). An artifact entry may carry
    its own ``preprocessing``: the full-integer artifacts of a model that
    standardises features inside itself take the standardised vector instead.
``class_labels``, ``output_kind``, ``artifacts`` (file, format, precision,
quantisation, bytes, sha256, I/O tensors with int8 scale/zero point), the source
model, the calibration set, the data set and the tool versions.

Schema 2 is written; schema 1 (28×28 single-channel digits, ``preprocessing``
with ``image_shape``/``channels``/``scale``/``offset``/``foreground``) still loads.
The runtime trusts nothing blindly: every field it uses is type-checked here, so a
damaged or hand-edited manifest fails with one :class:`ManifestError` at load time.
Only the standard library is needed.
"""


import math
import os
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

from edge_runtime.errors import ManifestError
from edge_runtime.records._fields import Fields, check_schema, document_path, read_document, write_document

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS = (1, 2)
INPUT_KINDS = ("image", "features")
COLOR_MODES = ("grayscale", "rgb")
INTERPOLATIONS = ("bilinear",)
LAYOUTS = ("flat", "nhwc")
OUTPUT_KINDS = ("probabilities", "logits")
MNIST_SCALE = 1.0 / 255.0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# mode -> (scale, offset, mean, std); mean_std/standardize take mean and std from the user or the data.
IMAGE_MODES: dict[str, tuple[float, float, tuple[float, ...], tuple[float, ...]]] = {
    "unit": (MNIST_SCALE, 0.0, (0.0,), (1.0,)),
    "symmetric": (1.0 / 127.5, -1.0, (0.0,), (1.0,)),
    "imagenet": (MNIST_SCALE, 0.0, IMAGENET_MEAN, IMAGENET_STD),
    "raw": (1.0, 0.0, (0.0,), (1.0,)),
}
PREPROCESS_MODES = (*IMAGE_MODES, "mean_std", "standardize", "custom")
_HINT = "regenerate it with 'python -m convert'"

if TYPE_CHECKING:  # pathlib costs milliseconds of a device's cold start; reading needs only os.path
    from pathlib import Path


# Artifacts up to this size are hashed by the interpreter's own sha256; larger ones by
# OpenSSL's. Loading OpenSSL (libcrypto, and _hashlib's listing of every digest) costs a
# cold start ~3 ms and ~3.5 MiB of resident memory; the builtin hashes ~200 MB/s against
# OpenSSL's ~1.4 GB/s, so the two take about as long at 600 KiB to 1 MiB (measured on an
# x86 server; the ratio of the two is similar on ARM) and below that the builtin wins.
_BUILTIN_SHA256_MAX_BYTES = 1024 * 1024


def _sha256(size: int) -> Any:
    """The cheapest sha256 constructor for ``size`` bytes: identical digests either way."""
    if size <= _BUILTIN_SHA256_MAX_BYTES:
        try:
            return __import__("_sha2" if sys.version_info >= (3, 12) else "_sha256").sha256
        except ImportError:  # a Python built without its own hash modules
            pass
    try:  # OpenSSL's sha256 without hashlib's set-up of every algorithm
        from _hashlib import openssl_sha256
    except ImportError:  # a Python built without OpenSSL
        from hashlib import sha256 as openssl_sha256
    return openssl_sha256


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``; the digest format used throughout the manifest.

    Examples
    --------
    >>> sha256_hex(b"abc")[:16]
    'ba7816bf8f01cfea'
    >>> all(sha256_hex(bytes(n)) == __import__("hashlib").sha256(bytes(n)).hexdigest() for n in (10, 2**21))
    True
    """
    return _sha256(len(data))(data).hexdigest()


class InputSpec(NamedTuple):
    """What the device holds before preprocessing: an image or a feature vector.

    Attributes
    ----------
    kind : {"image", "features"}
    shape : tuple of int
        ``(height, width, channels)`` for an image (channels 1 or 3), ``(features,)``.
    color_mode : {"grayscale", "rgb"} or None
        Images only; matches ``channels``.
    interpolation : str
        How images of another size are resized (``"bilinear"``, as Keras).
    crop_to_aspect_ratio : bool
        Whether the largest centred crop of the model's aspect ratio is taken first.
    digits : bool
        MNIST-style digits (light on dark, centred by mass): images from photos go
        through :mod:`edge_runtime.digits` instead of a plain resize.
    feature_names : tuple of str
        Features only (may be empty): the CSV column names, in order.

    Examples
    --------
    >>> MNIST_INPUT.describe()
    'image 28×28 grayscale (MNIST-style digits)'
    >>> InputSpec("features", (13,), None, digits=False).describe()
    '13 features'
    """

    kind: str = "image"
    shape: tuple[int, ...] = (28, 28, 1)
    color_mode: str | None = "grayscale"
    interpolation: str = "bilinear"
    crop_to_aspect_ratio: bool = False
    digits: bool = True
    feature_names: tuple[str, ...] = ()

    @property
    def is_image(self) -> bool:
        return self.kind == "image"

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of an image input."""
        return (self.shape[0], self.shape[1])

    @property
    def channels(self) -> int:
        """Colour channels of an image, 1 for features (one value per feature)."""
        return self.shape[2] if self.is_image else 1

    @property
    def size(self) -> int:
        """Values per sample."""
        return math.prod(self.shape)

    @property
    def axis_length(self) -> int:
        """Length of the axis ``mean``/``std`` run along: channels, or features."""
        return self.shape[-1]

    def describe(self) -> str:
        """One line for ``info`` and ``/v1/model``."""
        if not self.is_image:
            return f"{self.shape[0]} features"
        extra = []
        if self.digits:
            extra.append("MNIST-style digits")
        if self.crop_to_aspect_ratio:
            extra.append("cropped to aspect ratio")
        tail = f" ({', '.join(extra)})" if extra else ""
        return f"image {self.shape[0]}×{self.shape[1]} {self.color_mode}{tail}"

    def to_json(self) -> dict[str, Any]:
        if not self.is_image:
            return {"kind": self.kind, "shape": list(self.shape), "feature_names": list(self.feature_names)}
        return {
            "kind": self.kind,
            "shape": list(self.shape),
            "color_mode": self.color_mode,
            "interpolation": self.interpolation,
            "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
            "digits": self.digits,
        }

    @classmethod
    def from_fields(cls, f: Fields) -> "InputSpec":
        """Read and cross-check an ``input`` object."""
        kind = f.text("kind", choices=INPUT_KINDS)
        shape = f.shape("shape")
        if kind == "features":
            if len(shape) != 1:
                raise f.fail(f"'{f.prefix}shape' of a feature input must be [features], got {list(shape)}")
            names = f.strings("feature_names", (), nonempty=False)
            if names and len(names) != shape[0]:
                raise f.fail(f"'{f.prefix}feature_names' has {len(names)} names for {shape[0]} features")
            return cls(kind, shape, None, digits=False, feature_names=names)
        if len(shape) != 3 or shape[2] not in (1, 3):
            raise f.fail(f"'{f.prefix}shape' of an image must be [height, width, 1 or 3], got {list(shape)}")
        color_mode = f.text("color_mode", choices=COLOR_MODES)
        if (color_mode == "rgb") != (shape[2] == 3):
            raise f.fail(f"'{f.prefix}color_mode' {color_mode} does not match {shape[2]} channel(s)")
        digits = f.flag("digits", False)
        if digits and color_mode != "grayscale":
            raise f.fail(f"'{f.prefix}digits' needs a grayscale input")
        return cls(
            kind,
            shape,
            color_mode,
            f.text("interpolation", "bilinear", choices=INTERPOLATIONS),
            f.flag("crop_to_aspect_ratio", False),
            digits,
        )


MNIST_INPUT = InputSpec()


class Preprocessing(NamedTuple):
    """How raw input becomes the model's input: ``(raw * scale + offset - mean) / std``, then the layout.

    ``mean``/``std`` have one entry (all channels alike) or one per channel (image)
    or per feature. ``model_input_shape`` is per sample (no batch axis).

    Examples
    --------
    >>> Preprocessing.for_mode("symmetric", "nhwc", (32, 32, 3))[:3]
    ('symmetric', 0.00784313725490196, -1.0)
    """

    mode: str = "unit"
    scale: float = MNIST_SCALE
    offset: float = 0.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "flat"
    model_input_shape: tuple[int, ...] = (784,)

    @classmethod
    def for_mode(
        cls,
        mode: str,
        layout: str,
        model_input_shape: tuple[int, ...],
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ) -> "Preprocessing":
        """The record for a named recipe; ``mean_std``/``standardize`` need ``mean`` and ``std``."""
        if mode in IMAGE_MODES:
            scale, offset, default_mean, default_std = IMAGE_MODES[mode]
            return cls(mode, scale, offset, default_mean, default_std, layout, tuple(model_input_shape))
        if mode in ("mean_std", "standardize"):
            if mean is None or std is None:
                raise ManifestError(f"preprocessing mode '{mode}' needs mean and std")
            return cls(mode, 1.0, 0.0, tuple(mean), tuple(std), layout, tuple(model_input_shape))
        raise ManifestError(f"unknown preprocessing mode {mode!r}; choose one of {', '.join(PREPROCESS_MODES)}")

    @property
    def standardizes(self) -> bool:
        """Whether a mean/std step follows scale and offset (the identity one is skipped)."""
        return self.mean != (0.0,) or self.std != (1.0,)

    def describe(self) -> str:
        """One line for ``info``: the arithmetic, as applied."""
        parts = [f"x * {self.scale:.6g}"]
        if self.offset:
            parts.append(f"{self.offset:+g}")
        text = " ".join(parts)
        if self.standardizes:
            text = f"({text} - mean) / std, mean {_short(self.mean)}, std {_short(self.std)}"
        return f"{self.mode}: {text} -> {self.layout} {list(self.model_input_shape)}"

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "scale": self.scale,
            "offset": self.offset,
            "mean": list(self.mean),
            "std": list(self.std),
            "layout": self.layout,
            "model_input_shape": list(self.model_input_shape),
        }

    @classmethod
    def from_fields(cls, f: Fields, spec: InputSpec) -> "Preprocessing":
        """Read a ``preprocessing`` object and check it fits ``spec``."""
        pre = cls(
            f.text("mode", "custom", choices=PREPROCESS_MODES),
            f.number("scale", positive=True),
            f.number("offset", 0.0),
            f.numbers("mean", (0.0,)),
            f.numbers("std", (1.0,), positive=True),
            f.text("layout", "flat" if len(f.shape("model_input_shape")) == 1 else "nhwc", choices=LAYOUTS),
            f.shape("model_input_shape"),
        )
        for key in ("mean", "std"):
            n = len(getattr(pre, key))
            if n not in (1, spec.axis_length):
                raise f.fail(f"'{f.prefix}{key}' has {n} entries; expected 1 or {spec.axis_length}")
        if pre.mode in IMAGE_MODES:
            scale, offset, mean, std = IMAGE_MODES[pre.mode]
            if not (math.isclose(pre.scale, scale) and math.isclose(pre.offset, offset, abs_tol=1e-12)
                    and pre.mean == mean and pre.std == std):
                raise f.fail(
                    f"'{f.prefix}mode' {pre.mode} does not match its scale/offset/mean/std; "
                    "use mode 'custom' for other values"
                )
        if math.prod(pre.model_input_shape) != spec.size:
            raise f.fail(
                f"'{f.prefix}model_input_shape' {list(pre.model_input_shape)} does not hold an input of shape "
                f"{list(spec.shape)}"
            )
        return pre


def _short(values: tuple[float, ...]) -> str:
    shown = ", ".join(f"{v:.4g}" for v in values[:4])
    return f"[{shown}{', ...' if len(values) > 4 else ''}]"


class TensorRecord(NamedTuple):
    """One artifact input or output as the converter's validation run saw it."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    quantization: tuple[float, int] | None = None

    def to_json(self) -> dict[str, Any]:
        quant = (None if self.quantization is None
                 else {"scale": self.quantization[0], "zero_point": self.quantization[1]})
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "quantization": quant}

    @classmethod
    def from_fields(cls, f: Fields) -> "TensorRecord":
        shape = f.items("shape", [])
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape):
            raise f.fail(f"'{f.prefix}shape' must be a list of integers (-1 for a dynamic axis), got {shape}")
        quant = f.obj("quantization", None)
        return cls(
            f.text("name", ""),
            tuple(shape),
            f.text("dtype", "float32"),
            None if quant is None else (quant.number("scale", positive=True), quant.integer("zero_point")),
        )


class ArtifactRecord(NamedTuple):
    """One ``artifacts[]`` entry; ``preprocessing`` is set only where it overrides the manifest's."""

    name: str
    file: str
    format: str
    precision: str
    quantization: str = "none"
    bytes: int = 0
    sha256: str = ""
    inputs: tuple[TensorRecord, ...] = ()
    outputs: tuple[TensorRecord, ...] = ()
    preprocessing: Preprocessing | None = None

    def verify(self, digest: str, artifact_path: str | os.PathLike[str]) -> None:
        """Refuse bytes (hex sha256 ``digest``) other than the ones this entry describes.

        A mismatch means a damaged copy or an artifact from a different conversion;
        in both cases the recorded preprocessing and labels cannot be trusted for it.
        """
        if not self.sha256:
            where = os.path.join(os.path.dirname(artifact_path), MANIFEST_NAME)
            raise ManifestError(f"{where}: artifact '{self.file}' has no valid 'sha256'")
        if digest != self.sha256:
            raise ManifestError(
                f"{artifact_path}: sha256 {digest[:12]}… does not match {MANIFEST_NAME} ({self.sha256[:12]}…); "
                "the file is damaged or from another conversion: copy it again or regenerate the manifest"
            )

    def summary(self) -> dict[str, Any]:
        """Name, file, format, precision, quantisation, bytes and sha256: what identifies the artifact."""
        return {k: getattr(self, k) for k in ("name", "file", "format", "precision", "quantization", "bytes", "sha256")}

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "file": self.file,
            "format": self.format,
            "precision": self.precision,
            "quantization": self.quantization,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }
        if self.preprocessing is not None:
            doc["preprocessing"] = self.preprocessing.to_json()
        return doc

    @classmethod
    def from_fields(cls, f: Fields, spec: InputSpec) -> "ArtifactRecord":
        file = f.text("file")
        if not file or os.path.basename(file) != file or file == ".":
            raise f.fail(f"'{f.prefix}file' must be a plain file name, got {file!r}")
        sha = f.text("sha256", "")
        if sha and (len(sha) != 64 or any(c not in "0123456789abcdefABCDEF" for c in sha)):
            raise f.fail(f"'{f.prefix}sha256' is not a hex sha256 digest")
        pre = f.obj("preprocessing", None)
        return cls(
            f.text("name"),
            file,
            f.text("format", choices=("tflite", "onnx")),
            f.text("precision"),
            f.text("quantization", "none"),
            f.integer("bytes", 0, minimum=0),
            sha.lower(),
            tuple(TensorRecord.from_fields(Fields(t, f.source, f.error, f"{f.prefix}inputs[{i}].", f.hint))
                  for i, t in enumerate(f.items("inputs", []))),
            tuple(TensorRecord.from_fields(Fields(t, f.source, f.error, f"{f.prefix}outputs[{i}].", f.hint))
                  for i, t in enumerate(f.items("outputs", []))),
            None if pre is None else Preprocessing.from_fields(pre, spec),
        )


class Manifest(NamedTuple):
    """A converted directory's ``manifest.json``.

    ``source_model``, ``calibration``, ``data`` and ``tool_versions`` are free-form
    records for people and tools (the runtime does not act on them); ``path`` is
    where the manifest was read from, as a string (None for one built in memory).

    Examples
    --------
    >>> m = Manifest.read("out/artifacts")  # doctest: +SKIP
    >>> m.input.describe(), [a.name for a in m.artifacts][:2]  # doctest: +SKIP
    ('image 28×28 grayscale (MNIST-style digits)', ['tflite_float32', 'tflite_float16'])
    """

    input: InputSpec
    preprocessing: Preprocessing
    class_labels: tuple[str, ...]
    artifacts: tuple[ArtifactRecord, ...]
    output_kind: str = "probabilities"
    source_model: dict[str, Any] = {}
    calibration: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    tool_versions: dict[str, str] = {}
    created: str = ""
    schema_version: int = SCHEMA_VERSION
    path: str | None = None

    def artifact(self, file: str | None = None, *, name: str | None = None) -> "ArtifactRecord":
        """The entry whose ``file`` (or ``name``) is given; ManifestError naming what is listed."""
        for entry in self.artifacts:
            if (file is not None and entry.file == file) or (name is not None and entry.name == name):
                return entry
        where = self.path or MANIFEST_NAME
        if file is None:
            names = ", ".join(a.name for a in self.artifacts) or "none"
            raise ManifestError(f"{where}: no artifact named '{name}' (available: {names})")
        listed = ", ".join(a.file for a in self.artifacts) or "none"
        raise ManifestError(
            f"{where}: does not list '{file}' (it lists: {listed}); "
            "keep each artifact next to the manifest it was converted with"
        )

    def preprocessing_for(self, artifact: ArtifactRecord) -> "Preprocessing":
        """The preprocessing ``artifact`` expects: its own, else the manifest's."""
        return artifact.preprocessing or self.preprocessing

    def to_json(self) -> dict[str, Any]:
        """The schema-2 document (a schema-1 manifest read here is written upgraded)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "tool_versions": self.tool_versions,
            "source_model": self.source_model,
            "input": self.input.to_json(),
            "preprocessing": self.preprocessing.to_json(),
            "class_labels": list(self.class_labels),
            "output_kind": self.output_kind,
            "data": self.data,
            "calibration": self.calibration,
            "artifacts": [a.to_json() for a in self.artifacts],
        }

    @classmethod
    def from_json(cls, doc: object, source: str = MANIFEST_NAME, path: str | None = None) -> "Manifest":
        """Validate a parsed document; ManifestError (one line) on the first problem."""
        f = Fields(doc, source, ManifestError, hint=_HINT)
        version = check_schema(f, SUPPORTED_SCHEMA_VERSIONS, "upgrade keras2edge or regenerate the manifest")
        if version == 1:
            spec, pre = _schema1_input(f.obj("preprocessing"))
        else:
            spec = InputSpec.from_fields(f.obj("input"))
            pre = Preprocessing.from_fields(f.obj("preprocessing"), spec)
        artifacts = tuple(
            ArtifactRecord.from_fields(Fields(a, source, ManifestError, f"artifacts[{i}].", _HINT), spec)
            for i, a in enumerate(f.items("artifacts"))
        )
        return cls(
            input=spec,
            preprocessing=pre,
            class_labels=f.strings("class_labels"),
            artifacts=artifacts,
            output_kind=f.text("output_kind", "probabilities", choices=OUTPUT_KINDS),
            source_model=f.mapping("source_model", {}),
            calibration=f.mapping("calibration", None),
            data=f.mapping("data", None),
            tool_versions=f.mapping("tool_versions", {}),
            created=f.text("created", ""),
            schema_version=version,
            path=path,
        )

    @classmethod
    def read(cls, location: str | os.PathLike[str]) -> "Manifest":
        """Read ``location`` (a ``manifest.json`` or the directory holding one)."""
        path = document_path(location, MANIFEST_NAME)
        doc = read_document(path, ManifestError, "pass a directory written by 'python -m convert'")
        return cls.from_json(doc, path, path)

    def write(self, directory: str | os.PathLike[str]) -> "Path":
        """Write ``directory/manifest.json`` atomically and return its path."""
        return write_document(directory, MANIFEST_NAME, self.to_json())


def _schema1_input(f: Fields) -> tuple[InputSpec, Preprocessing]:
    """Schema 1's ``preprocessing`` section: single-channel images, one scale and offset."""
    image_shape = f.shape("image_shape")
    if len(image_shape) != 2:
        raise f.fail(f"'preprocessing.image_shape' must be [height, width], got {list(image_shape)}")
    channels = f.integer("channels", 1, minimum=1)
    if channels not in (1, 3):
        raise f.fail(f"'preprocessing.channels' must be 1 or 3, got {channels}")
    color_mode = "grayscale" if channels == 1 else "rgb"
    digits = f.text("foreground", "light-on-dark") == "light-on-dark" and channels == 1
    spec = InputSpec("image", (*image_shape, channels), color_mode, digits=digits)
    scale, offset = f.number("scale", positive=True), f.number("offset", 0.0)
    mode = "unit" if (scale, offset) == (MNIST_SCALE, 0.0) else "custom"
    model_input_shape = f.shape("model_input_shape")
    layout = f.text("layout", "flat" if len(model_input_shape) == 1 else "nhwc", choices=LAYOUTS)
    if math.prod(model_input_shape) != spec.size:
        raise f.fail(
            f"'preprocessing.model_input_shape' {list(model_input_shape)} does not hold an image of "
            f"{list(image_shape)} x {channels} channel(s)"
        )
    return spec, Preprocessing(mode, scale, offset, (0.0,), (1.0,), layout, model_input_shape)


def default_input(model_input_shape: tuple[int, ...]) -> tuple[InputSpec, Preprocessing]:
    """What an artifact without a manifest is taken to read: MNIST-like pixels divided by 255.

    A 3-D model input is an image of that shape; a flat one is a square grayscale
    image when its size is a perfect square (784 -> 28×28, as every model this
    toolkit trains), else a ``1×N`` image.

    Examples
    --------
    >>> default_input((784,))[0].shape
    (28, 28, 1)
    """
    size = math.prod(model_input_shape)
    side = math.isqrt(size)
    if len(model_input_shape) == 3 and model_input_shape[2] in (1, 3):
        shape = tuple(model_input_shape)
    elif side * side == size:
        shape = (side, side, 1)
    else:
        shape = (1, size, 1)
    spec = InputSpec("image", shape, "grayscale" if shape[2] == 1 else "rgb", digits=shape[2] == 1)
    layout = "flat" if len(model_input_shape) == 1 else "nhwc"
    return spec, Preprocessing.for_mode("unit", layout, tuple(model_input_shape))
