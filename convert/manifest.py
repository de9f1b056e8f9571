"""``manifest.json``: the contract between the converter and everything that runs artifacts.

The runtime, benchmarks and the device bundle never import TensorFlow, so they
learn everything about an artifact (preprocessing, layout, int8 scales, class
labels) from this file. Its schema is fixed by ``SCHEMA_VERSION``; a change that
readers must notice bumps the version.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from convert.calibration import CalibrationData
from convert.formats import ArtifactKind
from convert.source import SourceModel, file_sha256
from edge_runtime.errors import ManifestError
from train.data import PIXEL_SCALE

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"


def tool_versions() -> dict[str, str]:
    """Versions of every library that shaped the artifacts' bytes."""
    from train.training import TRAINING_LIBRARIES, library_versions

    return library_versions((*TRAINING_LIBRARIES, "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert"))


def preprocessing_record(source: SourceModel, image_shape: tuple[int, int]) -> dict[str, Any]:
    """How raw uint8 images become the model's input: ``x * scale + offset``, then reshape."""
    return {
        "image_shape": list(image_shape),
        "channels": 1,
        "scale": PIXEL_SCALE,
        "offset": 0.0,
        "model_input_shape": list(source.input_shape),
        "layout": source.layout,
        "foreground": "light-on-dark",
    }


def artifact_record(kind: ArtifactKind, path: Path, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``artifacts[]`` entry; size and digest are taken from the file as written."""
    return {
        "name": kind.artifact_name,
        "file": kind.file_name,
        "format": kind.format,
        "precision": kind.precision,
        "quantization": kind.quantization,
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "inputs": inputs,
        "outputs": outputs,
    }


def build_manifest(
    source: SourceModel,
    image_shape: tuple[int, int],
    calibration: CalibrationData | None,
    artifacts: list[dict[str, Any]],
) -> dict[str, Any]:
    """Assemble the manifest for a converted directory.

    ``source_model.path`` (the absolute path the model was converted from) is an
    addition to the contract's fields; ``parity`` uses it to find the Keras model.
    ``calibration`` is null when no artifact needed calibration.
    """
    return {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tool_versions": tool_versions(),
        "source_model": {
            "file": source.path.name,
            "sha256": source.sha256,
            "name": str(source.model.name),
            "parameters": int(source.model.count_params()),
            "path": str(source.path),
        },
        "preprocessing": preprocessing_record(source, image_shape),
        "class_labels": [str(i) for i in range(source.num_outputs)],
        "output_kind": source.output_kind,
        "calibration": calibration.describe() if calibration is not None else None,
        "artifacts": artifacts,
    }


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Read ``directory/manifest.json`` and check the fields parity relies on.

    Raises
    ------
    ManifestError
        The file is missing, not JSON, of another schema version, or lacks artifacts.
    """
    path = Path(directory) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{directory}: no {MANIFEST_NAME}; pass a directory written by 'python -m convert'") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(f"{path}: unsupported manifest schema_version (expected {SCHEMA_VERSION})")
    if not isinstance(manifest.get("artifacts"), list) or not manifest["artifacts"]:
        raise ManifestError(f"{path}: manifest lists no artifacts")
    for key in ("preprocessing", "source_model"):
        if not isinstance(manifest.get(key), dict):
            raise ManifestError(f"{path}: manifest has no '{key}' section; regenerate it with 'python -m convert'")
    for entry in manifest["artifacts"]:
        missing = [k for k in ("name", "file", "format", "precision") if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise ManifestError(f"{path}: an artifact entry lacks {', '.join(missing)}; regenerate it with 'python -m convert'")
    return manifest
