"""Bad input to edge_runtime.load / Model.predict raises the documented exception types."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import edge_runtime
from edge_runtime import BackendError, DataError, InputError, ManifestError, ModelLoadError
from edge_runtime.records.manifest import MANIFEST_NAME

ROOT = Path(__file__).resolve().parent.parent
TFLITE_BACKENDS = ["litert", "numpy"]
ONNX_BACKENDS = ["onnxruntime", "numpy"]


@pytest.fixture(scope="module")
def mlp_dir(small_mlp_artifacts) -> Path:
    return small_mlp_artifacts


@pytest.fixture(scope="module")
def loose(tmp_path_factory, mlp_dir) -> Path:
    """Copies of the artifacts with no manifest beside them (no sha256 check first)."""
    out = tmp_path_factory.mktemp("loose")
    for path in mlp_dir.iterdir():
        if path.suffix in (".tflite", ".onnx"):
            shutil.copy(path, out / path.name)
    return out


@pytest.fixture(scope="module")
def models(mlp_dir) -> dict[str, edge_runtime.Model]:
    return {
        "litert_int8": edge_runtime.load(mlp_dir / "tflite_int8.tflite"),
        "numpy_float32": edge_runtime.load(mlp_dir / "onnx_float32.onnx", backend="numpy"),
    }


def test_missing_file_raises_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        edge_runtime.load(tmp_path / "absent.tflite")


def test_directory_raises_model_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="is a directory"):
        edge_runtime.load(tmp_path)


@pytest.mark.parametrize(
    ("artifact", "backend"),
    [("tflite_int8.tflite", b) for b in TFLITE_BACKENDS] + [("onnx_int8_static.onnx", b) for b in ONNX_BACKENDS],
)
@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.5, 0.99])
def test_truncated_model_raises_model_load_error(loose, tmp_path, artifact, backend, fraction):
    data = (loose / artifact).read_bytes()
    path = tmp_path / f"cut{Path(artifact).suffix}"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelLoadError):
        edge_runtime.load(path, backend=backend)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("image.tflite", b"\x89PNG\r\n\x1a\n" + bytes(200)),
        ("notes.onnx", b"this is a text file, not a model\n" * 10),
        ("weights.bin", bytes(range(256)) * 4),
    ],
)
def test_wrong_format_file_raises_model_load_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    for backend in ("auto", "numpy"):
        with pytest.raises(ModelLoadError):
            edge_runtime.load(path, backend=backend)


def test_manifest_sha256_mismatch_raises_manifest_error(mlp_dir, tmp_path):
    for path in mlp_dir.iterdir():
        shutil.copy(path, tmp_path / path.name)
    target = tmp_path / "tflite_float32.tflite"
    data = bytearray(target.read_bytes())
    data[-100] ^= 0x01  # one bit of one weight: still a loadable model, but not the converted one
    target.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256"):
        edge_runtime.load(target)
    assert edge_runtime.load(tmp_path / "tflite_int8.tflite").manifest is not None  # the untouched ones still load


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: "{not json", "not valid JSON"),
        (lambda m: {**m, "schema_version": 99}, "schema_version"),
        (lambda m: {**m, "artifacts": []}, "does not list"),
        (lambda m: {**m, "class_labels": ["a", "b"]}, "class_labels"),
        (lambda m: {**m, "preprocessing": {**m["preprocessing"], "model_input_shape": [100]}}, "model_input_shape"),
        (lambda m: {**m, "preprocessing": {**m["preprocessing"], "scale": "1/255"}}, "scale"),
    ],
)
def test_invalid_manifest_raises_manifest_error(mlp_dir, tmp_path, edit, message):
    shutil.copy(mlp_dir / "tflite_int8.tflite", tmp_path)
    edited = edit(json.loads((mlp_dir / MANIFEST_NAME).read_text()))
    (tmp_path / MANIFEST_NAME).write_text(edited if isinstance(edited, str) else json.dumps(edited))
    with pytest.raises(ManifestError, match=message):
        edge_runtime.load(tmp_path / "tflite_int8.tflite")


@pytest.mark.parametrize("backend", ["tflite", "gpu", "", "ONNXRUNTIME"])
def test_unknown_backend_name_raises_backend_error(mlp_dir, backend):
    with pytest.raises(BackendError, match="unknown backend"):
        edge_runtime.load(mlp_dir / "tflite_int8.tflite", backend=backend)


def test_backend_for_the_other_format_raises_backend_error(mlp_dir):
    with pytest.raises(BackendError, match="cannot run .onnx"):
        edge_runtime.load(mlp_dir / "onnx_float32.onnx", backend="litert")


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True])
def test_invalid_thread_count_raises_backend_error(mlp_dir, threads):
    with pytest.raises(BackendError, match="threads"):
        edge_runtime.load(mlp_dir / "tflite_int8.tflite", threads=threads)


@pytest.mark.parametrize("key", ["litert_int8", "numpy_float32"])
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((27, 27), np.uint8), "shape"),
        (np.zeros((4, 783), np.uint8), "shape"),
        (np.zeros((2, 28, 28, 3), np.uint8), "shape"),
        (np.zeros((0, 28, 28), np.uint8), "empty batch"),
        (np.zeros((0, 784), np.float32), "empty batch"),
        (np.zeros((28, 28), np.int32), "dtype"),
        (np.zeros((28, 28), np.bool_), "dtype"),
        (np.zeros((28, 28), np.complex64), "dtype"),
        (np.zeros((28, 28), object), "dtype"),
        (np.full((28, 28), "a"), "dtype"),
        (np.full((28, 28), np.nan, np.float32), "NaN or inf"),
        (np.where(np.eye(28) > 0, np.inf, 0.0), "NaN or inf"),
        (np.full((1, 784), 255.0, np.float32), "divide by 255"),
        ([[1, 2], [3]], "not an array"),
    ],
)
def test_bad_predict_input_raises_input_error(models, key, bad, message):
    with pytest.raises(InputError, match=message):
        models[key].predict(bad)


def test_input_error_is_also_a_value_error(models):
    with pytest.raises(ValueError):
        models["litert_int8"].predict(np.zeros((3, 3), np.uint8))


_ARRAYS = hnp.arrays(
    dtype=st.sampled_from(
        [np.uint8, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_, np.complex64]
    ),
    shape=st.one_of(
        hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=30),
        st.sampled_from([(28, 28), (3, 28, 28), (2, 784), (784,), (1, 28, 28, 1), (0, 784)]),
    ),
)  # default float elements include NaN, inf and subnormals


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(x=_ARRAYS, scale=st.sampled_from([1.0, 1 / 255.0, -1.0, np.nan]))
def test_random_inputs_give_probabilities_or_input_error(models, x, scale):
    """Whatever arrives, predict returns valid probabilities or raises InputError, nothing else."""
    if x.dtype.kind == "f":
        x = (x * scale).astype(x.dtype)
    for model in models.values():
        try:
            probs = model.predict(x)
        except InputError:
            continue
        assert probs.dtype == np.float32 and probs.ndim == 2 and probs.shape[1] == 10 and len(probs) >= 1
        assert np.isfinite(probs).all() and (probs >= 0).all()


def _corruptions(data: bytes, count: int, seed: int) -> list[bytes]:
    """Deterministic damaged copies: bytes flipped in the header, the middle and anywhere."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        buf = bytearray(data)
        region = (8, 400) if i % 3 == 0 else (0, len(buf))
        for pos in rng.integers(region[0], min(region[1], len(buf)), size=1 + i % 7):
            buf[pos] = int(rng.integers(0, 256))
        out.append(bytes(buf))
    return out


def test_corrupted_models_never_crash_the_process(loose, tmp_path):
    """Random byte damage gives a documented exception or a run, never a segfault."""
    cases = []
    for name, backends in (("tflite_int8.tflite", TFLITE_BACKENDS), ("onnx_int8_static.onnx", ONNX_BACKENDS)):
        for i, blob in enumerate(_corruptions((loose / name).read_bytes(), 40, seed=len(name))):
            path = tmp_path / f"{i}_{name}"
            path.write_bytes(blob)
            cases += [(str(path), backend) for backend in backends]
    code = textwrap.dedent(
        f"""
        import collections, json, numpy as np, edge_runtime
        outcomes = collections.Counter()
        for path, backend in {cases!r}:
            try:
                edge_runtime.load(path, backend=backend).predict(np.zeros((2, 28, 28), np.uint8))
                outcomes["ran"] += 1
            except edge_runtime.Keras2EdgeError as exc:
                outcomes[type(exc).__name__] += 1
        print(json.dumps(outcomes))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    # No library banners: errors reach the caller as exceptions only (the CLI's one line).
    assert len(result.stdout.strip().splitlines()) == 1 and result.stderr == "", (result.stdout + result.stderr)[:2000]
    outcomes = json.loads(result.stdout)
    assert sum(outcomes.values()) == len(cases)
    assert outcomes.get("ModelLoadError", 0) > 0  # the damage was real enough to be caught


def test_onnx_runtime_failure_while_running_is_a_backend_error(loose, tmp_path, mnist):
    import onnx

    graph = onnx.load(loose / "onnx_float32.onnx")
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # a model fixed at batch 1
    onnx.save(graph, tmp_path / "fixed_batch.onnx")
    model = edge_runtime.load(tmp_path / "fixed_batch.onnx", backend="onnxruntime")
    assert model.predict(mnist.x_test[:1]).shape == (1, 10)
    with pytest.raises(BackendError, match="onnxruntime failed to run the model"):
        model.predict(mnist.x_test[:3])


def test_damaged_samples_file_raises_data_error(small_mlp_artifacts, tmp_path):
    from edge_runtime.sample_set import SAMPLES_NAME, load_samples

    (tmp_path / SAMPLES_NAME).write_bytes((small_mlp_artifacts / SAMPLES_NAME).read_bytes()[:500])
    with pytest.raises(DataError, match="missing or damaged"):
        load_samples(tmp_path)


def test_model_other_than_mnist_without_samples_file_is_a_data_error(tmp_path):
    from edge_runtime.sample_set import load_samples

    assert load_samples(tmp_path, (28, 28, 1)).source == "embedded MNIST test digits"
    with pytest.raises(DataError, match="no samples.npz; convert the model again"):
        load_samples(tmp_path, (32, 32, 3))
