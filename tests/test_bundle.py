"""The deployment bundle and the on-device self-test, checked on this machine.

The emulated ARM installs live in tests/device (minutes, needs root); these tests
pin what can be checked in seconds: layout, manifest and sha256, tarball, pins,
the self-test run from an unpacked bundle in a fresh process, and bad input.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from convert.__main__ import main as convert_main
from convert.bundle import TARGETS, build_wheel, make_bundle
from edge_runtime.cli_support import run_cli
from edge_runtime.sample_set import embedded_digits, load_samples
from edge_runtime.selftest import main as selftest_main

ARTIFACT = "tflite_int8"


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The project wheel, built once (offline) the way the bundle command builds it."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, small_mlp_artifacts, wheel) -> Path:
    return make_bundle(small_mlp_artifacts, ARTIFACT, tmp_path_factory.mktemp("b") / "pi-arm64", target="arm64",
                       wheel=wheel)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _bundle_cli(argv: list[str]) -> int:
    return run_cli("python -m convert", convert_main, ["bundle", *argv])


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_bundle_holds_artifact_manifest_wheel_pins_and_device_scripts(bundle, wheel, small_mlp_artifacts):
    expected = ["README.md", "bundle.json", wheel.name, "manifest.json", "requirements-arm64.txt", "run.sh",
                "samples.npz", f"{ARTIFACT}.tflite"]
    if (small_mlp_artifacts / "parity.json").is_file():
        expected.append("parity.json")
    assert sorted(p.name for p in bundle.iterdir()) == sorted(expected)
    assert os.access(bundle / "run.sh", os.X_OK)
    run_sh = (bundle / "run.sh").read_text()
    assert f"requirements-arm64.txt\" \"$HERE/{wheel.name}\"" in run_sh
    assert "-m edge_runtime.selftest \"$HERE\"" in run_sh
    assert (bundle / wheel.name).read_bytes() == wheel.read_bytes()


def test_bundle_manifest_is_trimmed_to_the_artifact_with_a_valid_sha256(bundle, small_mlp_artifacts):
    original = json.loads((small_mlp_artifacts / "manifest.json").read_text())
    trimmed = json.loads((bundle / "manifest.json").read_text())
    assert [a["name"] for a in trimmed["artifacts"]] == [ARTIFACT]
    entry = trimmed["artifacts"][0]
    assert entry == next(a for a in original["artifacts"] if a["name"] == ARTIFACT)
    assert entry["sha256"] == _sha256(bundle / entry["file"])
    assert entry["bytes"] == (bundle / entry["file"]).stat().st_size
    assert ({k: v for k, v in trimmed.items() if k != "artifacts"}
            == {k: v for k, v in original.items() if k != "artifacts"})
    info = json.loads((bundle / "bundle.json").read_text())
    assert info["artifact"]["sha256"] == entry["sha256"]
    assert info["wheel"]["sha256"] == _sha256(bundle / info["wheel"]["file"])


def test_tarball_holds_the_bundle_files_under_the_bundle_name(bundle):
    tar_path = bundle.with_name(bundle.name + ".tar.gz")
    with tarfile.open(tar_path) as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        assert set(members) == {f"{bundle.name}/{p.name}" for p in bundle.iterdir()}
        for name, member in members.items():
            assert tar.extractfile(member).read() == (bundle / Path(name).name).read_bytes(), name
        assert members[f"{bundle.name}/run.sh"].mode & 0o111


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_requirements_are_exact_pins_without_tensorflow(tmp_path, small_mlp_artifacts, wheel, target):
    out = make_bundle(small_mlp_artifacts, ARTIFACT, tmp_path / "b", target=target, wheel=wheel)
    lines = [line for line in (out / f"requirements-{target}.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    assert not any("tensorflow" in line or "keras" in line for line in lines)
    if target == "armv7l":
        assert 'tflite-runtime==2.14.0; python_version == "3.11"' in lines
        assert "numpy>=1.23.2,<2" in lines
    else:
        assert {"ai-edge-litert==2.3.0", "onnxruntime==1.32.0", "pillow==13.0.0"} <= set(lines)
        assert all("==" in line for line in lines)
        assert any(line.startswith("numpy==2.") for line in lines)


def test_wheel_base_install_requires_no_tensorflow(wheel):
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    base = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert base, "the runtime needs numpy at least"
    assert not any("tensorflow" in line or "keras" in line for line in base), base


def test_selftest_passes_from_the_unpacked_tarball_using_the_bundled_wheel(bundle, tmp_path):
    with tarfile.open(bundle.with_name(bundle.name + ".tar.gz")) as tar:
        tar.extractall(tmp_path / "device", filter="data")
    unpacked = tmp_path / "device" / bundle.name
    # Import keras2edge from the bundled wheel, not from this checkout.
    site = tmp_path / "site"
    with zipfile.ZipFile(next(unpacked.glob("keras2edge-*.whl"))) as zf:
        zf.extractall(site)
    code = (
        "import sys, edge_runtime.selftest as s; "
        f"assert s.__file__.startswith({str(site)!r}), s.__file__; "
        "rc = s.main(sys.argv[1:]); "
        "leaked = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
        "assert not leaked, leaked; sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(unpacked), "--json"],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)}, check=False,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = json.loads(proc.stdout)
    assert result["passed"] and result["failures"] == []
    assert result["samples"] == 32 and result["accuracy"] >= 0.9 and result["sample_source"].endswith("samples.npz")
    assert result["agreement"] == 32 and result["max_abs_diff"] <= result["tolerance"]


def test_selftest_fails_when_outputs_disagree_with_the_build_machine(bundle, tmp_path, capsys):
    copy = Path(shutil.copytree(bundle, tmp_path / "copy"))
    info = json.loads((copy / "bundle.json").read_text())
    info["reference"]["probabilities"] = [row[::-1] for row in info["reference"]["probabilities"]]
    (copy / "bundle.json").write_text(json.dumps(info))
    assert run_cli("selftest", selftest_main, [str(copy)]) == 1
    out = capsys.readouterr().out
    assert "FAILED    top-1 differs from the build machine" in out and "result    FAIL" in out


def test_selftest_on_a_bare_model_checks_labels_only(bundle, capsys):
    assert run_cli("selftest", selftest_main, [str(bundle / f"{ARTIFACT}.tflite")]) == 0
    out = capsys.readouterr().out
    assert "accuracy  " in out and "reference" not in out and "result    PASS" in out


def test_selftest_on_a_missing_path_is_one_error_line(tmp_path, capsys):
    assert run_cli("selftest", selftest_main, [str(tmp_path / "nope")]) == 2
    assert "does not exist" in _one_error_line(capsys)


def test_embedded_samples_are_the_first_two_test_digits_of_each_class(mnist):
    samples = embedded_digits()
    expected = np.sort(np.concatenate([np.flatnonzero(mnist.y_test == c)[:2] for c in range(10)]))
    np.testing.assert_array_equal(samples.indices, expected)
    np.testing.assert_array_equal(samples.inputs, mnist.x_test[expected])
    np.testing.assert_array_equal(samples.labels, mnist.y_test[expected])


def test_bundle_samples_are_the_artifact_directory_samples(bundle, small_mlp_artifacts):
    shipped, original = load_samples(bundle, (28, 28, 1)), load_samples(small_mlp_artifacts, (28, 28, 1))
    np.testing.assert_array_equal(shipped.inputs, original.inputs)
    np.testing.assert_array_equal(shipped.probabilities, original.probabilities)
    reference = json.loads((bundle / "bundle.json").read_text())["reference"]["probabilities"]
    assert len(reference) == len(shipped) == 32


def test_schema_1_directory_without_samples_bundles_the_embedded_digits(tmp_path, small_mlp_artifacts, wheel, capsys):
    old = Path(shutil.copytree(small_mlp_artifacts, tmp_path / "old"))
    (old / "samples.npz").unlink()
    manifest = json.loads((old / "manifest.json").read_text())
    pre = manifest["preprocessing"]
    manifest["schema_version"] = 1
    manifest["preprocessing"] = {"image_shape": [28, 28], "channels": 1, "scale": pre["scale"], "offset": 0.0,
                                 "model_input_shape": pre["model_input_shape"], "layout": pre["layout"],
                                 "foreground": "light-on-dark"}
    del manifest["input"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    out = make_bundle(old, ARTIFACT, tmp_path / "b", target="arm64", wheel=wheel)
    assert not (out / "samples.npz").exists()
    assert json.loads((out / "manifest.json").read_text())["schema_version"] == 2  # written upgraded
    assert run_cli("selftest", selftest_main, [str(out)]) == 0
    report = capsys.readouterr().out
    assert "/20 = " in report and "(embedded MNIST test digits;" in report and "result    PASS" in report


def test_existing_out_is_refused_without_force_and_replaced_with_it(bundle, small_mlp_artifacts, wheel, capsys):
    before = {p.name: p.read_bytes() for p in bundle.iterdir()}
    argv = [str(small_mlp_artifacts), "--artifact", ARTIFACT, "--out", str(bundle), "--wheel", str(wheel)]
    assert _bundle_cli(argv) == 2
    assert "--force" in _one_error_line(capsys)
    assert {p.name: p.read_bytes() for p in bundle.iterdir()} == before
    assert _bundle_cli(argv + ["--force"]) == 0
    assert json.loads((bundle / "bundle.json").read_text())["artifact"]["name"] == ARTIFACT


def _tampered(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    target = dst / f"{ARTIFACT}.tflite"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown artifact", "no artifact named 'nope'"),
        ("missing dir", "is not a directory"),
        ("no manifest", "no manifest.json"),
        ("sha256 mismatch", "does not match manifest.json"),
        ("onnx for armv7l", "armv7l cannot run"),
        ("bad wheel", "is not a keras2edge-*.whl"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, small_mlp_artifacts, wheel, capsys, case, expected):
    artifacts, name, extra = str(small_mlp_artifacts), ARTIFACT, []
    if case == "unknown artifact":
        name = "nope"
    elif case == "missing dir":
        artifacts = str(tmp_path / "missing")
    elif case == "no manifest":
        (tmp_path / "empty").mkdir()
        artifacts = str(tmp_path / "empty")
    elif case == "sha256 mismatch":
        artifacts = str(_tampered(small_mlp_artifacts, tmp_path / "tampered"))
    elif case == "onnx for armv7l":
        name, extra = "onnx_float32", ["--target", "armv7l"]
    bad_wheel = tmp_path / "other.whl"
    bad_wheel.write_bytes(b"x")
    out = tmp_path / "out" / "bundle"
    argv = [artifacts, "--artifact", name, "--out", str(out),
            "--wheel", str(bad_wheel if case == "bad wheel" else wheel), *extra]
    assert _bundle_cli(argv) == 2
    assert expected in _one_error_line(capsys)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
