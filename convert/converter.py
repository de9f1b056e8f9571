"""The conversion pipeline: one Keras model in, validated artifacts and a manifest out.

Order matters for the user: everything that can be wrong with their input (output
directory, model file, data set, shapes, preprocessing options) is checked first, in
well under a second plus the model load; only then do the slow converters run,
inside a staging directory that becomes ``out_dir`` only when every artifact has
been written and validated, with ``manifest.json`` and ``samples.npz``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from convert._quiet import captured_output, quiet_libraries
from convert.calibration import CalibrationData
from convert.formats import ALL_KINDS, ArtifactKind
from convert.inputs import InputPlan, PreprocessOptions, plan_input
from convert.manifest import artifact_record, build_manifest
from convert.source import SourceModel, load_source_model
from edge_runtime.atomic import check_output_dir, staged_dir, write_bytes
from edge_runtime.records.manifest import Manifest, TensorRecord
from edge_runtime.records.training import TrainingRecord
from edge_runtime.sample_set import write_samples
from train.data import Dataset, load_dataset
from train.data_options import merge_load_options

Progress = Callable[[str], None]
# Test inputs saved as samples.npz for the device's self-test, health check and benchmarks.
SAMPLE_COUNT = 32
# Enough for stable activation ranges; a smaller training split is used whole.
DEFAULT_CALIBRATION_SAMPLES = 500


def _convert_kind(
    kind: ArtifactKind,
    source: SourceModel,
    calibration: CalibrationData | None,
    stage: Path,
    scratch: Path,
) -> Path:
    """Write one artifact into ``stage`` and return its path (not yet validated).

    ``scratch`` caches the float ONNX export (and its quantisation-ready form) of
    each source model: the full model, and the one without its Normalization layer
    that the full-integer artifacts of a feature model are made from.
    """
    from convert.onnx_export import export_onnx
    from convert.quantize_onnx import preprocess_for_quantization, quantize_dynamic_int8, quantize_static_qdq
    from convert.tflite import convert_tflite

    target = stage / kind.file_name
    if kind.format == "tflite":
        write_bytes(target, convert_tflite(source.model, kind, calibration))
        return target
    tag = f"model-{id(source.model)}"
    float_path = scratch / f"{tag}.onnx"
    if not float_path.exists():
        write_bytes(float_path, export_onnx(source))
    if kind is ArtifactKind.ONNX_FLOAT32:
        write_bytes(target, float_path.read_bytes())
        return target
    prepared = scratch / f"{tag}.prepared.onnx"
    if not prepared.exists():
        preprocess_for_quantization(float_path, prepared)
    if kind is ArtifactKind.ONNX_INT8_STATIC:
        if calibration is None:
            raise ValueError("static int8 quantisation needs calibration data")
        quantize_static_qdq(prepared, target, calibration, source.input_name)
    else:
        quantize_dynamic_int8(prepared, target)
    return target


def _validate(kind: ArtifactKind, path: Path, num_classes: int) -> tuple[list[TensorRecord], list[TensorRecord]]:
    from convert.validate import validate_onnx, validate_tflite

    check = validate_tflite if kind.format == "tflite" else validate_onnx
    with captured_output():  # LiteRT announces its XNNPACK delegate on stderr
        return check(path, num_classes)


def image_options(source: SourceModel, training: TrainingRecord | None) -> dict:
    """How to load images for this model: its size and colour mode (the data set's own otherwise).

    ``load_dataset`` keyword arguments; empty for a flat-input model with no
    training record, whose data decide their own size.
    """
    if training is not None and training.input.is_image:
        spec = training.input
        return {"image_size": spec.image_size, "color_mode": spec.color_mode,
                "crop_to_aspect_ratio": spec.crop_to_aspect_ratio}
    shape = source.input_shape
    if len(shape) == 3 and shape[2] in (1, 3):
        return {"image_size": (shape[0], shape[1]), "color_mode": "rgb" if shape[2] == 3 else "grayscale"}
    return {}


def sample_indices(labels: np.ndarray, count: int = SAMPLE_COUNT, seed: int = 0) -> np.ndarray:
    """``count`` test positions drawn at random (seeded), sorted, so every class tends to appear.

    Examples
    --------
    >>> sample_indices(np.arange(100) % 4, count=5).tolist()
    [26, 30, 50, 61, 81]
    """
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(len(labels), size=min(count, len(labels)), replace=False))


def convert_model(
    model_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    dataset: Dataset | str | os.PathLike[str] | None = None,
    data_options: Mapping[str, Any] | None = None,
    formats: Sequence[ArtifactKind | str] | None = None,
    calibration_samples: int | None = None,
    seed: int = 0,
    preprocess: PreprocessOptions = PreprocessOptions(),
    force: bool = False,
    progress: Progress | None = None,
) -> Manifest:
    """Convert a Keras model to TFLite/ONNX artifacts with ``manifest.json`` and ``samples.npz``.

    Parameters
    ----------
    model_path : str or path
        A ``.keras`` or ``.h5`` file or a SavedModel directory, with one input (an
        image ``(H, W, C)``, a flattened image or a feature vector) and one
        ``(batch, classes)`` output (probabilities or logits).
    out_dir : str or path
        Directory to create. It appears only when every artifact is written and
        validated; an existing one is refused unless ``force`` is true.
    dataset : Dataset, str, path or None
        Data whose **training** split calibrates the int8 artifacts and whose test
        split gives ``samples.npz``. A :class:`~train.data.Dataset` or anything
        :func:`train.data.load_dataset` accepts (loaded at the model's image size
        and colour mode); ``None`` is the data the model was trained on when its
        ``training.json`` says (read with the same options: the same split), else
        the bundled MNIST.
    data_options : mapping, optional
        ``load_dataset`` keywords the user gave (``None`` values are ignored); they
        override the image size, colour mode and crop taken from the model or its
        ``training.json``.
    formats : sequence of ArtifactKind or str, optional
        Which artifacts to write, as kinds or manifest names such as
        ``"tflite_int8"`` (default: all seven).
    calibration_samples : int or None
        Number of training inputs used to calibrate full-integer / static int8;
        None: :data:`DEFAULT_CALIBRATION_SAMPLES`, or the whole training split when
        it is smaller.
    seed : int
        Seed choosing those inputs and the samples.
    preprocess : PreprocessOptions
        ``--preprocess`` / ``--mean`` / ``--std``; see :mod:`convert.inputs` for
        what is used when they are not given.
    force : bool
        Replace an existing ``out_dir``.
    progress : callable, optional
        Called with one line per step (preprocessing decision, each artifact's
        name, size and seconds).

    Returns
    -------
    Manifest
        The manifest that was written.

    Raises
    ------
    Keras2EdgeError
        Any problem with the inputs (see :mod:`convert.source`, :mod:`convert.inputs`),
        or an artifact that failed validation. Nothing is left in or next to ``out_dir``.

    Examples
    --------
    >>> manifest = convert_model("out/model/model.keras", "out/artifacts", force=True)  # doctest: +SKIP
    >>> [a.name for a in manifest.artifacts][:2]  # doctest: +SKIP
    ['tflite_float32', 'tflite_float16']
    """
    quiet_libraries()
    say = progress or (lambda line: None)
    kinds = (tuple(k if isinstance(k, ArtifactKind) else ArtifactKind.from_name(k) for k in formats)
             if formats else ALL_KINDS)
    check_output_dir(out_dir, force)
    source = load_source_model(model_path)
    training = TrainingRecord.beside(source.path) if source.format != "saved_model" else None
    if isinstance(dataset, Dataset):
        data = dataset
    else:
        recorded = None
        if dataset is None and training is not None:  # the data it was trained on, read the same way (same split)
            dataset = training.dataset.get("source")
            recorded = training.dataset.get("load_options")
        options = merge_load_options(recorded, image_options(source, training), given=data_options)
        data = load_dataset(dataset, **options)
    plan: InputPlan = plan_input(source, data, preprocess, training)
    say(f"input: {plan.spec.describe()}; preprocessing {plan.preprocessing.describe()} (from {plan.decided_by})")
    int8_source = source
    if plan.int8_preprocessing is not None:
        int8_source = source.without_normalization()
        say(f"full-integer artifacts take standardised features: {plan.int8_preprocessing.describe()}")
    calibration = None
    if any(kind.needs_calibration for kind in kinds):
        if calibration_samples is None:
            calibration_samples = min(DEFAULT_CALIBRATION_SAMPLES, len(data.x_train))
        calibration = CalibrationData(data, plan.int8_preprocessing or plan.preprocessing, calibration_samples, seed)
    records = []
    with staged_dir(out_dir, force=force) as stage, tempfile.TemporaryDirectory(prefix="keras2edge-convert-") as tmp:
        for kind in kinds:
            started = time.perf_counter()
            model = int8_source if kind.needs_calibration else source
            path = _convert_kind(kind, model, calibration, stage, Path(tmp))
            inputs, outputs = _validate(kind, path, source.num_outputs)
            override = plan.int8_preprocessing if kind.needs_calibration else None
            records.append(artifact_record(kind, path, inputs, outputs, override))
            say(f"{kind.artifact_name:<20} {path.stat().st_size / 1024:>9.1f} KiB  "
                f"{time.perf_counter() - started:6.1f} s")
        manifest = build_manifest(source, plan, calibration, data, records)
        manifest.write(stage)
        chosen = sample_indices(data.y_test, seed=seed)
        raw = data.x_test[chosen]
        write_samples(stage, raw, data.y_test[chosen], chosen, source.probabilities(raw, plan.preprocessing))
    return manifest
