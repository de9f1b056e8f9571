"""``python -m convert bundle``: everything a device needs, in one directory and tarball.

A Raspberry Pi user should not need this repository, TensorFlow or guesswork about
which wheels exist for their CPU. The bundle holds the chosen artifact with its
manifest (trimmed to that artifact, sha256 unchanged), the artifact directory's
test samples (``samples.npz``), a wheel of keras2edge (whose base install pulls no
TensorFlow), a requirements file pinned to versions that have wheels for the
target, ``run.sh`` and a README for the device, and ``bundle.json`` with the
probabilities this machine computed for those samples, so ``./run.sh check`` on the
device compares against them as well as against labels.

This is build-machine code (it builds a wheel from the source tree), so it lives
on the build side; the self-test it sets up stays on the device
(:mod:`edge_runtime.selftest`).

Layout of ``BUNDLE/`` (``BUNDLE.tar.gz`` holds the same tree under ``BUNDLE/``)::

    <artifact file>   manifest.json   samples.npz   [parity.json]   bundle.json
    keras2edge-<version>-py3-none-any.whl   requirements-<target>.txt
    run.sh   README.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.atomic import check_output_dir, staged_dir, write_bytes, write_text
from edge_runtime.errors import Keras2EdgeError, ModelLoadError
from edge_runtime.records.bundle import BundleRecord, Reference
from edge_runtime.records.manifest import ArtifactRecord, Manifest, sha256_hex
from edge_runtime.records.parity import ParityRecord
from edge_runtime.sample_set import SAMPLES_NAME, SampleSet, load_samples

SOURCE_ROOT = Path(__file__).resolve().parent.parent
# What a device needs of the wheel to run the self-test (embedded digits: schema-1 directories).
SELFTEST_MEMBERS = (
    "edge_runtime/__init__.py", "edge_runtime/selftest.py", "edge_runtime/samples/mnist_test_samples.npz"
)

# Reference outputs are compared on the device with these tolerances (max |dp|).
# Float graphs differ between backends and CPUs only by float32 rounding; quantised
# graphs may round an activation one step differently (output step 1/256 ~ 0.004).
FLOAT_TOLERANCE = 1e-4
QUANTISED_TOLERANCE = 1e-2
FLOAT_QUANTIZATION = ("none", "float16_weights")

# Every pin below has a wheel on PyPI for aarch64 and x86_64 and CPython 3.11-3.13
# (Raspberry Pi OS bookworm / trixie), checked with `pip download --only-binary=:all:
# --python-version 3.1x --platform <manylinux tag>`; tests/device/run.py installs them
# on arm64 under emulation. They are the full resolution of ai-edge-litert 2.3.0 +
# onnxruntime 1.32.0 + tflite for CPython 3.11, plus Pillow.
_NATIVE_PINS = (
    "ai-edge-litert==2.3.0",
    "onnxruntime==1.32.0",
    "numpy==2.4.6",
    "flatbuffers==25.12.19",
    "tflite==2.18.0",
    "protobuf==7.36.2",
    "ml-dtypes==0.6.0",
    "packaging==26.4",
    "backports.strenum==1.2.8",
    "tqdm==4.70.1",
    "typing-extensions==4.16.0",
    # For `predict` on PNG/JPEG files (the `image` extra).
    "pillow==13.0.0",
)


@dataclass(frozen=True)
class Target:
    """A device platform: which pins install there and what the device must provide.

    ``debian_arch`` is what ``dpkg --print-architecture`` says on the device; it is
    checked by ``run.sh`` because a 32-bit Raspberry Pi OS on a 64-bit kernel
    reports ``uname -m`` = aarch64 while its Python is armhf.
    """

    name: str
    debian_arch: str
    description: str
    requirements: tuple[str, ...]
    apt_packages: tuple[str, ...]
    system_site_packages: bool
    formats: tuple[str, ...]
    backends: str


TARGETS: dict[str, Target] = {
    "arm64": Target(
        name="arm64",
        debian_arch="arm64",
        description="64-bit Raspberry Pi OS / Debian (Pi 3, 4, 5, Zero 2 W), Python 3.11-3.13",
        requirements=_NATIVE_PINS,
        apt_packages=("python3-venv",),
        system_site_packages=False,
        formats=("tflite", "onnx"),
        backends="LiteRT (ai-edge-litert) for .tflite, ONNX Runtime for .onnx; pure-NumPy as a fallback",
    ),
    "armv7l": Target(
        name="armv7l",
        debian_arch="armhf",
        description="32-bit Raspberry Pi OS / Debian armhf on an ARMv7+ CPU (Pi 2, 3, 4, Zero 2 W; not Pi 1/Zero), "
                    "Python 3.11",
        requirements=(
            # PyPI has tflite-runtime 2.14 wheels for armv7l only up to CPython 3.11;
            # elsewhere the pure-NumPy backend runs the model with numpy + tflite.
            'tflite-runtime==2.14.0; python_version == "3.11"',
            "flatbuffers==25.12.19",
            "tflite==2.18.0",
            # PyPI has no armv7l numpy wheel: Debian's python3-numpy (1.24) is used
            # through a venv with --system-site-packages; this line only checks it.
            "numpy>=1.23.2,<2",
        ),
        # python3-pil: PyPI has no armv7l Pillow wheel either; it is optional (image files).
        apt_packages=("python3-venv", "python3-numpy", "python3-pil"),
        system_site_packages=True,
        formats=("tflite",),
        backends="tflite-runtime 2.14 for .tflite (Python 3.11); pure-NumPy backend otherwise",
    ),
    "x86_64": Target(
        name="x86_64",
        debian_arch="amd64",
        description="x86-64 Linux PC or server, Python 3.11-3.13",
        requirements=_NATIVE_PINS,
        apt_packages=("python3-venv",),
        system_site_packages=False,
        formats=("tflite", "onnx"),
        backends="LiteRT (ai-edge-litert) for .tflite, ONNX Runtime for .onnx",
    ),
}


def requirements_text(target: Target) -> str:
    """The ``requirements-<target>.txt`` written into a bundle for ``target``."""
    header = [f"# keras2edge runtime dependencies for {target.name}: {target.description}."]
    if target.system_site_packages:
        header += [
            "# Every pin but numpy has a wheel on PyPI for this platform; no TensorFlow is needed.",
            "# numpy comes from Debian: sudo apt install " + " ".join(target.apt_packages)
            + ", then a venv with --system-site-packages (run.sh install does both checks).",
        ]
    else:
        header.append("# Every pin has a wheel on PyPI for this platform; no TensorFlow is needed.")
    return "\n".join(header + list(target.requirements)) + "\n"


def find_artifact(artifact_dir: Path, name: str) -> tuple[Path, Manifest, ArtifactRecord]:
    """Locate artifact ``name`` in ``artifact_dir`` and check it against its manifest.

    Parameters
    ----------
    artifact_dir : Path
        A directory written by ``python -m convert`` (holds ``manifest.json``).
    name : str
        The artifact's ``name`` in the manifest, e.g. ``tflite_int8``.

    Returns
    -------
    (Path, Manifest, ArtifactRecord)
        The artifact file, the manifest and the artifact's entry.

    Raises
    ------
    Keras2EdgeError
        ``artifact_dir`` is not a directory.
    ManifestError
        No manifest, an invalid one, an unknown ``name``, or a sha256 mismatch.
    ModelLoadError
        The artifact file listed in the manifest is missing.
    """
    if not artifact_dir.is_dir():
        raise Keras2EdgeError(f"'{artifact_dir}' is not a directory; pass the --out directory of 'python -m convert'")
    manifest = Manifest.read(artifact_dir)
    entry = manifest.artifact(name=name)
    artifact_path = artifact_dir / entry.file
    try:
        data = artifact_path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"{artifact_path}: cannot read artifact '{name}': {exc.strerror or exc}") from None
    entry.verify(sha256_hex(data), artifact_path)
    return artifact_path, manifest, entry


def build_wheel(dest: Path) -> Path:
    """Build this project's wheel into ``dest`` (``pip wheel --no-deps``) and return it.

    The build runs on a copy of the source tree so nothing (``build/``,
    ``*.egg-info``) is written into the checkout, and offline (``--no-index
    --no-build-isolation``) with this environment's setuptools (the ``bundle``
    extra), so bundling needs no registry.

    Raises
    ------
    Keras2EdgeError
        Not run from a source checkout, or the build failed.
    """
    if not (SOURCE_ROOT / "pyproject.toml").is_file():
        raise Keras2EdgeError(
            f"no keras2edge source tree at {SOURCE_ROOT} to build a wheel from; pass --wheel keras2edge-*.whl"
        )
    with tempfile.TemporaryDirectory(prefix="keras2edge-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
        for entry in SOURCE_ROOT.iterdir():
            if entry.is_file() and (entry.name in ("pyproject.toml", "README.md") or entry.name.startswith("LICENSE")):
                shutil.copy2(entry, src / entry.name)
            elif entry.is_dir() and entry.name != "tests" and (entry / "__init__.py").is_file():
                shutil.copytree(entry, src / entry.name, ignore=ignore)
        # A device never trains: leave the 11 MB MNIST training copy out of its wheel
        # (the self-test uses the 20 digits in edge_runtime/samples).
        shutil.rmtree(src / "train" / "mnist", ignore_errors=True)
        # PIP_* settings (PIP_ONLY_BINARY, PIP_REQUIRE_VIRTUALENV, ...) are meant for
        # installs; they must not change this offline source build.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--no-build-isolation",
             "--check-build-dependencies", "--quiet", "--wheel-dir", str(dest), str(src)],
            capture_output=True, text=True, env=env, check=False,
        )
        if proc.returncode != 0:
            errors = [line.strip() for line in proc.stderr.splitlines() if line.strip().startswith("ERROR")]
            raise Keras2EdgeError(
                f"building the keras2edge wheel failed ({errors[0] if errors else 'see pip wheel output'}); "
                "install the build requirements with: pip install 'keras2edge[bundle]' (setuptools>=77, wheel), "
                "or pass --wheel"
            )
    wheels = sorted(dest.glob("keras2edge-*.whl"))
    if len(wheels) != 1:
        raise Keras2EdgeError(f"pip wheel produced {len(wheels)} keras2edge wheels in {dest}; expected one")
    return wheels[0]


def check_wheel(wheel: Path) -> None:
    """Refuse a wheel that is not keras2edge's or could not run the self-test.

    Raises
    ------
    Keras2EdgeError
        Wrong name, not a zip, or lacking ``edge_runtime`` or its samples.
    """
    if not (wheel.name.startswith("keras2edge-") and wheel.name.endswith(".whl")):
        raise Keras2EdgeError(f"--wheel '{wheel}' is not a keras2edge-*.whl file")
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise Keras2EdgeError(f"--wheel '{wheel}' is not a readable wheel ({exc})") from None
    for member in SELFTEST_MEMBERS:
        if member not in names:
            raise Keras2EdgeError(f"--wheel '{wheel}' lacks {member}; rebuild it from this version of keras2edge")


def reference_outputs(model_path: Path, samples: SampleSet, quantization: str) -> Reference:
    """Run the bundle's samples through ``model_path`` here, for comparison on the device."""
    from edge_runtime import load

    model = load(model_path)
    probs = np.asarray(model.predict(samples.inputs), dtype=np.float32)
    return Reference(
        probabilities=tuple(tuple(float(p) for p in row) for row in probs),
        tolerance=FLOAT_TOLERANCE if quantization in FLOAT_QUANTIZATION else QUANTISED_TOLERANCE,
        machine=platform.machine(),
        backend=model.backend,
    )


def run_sh(target: Target, wheel: str, requirements: str, artifact_file: str) -> str:
    """The device-side ``run.sh``: ``install``, ``check``, ``predict`` and ``info``."""
    site = " --system-site-packages" if target.system_site_packages else ""
    wrong_arch = (f"this bundle is for {target.debian_arch} ({target.name}) but this system is $arch; "
                  "build one with --target for it")
    apt = " ".join(target.apt_packages)
    numpy_check = ""
    if target.system_site_packages:
        numpy_check = (
            '    python3 -c "import numpy" 2>/dev/null || die "Debian numpy is missing: '
            'sudo apt install python3-numpy (PyPI has no wheel for this CPU)"\n'
        )
    return f"""#!/bin/sh
# keras2edge bundle for {target.name}: {target.description}
#   ./run.sh install        create .venv here and install the pinned runtime (no TensorFlow)
#   ./run.sh check [ARGS]   self-test: classify the bundled test samples, print accuracy and latency
#   ./run.sh predict FILE...  classify images / .npy / IDX files with the bundled model
#   ./run.sh info           describe the bundled model
# KERAS2EDGE_VENV overrides where the virtual environment lives (default: ./.venv).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
VENV=${{KERAS2EDGE_VENV:-$HERE/.venv}}
die() {{ echo "run.sh: error: $*" >&2; exit 2; }}
check_arch() {{
    if command -v dpkg >/dev/null 2>&1; then
        arch=$(dpkg --print-architecture)
        [ "$arch" = "{target.debian_arch}" ] || die "{wrong_arch}"
    fi
}}
cmd=${{1:-check}}
[ $# -gt 0 ] && shift
case "$cmd" in
install)
    check_arch
    command -v python3 >/dev/null 2>&1 || die "python3 not found: sudo apt install python3"
{numpy_check}    python3 -m venv{site} "$VENV" || die "could not create $VENV: sudo apt install {apt}"
    "$VENV/bin/python" -m pip install -r "$HERE/{requirements}" "$HERE/{wheel}"
    echo "installed into $VENV; next: $0 check"
    ;;
check)
    [ -x "$VENV/bin/python" ] || die "not installed yet: run $0 install"
    exec "$VENV/bin/python" -m edge_runtime.selftest "$HERE" "$@"
    ;;
predict|info)
    [ -x "$VENV/bin/python" ] || die "not installed yet: run $0 install"
    exec "$VENV/bin/python" -m edge_runtime "$cmd" "$HERE/{artifact_file}" "$@"
    ;;
*)
    die "unknown command '$cmd' (use install, check, predict or info)"
    ;;
esac
"""


def readme(target: Target, artifact: dict[str, Any], samples: int, wheel: str, requirements: str,
           bundle_name: str) -> str:
    """The device-side README.md: how to install, check and use this bundle."""
    apt = " ".join(target.apt_packages)
    return f"""# keras2edge bundle: `{artifact['name']}` for {target.name}

Target: {target.description}.
Backends: {target.backends}.
Model: `{artifact['file']}` ({artifact['format']}, {artifact['precision']}, quantization `{artifact['quantization']}`,
{artifact['bytes']} bytes, sha256 `{artifact['sha256']}`).

## On the device

```sh
sudo apt install {apt}
tar xzf {bundle_name}.tar.gz && cd {bundle_name}
./run.sh install     # venv in ./.venv, pip installs {requirements} and {wheel}
./run.sh check       # self-test: accuracy on the bundled test samples + latency; exit 0 = pass
./run.sh predict image.png
```

`./run.sh check` classifies {samples} test inputs shipped with the bundle (`samples.npz`,
or MNIST digits inside the wheel for an older MNIST conversion), checks the labels,
and checks that the probabilities match those the build machine computed for the
same artifact (stored in `bundle.json`). It exits non-zero if any check fails.

Manual install, without run.sh:

```sh
python3 -m venv{' --system-site-packages' if target.system_site_packages else ''} .venv
.venv/bin/pip install -r {requirements} {wheel}
.venv/bin/python -m edge_runtime.selftest .
```

Nothing here needs TensorFlow, this repository or a network connection other than
PyPI{' and Debian (for python3-numpy)' if target.system_site_packages else ''}.
"""


def _tarball(directory: Path, arcname: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(directory, arcname=arcname)
    return buffer.getvalue()


def make_bundle(
    artifact_dir: str | os.PathLike[str],
    artifact: str,
    out: str | os.PathLike[str],
    target: str = "arm64",
    force: bool = False,
    wheel: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the bundle directory ``out`` and ``out.tar.gz``.

    Parameters
    ----------
    artifact_dir : path
        Output directory of ``python -m convert`` (artifacts + ``manifest.json``).
    artifact : str
        Name of the artifact to ship, as listed in the manifest.
    out : path
        Bundle directory to create; ``<out>.tar.gz`` is written beside it.
    target : str
        One of :data:`TARGETS`.
    force : bool
        Replace an existing ``out`` / ``out.tar.gz``.
    wheel : path, optional
        A prebuilt keras2edge wheel; by default one is built from the source tree.

    Returns
    -------
    Path
        The bundle directory.

    Raises
    ------
    OutputExistsError
        ``out`` or ``out.tar.gz`` exists and ``force`` is false.
    ManifestError, ModelLoadError, BackendError, Keras2EdgeError
        Bad artifact directory, artifact, target or wheel.

    Examples
    --------
    >>> make_bundle("out/artifacts", "tflite_int8", "pi-bundle", target="arm64")  # doctest: +SKIP
    PosixPath('pi-bundle')
    """
    if target not in TARGETS:
        raise Keras2EdgeError(f"unknown --target '{target}' (choose from {', '.join(TARGETS)})")
    spec = TARGETS[target]
    out_dir = check_output_dir(out, force)
    tar_path = check_output_dir(out_dir.with_name(out_dir.name + ".tar.gz"), force)
    artifact_path, manifest, entry = find_artifact(Path(artifact_dir), artifact)
    if entry.format not in spec.formats:
        raise Keras2EdgeError(
            f"artifact '{artifact}' is {entry.format}, which {target} cannot run (no wheels for its runtime); "
            f"choose a {' or '.join(spec.formats)} artifact"
        )
    samples = load_samples(artifact_path.parent, manifest.input.shape)
    parity = ParityRecord.find(artifact_path.parent)
    if wheel is not None:
        check_wheel(Path(wheel))

    with staged_dir(out_dir, force=force) as stage:
        shutil.copy2(artifact_path, stage / artifact_path.name)
        manifest._replace(artifacts=(entry,)).write(stage)
        if samples.probabilities is not None:  # the directory's own samples.npz, checked by load_samples
            shutil.copy2(artifact_path.parent / SAMPLES_NAME, stage / SAMPLES_NAME)
        if parity is not None:
            parity.only(artifact).write(stage)
        if wheel is None:
            wheel_path = build_wheel(stage)
        else:
            wheel_path = stage / Path(wheel).name
            shutil.copy2(wheel, wheel_path)
        check_wheel(wheel_path)
        requirements = f"requirements-{target}.txt"
        write_text(stage / requirements, requirements_text(spec))
        write_text(stage / "run.sh", run_sh(spec, wheel_path.name, requirements, artifact_path.name))
        write_text(stage / "README.md",
                   readme(spec, entry.summary(), len(samples), wheel_path.name, requirements, out_dir.name))
        BundleRecord(
            target=target,
            debian_arch=spec.debian_arch,
            keras2edge_version=wheel_path.name.split("-")[1],
            artifact=entry.summary(),
            wheel={"file": wheel_path.name, "sha256": hashlib.sha256(wheel_path.read_bytes()).hexdigest()},
            requirements=requirements,
            reference=reference_outputs(stage / artifact_path.name, samples, entry.quantization),
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        ).write(stage)
        for path in stage.iterdir():
            os.chmod(path, 0o755 if path.name == "run.sh" else 0o644)
        archive = _tarball(stage, out_dir.name)
    try:
        write_bytes(tar_path, archive)
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return out_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``bundle`` command."""
    parser.add_argument("artifact_dir", help="output directory of 'python -m convert' (artifacts + manifest.json)")
    parser.add_argument("--artifact", required=True, help="name of the artifact to ship, e.g. tflite_int8")
    parser.add_argument("--out", required=True, help="bundle directory to create; OUT.tar.gz is written beside it")
    parser.add_argument("--target", choices=sorted(TARGETS), default="arm64", help="device platform (default arm64)")
    parser.add_argument("--wheel", default=None, help="use this keras2edge wheel instead of building one")
    parser.add_argument("--force", action="store_true", help="replace OUT and OUT.tar.gz if they exist")


def run(args: argparse.Namespace) -> int:
    """Build the bundle for parsed ``args`` and say where it is."""
    out = make_bundle(args.artifact_dir, args.artifact, args.out, target=args.target, force=args.force,
                      wheel=args.wheel)
    print(f"bundle: {out}")
    print(f"tarball: {out.with_name(out.name + '.tar.gz')}")
    print(f"on the device: tar xzf {out.name}.tar.gz && cd {out.name} && ./run.sh install && ./run.sh check")
    return 0
