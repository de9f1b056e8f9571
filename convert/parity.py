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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convert.manifest import read_manifest
from edge_runtime.atomic import write_json, write_text
from edge_runtime.errors import DataError, ManifestError
from train.data import Dataset, load_dataset

PARITY_SCHEMA_VERSION = 1


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


@dataclass
class ArtifactParity:
    """Parity metrics of one artifact against Keras, and its gate verdict."""

    name: str
    precision: str
    accuracy: float
    accuracy_delta: float
    agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    gate: Gate
    problems: list[str] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "accuracy": self.accuracy,
            "accuracy_delta": self.accuracy_delta,
            "agreement": self.agreement,
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "gate": {k: v for k, v in asdict(self.gate).items() if v is not None},
            "passed": self.passed,
            "problems": self.problems,
            "diagnostics": self.diagnostics,
        }


@dataclass
class ParityReport:
    """Parity of every artifact in a directory; see :func:`run_parity`."""

    keras_accuracy: float
    num_images: int
    artifacts: dict[str, ArtifactParity]

    @property
    def passed(self) -> bool:
        """True when every artifact met its gate."""
        return all(a.passed for a in self.artifacts.values())

    def failures(self) -> list[str]:
        """``"<artifact>: <problem>"`` for every missed threshold."""
        return [f"{a.name}: {p}" for a in self.artifacts.values() for p in a.problems]

    def to_json(self) -> dict[str, Any]:
        """The ``parity.json`` document."""
        return {
            "schema_version": PARITY_SCHEMA_VERSION,
            "keras": {"accuracy": self.keras_accuracy},
            "num_images": self.num_images,
            "passed": self.passed,
            "artifacts": {name: a.to_json() for name, a in self.artifacts.items()},
        }

    def to_markdown(self) -> str:
        """The ``parity.md`` table: one row per artifact, then failures and diagnostics."""
        lines = [
            "# Parity with the Keras model",
            "",
            f"{self.num_images} test images; Keras accuracy {self.keras_accuracy:.2%}.",
            "",
            "| artifact | precision | accuracy | Δ vs Keras (pt) | top-1 agreement | max abs Δp | mean abs Δp | gate |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for a in self.artifacts.values():
            lines.append(
                f"| {a.name} | {a.precision} | {a.accuracy:.2%} | {a.accuracy_delta * 100:+.2f} | {a.agreement:.2%} "
                f"| {a.max_abs_diff:.2e} | {a.mean_abs_diff:.2e} | {'pass' if a.passed else 'FAIL'} |"
            )
        lines += ["", "Gates: " + "; ".join(f"{p}: {_describe_gate(g)}" for p, g in _gates_used(self).items()), ""]
        for a in self.artifacts.values():
            if a.problems:
                lines += [f"## {a.name} failed", ""] + [f"- {p}" for p in a.problems] + [""]
                if a.diagnostics:
                    lines += ["Per-layer quantisation error (worst layer first):", "", "```", *a.diagnostics, "```", ""]
        return "\n".join(lines)


def _describe_gate(gate: Gate) -> str:
    parts = []
    if gate.min_agreement is not None:
        parts.append(f"agreement >= {gate.min_agreement:.2%}")
    if gate.max_abs_diff is not None:
        parts.append(f"max abs Δp <= {gate.max_abs_diff:g}")
    if gate.max_accuracy_drop is not None:
        parts.append(f"accuracy drop <= {gate.max_accuracy_drop * 100:g} pt")
    return ", ".join(parts) or "none"


def _gates_used(report: ParityReport) -> dict[str, Gate]:
    return {a.precision: a.gate for a in report.artifacts.values()}


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def keras_probabilities(model_path: Path, manifest: dict[str, Any], images: np.ndarray) -> np.ndarray:
    """Class probabilities of the source Keras model on raw uint8 ``images``.

    The model file must be the one the artifacts were converted from (same sha256),
    otherwise the comparison would be meaningless.
    """
    from convert.source import load_source_model
    from train.training import model_inputs

    source = load_source_model(model_path)
    expected = manifest["source_model"]["sha256"]
    if source.sha256 != expected:
        raise ManifestError(
            f"{model_path}: sha256 {source.sha256[:12]}… differs from the model these artifacts were converted from "
            f"({expected[:12]}…); pass the original with --model"
        )
    # The training pipeline's own preprocessing, not the manifest's: if the manifest
    # described it wrongly, the runtime (which follows the manifest) would disagree here.
    inputs = model_inputs(images, source.model)
    outputs = np.asarray(source.model.predict(inputs, batch_size=1000, verbose=0), dtype=np.float64)
    return outputs if manifest["output_kind"] == "probabilities" else _softmax(outputs)


def _artifact_probabilities(path: Path, images: np.ndarray, backend: str) -> np.ndarray:
    import edge_runtime

    from convert._quiet import captured_output

    with captured_output():  # LiteRT announces its delegate on stderr
        model = edge_runtime.load(path, backend=backend)
    return np.asarray(model.predict(images), dtype=np.float64)


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
    gates: dict[str, Gate] | None = None,
    model_path: str | os.PathLike[str] | None = None,
    backend: str = "auto",
    diagnose: bool = True,
    write: bool = True,
) -> ParityReport:
    """Measure every artifact in ``artifact_dir`` against its Keras model on the test split.

    Parameters
    ----------
    artifact_dir : str or path
        A directory written by :func:`convert.convert_model`.
    dataset : Dataset, str, path or None
        Test images and labels (the test split is used); ``None`` is the bundled MNIST.
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

    Returns
    -------
    ParityReport
        Check ``.passed``; failures are reported, not raised.

    Examples
    --------
    >>> report = run_parity("out/artifacts")  # doctest: +SKIP
    >>> report.passed, report.failures()  # doctest: +SKIP
    (True, [])
    """
    directory = Path(artifact_dir)
    manifest = read_manifest(directory)
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    if data.image_shape != tuple(manifest["preprocessing"]["image_shape"]):
        raise DataError(
            f"test images are {data.image_shape[0]}×{data.image_shape[1]} but the artifacts expect "
            f"{'×'.join(map(str, manifest['preprocessing']['image_shape']))}"
        )
    source = Path(model_path) if model_path is not None else Path(manifest["source_model"].get("path", ""))
    if not source.is_file():
        raise ManifestError(f"source model '{source}' recorded in the manifest is gone; pass it with --model")
    chosen = {**DEFAULT_GATES, **(gates or {})}
    images, labels = data.x_test, data.y_test
    reference = keras_probabilities(source, manifest, images)
    keras_accuracy = float(np.mean(reference.argmax(axis=1) == labels))
    results: dict[str, ArtifactParity] = {}
    for record in manifest["artifacts"]:
        probs = _artifact_probabilities(directory / record["file"], images, backend)
        metrics = compare(probs, reference, labels, keras_accuracy)
        gate = chosen.get(record["precision"], Gate())
        result = ArtifactParity(record["name"], record["precision"], gate=gate, problems=gate.failures(metrics), **metrics)
        if diagnose and result.problems and record["precision"] == "int8":
            from convert.diagnostics import diagnose_int8

            result.diagnostics = diagnose_int8(directory, record, manifest, source, data)
        results[record["name"]] = result
    report = ParityReport(keras_accuracy=keras_accuracy, num_images=len(images), artifacts=results)
    if write:
        write_json(directory / "parity.json", report.to_json())
        write_text(directory / "parity.md", report.to_markdown())
    return report
