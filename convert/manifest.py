"""Assembling ``manifest.json`` for a converted directory.

The record itself (fields, validation, reading and writing) belongs to
:mod:`edge_runtime.records.manifest`, which the device imports too; this module
only gathers what the converter knows into it: the source model, the input plan,
the calibration set, the data set and each validated artifact.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from convert.calibration import CalibrationData
from convert.formats import ArtifactKind
from convert.inputs import InputPlan
from convert.source import SourceModel, file_sha256
from edge_runtime.records.manifest import ArtifactRecord, Manifest, Preprocessing, TensorRecord
from train.data import Dataset


def tool_versions() -> dict[str, str]:
    """Versions of every library that shaped the artifacts' bytes."""
    from train.training import TRAINING_LIBRARIES, library_versions

    return library_versions((*TRAINING_LIBRARIES, "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert"))


def artifact_record(
    kind: ArtifactKind,
    path: Path,
    inputs: Sequence[TensorRecord],
    outputs: Sequence[TensorRecord],
    preprocessing: Preprocessing | None = None,
) -> ArtifactRecord:
    """One ``artifacts[]`` entry; size and digest are taken from the file as written."""
    return ArtifactRecord(
        name=kind.artifact_name,
        file=kind.file_name,
        format=kind.format,
        precision=kind.precision,
        quantization=kind.quantization,
        bytes=path.stat().st_size,
        sha256=file_sha256(path),
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        preprocessing=preprocessing,
    )


def build_manifest(
    source: SourceModel,
    plan: InputPlan,
    calibration: CalibrationData | None,
    data: Dataset,
    artifacts: list[ArtifactRecord],
) -> Manifest:
    """The manifest for a converted directory.

    ``source_model.path`` (the absolute path the model was converted from) lets
    ``parity`` find the Keras model; ``data`` records the data set, its split and
    what decided the preprocessing, so ``parity`` and the benchmarks default to the
    same data. ``calibration`` is None when no artifact needed calibration.
    """
    return Manifest(
        input=plan.spec,
        preprocessing=plan.preprocessing,
        class_labels=plan.class_names,
        artifacts=tuple(artifacts),
        output_kind=source.output_kind,
        source_model={
            "file": source.path.name,
            "format": source.format,
            "sha256": source.sha256,
            "name": str(source.model.name),
            "parameters": int(source.model.count_params()),
            "path": str(source.path),
        },
        calibration=calibration.describe() if calibration is not None else None,
        data={"source": data.source, "split": data.split, "load_options": data.load_options,
              "preprocessing_from": plan.decided_by},
        tool_versions=tool_versions(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
