"""On-device self-test: does this model, on this machine, classify real digits?

A device cannot be trusted on the strength of a successful ``pip install``: a wheel
may import and still compute the wrong thing (a different CPU, kernel set, libm or
NumPy). The self-test loads the model through :func:`edge_runtime.load`, classifies
the MNIST test digits embedded in the package (``edge_runtime/samples``), compares
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
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.backends import BACKEND_NAMES
from edge_runtime.cli_support import ArgumentParser, positive_int, run_cli
from edge_runtime.errors import DataError, Keras2EdgeError, ManifestError

PROG = "python -m edge_runtime.selftest"
SAMPLES_PATH = Path(__file__).resolve().parent / "samples" / "mnist_test_samples.npz"
BUNDLE_INFO = "bundle.json"
DEFAULT_MIN_ACCURACY = 0.9
LATENCY_REPEATS = 10
EXIT_FAILED = 1


@dataclass(frozen=True)
class Samples:
    """The embedded digits: raw uint8 images, true labels, MNIST test-split indices."""

    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray


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


def load_samples(path: Path = SAMPLES_PATH) -> Samples:
    """Read the embedded MNIST test digits.

    Returns
    -------
    Samples
        ``images`` uint8 ``(N, 28, 28)``, ``labels`` int64 ``(N,)``, ``indices`` int64.

    Raises
    ------
    DataError
        The file is missing or damaged (a broken install).

    Examples
    --------
    >>> s = load_samples()
    >>> s.images.shape, s.images.dtype.name
    ((20, 28, 28), 'uint8')
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            images, labels, indices = data["images"], data["labels"], data["indices"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: embedded self-test samples are missing or damaged ({exc}); reinstall keras2edge") from None
    if images.dtype != np.uint8 or images.ndim != 3 or labels.shape != (len(images),) or indices.shape != (len(images),):
        raise DataError(f"{path}: embedded self-test samples have an unexpected layout; reinstall keras2edge")
    return Samples(images=images, labels=labels.astype(np.int64), indices=indices.astype(np.int64))


def resolve_target(path: str | Path) -> tuple[Path, dict[str, Any] | None]:
    """Find the model to test and, for a bundle, its ``bundle.json``.

    Parameters
    ----------
    path : str or Path
        A bundle directory (contains ``bundle.json``) or a model file.

    Returns
    -------
    (Path, dict or None)
        The model file and the bundle description (``None`` for a bare model).

    Raises
    ------
    Keras2EdgeError
        ``path`` does not exist, or is a directory that is not a bundle.
    ManifestError
        ``bundle.json`` is unreadable or does not name a model file.
    """
    target = Path(path)
    if target.is_file():
        return target, None
    if not target.exists():
        raise Keras2EdgeError(f"'{path}' does not exist; pass a bundle directory or a .tflite/.onnx file")
    info_path = target / BUNDLE_INFO
    if not info_path.is_file():
        raise Keras2EdgeError(
            f"'{path}' is a directory without {BUNDLE_INFO}; pass a bundle made by "
            "'python -m edge_runtime bundle' or a single .tflite/.onnx file"
        )
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        model = target / info["artifact"]["file"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ManifestError(f"{info_path}: unreadable or incomplete ({type(exc).__name__}: {exc}); rebuild the bundle") from None
    return model, info


def _reference(info: dict[str, Any] | None, n: int, num_classes: int) -> tuple[np.ndarray, float, str] | None:
    if info is None:
        return None
    try:
        ref = info["reference"]
        probs = np.asarray(ref["probabilities"], dtype=np.float32)
        tolerance = float(ref["tolerance"])
        machine = f"{ref['machine']}, backend {ref['backend']}"
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{BUNDLE_INFO}: 'reference' is incomplete ({exc}); rebuild the bundle") from None
    if probs.shape != (n, num_classes):
        raise ManifestError(
            f"{BUNDLE_INFO}: reference outputs have shape {probs.shape}, expected {(n, num_classes)}; "
            "the bundle was made with a different sample set: rebuild it"
        )
    return probs, tolerance, machine


def _median_ms(seconds: list[float]) -> float:
    return float(np.median(np.asarray(seconds))) * 1000.0


def run_selftest(
    path: str | Path,
    backend: str = "auto",
    threads: int | None = None,
    min_accuracy: float = DEFAULT_MIN_ACCURACY,
) -> SelfTestResult:
    """Classify the embedded digits with the model at ``path`` and check the result.

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
    model_path, info = resolve_target(path)
    samples = load_samples()
    model = load(model_path, backend=backend, threads=threads)

    start = time.perf_counter()
    probs = np.asarray(model.predict(samples.images), dtype=np.float32)
    batch_seconds = [time.perf_counter() - start]
    failures: list[str] = []
    n = len(samples.labels)
    if probs.ndim != 2 or probs.shape[0] != n:
        raise Keras2EdgeError(f"{model_path}: model returned shape {probs.shape} for {n} images; expected ({n}, classes)")
    predicted = probs.argmax(axis=1)
    if not np.all(np.isfinite(probs)):
        failures.append("outputs contain NaN or inf")
    else:
        # Quantised models (TFLite int8 output, ONNX QDQ around the softmax) hold each
        # probability in 8 bits, to within half a 1/256 step, so a row's sum may be off
        # by classes / 512; anything beyond that is not a probability vector.
        sum_tolerance = probs.shape[1] / 512 + 1e-3
        worst = float(np.max(np.abs(probs.sum(axis=1) - 1.0)))
        if worst > sum_tolerance:
            failures.append(f"output rows do not sum to 1 (worst {worst:.3g} off, tolerance {sum_tolerance:.3g})")
    correct = int(np.sum(predicted == samples.labels))
    accuracy = correct / n
    if accuracy < min_accuracy:
        wrong = ", ".join(
            f"test[{int(samples.indices[i])}] label {int(samples.labels[i])} -> {int(predicted[i])}"
            for i in np.flatnonzero(predicted != samples.labels)
        )
        failures.append(f"accuracy {accuracy:.1%} below minimum {min_accuracy:.1%} ({wrong})")

    agreement = max_abs_diff = tolerance = reference_machine = None
    reference = _reference(info, n, probs.shape[1])
    if reference is not None:
        ref_probs, tolerance, reference_machine = reference
        agreement = int(np.sum(predicted == ref_probs.argmax(axis=1)))
        max_abs_diff = float(np.max(np.abs(probs - ref_probs)))
        if agreement != n:
            failures.append(f"top-1 differs from the build machine on {n - agreement} of {n} samples")
        if not max_abs_diff <= tolerance:
            failures.append(f"max |dp| vs build machine {max_abs_diff:.3g} exceeds tolerance {tolerance:.3g}")

    # Latency: one warm-up pass, then every sample alone, LATENCY_REPEATS times.
    for image in samples.images:
        model.predict(image)
    single: list[float] = []
    for _ in range(LATENCY_REPEATS):
        for image in samples.images:
            t0 = time.perf_counter()
            model.predict(image)
            single.append(time.perf_counter() - t0)
    for _ in range(LATENCY_REPEATS):
        t0 = time.perf_counter()
        model.predict(samples.images)
        batch_seconds.append(time.perf_counter() - t0)

    return SelfTestResult(
        model=str(model_path),
        backend=model.backend,
        machine=platform.machine(),
        python=platform.python_version(),
        numpy=np.__version__,
        samples=n,
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
        f"(embedded MNIST test digits; minimum {result.min_accuracy:.0%})",
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
    parser.add_argument("path", help="bundle directory (from 'python -m edge_runtime bundle') or a .tflite/.onnx file")
    parser.add_argument("--backend", choices=BACKEND_NAMES, default="auto", help="inference backend (default: auto)")
    parser.add_argument("--threads", type=positive_int, default=None, help="threads for backends that support it")
    parser.add_argument(
        "--min-accuracy",
        type=float,
        default=DEFAULT_MIN_ACCURACY,
        help=f"lowest acceptable accuracy on the embedded digits (default {DEFAULT_MIN_ACCURACY})",
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
    parser = subparsers.add_parser("selftest", help="check a bundle or model on this machine with embedded MNIST digits")
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m edge_runtime.selftest``."""
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main))
