"""The conversion pipeline: one Keras model in, validated artifacts and a manifest out.

Order matters for the user: everything that can be wrong with their input (output
directory, model file, data set, shapes) is checked first, in well under a second
plus the model load; only then do the slow converters run, inside a staging
directory that becomes ``out_dir`` only when every artifact has been written and
validated.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from convert._quiet import captured_output, quiet_libraries
from convert.calibration import CalibrationData
from convert.formats import ALL_KINDS, ArtifactKind
from convert.manifest import MANIFEST_NAME, artifact_record, build_manifest
from convert.source import SourceModel, check_fits_data, load_source_model
from edge_runtime.atomic import check_output_dir, staged_dir, write_bytes, write_json
from train.data import Dataset, load_dataset

Progress = Callable[[str], None]


def _convert_kind(
    kind: ArtifactKind,
    source: SourceModel,
    calibration: CalibrationData | None,
    stage: Path,
    scratch: Path,
) -> Path:
    """Write one artifact into ``stage`` and return its path (not yet validated)."""
    from convert.onnx_export import export_onnx
    from convert.quantize_onnx import preprocess_for_quantization, quantize_dynamic_int8, quantize_static_qdq
    from convert.tflite import convert_tflite

    target = stage / kind.file_name
    if kind.format == "tflite":
        write_bytes(target, convert_tflite(source.model, kind, calibration))
        return target
    float_path = scratch / ArtifactKind.ONNX_FLOAT32.file_name
    if not float_path.exists():
        write_bytes(float_path, export_onnx(source))
    if kind is ArtifactKind.ONNX_FLOAT32:
        write_bytes(target, float_path.read_bytes())
        return target
    prepared = scratch / "prepared.onnx"
    if not prepared.exists():
        preprocess_for_quantization(float_path, prepared)
    if kind is ArtifactKind.ONNX_INT8_STATIC:
        if calibration is None:
            raise ValueError("static int8 quantisation needs calibration data")
        quantize_static_qdq(prepared, target, calibration, source.input_name)
    else:
        quantize_dynamic_int8(prepared, target)
    return target


def _validate(kind: ArtifactKind, path: Path, num_classes: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from convert.validate import validate_onnx, validate_tflite

    check = validate_tflite if kind.format == "tflite" else validate_onnx
    with captured_output():  # LiteRT announces its XNNPACK delegate on stderr
        return check(path, num_classes)


def convert_model(
    model_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    dataset: Dataset | str | os.PathLike[str] | None = None,
    formats: Sequence[ArtifactKind] | None = None,
    calibration_samples: int = 500,
    seed: int = 0,
    force: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Convert a Keras model to TFLite/ONNX artifacts and write ``out_dir/manifest.json``.

    Parameters
    ----------
    model_path : str or path
        A ``.keras`` file with one image input and one ``(batch, classes)`` output.
    out_dir : str or path
        Directory to create. It appears only when every artifact is written and
        validated; an existing one is refused unless ``force`` is true.
    dataset : Dataset, str, path or None
        Data whose **training** split calibrates the int8 artifacts, and whose image
        shape the model must accept. A :class:`~train.data.Dataset` or anything
        :func:`train.data.load_dataset` accepts; ``None`` is the bundled MNIST.
    formats : sequence of ArtifactKind or str, optional
        Which artifacts to write, as kinds or manifest names such as
        ``"tflite_int8"`` (default: all seven).
    calibration_samples : int
        Number of training images used to calibrate full-integer / static int8.
    seed : int
        Seed choosing those images.
    force : bool
        Replace an existing ``out_dir``.
    progress : callable, optional
        Called with one line per artifact (name, size, seconds).

    Returns
    -------
    dict
        The manifest that was written.

    Raises
    ------
    Keras2EdgeError
        Any problem with the inputs (see :mod:`convert.source`), or an artifact that
        failed validation. Nothing is left in or next to ``out_dir``.

    Examples
    --------
    >>> manifest = convert_model("out/model/model.keras", "out/artifacts", force=True)  # doctest: +SKIP
    >>> [a["name"] for a in manifest["artifacts"]][:2]  # doctest: +SKIP
    ['tflite_float32', 'tflite_float16']
    """
    quiet_libraries()
    say = progress or (lambda line: None)
    kinds = tuple(k if isinstance(k, ArtifactKind) else ArtifactKind.from_name(k) for k in formats) if formats else ALL_KINDS
    check_output_dir(out_dir, force)
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    source = load_source_model(model_path)
    check_fits_data(source, data.image_shape, data.num_classes)
    calibration = None
    if any(kind.needs_calibration for kind in kinds):
        calibration = CalibrationData(data, source.input_shape, calibration_samples, seed)

    records: list[dict[str, Any]] = []
    with staged_dir(out_dir, force=force) as stage, tempfile.TemporaryDirectory(prefix="keras2edge-convert-") as tmp:
        for kind in kinds:
            started = time.perf_counter()
            path = _convert_kind(kind, source, calibration, stage, Path(tmp))
            inputs, outputs = _validate(kind, path, source.num_outputs)
            records.append(artifact_record(kind, path, inputs, outputs))
            say(f"{kind.artifact_name:<20} {path.stat().st_size / 1024:>9.1f} KiB  {time.perf_counter() - started:6.1f} s")
        manifest = build_manifest(source, data.image_shape, calibration, records)
        write_json(stage / MANIFEST_NAME, manifest)
    return manifest
