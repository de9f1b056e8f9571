"""``python -m convert mcu``: a converted int8 model as C++ sources for TensorFlow Lite Micro.

The export answers on the build machine what a firmware developer would otherwise
find out on the board: the model bytes to compile in, the operators to register,
how large the tensor arena must be, how to quantise an input, and whether the micro
runtime agrees with LiteRT. It refuses what a microcontroller cannot run before it
writes anything.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from convert.mcu import csource, micro, ops
from convert.parity import load_test_data
from edge_runtime.atomic import check_output_dir, staged_dir, write_json, write_text
from edge_runtime.errors import BackendError, DataError, ManifestError, ModelLoadError
from edge_runtime.files import read_user_file
from edge_runtime.records.manifest import Manifest
from train.data import Dataset

MCU_SCHEMA_VERSION = 1
DEFAULT_ARTIFACT = "tflite_int8"
SOURCE_FILES = ("model_data.h", "model_data.cc", "model_ops.h", "model_io.h")
REPORT_FILES = ("mcu.json", "mcu.md")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class McuSource:
    """What the export needs to know from a converted directory's manifest.

    Attributes
    ----------
    artifact : str
        The artifact's name (``tflite_int8``).
    file : Path
        Its file.
    format, quantization : str
        As recorded (``tflite``, ``full_integer``).
    model_name : str
        The source model's name, from which C identifiers are derived.
    class_labels : tuple of str
        One per output.
    output_kind : str
        ``probabilities`` or ``logits``.
    preprocessing : dict
        The preprocessing record, copied into ``model_io.h`` field by field.
    pixel_shape : tuple of int or None
        Shape of one raw uint8 image as ``Model.predict`` takes it (``(H, W)`` or
        ``(H, W, C)``); None when the input is not pixels.
    pixel_channels : int
        Channels of that image.
    full_integer : tuple of str
        The names of the directory's full-integer TFLite artifacts, to suggest.
    manifest : Manifest
        The whole record (the test data are loaded as it describes the input).
    """

    artifact: str
    file: Path
    format: str
    quantization: str
    model_name: str
    class_labels: tuple[str, ...]
    output_kind: str
    preprocessing: dict[str, Any]
    pixel_shape: tuple[int, ...] | None
    pixel_channels: int
    full_integer: tuple[str, ...]
    manifest: Manifest


def read_source(directory: str | os.PathLike[str], artifact: str) -> McuSource:
    """Read what the export needs from ``directory/manifest.json`` (through its record).

    The one place that knows the manifest's fields, so a new manifest format
    changes this function only.

    Raises
    ------
    ManifestError
        No valid manifest, or ``artifact`` is not listed in it.
    """
    manifest = Manifest.read(directory)
    names = [a.name for a in manifest.artifacts]
    if artifact not in names:
        raise ManifestError(f"--artifact {artifact!r} is not in {manifest.path}; choose one of {', '.join(names)}")
    entry = manifest.artifact(name=artifact)
    spec = manifest.input
    pixel_shape = None
    if spec.is_image:
        pixel_shape = spec.image_size if spec.channels == 1 else spec.shape
    return McuSource(
        artifact=artifact,
        file=Path(directory) / entry.file,
        format=entry.format,
        quantization=entry.quantization,
        model_name=str(manifest.source_model.get("name", "model")),
        class_labels=manifest.class_labels,
        output_kind=manifest.output_kind,
        preprocessing={"input_kind": spec.kind, "input_shape": list(spec.shape), "color_mode": spec.color_mode or "",
                       **manifest.preprocessing_for(entry).to_json()},
        pixel_shape=pixel_shape,
        pixel_channels=spec.channels,
        full_integer=tuple(a.name for a in manifest.artifacts
                           if a.format == "tflite" and a.quantization == "full_integer"),
        manifest=manifest,
    )


def _suggestion(source: McuSource) -> str:
    if source.full_integer:
        return f"use --artifact {source.full_integer[0]}"
    return "convert the model with --formats tflite_int8 and use --artifact tflite_int8"


def check_exportable(source: McuSource, data: bytes, flash_bytes: int | None) -> list[str]:
    """Refuse what TensorFlow Lite Micro cannot run or the target cannot hold; return the ops.

    Parameters
    ----------
    source : McuSource
        The artifact as the manifest describes it.
    data : bytes
        The artifact's bytes (the manifest may be stale: the flatbuffer is checked too).
    flash_bytes : int or None
        The flash available for the model, if the user gave it.

    Returns
    -------
    list of str
        The builtin operators the model uses, in order of first use.

    Raises
    ------
    BackendError
        Not a full-integer TFLite model (float or dynamic-range), an operator TFLite
        Micro lacks, or larger than ``flash_bytes``.
    ModelLoadError
        The flatbuffer is damaged.
    """
    full_int8 = "microcontrollers need a full-integer int8 model"
    if source.format != "tflite" or source.quantization != "full_integer":
        raise BackendError(
            f"--artifact {source.artifact!r} is a {source.format} model with {source.quantization} quantisation; "
            f"{full_int8}: {_suggestion(source)}"
        )
    floats = ops.float_tensors(data)
    if floats:
        raise BackendError(
            f"--artifact {source.artifact!r} computes in floating point "
            f"({len(floats)} float tensors, e.g. {floats[0]!r}) "
            f"although its manifest says full_integer; {full_int8}: {_suggestion(source)}"
        )
    used = ops.model_operators(data)
    missing = ops.unsupported_operators(used)
    if missing:
        raise BackendError(
            f"--artifact {source.artifact!r} uses {', '.join(missing)}, which TensorFlow Lite Micro has no kernel for; "
            "change the model to avoid them"
        )
    if flash_bytes is not None and len(data) > flash_bytes:
        raise BackendError(
            f"--artifact {source.artifact!r} is {len(data)} bytes, more than --flash-bytes {flash_bytes} "
            f"(over by {len(data) - flash_bytes} bytes)"
        )
    return used


def pixel_table(model: Any, pixel_shape: tuple[int, ...], channels: int) -> np.ndarray:
    """The model input value of every raw pixel value, per channel, from the runtime itself.

    Feeding 256 images that are each one pixel value everywhere through
    :meth:`edge_runtime.Model.prepare` gives, for each value, exactly what the
    runtime (and so the parity measurement) feeds the interpreter, rounding
    included; firmware that looks its input up in this table cannot drift from it.

    Returns
    -------
    numpy.ndarray
        ``(channels, 256)`` in the model input's dtype.

    Raises
    ------
    ManifestError
        The preprocessing is not one mapping per channel with channels last (then
        it cannot be a table).
    """
    levels = np.arange(256, dtype=np.uint8).reshape(256, *([1] * len(pixel_shape)))
    prepared = model.prepare(np.ascontiguousarray(np.broadcast_to(levels, (256, *pixel_shape))))
    per_channel = prepared.reshape(256, -1, channels)
    table = per_channel[:, 0, :]
    if not np.array_equal(per_channel, np.broadcast_to(table[:, None, :], per_channel.shape)):
        raise ManifestError(
            "the input preprocessing differs between pixels of one channel; it cannot be written as a table"
        )
    return np.ascontiguousarray(table.T)


def _test_split(manifest: Manifest, dataset: Dataset | str | os.PathLike[str] | None,
                data_options: Mapping[str, Any] | None, samples: int | None) -> tuple[np.ndarray, np.ndarray, str]:
    data = load_test_data(manifest, dataset, data_options)
    total = len(data.x_test)
    if samples is not None and samples > total:
        raise DataError(f"--test-samples {samples} exceeds the {total} test images of {data.source}")
    n = total if samples is None else samples
    return data.x_test[:n], data.y_test[:n], data.source


def _require_int8(source: McuSource, which: str, tensor: dict[str, Any]) -> None:
    if tensor["dtype"] != "int8":
        raise BackendError(
            f"--artifact {source.artifact!r} has a {tensor['dtype']} {which}; this export needs int8 input and output: "
            f"{_suggestion(source)}"
        )


def export_mcu(
    artifact_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    artifact: str = DEFAULT_ARTIFACT,
    dataset: Dataset | str | os.PathLike[str] | None = None,
    data_options: Mapping[str, Any] | None = None,
    flash_bytes: int | None = None,
    test_samples: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the TensorFlow Lite Micro sources, the memory needs and a parity report.

    Parameters
    ----------
    artifact_dir : str or path
        A directory written by ``python -m convert``.
    out : str or path
        The directory to create: ``model_data.h``, ``model_data.cc``,
        ``model_ops.h``, ``model_io.h``, ``mcu.json`` and ``mcu.md``.
    artifact : str
        The artifact's name in the manifest; must be full-integer int8 TFLite.
    dataset : Dataset, str, path or None
        Data whose test split measures parity; None is the data set the manifest
        records (the one the artifacts were converted with).
    data_options : mapping, optional
        ``load_dataset`` keywords the user gave (see :func:`convert.parity.load_test_data`).
    flash_bytes : int, optional
        Refuse a model larger than this.
    test_samples : int, optional
        Use only the first this many test images (default: all).
    force : bool
        Replace ``out`` if it exists.
    progress : callable, optional
        Called with one line per step.

    Returns
    -------
    dict
        The ``mcu.json`` document.

    Raises
    ------
    OutputExistsError
        ``out`` exists and ``force`` is false (checked before any work).
    BackendError
        tflite-micro is not installed, or the model is not one a microcontroller runs
        (see :func:`check_exportable`).
    ManifestError, ModelLoadError, DataError
        Bad directory, artifact or data.

    Examples
    --------
    >>> report = export_mcu("out/artifacts", "out/mcu")  # doctest: +SKIP
    >>> report["arena"]["recommended_bytes"], report["parity"]["agreement"]  # doctest: +SKIP
    (13072, 1.0)
    """
    say = progress or (lambda line: None)
    check_output_dir(out, force)
    runtime = micro.micro_runtime()
    source = read_source(artifact_dir, artifact)
    data = read_user_file(source.file, ModelLoadError, "a .tflite artifact")
    used = check_exportable(source, data, flash_bytes)
    images, labels, data_source = _test_split(source.manifest, dataset, data_options, test_samples)

    import edge_runtime
    from convert._quiet import captured_output

    with captured_output():  # LiteRT announces its delegate on stderr
        model = edge_runtime.load(source.file, backend="litert", threads=1)  # checks the sha256 in the manifest
    inputs = model.prepare(images)
    measured = micro.measure_arena(runtime, data, inputs[:1])
    arena = micro.arena_budget(measured)
    say(f"arena: {measured} bytes measured, {arena['recommended_bytes']} with the margin")
    input_tensor, output_tensor = micro.io_details(runtime, data, arena["recommended_bytes"])
    _require_int8(source, "input", input_tensor)
    _require_int8(source, "output", output_tensor)
    say(f"parity: {len(inputs)} test images in TensorFlow Lite Micro and LiteRT")
    micro_out, seconds = micro.run_micro(runtime, data, arena["recommended_bytes"], inputs)
    litert_out = micro.litert_outputs(data, inputs, delegates=True)
    builtin_out = micro.litert_outputs(data, inputs, delegates=False)
    table = pixel_table(model, source.pixel_shape, source.pixel_channels) if source.pixel_shape else None

    from train.training import library_versions

    names = csource.CNames.for_model(source.model_name)
    versions = library_versions(("keras2edge", "tflite-micro", "ai-edge-litert"))
    record = {
        "schema_version": MCU_SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "artifact": {"name": source.artifact, "file": source.file.name, "bytes": len(data), "sha256": model.sha256},
        "model": {"name": source.model_name, **names._asdict()},
        "files": [*SOURCE_FILES, *REPORT_FILES],
        "flash": {"model_bytes": len(data), "limit_bytes": flash_bytes},
        "arena": {
            **arena,
            "measured_with": f"tflite-micro {versions.get('tflite-micro', '?')} Python interpreter "
            f"({platform.machine()}, reference kernels)",
        },
        "ops": used,
        "resolver": {
            "type": f"tflite::MicroMutableOpResolver<{len(used)}>",
            "calls": [ops.MICRO_OPS[op] for op in used],
        },
        "input": input_tensor,
        "output": output_tensor,
        "output_kind": source.output_kind,
        "class_labels": list(source.class_labels),
        "preprocessing": source.preprocessing,
        "pixel_table": table is not None,
        "parity": {
            "data": data_source,
            "images": len(inputs),
            "inputs": "the int8 tensors edge_runtime's Model.prepare makes from the raw test images, "
                      "the same for every interpreter",
            "accuracy_micro": float(np.mean(micro.top1(micro_out) == labels)),
            "accuracy_litert": float(np.mean(micro.top1(litert_out) == labels)),
            "litert": {
                "reference": f"LiteRT {versions.get('ai-edge-litert', '?')} as edge_runtime runs it (XNNPACK delegate)",
                **micro.compare_outputs(micro_out, litert_out),
            },
            "litert_builtin": {
                "reference": f"LiteRT {versions.get('ai-edge-litert', '?')} built-in kernels, no delegate",
                **micro.compare_outputs(micro_out, builtin_out),
            },
        },
        "timing": {
            **micro.timing(seconds),
            "note": "TensorFlow Lite Micro Python interpreter on the build machine, batch 1; for reference only, "
            "not a microcontroller's speed",
        },
        "tool_versions": versions,
    }
    provenance = [
        f"Model {source.model_name!r}, artifact {source.artifact} ({source.file.name}).",
        f"Operators: {', '.join(used)}; tensor arena {arena['recommended_bytes']} bytes.",
    ]
    header, body = csource.model_data_sources(data, names, provenance)
    texts = {
        "model_data.h": header,
        "model_data.cc": body,
        "model_ops.h": csource.model_ops_header(used, names, provenance),
        "model_io.h": csource.model_io_header(
            names,
            provenance,
            input_tensor=input_tensor,
            output_tensor=output_tensor,
            class_labels=source.class_labels,
            output_kind=source.output_kind,
            arena=arena,
            pixel_table=table,
            preprocessing=source.preprocessing,
        ),
        "mcu.md": report_markdown(record),
    }
    with staged_dir(out, force=force) as stage:
        for name, text in texts.items():
            write_text(stage / name, text)
        write_json(stage / "mcu.json", record)
    return record


def report_markdown(record: dict[str, Any]) -> str:
    """``mcu.md``: the memory needs and the parity in a few lines a human reads."""
    parity, arena, timing = record["parity"], record["arena"], record["timing"]
    flash_limit = record["flash"]["limit_bytes"]
    lines = [
        f"# TensorFlow Lite Micro export: {record['model']['name']} ({record['artifact']['name']})",
        "",
        "| | |",
        "| --- | --- |",
        f"| model (flash) | {record['flash']['model_bytes']:,} bytes"
        + (f" of the {flash_limit:,} allowed" if flash_limit is not None else "")
        + " |",
        f"| tensor arena (RAM) | {arena['recommended_bytes']:,} bytes: {arena['measured_bytes']:,} measured + "
        f"{arena['margin_bytes']:,} margin |",
        f"| operators | {', '.join(record['ops'])} ({record['resolver']['type']}) |",
        f"| input | {record['input']['dtype']} {record['input']['shape']}, scale {record['input']['scale']:.6g}, "
        f"zero point {record['input']['zero_point']} |",
        f"| output | {record['output']['dtype']} {record['output']['shape']}, scale {record['output']['scale']:.6g}, "
        f"zero point {record['output']['zero_point']} |",
        "",
        f"Arena measured with the {arena['measured_with']}; margin: {arena['margin']}.",
        "",
        f"## Parity on {parity['images']:,} test images ({parity['data']})",
        "",
        f"Accuracy: TensorFlow Lite Micro {parity['accuracy_micro']:.2%}, LiteRT {parity['accuracy_litert']:.2%}. "
        "TensorFlow Lite Micro's outputs against:",
        "",
        "| reference | top-1 agreement | identical outputs | max int8 step difference | mean step difference |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {p['reference']} | {p['agreement']:.2%} | {p['identical']:.2%} | {p['max_step_difference']} "
            f"| {p['mean_step_difference']:.4f} |"
            for p in (parity["litert"], parity["litert_builtin"])
        ),
        "",
        f"Time per inference in the TensorFlow Lite Micro interpreter: {timing['median_ms']:.3f} ms median, "
        f"{timing['p90_ms']:.3f} ms p90 ({timing['note']}).",
        "",
    ]
    return "\n".join(lines)
