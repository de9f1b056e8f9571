"""edge_runtime.load / Model on the seven artifacts the converter makes, native backends."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

import edge_runtime
from edge_runtime.records.manifest import MANIFEST_NAME

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = [
    "tflite_float32.tflite",
    "tflite_float16.tflite",
    "tflite_dynamic_int8.tflite",
    "tflite_int8.tflite",
    "onnx_float32.onnx",
    "onnx_int8_static.onnx",
    "onnx_int8_dynamic.onnx",
]
# ONNX Runtime's dynamic quantisation picks activation scales from the whole batch,
# so its rows legitimately depend on what else is in the batch.
BATCH_DEPENDENT = {"onnx_int8_dynamic.onnx"}

# Runs in a fresh interpreter: blocks TensorFlow, Keras and tf2onnx at import, the
# way a device without them behaves, then loads and runs every artifact.
BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    BLOCKED = {blocked!r}
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"No module named {{name!r}} (blocked by test)", name=name)
            return None
    sys.meta_path.insert(0, Blocker())
    """
)


@pytest.fixture(scope="module")
def artifact_dirs(small_mlp_artifacts, small_cnn_artifacts) -> dict[str, Path]:
    return {"mlp": small_mlp_artifacts, "cnn": small_cnn_artifacts}


@pytest.fixture(scope="module")
def images(mnist) -> np.ndarray:
    return mnist.x_test[:64]


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_every_artifact_predicts_probability_rows_and_labels(artifact_dirs, images, arch, artifact):
    model = edge_runtime.load(artifact_dirs[arch] / artifact)
    probs = model.predict(images)
    assert probs.dtype == np.float32 and probs.shape == (len(images), 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.02)  # int8 outputs are quantised to 1/256
    labels = model.classify(images)
    assert labels == [str(i) for i in probs.argmax(axis=1)]
    assert model.backend == ("litert" if artifact.endswith(".tflite") else "onnxruntime")


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("artifact", sorted(set(ARTIFACTS) - BATCH_DEPENDENT))
def test_batch_rows_equal_single_image_predictions(artifact_dirs, images, arch, artifact):
    """Resizing the batch (1 -> 7 -> 1 -> 64) must not change any row's result."""
    model = edge_runtime.load(artifact_dirs[arch] / artifact)
    singles = np.concatenate([model.predict(img) for img in images[:7]])
    batch = model.predict(images[:7])
    np.testing.assert_allclose(batch, singles, rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.predict(images)[:7], singles, rtol=0, atol=1e-6)


@pytest.mark.parametrize("artifact", ["tflite_float32.tflite", "tflite_int8.tflite", "onnx_float32.onnx"])
def test_all_accepted_input_layouts_give_the_same_probabilities(artifact_dirs, images, artifact):
    model = edge_runtime.load(artifact_dirs["mlp"] / artifact)
    reference = model.predict(images[:5])
    scaled = images[:5].astype(np.float32) / 255.0
    for variant in (
        images[:5].reshape(5, 784),
        images[:5].reshape(5, 28, 28, 1),
        scaled,
        scaled.reshape(5, 784).astype(np.float64),
        scaled.astype(np.float16),
    ):
        np.testing.assert_allclose(model.predict(variant), reference, rtol=0,
                                   atol=2e-3 if variant.dtype == np.float16 else 1e-6)
    np.testing.assert_array_equal(model.predict(images[0]), model.predict(images[:1]))


def test_cnn_accepts_flat_rows_and_images(artifact_dirs, images):
    model = edge_runtime.load(artifact_dirs["cnn"] / "tflite_float32.tflite")
    np.testing.assert_allclose(model.predict(images[:4].reshape(4, 784)), model.predict(images[:4]), rtol=0, atol=0)


@pytest.mark.parametrize("artifact", ["tflite_int8.tflite", "onnx_float32.onnx"])
def test_threads_are_passed_to_the_backend(artifact_dirs, artifact):
    model = edge_runtime.load(artifact_dirs["mlp"] / artifact, threads=1)
    assert model.threads == 1 and model.info()["threads"] == 1
    if artifact.endswith(".onnx"):
        options = model._backend._session.get_session_options()
        assert options.intra_op_num_threads == 1


def test_info_reports_backend_io_quantisation_size_and_manifest(artifact_dirs):
    directory = artifact_dirs["mlp"]
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    entry = next(a for a in manifest["artifacts"] if a["file"] == "tflite_int8.tflite")
    info = edge_runtime.load(directory / "tflite_int8.tflite").info()
    assert info["backend"] == "litert" and info["format"] == "tflite"
    assert (info["sha256"] == entry["sha256"]
            and info["bytes"] == entry["bytes"] == (directory / "tflite_int8.tflite").stat().st_size)
    assert info["inputs"][0]["dtype"] == "int8" and info["outputs"][0]["dtype"] == "int8"
    assert info["inputs"][0]["quantization"]["scale"] == pytest.approx(entry["inputs"][0]["quantization"]["scale"])
    assert info["inputs"][0]["quantization"]["zero_point"] == entry["inputs"][0]["quantization"]["zero_point"]
    assert info["manifest"]["artifact"]["name"] == "tflite_int8"
    assert info["preprocessing"]["source"] == "manifest"
    assert info["class_labels"] == manifest["class_labels"]
    json.dumps(info)  # the CLI prints it as JSON


def test_artifact_without_manifest_uses_mnist_defaults(artifact_dirs, images, tmp_path):
    for artifact in ("tflite_int8.tflite", "onnx_int8_static.onnx"):
        shutil.copy(artifact_dirs["cnn"] / artifact, tmp_path / artifact)
        alone = edge_runtime.load(tmp_path / artifact)
        with_manifest = edge_runtime.load(artifact_dirs["cnn"] / artifact)
        assert alone.manifest is None and with_manifest.manifest is not None
        assert alone.class_labels == tuple(str(i) for i in range(10))
        np.testing.assert_array_equal(alone.predict(images), with_manifest.predict(images))


def test_logit_manifest_gets_softmax_applied(artifact_dirs, images, tmp_path):
    """A manifest that says the output is logits makes predict return probabilities."""
    source = artifact_dirs["mlp"]
    shutil.copy(source / "onnx_float32.onnx", tmp_path)
    manifest = json.loads((source / MANIFEST_NAME).read_text())
    manifest["output_kind"] = "logits"
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    raw = edge_runtime.load(source / "onnx_float32.onnx").predict(images[:3])
    softened = edge_runtime.load(tmp_path / "onnx_float32.onnx").predict(images[:3])
    expected = np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softened, expected, rtol=1e-5)


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_running_every_artifact_never_imports_tensorflow_or_keras(artifact_dirs):
    paths = [str(artifact_dirs[arch] / a) for arch in ("mlp", "cnn") for a in ARTIFACTS]
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import edge_runtime
        x = np.zeros((3, 28, 28), np.uint8)
        for path in {paths!r}:
            model = edge_runtime.load(path)
            assert model.predict(x).shape == (3, 10)
            print(model.backend)
        print("LOADED", sorted(m for m in ("tensorflow", "keras", "tf2onnx") if m in sys.modules))
        """
    )
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
    assert result.stdout.count("litert") == 8 and result.stdout.count("onnxruntime") == 6


def test_import_edge_runtime_imports_no_backend_and_no_numpy():
    result = _run_python(
        "import sys, edge_runtime; print(sorted(m for m in "
        "('numpy', 'ai_edge_litert', 'onnxruntime', 'tflite', 'onnx', 'tensorflow') if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_runtime_works_when_tensorflow_keras_and_tf2onnx_cannot_be_imported(artifact_dirs):
    """A device without TensorFlow: any import of it fails, every artifact still runs."""
    paths = [str(artifact_dirs[arch] / a) for arch in ("mlp", "cnn") for a in ARTIFACTS]
    code = BLOCKER.format(blocked={"tensorflow", "keras", "tf2onnx", "tf_keras"}) + textwrap.dedent(
        f"""
        import numpy as np, edge_runtime
        try:
            import tensorflow
        except ImportError:
            print("tensorflow blocked")
        for path in {paths!r}:
            print(edge_runtime.load(path, backend="auto").classify(np.zeros((28, 28), np.uint8)))
        """
    )
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    assert "tensorflow blocked" in result.stdout and result.stdout.count("['") == len(paths)


def test_base_dependencies_contain_no_tensorflow_keras_or_converter():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    for heavy in ("tensorflow", "keras", "tf2onnx", "tf-keras"):
        assert heavy not in base
    assert "tensorflow" in " ".join(project["optional-dependencies"]["train"])  # the check looks at the right table


def test_uninstalled_backend_raises_backend_error_naming_the_package(artifact_dirs):
    code = BLOCKER.format(blocked={"onnxruntime", "ai_edge_litert", "tflite_runtime", "tensorflow"}) + textwrap.dedent(
        f"""
        import edge_runtime
        for name, path in [("onnxruntime", {str(artifact_dirs['mlp'] / 'onnx_float32.onnx')!r}),
                           ("litert", {str(artifact_dirs['mlp'] / 'tflite_float32.tflite')!r})]:
            try:
                edge_runtime.load(path, backend=name)
            except edge_runtime.BackendError as exc:
                print("BackendError:", exc)
        """
    )
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert "backend 'onnxruntime' is not installed" in lines[0] and "pip install onnxruntime" in lines[0]
    assert "backend 'litert' is not installed" in lines[1] and "pip install ai-edge-litert" in lines[1]


def _fixed_batch_tflite(path: Path, hard_coded_reshape: bool) -> None:
    """A TFLite model whose input is fixed at batch 1 (and optionally a graph that needs it)."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(1)
    w = tf.constant(rng.normal(size=(784, 10)).astype(np.float32) * 0.05)

    @tf.function(input_signature=[tf.TensorSpec([1, 28, 28], tf.float32)])
    def fixed(x):
        flat = tf.reshape(x, [1, 784]) if hard_coded_reshape else tf.reshape(x, [-1, 784])
        return tf.nn.softmax(flat @ w)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([fixed.get_concrete_function()], fixed)
    path.write_bytes(converter.convert())


@pytest.mark.parametrize("hard_coded_reshape", [False, True])
def test_fixed_batch_tflite_model_runs_any_batch_size(tmp_path, images, hard_coded_reshape):
    """Batch-1 models are resized to the batch; only a graph that cannot be resized is looped."""
    path = tmp_path / "fixed.tflite"
    _fixed_batch_tflite(path, hard_coded_reshape)
    model = edge_runtime.load(path)
    assert model.input_spec.shape[0] == 1
    singles = np.concatenate([model.predict(img) for img in images[:7]])
    np.testing.assert_allclose(model.predict(images[:7]), singles, rtol=0, atol=1e-6)
    assert model.info()["backend_details"]["batch_loop"] is hard_coded_reshape
    np.testing.assert_allclose(model.predict(images[:3]), singles[:3], rtol=0, atol=1e-6)


@pytest.mark.parametrize("artifact", ["tflite_float32.tflite", "tflite_int8.tflite", "onnx_int8_static.onnx"])
def test_reused_buffers_never_leak_between_calls(artifact_dirs, images, artifact):
    """Alternating dtypes and batch sizes gives what a fresh model gives, and earlier results stay intact."""
    path = artifact_dirs["mlp"] / artifact
    model = edge_runtime.load(path)
    sequence = [images[0], images[:5].astype(np.float32) / 255, images[1], images[:5], images[2],
                images[:2].reshape(2, 784)]
    results = [model.predict(x) for x in sequence]
    for x, got in zip(sequence, results):
        np.testing.assert_array_equal(got, edge_runtime.load(path).predict(x))


@pytest.mark.parametrize("artifact", ["tflite_dynamic_int8.tflite", "tflite_int8.tflite", "onnx_int8_static.onnx"])
def test_switching_uint8_layouts_at_the_same_batch_size_converts_each_call_afresh(artifact_dirs, images, artifact):
    """The steady-state uint8 path keeps a view of its buffer per layout; a new layout must not reuse a stale one."""
    path = artifact_dirs["mlp"] / artifact
    model = edge_runtime.load(path)
    sequence = [images[0], images[0], images[1].reshape(784), images[2][None], images[2][None],
                images[3].reshape(1, 784), images[4], images[5][None, :, :, None]]
    results = [model.predict(x) for x in sequence]
    for x, got in zip(sequence, results):
        np.testing.assert_array_equal(got, edge_runtime.load(path).predict(x))


def test_tflite_runtime_backend_is_wired_like_litert(artifact_dirs, images, tmp_path):
    """tflite_runtime (the 32-bit Pi wheel) has LiteRT's Interpreter API; a stand-in proves the wiring."""
    path = artifact_dirs["mlp"] / "tflite_int8.tflite"
    np.save(tmp_path / "x.npy", images[:8])
    code = textwrap.dedent(
        f"""
        import sys, types, numpy as np
        import ai_edge_litert.interpreter as litert
        package, module = types.ModuleType("tflite_runtime"), types.ModuleType("tflite_runtime.interpreter")
        module.Interpreter = litert.Interpreter
        package.interpreter = module
        sys.modules.update({{"tflite_runtime": package, "tflite_runtime.interpreter": module}})
        import edge_runtime
        model = edge_runtime.load({str(path)!r}, backend="tflite_runtime", threads=1)
        np.save({str(tmp_path / 'p.npy')!r}, model.predict(np.load({str(tmp_path / 'x.npy')!r})))
        print(model.backend, model.threads)
        """
    )
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["tflite_runtime", "1"]
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), edge_runtime.load(path).predict(images[:8]))
