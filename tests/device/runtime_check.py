"""Runtime checks run on the emulated device, from an installed bundle only.

The repository's runtime tests need TensorFlow-built fixtures (they train and
convert models in the session), which a device must not have. This script checks
the same behaviours that matter on a device using only what a bundle ships: the
artifact, its manifest and the installed keras2edge wheel.

    python runtime_check.py BUNDLE_DIR [BUNDLE_DIR ...]

Checked for each bundle (MNIST digits, an RGB camera model, ...): neither TensorFlow
nor keras gets imported; every backend installed for the artifact's format agrees
with the default one on the bundle's samples (top-1 identical, max |dp| within the
bundle's tolerance); a truncated
artifact raises ModelLoadError on every backend (each load in a child process, so a
native crash is reported rather than fatal), a tampered one ManifestError; wrong shape, NaN and
an empty batch raise InputError; an unknown backend raises BackendError; and the
``python -m edge_runtime predict`` CLI prints one line per input (.npy, and PNG for an image model) and
turns a bad input file into one error line with exit status 2. Exit status 1 on any failure.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

import edge_runtime
from edge_runtime.errors import BackendError, InputError, Keras2EdgeError, ManifestError
from edge_runtime.records.bundle import BundleRecord
from edge_runtime.sample_set import load_samples

NATIVE = {"tflite": ("litert", "tflite_runtime"), "onnx": ("onnxruntime",)}
MODULES = {"litert": "ai_edge_litert", "tflite_runtime": "tflite_runtime", "onnxruntime": "onnxruntime"}

failures: list[str] = []

_LOAD_CHILD = """
import sys, edge_runtime
try:
    edge_runtime.load(sys.argv[1], backend=sys.argv[2])
    print("loaded without error")
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
"""


def check(condition: bool, what: str) -> None:
    print(f"  {'ok  ' if condition else 'FAIL'} {what}", flush=True)
    if not condition:
        failures.append(what)


def expect(exc_type: type[BaseException], what: str, fn: Callable[[], object]) -> None:
    try:
        fn()
    except exc_type as exc:
        check(True, f"{what} -> {exc_type.__name__}: {str(exc)[:90]}")
    except Exception as exc:  # noqa: BLE001 - a wrong exception type is the failure being reported
        check(False, f"{what} -> expected {exc_type.__name__}, got {type(exc).__name__}: {exc}")
    else:
        check(False, f"{what} -> expected {exc_type.__name__}, nothing raised")


def check_bundle(bundle: Path) -> None:
    info = BundleRecord.read(bundle)
    artifact = bundle / info.artifact_file
    fmt = info.artifact["format"]
    tolerance = info.reference.tolerance
    default = edge_runtime.load(artifact)
    spec = default.input
    samples = load_samples(bundle, spec.shape)
    print(f"{bundle.name}: {artifact.name} ({fmt}, {spec.describe()}, samples from {samples.source})")
    reference = default.predict(samples.inputs)
    installed = [b for b in NATIVE[fmt] if importlib.util.find_spec(MODULES[b])]
    check(default.backend in installed, f"auto picks a native backend ({default.backend}; installed: {installed})")
    # The NumPy backend reads .onnx only with the onnx package, which bundles do not pin.
    others = [b for b in installed if b != default.backend] + (["numpy"] if fmt == "tflite" else [])
    for backend in others:
        try:
            probs = edge_runtime.load(artifact, backend=backend).predict(samples.inputs)
        except Keras2EdgeError as exc:
            check(False, f"{backend} runs {artifact.name}: {exc}")
            continue
        same = bool(np.array_equal(probs.argmax(1), reference.argmax(1)))
        diff = float(np.max(np.abs(probs - reference)))
        check(same and diff <= tolerance,
              f"{backend} agrees with {default.backend}: top-1 identical={same}, max |dp| {diff:.2g} <= {tolerance:g}")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copy2(bundle / "manifest.json", work / "manifest.json")
        data = artifact.read_bytes()
        truncated = _alone(work, artifact.name, data[: len(data) // 2])
        for backend in ["auto"] + others:
            # In a child process: a native interpreter that crashes on bad bytes must
            # show up as a failed check, not end this script.
            proc = subprocess.run(
                [sys.executable, "-c", _LOAD_CHILD, str(truncated), backend],
                capture_output=True, text=True, check=False,
            )
            outcome = proc.stdout.strip() or f"process died with exit status {proc.returncode}"
            check(outcome.startswith("ModelLoadError"), f"truncated artifact, backend {backend} -> {outcome[:110]}")
        tampered = bytearray(data)
        tampered[len(tampered) // 2] ^= 0xFF
        (work / artifact.name).write_bytes(bytes(tampered))
        expect(ManifestError, "artifact whose sha256 differs from manifest.json",
               lambda: edge_runtime.load(work / artifact.name))

    wrong = (3, *(d + 1 for d in spec.shape))
    expect(InputError, f"wrong input shape {wrong}", lambda: default.predict(np.zeros(wrong, samples.inputs.dtype)))
    expect(InputError, "NaN in float input", lambda: default.predict(np.full((1, spec.size), np.nan, np.float32)))
    expect(InputError, "empty batch",
           lambda: default.predict(np.zeros((0, *samples.inputs.shape[1:]), samples.inputs.dtype)))
    expect(BackendError, "unknown backend name", lambda: edge_runtime.load(artifact, backend="no-such-backend"))

    with tempfile.TemporaryDirectory() as tmp:
        npy = Path(tmp) / "samples.npy"
        np.save(npy, samples.inputs[:3])
        proc = subprocess.run([sys.executable, "-m", "edge_runtime", "predict", str(artifact), str(npy)],
                              capture_output=True, text=True, check=False)
        lines = proc.stdout.strip().splitlines()
        check(proc.returncode == 0 and len(lines) == 3,
              f"CLI predict on 3 samples: exit {proc.returncode}, {len(lines)} lines")
        if spec.is_image:
            from PIL import Image

            png = Path(tmp) / "sample.png"
            Image.fromarray(samples.inputs[0]).save(png)
            proc = subprocess.run([sys.executable, "-m", "edge_runtime", "predict", str(artifact), str(png)],
                                  capture_output=True, text=True, check=False)
            fields = proc.stdout.strip().split("\t")
            expected = default.classify(samples.inputs[:1])[0]
            check(proc.returncode == 0 and len(fields) == 3 and fields[1] == expected,
                  f"CLI predict on a PNG of a sample ({expected}): exit {proc.returncode}, "
                  f"output {proc.stdout.strip()!r} "
                  f"{proc.stderr.strip().splitlines()[-1:]}")
        bad = Path(tmp) / "not-an-image.png"
        bad.write_bytes(b"not an image")
        proc = subprocess.run([sys.executable, "-m", "edge_runtime", "predict", str(artifact), str(bad)],
                              capture_output=True, text=True, check=False)
        # Native runtimes may log their own INFO lines; the error must be one line, last.
        err = proc.stderr.strip().splitlines()
        check(proc.returncode == 2 and bool(err) and err[-1].startswith("python -m edge_runtime: error: ")
              and "Traceback" not in proc.stderr,
              f"CLI predict on a bad file: exit {proc.returncode}, stderr ends {err[-1:] if err else '(empty)'}")


def _alone(directory: Path, name: str, data: bytes) -> Path:
    """Write ``data`` into a subdirectory without a manifest, so the format check runs."""
    target = directory / "alone" / name
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(data)
    return target


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python runtime_check.py BUNDLE_DIR [BUNDLE_DIR ...]", file=sys.stderr)
        return 2
    for bundle in argv:
        check_bundle(Path(bundle))
    leaked = [m for m in ("tensorflow", "keras") if m in sys.modules]
    check(not leaked, f"tensorflow/keras never imported (in sys.modules: {leaked or 'none'})")
    print(f"{'PASS' if not failures else 'FAIL'}: {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
