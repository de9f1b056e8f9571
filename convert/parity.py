"""Accuracy parity: does every artifact behave like the Keras model it came from?

Each artifact is run by the device runtime (:func:`edge_runtime.load`, which applies
the manifest's preprocessing and int8 (de)quantisation exactly as a device would) on
every test image, and compared with the Keras model on the same images: accuracy,
accuracy delta, top-1 agreement and the largest and mean absolute difference of the
class probabilities. A gate per precision turns those numbers into pass/fail, so a
conversion that silently lost accuracy fails loudly instead of shipping.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert.source import SourceModel, load_source_model
from edge_runtime.atomic import write_text
from edge_runtime.errors import DataError, ManifestError
from edge_runtime.records.manifest import Manifest, Preprocessing
from edge_runtime.records.parity import ArtifactParity, ParityRecord
from edge_runtime.records.training import TrainingRecord
from train.data import Dataset, load_dataset
from train.data_options import merge_load_options


@dataclass(frozen=True)
class Gate:
    """Thresholds an artifact must meet; ``None`` means the metric is not gated.

    Attributes
    ----------
    min_agreement : float or None
        Minimum fraction of images whose top-1 class equals Keras's.
    max_abs_diff : float or None
        Largest allowed ``|p_artifact - p_keras|`` over all images and classes.
    max_accuracy_drop : float or None
        Largest allowed ``accuracy_keras - accuracy_artifact``, as a fraction
        (0.005 is half a percentage point).
    """

    min_agreement: float | None = None
    max_abs_diff: float | None = None
    max_accuracy_drop: float | None = None

    def failures(self, metrics: dict[str, float]) -> list[str]:
        """One human-readable line per threshold ``metrics`` misses, with the margin."""
        problems = []
        if self.min_agreement is not None and metrics["agreement"] < self.min_agreement:
            problems.append(
                f"agreement {metrics['agreement']:.2%} < {self.min_agreement:.2%} "
                f"(short by {(self.min_agreement - metrics['agreement']) * 100:.2f} pt)"
            )
        if self.max_abs_diff is not None and metrics["max_abs_diff"] > self.max_abs_diff:
            problems.append(
                f"max |Δp| {metrics['max_abs_diff']:.3g} > {self.max_abs_diff:.3g} "
                f"({metrics['max_abs_diff'] / self.max_abs_diff:.1f}× the limit)"
            )
        drop = -metrics["accuracy_delta"]
        if self.max_accuracy_drop is not None and drop > self.max_accuracy_drop:
            problems.append(
                f"accuracy drop {drop * 100:.2f} pt > {self.max_accuracy_drop * 100:.2f} pt "
                f"(over by {(drop - self.max_accuracy_drop) * 100:.2f} pt)"
            )
        return problems


DEFAULT_GATES: dict[str, Gate] = {
    "float32": Gate(min_agreement=0.999, max_abs_diff=1e-4),
    "float16": Gate(min_agreement=0.998),
    "int8": Gate(min_agreement=0.99, max_accuracy_drop=0.005),
}


def _describe_gate(gate: dict[str, float]) -> str:
    parts = []
    if "min_agreement" in gate:
        parts.append(f"agreement >= {gate['min_agreement']:.2%}")
    if "max_abs_diff" in gate:
        parts.append(f"max abs Δp <= {gate['max_abs_diff']:g}")
    if "max_accuracy_drop" in gate:
        parts.append(f"accuracy drop <= {gate['max_accuracy_drop'] * 100:g} pt")
    return ", ".join(parts) or "none"


def to_markdown(report: ParityRecord, manifest: Manifest) -> str:
    """The ``parity.md`` table: one row per artifact (with its size against float32 TFLite), then failures.

    The size column states the int8 artifacts' share of the float32 TFLite file:
    about a quarter for dense nets; conv nets, whose small filters carry per-channel
    scales and whose graphs carry more ops, can be well above it.
    """
    sizes = {a.name: a.bytes for a in manifest.artifacts}
    reference = sizes.get("tflite_float32")
    lines = [
        "# Parity with the Keras model",
        "",
        f"{report.num_images} test inputs; Keras accuracy {report.keras_accuracy:.2%}.",
        "",
        "| artifact | precision | bytes | % of float32 TFLite | accuracy | Δ vs Keras (pt) | top-1 agreement "
        "| max abs Δp | mean abs Δp | gate |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, a in report.artifacts.items():
        size = sizes.get(name)
        share = f"{100 * size / reference:.1f}" if size and reference else "n/a"
        lines.append(
            f"| {name} | {a.precision} | {size if size is not None else 'n/a'} | {share} | {a.accuracy:.2%} "
            f"| {a.accuracy_delta * 100:+.2f} | {a.agreement:.2%} | {a.max_abs_diff:.2e} | {a.mean_abs_diff:.2e} "
            f"| {'pass' if a.passed else 'FAIL'} |"
        )
    gates = {a.precision: a.gate for a in report.artifacts.values()}
    lines += ["", "Gates: " + "; ".join(f"{p}: {_describe_gate(g)}" for p, g in gates.items()), ""]
    for name, a in report.artifacts.items():
        if a.problems:
            lines += [f"## {name} failed", ""] + [f"- {p}" for p in a.problems] + [""]
            if a.diagnostics:
                lines += ["Per-layer quantisation error (worst layer first):", "", "```", *a.diagnostics, "```", ""]
    return "\n".join(lines)


def reference_preprocessing(source_path: Path, manifest: Manifest) -> Preprocessing:
    """The preprocessing the Keras reference is fed with: the training pipeline's own when known.

    For a model from ``python -m train`` that is ``training.json``, not the manifest:
    if the manifest described it wrongly, the runtime (which follows the manifest)
    would disagree with this reference and the gate would fail, as it should.
    """
    training = TrainingRecord.beside(source_path) if source_path.is_file() else None
    if training is None:
        return manifest.preprocessing
    return training.preprocessing._replace(
        layout=manifest.preprocessing.layout, model_input_shape=manifest.preprocessing.model_input_shape
    )


def checked_source(model: SourceModel | str | os.PathLike[str], manifest: Manifest) -> SourceModel:
    """The source Keras model, loaded from a path if need be, after checking it is the one converted.

    The model must be the one the artifacts were converted from (same sha256),
    otherwise comparing with it would be meaningless. Passing an already loaded
    :class:`~convert.source.SourceModel` saves loading it again (parity loads it
    once for the reference and every int8 diagnosis).

    Raises
    ------
    ManifestError
        The model's sha256 differs from the one the manifest records.
    """
    if isinstance(model, SourceModel):
        source, shown = model, model.path
    else:
        source, shown = load_source_model(model), model
    expected = manifest.source_model.get("sha256")
    if source.sha256 != expected:
        raise ManifestError(
            f"{shown}: sha256 {source.sha256[:12]}… differs from the model these artifacts were converted from "
            f"({str(expected)[:12]}…); pass the original with --model"
        )
    return source


def keras_probabilities(model: SourceModel | str | os.PathLike[str], manifest: Manifest,
                        raw: np.ndarray) -> np.ndarray:
    """Class probabilities of the source Keras model on raw inputs.

    ``model`` is the model or its path; see :func:`checked_source`.
    """
    source = checked_source(model, manifest)
    return source.probabilities(raw, reference_preprocessing(source.path, manifest))


def _artifact_probabilities(path: Path, raw: np.ndarray, backend: str) -> np.ndarray:
    import edge_runtime
    from convert._quiet import captured_output

    with captured_output():  # LiteRT announces its delegate on stderr
        model = edge_runtime.load(path, backend=backend)
    return np.asarray(model.predict(raw), dtype=np.float64)


def load_test_data(
    manifest: Manifest,
    dataset: Dataset | str | os.PathLike[str] | None,
    data_options: Mapping[str, Any] | None = None,
) -> Dataset:
    """The data parity and the micro export measure on: ``dataset``, else the one the manifest records.

    The recorded data set is read again with its recorded options (same split),
    and images at the size, colour mode and crop the manifest records, so the test
    inputs are what the device would be given. ``data_options`` the user gave
    (``None`` values ignored) override both.
    """
    if isinstance(dataset, Dataset):
        data = dataset
    else:
        recorded = manifest.data or {}
        source = dataset if dataset is not None else recorded.get("source")
        same_split = recorded.get("load_options") if source == recorded.get("source") else None
        spec = manifest.input
        image = ({"image_size": spec.image_size, "color_mode": spec.color_mode,
                  "crop_to_aspect_ratio": spec.crop_to_aspect_ratio} if spec.is_image else None)
        data = load_dataset(source, **merge_load_options(same_split, image, given=data_options))
    expected = manifest.input.shape
    got = data.x_test.shape[1:]
    if got != expected and not (manifest.input.is_image and expected[2] == 1 and got == expected[:2]):
        raise DataError(
            f"test inputs are {'×'.join(map(str, got))} but the artifacts expect {'×'.join(map(str, expected))}"
        )
    return data


def compare(probs: np.ndarray, reference: np.ndarray, labels: np.ndarray, keras_accuracy: float) -> dict[str, float]:
    """Parity metrics of ``probs`` against the Keras ``reference`` probabilities.

    Examples
    --------
    >>> ref = np.array([[0.9, 0.1], [0.2, 0.8]])
    >>> m = compare(np.array([[0.8, 0.2], [0.6, 0.4]]), ref, np.array([0, 1]), 1.0)
    >>> m["agreement"], m["accuracy"], round(m["max_abs_diff"], 3)
    (0.5, 0.5, 0.4)
    """
    predicted = probs.argmax(axis=1)
    diff = np.abs(probs - reference)
    accuracy = float(np.mean(predicted == labels))
    return {
        "accuracy": accuracy,
        "accuracy_delta": accuracy - keras_accuracy,
        "agreement": float(np.mean(predicted == reference.argmax(axis=1))),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
    }


def run_parity(
    artifact_dir: str | os.PathLike[str],
    *,
    dataset: Dataset | str | os.PathLike[str] | None = None,
    data_options: Mapping[str, Any] | None = None,
    gates: dict[str, Gate] | None = None,
    model_path: str | os.PathLike[str] | None = None,
    backend: str = "auto",
    diagnose: bool = True,
    write: bool = True,
    show: Callable[[str], None] | None = None,
) -> ParityRecord:
    """Measure every artifact in ``artifact_dir`` against its Keras model on the test split.

    Parameters
    ----------
    artifact_dir : str or path
        A directory written by :func:`convert.convert_model`.
    dataset : Dataset, str, path or None
        Test inputs and labels (the test split is used); ``None`` is the data set
        recorded in the manifest (the one the artifacts were calibrated on, read
        with the same options, so the same split).
    data_options : mapping, optional
        ``load_dataset`` keywords the user gave; see :func:`load_test_data`.
    gates : dict, optional
        ``precision -> Gate`` overriding :data:`DEFAULT_GATES` for those precisions.
    model_path : str or path, optional
        The Keras model; default is ``source_model.path`` from the manifest.
    backend : str
        Runtime backend passed to :func:`edge_runtime.load`.
    diagnose : bool
        For a failed int8 artifact, add per-layer quantisation error diagnostics.
    write : bool
        Write ``parity.json`` and ``parity.md`` into ``artifact_dir``.
    show : callable, optional
        Called with the ``parity.md`` text (the CLI prints it), which needs the
        manifest this function has already read.

    Returns
    -------
    ParityRecord
        Check ``.passed``; failures are reported (``.failures()``), not raised.

    Examples
    --------
    >>> report = run_parity("out/artifacts")  # doctest: +SKIP
    >>> report.passed, report.failures()  # doctest: +SKIP
    (True, [])
    """
    directory = Path(artifact_dir)
    manifest = Manifest.read(directory)
    data = load_test_data(manifest, dataset, data_options)
    source = Path(model_path) if model_path is not None else Path(manifest.source_model.get("path", ""))
    if not source.exists():
        raise ManifestError(f"source model '{source}' recorded in the manifest is gone; pass it with --model")
    chosen = {**DEFAULT_GATES, **(gates or {})}
    raw, labels = data.x_test, data.y_test
    model = checked_source(source, manifest)
    reference = keras_probabilities(model, manifest, raw)
    keras_accuracy = float(np.mean(reference.argmax(axis=1) == labels))
    results: dict[str, ArtifactParity] = {}
    for record in manifest.artifacts:
        probs = _artifact_probabilities(directory / record.file, raw, backend)
        metrics = compare(probs, reference, labels, keras_accuracy)
        gate = chosen.get(record.precision, Gate())
        problems = tuple(gate.failures(metrics))
        diagnostics: tuple[str, ...] = ()
        if diagnose and problems and record.precision == "int8":
            from convert.diagnostics import diagnose_int8

            diagnostics = tuple(diagnose_int8(directory, record, manifest, model, data))
        results[record.name] = ArtifactParity(
            precision=record.precision,
            gate={k: v for k, v in asdict(gate).items() if v is not None},
            passed=not problems,
            problems=problems,
            diagnostics=diagnostics,
            **metrics,
        )
    report = ParityRecord(keras_accuracy, len(raw), results, {"source": data.source, "split": data.split})
    markdown = to_markdown(report, manifest)
    if write:
        report.write(directory)
        write_text(directory / "parity.md", markdown)
    if show is not None:
        show(markdown)
    return report
