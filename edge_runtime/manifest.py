"""Reading ``manifest.json``, the record the converter leaves beside its artifacts.

The manifest is what makes an artifact self-describing on a device: how pixels are
scaled and laid out, what the classes are called, whether the output is already a
probability, and the sha256 each artifact had when it was written. The runtime trusts
nothing in it blindly: every field it uses is type-checked here, so a damaged or
hand-edited manifest fails with one :class:`~edge_runtime.errors.ManifestError` at
load time instead of a confusing failure later in ``predict``.

Only the standard library and numpy are needed.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, NamedTuple

from edge_runtime.errors import ManifestError

MANIFEST_NAME = "manifest.json"
SUPPORTED_SCHEMA_VERSIONS = (1,)
MNIST_SCALE = 1.0 / 255.0


class Preprocessing(NamedTuple):
    """How raw pixels become the model's input tensor.

    ``model_input_shape`` is per sample (no batch dimension); ``image_shape`` and
    ``channels`` describe the raw image a caller may pass instead.
    """

    image_shape: tuple[int, int] = (28, 28)
    channels: int = 1
    scale: float = MNIST_SCALE
    offset: float = 0.0
    model_input_shape: tuple[int, ...] = (784,)
    layout: str = "flat"
    foreground: str = "light-on-dark"


class Manifest(NamedTuple):
    """The parts of ``manifest.json`` the runtime uses, plus the raw document.

    ``artifact`` is this artifact's entry in ``artifacts`` (the one whose ``file``
    is the loaded file's name).
    """

    path: Path
    preprocessing: Preprocessing
    class_labels: tuple[str, ...]
    output_kind: str
    artifact: dict[str, Any]
    raw: dict[str, Any]


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``; the digest format used throughout the manifest."""
    return hashlib.sha256(data).hexdigest()


def _require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, path: Path) -> Any:
    if key not in obj:
        raise ManifestError(f"{path}: '{where}{key}' is missing; regenerate the manifest with python -m convert")
    value = obj[key]
    # bool is an int subclass, but no manifest field is a boolean: a JSON true is an error.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ManifestError(f"{path}: '{where}{key}' has the wrong type ({type(value).__name__})")
    return value


def _int_list(value: Any, key: str, path: Path) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ManifestError(f"{path}: 'preprocessing.{key}' must be a non-empty list of positive integers, got {value!r}")
    return tuple(value)


def _parse_preprocessing(pre: dict[str, Any], path: Path) -> Preprocessing:
    image_shape = _int_list(_require(pre, "image_shape", list, "preprocessing.", path), "image_shape", path)
    if len(image_shape) != 2:
        raise ManifestError(f"{path}: 'preprocessing.image_shape' must be [height, width], got {list(image_shape)}")
    channels = _require(pre, "channels", int, "preprocessing.", path)
    scale = float(_require(pre, "scale", (int, float), "preprocessing.", path))
    offset = float(_require(pre, "offset", (int, float), "preprocessing.", path)) if "offset" in pre else 0.0
    model_input_shape = _int_list(_require(pre, "model_input_shape", list, "preprocessing.", path), "model_input_shape", path)
    if channels < 1 or not math.isfinite(scale) or scale <= 0 or not math.isfinite(offset):
        raise ManifestError(f"{path}: 'preprocessing' has an invalid channels/scale/offset ({channels}, {scale}, {offset})")
    if math.prod(model_input_shape) != math.prod(image_shape) * channels:
        raise ManifestError(
            f"{path}: 'preprocessing.model_input_shape' {list(model_input_shape)} does not hold an image of "
            f"{list(image_shape)} x {channels} channel(s)"
        )
    return Preprocessing(
        image_shape=(image_shape[0], image_shape[1]),
        channels=channels,
        scale=scale,
        offset=offset,
        model_input_shape=model_input_shape,
        layout=str(pre.get("layout", "flat" if len(model_input_shape) == 1 else "nhwc")),
        foreground=str(pre.get("foreground", "light-on-dark")),
    )


def find_manifest(artifact_path: Path) -> Path | None:
    """The ``manifest.json`` beside ``artifact_path``, or ``None`` if there is none."""
    candidate = artifact_path.parent / MANIFEST_NAME
    return candidate if candidate.is_file() else None


def read_manifest(manifest_path: Path, artifact_file: str) -> Manifest:
    """Parse and validate ``manifest_path`` and select the entry for ``artifact_file``.

    Parameters
    ----------
    manifest_path : Path
        The ``manifest.json`` to read.
    artifact_file : str
        File name (not path) of the artifact being loaded; it must be listed.

    Returns
    -------
    Manifest

    Raises
    ------
    ManifestError
        Unreadable or invalid JSON, an unsupported schema version, a missing or
        mistyped field, or no entry for ``artifact_file``.

    Examples
    --------
    >>> m = read_manifest(Path("out/manifest.json"), "tflite_int8.tflite")  # doctest: +SKIP
    >>> m.preprocessing.model_input_shape  # doctest: +SKIP
    (784,)
    """
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ManifestError(f"{manifest_path}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{manifest_path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{manifest_path}: expected a JSON object at the top level")
    version = raw.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ManifestError(
            f"{manifest_path}: unsupported schema_version {version!r} (this runtime reads {list(SUPPORTED_SCHEMA_VERSIONS)}); "
            "upgrade keras2edge or regenerate the manifest"
        )
    pre = _parse_preprocessing(_require(raw, "preprocessing", dict, "", manifest_path), manifest_path)
    labels = _require(raw, "class_labels", list, "", manifest_path)
    if not labels or not all(isinstance(label, str) for label in labels):
        raise ManifestError(f"{manifest_path}: 'class_labels' must be a non-empty list of strings")
    output_kind = raw.get("output_kind", "probabilities")
    if output_kind not in ("probabilities", "logits"):
        raise ManifestError(f"{manifest_path}: 'output_kind' must be 'probabilities' or 'logits', got {output_kind!r}")
    artifacts = _require(raw, "artifacts", list, "", manifest_path)
    entries = [a for a in artifacts if isinstance(a, dict) and a.get("file") == artifact_file]
    if not entries:
        listed = ", ".join(str(a.get("file")) for a in artifacts if isinstance(a, dict)) or "none"
        raise ManifestError(
            f"{manifest_path}: does not list '{artifact_file}' (it lists: {listed}); "
            "keep each artifact next to the manifest it was converted with"
        )
    entry = entries[0]
    digest = entry.get("sha256")
    if not isinstance(digest, str) or len(digest) != 64:
        raise ManifestError(f"{manifest_path}: artifact '{artifact_file}' has no valid 'sha256'")
    return Manifest(
        path=manifest_path,
        preprocessing=pre,
        class_labels=tuple(labels),
        output_kind=output_kind,
        artifact=entry,
        raw=raw,
    )


def verify_sha256(manifest: Manifest, digest: str, artifact_path: Path) -> None:
    """Refuse an artifact whose bytes are not the ones the manifest describes.

    A mismatch means a damaged copy or an artifact from a different conversion; in
    both cases the recorded preprocessing and labels cannot be trusted for it.

    Raises
    ------
    ManifestError
        The digests differ.
    """
    expected = manifest.artifact["sha256"]
    if digest != expected.lower():
        raise ManifestError(
            f"{artifact_path}: sha256 {digest[:12]}… does not match {manifest.path.name} ({expected[:12]}…); "
            "the file is damaged or from another conversion: copy it again or regenerate the manifest"
        )


def default_preprocessing(model_input_shape: tuple[int, ...]) -> Preprocessing:
    """MNIST defaults for an artifact without a manifest.

    The image is taken to be square and single-channel when the model's per-sample
    input size is a perfect square (784 -> 28×28), as for every model this toolkit
    trains; otherwise the image shape is the model input itself.
    """
    size = math.prod(model_input_shape)
    side = math.isqrt(size)
    if len(model_input_shape) == 3:
        image_shape = (model_input_shape[0], model_input_shape[1])
        channels = model_input_shape[2]
    elif side * side == size:
        image_shape, channels = (side, side), 1
    else:
        image_shape, channels = (1, size), 1
    return Preprocessing(
        image_shape=image_shape,
        channels=channels,
        model_input_shape=model_input_shape,
        layout="flat" if len(model_input_shape) == 1 else "nhwc",
    )
