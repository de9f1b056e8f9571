"""On-device self-test: does this model, on this machine, classify real test inputs?

A device cannot be trusted on the strength of a successful ``pip install``: a wheel
may import and still compute the wrong thing (a different CPU, kernel set, libm or
NumPy). The self-test loads the model through :func:`edge_runtime.load`, classifies
the test inputs the converter saved beside it (``samples.npz``; for an MNIST model
converted before that file existed, the digits embedded in the package), compares
them with their labels and, for a deployment bundle, with the probabilities the same
artifact produced on the machine that built the bundle. It also measures latency,
which says something only about the machine it ran on.

Run it as ``python -m edge_runtime.selftest BUNDLE_OR_MODEL`` or
``python -m edge_runtime selftest BUNDLE_OR_MODEL``. Exit status: 0 all checks
passed, 1 a check failed, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.backends import BACKEND_NAMES
from edge_runtime.cli_support import ArgumentParser, positive_int, run_cli
from edge_runtime.errors import Keras2EdgeError, ManifestError
from edge_runtime.records.bundle import BUNDLE_NAME, BundleRecord, Reference
from edge_runtime.sample_set import load_samples

PROG = "python -m edge_runtime.selftest"
DEFAULT_MIN_ACCURACY = 0.9
LATENCY_REPEATS = 10
EXIT_FAILED = 1


@dataclass
class SelfTestResult:
    """Everything the self-test measured; ``passed`` is false if any check failed.

    ``agreement``/``max_abs_diff`` are ``None`` when there is no reference (a bare
    model file instead of a bundle). Latencies are medians in milliseconds.
    """

    model: str
    backend: str
    machine: str
    python: str
    numpy: str
    samples: int
    sample_source: str
    correct: int
    accuracy: float
    min_accuracy: float
    agreement: int | None
    max_abs_diff: float | None
    tolerance: float | None
    reference_machine: str | None
    latency_ms_batch1: float
    latency_ms_batch_all: float
    passed: bool
    failures: list[str] = field(default_factory=list)


def resolve_target(path: str | Path) -> tuple[Path, BundleRecord | None]:
    """Find the model to test and, for a bundle, its ``bundle.json`` record.

    Parameters
    ----------
    path : str or Path
        A bundle directory (contains ``bundle.json``) or a model file.

    Returns
    -------
    (Path, BundleRecord or None)
        The model file and the bundle record (``None`` for a bare model).

    Raises
    ------
    Keras2EdgeError
        ``path`` does not exist, or is a directory that is not a bundle.
    RecordError
        ``bundle.json`` is unreadable or incomplete.
    """
    target = Path(path)
    if target.is_file():
        return target, None
    if not target.exists():
        raise Keras2EdgeError(f"'{path}' does not exist; pass a bundle directory or a .tflite/.onnx file")
    if not (target / BUNDLE_NAME).is_file():
        raise Keras2EdgeError(
            f"'{path}' is a directory without {BUNDLE_NAME}; pass a bundle made by "
            "'python -m convert bundle' or a single .tflite/.onnx file"
        )
    record = BundleRecord.read(target)
    return target / record.artifact_file, record


def _reference(reference: Reference, n: int, num_classes: int) -> np.ndarray:
    probs = np.asarray(reference.probabilities, dtype=np.float32)
    if probs.shape != (n, num_classes):
        raise ManifestError(
            f"{BUNDLE_NAME}: reference outputs have shape {probs.shape}, expected {(n, num_classes)}; "
            "the bundle's samples and reference do not belong together: rebuild it"
        )
    return probs


def _median_ms(seconds: list[float]) -> float:
    return float(np.median(np.asarray(seconds))) * 1000.0


def run_selftest(
    path: str | Path,
    backend: str = "auto",
    threads: int | None = None,
    min_accuracy: float = DEFAULT_MIN_ACCURACY,
) -> SelfTestResult:
    """Classify the model's test samples with the model at ``path`` and check the result.

    Checks: the outputs are finite probabilities (each row sums to 1); accuracy on
    the labelled digits is at least ``min_accuracy``; for a bundle, every top-1 label
    equals the one the build machine produced and no probability differs from it by
    more than the bundle's tolerance.

    Parameters
    ----------
    path : str or Path
        Bundle directory or model file (see :func:`resolve_target`).
    backend : str
        Passed to :func:`edge_runtime.load`.
    threads : int, optional
        Passed to :func:`edge_runtime.load`.
    min_accuracy : float
        Lowest acceptable fraction of correctly classified samples.

    Returns
    -------
    SelfTestResult

    Raises
    ------
    Keras2EdgeError
        Bad path, bundle, model or backend (from :func:`edge_runtime.load`).

    Examples
    --------
    >>> result = run_selftest("bundle-arm64")  # doctest: +SKIP
    >>> result.passed, result.accuracy  # doctest: +SKIP
    (True, 1.0)
    """
    from edge_runtime import load

    if not 0.0 <= min_accuracy <= 1.0:
        raise Keras2EdgeError(f"--min-accuracy must be between 0 and 1, got {min_accuracy}")
    model_path, bundle = resolve_target(path)
    model = load(model_path, backend=backend, threads=threads)
    samples = load_samples(model_path.parent, model.input.shape)

    start = time.perf_counter()
    probs = np.asarray(model.predict(samples.inputs), dtype=np.float32)
    batch_seconds = [time.perf_counter() - start]
    failures: list[str] = []
    n = len(samples.labels)
    if probs.ndim != 2 or probs.shape[0] != n:
        raise Keras2EdgeError(
            f"{model_path}: model returned shape {probs.shape} for {n} images; expected ({n}, classes)"
        )
    predicted = probs.argmax(axis=1)
    if not np.all(np.isfinite(probs)):
        failures.append("outputs contain NaN or inf")
    else:
        # Quantised models (TFLite int8 output, ONNX QDQ around the softmax) hold each
        # probability in 8 bits. A plain quantised output is within half a 1/256 step,
        # but ONNX Runtime's integer softmax rounds its own intermediate, and a 3-class
        # RGB model's rows were seen off by two steps of 1/255 (0.0078): allow a full
        # step per class. A row off by more is not a probability vector.
        sum_tolerance = probs.shape[1] / 256 + 1e-3
        worst = float(np.max(np.abs(probs.sum(axis=1) - 1.0)))
        if worst > sum_tolerance:
            failures.append(f"output rows do not sum to 1 (worst {worst:.3g} off, tolerance {sum_tolerance:.3g})")
    correct = int(np.sum(predicted == samples.labels))
    accuracy = correct / n
    if accuracy < min_accuracy:
        wrong = ", ".join(
            f"test[{int(samples.indices[i])}] {model.class_labels[samples.labels[i]]} -> "
            f"{model.class_labels[predicted[i]]}"
            for i in np.flatnonzero(predicted != samples.labels)
        )
        failures.append(f"accuracy {accuracy:.1%} below minimum {min_accuracy:.1%} ({wrong})")

    agreement = max_abs_diff = tolerance = reference_machine = None
    if bundle is not None:
        ref_probs = _reference(bundle.reference, n, probs.shape[1])
        tolerance = bundle.reference.tolerance
        reference_machine = f"{bundle.reference.machine}, backend {bundle.reference.backend}"
        agreement = int(np.sum(predicted == ref_probs.argmax(axis=1)))
        max_abs_diff = float(np.max(np.abs(probs - ref_probs)))
        if agreement != n:
            failures.append(f"top-1 differs from the build machine on {n - agreement} of {n} samples")
        if not max_abs_diff <= tolerance:
            failures.append(f"max |dp| vs build machine {max_abs_diff:.3g} exceeds tolerance {tolerance:.3g}")

    # Latency: one warm-up pass, then every sample alone, LATENCY_REPEATS times.
    for image in samples.inputs:
        model.predict(image)
    single: list[float] = []
    for _ in range(LATENCY_REPEATS):
        for image in samples.inputs:
            t0 = time.perf_counter()
            model.predict(image)
            single.append(time.perf_counter() - t0)
    for _ in range(LATENCY_REPEATS):
        t0 = time.perf_counter()
        model.predict(samples.inputs)
        batch_seconds.append(time.perf_counter() - t0)

    return SelfTestResult(
        model=str(model_path),
        backend=model.backend,
        machine=platform.machine(),
        python=platform.python_version(),
        numpy=np.__version__,
        samples=n,
        sample_source=samples.source,
        correct=correct,
        accuracy=accuracy,
        min_accuracy=min_accuracy,
        agreement=agreement,
        max_abs_diff=max_abs_diff,
        tolerance=tolerance,
        reference_machine=reference_machine,
        latency_ms_batch1=_median_ms(single),
        latency_ms_batch_all=_median_ms(batch_seconds[1:]),
        passed=not failures,
        failures=failures,
    )


def format_result(result: SelfTestResult) -> str:
    """The human-readable report printed by the command."""
    lines = [
        "keras2edge self-test",
        f"  model     {result.model}",
        f"  backend   {result.backend}",
        f"  machine   {result.machine}, Python {result.python}, numpy {result.numpy}",
        f"  accuracy  {result.correct}/{result.samples} = {result.accuracy:.1%} "
        f"({result.sample_source}; minimum {result.min_accuracy:.0%})",
    ]
    if result.agreement is not None:
        lines.append(
            f"  reference top-1 agreement {result.agreement}/{result.samples} and max |dp| {result.max_abs_diff:.3g} "
            f"(tolerance {result.tolerance:.3g}) vs the build machine ({result.reference_machine})"
        )
    lines.append(
        f"  latency   batch 1: {result.latency_ms_batch1:.3f} ms median, batch {result.samples}: "
        f"{result.latency_ms_batch_all:.3f} ms median (this machine only)"
    )
    lines.extend(f"  FAILED    {failure}" for failure in result.failures)
    lines.append(f"  result    {'PASS' if result.passed else 'FAIL'}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``python -m edge_runtime.selftest`` and the subcommand."""
    parser.add_argument("path", help="bundle directory (from 'python -m convert bundle') or a .tflite/.onnx file")
    parser.add_argument("--backend", choices=BACKEND_NAMES, default="auto", help="inference backend (default: auto)")
    parser.add_argument("--threads", type=positive_int, default=None, help="threads for backends that support it")
    parser.add_argument(
        "--min-accuracy",
        type=float,
        default=DEFAULT_MIN_ACCURACY,
        help=f"lowest acceptable accuracy on the model's test samples (default {DEFAULT_MIN_ACCURACY})",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of text")


def run(args: argparse.Namespace) -> int:
    """Run the self-test for parsed ``args``; return 0 on pass, 1 on a failed check."""
    result = run_selftest(args.path, backend=args.backend, threads=args.threads, min_accuracy=args.min_accuracy)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(format_result(result))
    return 0 if result.passed else EXIT_FAILED


def add_subparser(subparsers: Any) -> None:
    """Register ``selftest`` in the ``python -m edge_runtime`` command registry."""
    parser = subparsers.add_parser("selftest", help="check a bundle or model on this machine with its test samples")
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m edge_runtime.selftest``."""
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main))
