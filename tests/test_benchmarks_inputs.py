"""Benchmarks of any model the converter makes: an RGB conv net and a feature model, not only MNIST.

The quick CLI runs on the RGB separable CNN (40x48x3 images) and on the feature MLP
(13 raw features; its full-integer artifacts take standardised features), the
hand-written loops and the cold-start subjects against edge_runtime on every
artifact directory, the Keras baseline from a SavedModel, and the charts' layout.
No test asserts anything about speed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import baselines, coldstart, report, runner
from edge_runtime.records.manifest import Manifest
from edge_runtime.sample_set import load_samples
from tests.measured import bad_numbers

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Notes the runner writes when two subjects that should do the same work disagree.
DISAGREEMENT = ("agree on only", "classify the first sample differently", "not running the same model")


@pytest.fixture(scope="session", params=["rgb_cnn_artifacts", "feature_mlp_artifacts"])
def any_artifacts(request, tmp_path_factory) -> Path:
    """A private copy of an RGB or feature artifact directory, with parity run on it."""
    from convert.parity import run_parity

    directory = tmp_path_factory.mktemp("bench_any") / "artifacts"
    shutil.copytree(request.getfixturevalue(request.param), directory)
    run_parity(directory, diagnose=False)
    return directory


@pytest.fixture(scope="session")
def any_quick_run(any_artifacts, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench_any_out") / "report"
    done = subprocess.run([sys.executable, "-m", "benchmarks", str(any_artifacts), "--out", str(out), "--quick",
                           "--batch-sizes", "1,4"], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text())


def test_quick_run_on_rgb_and_feature_artifacts_measures_every_artifact_and_writes_the_charts(
        any_quick_run, any_artifacts):
    out, doc = any_quick_run
    manifest = Manifest.read(any_artifacts)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["results.json", "results.csv", "report.md", report.LATENCY_CHART, report.SIZE_CHART])
    for chart in (report.LATENCY_CHART, report.SIZE_CHART):
        assert (out / chart).read_bytes().startswith(PNG_MAGIC)
    assert doc["input"]["kind"] == manifest.input.kind and tuple(doc["input"]["shape"]) == manifest.input.shape
    latency = [r for r in doc["records"] if r["kind"] == "latency"]
    measured = {(r["artifact"], r["batch_size"]) for r in latency if r["subject"] == "edge_runtime"}
    assert measured == {(a.name, b) for a in manifest.artifacts for b in (1, 4)}
    with_baseline = {(r["artifact"], r["backend"]) for r in latency if r["subject"] == "baseline"}
    assert {(a.name, "litert" if a.format == "tflite" else "onnxruntime") for a in manifest.artifacts} <= with_baseline
    assert {r["subject"] for r in latency} >= {"keras_call", "keras_predict"}
    assert {r["bare"] for r in doc["cold_start_ratios"]} == {"bare_litert", "bare_onnxruntime"}
    assert all(a["accuracy"] is not None and a["gate_passed"] for a in doc["artifacts"])


def test_quick_run_on_rgb_and_feature_artifacts_has_only_finite_positive_numbers(any_quick_run):
    _, doc = any_quick_run
    measured = doc["records"] + doc["ratios"] + doc["cold_start"] + doc["cold_start_ratios"]
    bad = bad_numbers(measured)
    assert not bad, bad[:5]
    for key, check in doc["summary"]["acceptance"].items():
        assert check["value"] is not None and math.isfinite(check["value"]) and check["value"] > 0, key


def test_quick_run_on_rgb_and_feature_artifacts_finds_every_subject_doing_the_same_work(any_quick_run):
    """edge_runtime, the hand-written loops, the bare cold-start lines and Keras classify alike."""
    _, doc = any_quick_run
    assert not [n for n in doc["notes"] if any(d in n for d in DISAGREEMENT)], doc["notes"]


def test_report_shows_latency_per_sample_for_every_batch_size(any_quick_run):
    out, doc = any_quick_run
    unit = "image" if doc["input"]["kind"] == "image" else "sample"
    text = (out / "report.md").read_text()
    assert f"All batch sizes: p50 ms **per {unit}**" in text
    for rec in doc["records"]:
        if rec["kind"] == "latency":
            assert rec["p50_ms_per_sample"] == pytest.approx(rec["p50_ms"] / rec["batch_size"])
        if rec["kind"] == "latency" and rec["subject"] == "edge_runtime" and rec["batch_size"] == 4:
            assert f"{report._ms(rec['p50_ms'] / 4)} ({report._ms(rec['p50_ms'])})" in text


@pytest.mark.parametrize("fixture", ["small_mlp_artifacts", "small_cnn_artifacts", "rgb_cnn_artifacts",
                                     "feature_mlp_artifacts"])
def test_hand_written_loop_classifies_like_edge_runtime(request, fixture):
    """Flat MNIST, NHWC MNIST, RGB NHWC and raw features (standardised for the full-integer artifacts)."""
    import edge_runtime

    directory = request.getfixturevalue(fixture)
    manifest = runner.load_manifest(directory)
    inputs = load_samples(directory, manifest.input.shape).inputs
    for art in manifest.artifacts:
        backend = "litert" if art.format == "tflite" else "onnxruntime"
        loop = baselines.make_baseline(backend, directory / art.file, manifest.preprocessing_for(art), len(inputs), 1)
        model = edge_runtime.load(directory / art.file, backend=backend, threads=1)
        mismatches = int(np.sum(loop(inputs).argmax(1) != model.predict(inputs).argmax(1)))
        # int8 rounding of float input may differ in the last bit (float32 vs float64): one sample at most.
        assert mismatches <= (1 if art.precision == "int8" else 0), (art.name, mismatches)


def _bare_spec(directory: Path, name: str, inputs_path: Path) -> dict:
    manifest = Manifest.read(directory)
    art = manifest.artifact(name=name)
    pre = manifest.preprocessing_for(art)
    return {"subject": "litert" if art.format == "tflite" else "onnxruntime", "artifact": str(directory / art.file),
            "images": str(inputs_path), "threads": None, "scale": pre.scale, "offset": pre.offset,
            "mean": pre.mean, "std": pre.std, "shape": pre.model_input_shape}


@pytest.mark.parametrize("fixture", ["small_mlp_artifacts", "rgb_cnn_artifacts", "feature_mlp_artifacts"])
@pytest.mark.parametrize("name", ["tflite_int8", "onnx_int8_static"])
def test_bare_cold_start_lines_answer_like_edge_runtime(request, fixture, name, tmp_path):
    directory = request.getfixturevalue(fixture)
    manifest = Manifest.read(directory)
    inputs = load_samples(directory, manifest.input.shape).inputs
    answers = {}
    for first in range(2):  # two different first samples
        path = tmp_path / f"inputs{first}.npy"
        np.save(path, inputs[first:])
        bare = coldstart.run_in_child(_bare_spec(directory, name, path))
        mine = coldstart.run_in_child({"subject": "edge_runtime", "artifact": str(directory / manifest.artifact(
            name=name).file), "images": str(path)})
        answers[first] = (bare["top1"], mine["top1"])
    assert all(b == m for b, m in answers.values()), answers


def _child(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as the cold-start children run: ``python -S`` with the parent's sys.path."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(coldstart.__file__).resolve().parents[1]), *(p for p in sys.path if p)]))
    return subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          check=False)


def test_cold_start_child_imports_nothing_before_its_clock_starts():
    """json, pathlib and friends would be free for edge_runtime if the child had them already."""
    done = _child("import os, sys; before = set(sys.modules); import benchmarks.coldstart; "
                  "print(sorted(set(sys.modules) - before))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['benchmarks', 'benchmarks.coldstart']"


def _child_modules(subject: str, spec: dict) -> tuple[int, set[str]]:
    """Run one cold-start subject as the benchmark does; its answer and every module it imported."""
    args = {k: ("" if v is None else ",".join(map(repr, v)) if isinstance(v, tuple) else str(v))
            for k, v in spec.items()}
    run = {"litert": "_bare_tflite", "onnxruntime": "_bare_onnxruntime", "edge_runtime": "_edge_runtime"}[subject]
    done = _child(f"import os, sys; from benchmarks import coldstart; r = coldstart.{run}({args!r}); "
                  "print(r['top1'], ' '.join(sorted(sys.modules)))")
    assert done.returncode == 0, done.stderr
    top1, modules = done.stdout.split(maxsplit=1)
    return int(top1), set(modules.split())


@pytest.mark.parametrize("fixture", ["small_mlp_artifacts", "rgb_cnn_artifacts"])
def test_edge_runtime_cold_start_imports_nothing_beyond_the_bare_script_but_its_own_modules(
        request, fixture, tmp_path):
    """What import + load + predict costs beyond the user's LiteRT lines, pinned without timing.

    The bare script imports numpy and LiteRT only (no edge_runtime, no benchmarks
    module); edge_runtime adds its own modules, json's C scanner for the manifest and
    the interpreter's own sha256 (OpenSSL's only for artifacts over 1 MiB) and nothing
    else: no pathlib, no json package, no hashlib.
    """
    directory = request.getfixturevalue(fixture)
    np.save(tmp_path / "inputs.npy", load_samples(directory, Manifest.read(directory).input.shape).inputs[:2])
    spec = _bare_spec(directory, "tflite_int8", tmp_path / "inputs.npy")
    bare_top1, bare = _child_modules("litert", spec)
    assert not {m for m in bare if m.split(".")[0] == "edge_runtime" or m == "benchmarks.baselines"}
    mine_top1, mine = _child_modules("edge_runtime", {k: spec[k] for k in ("artifact", "images")})
    extra = {m for m in mine - bare if m.split(".")[0] != "edge_runtime"}
    assert extra == {"__future__", "_json", "_sha2" if sys.version_info >= (3, 12) else "_sha256"}
    assert mine_top1 == bare_top1


def test_keras_baseline_runs_a_savedmodel_source_found_through_the_manifest(small_mlp_artifacts, small_mlp_path,
                                                                         tmp_path):
    import keras

    from convert.source import file_sha256

    saved = tmp_path / "exported"
    keras.models.load_model(small_mlp_path, compile=False).export(str(saved), verbose=False)
    manifest = runner.load_manifest(small_mlp_artifacts)
    manifest = manifest._replace(source_model={**manifest.source_model, "path": str(saved), "file": saved.name,
                                               "format": "saved_model", "sha256": file_sha256(saved)})
    config = runner.BenchConfig.for_mode(small_mlp_artifacts, [1, 4], [1], quick=True)
    assert runner.keras_source(config, manifest) == (saved, None)
    samples = runner.benchmark_samples(small_mlp_artifacts, manifest)
    inputs_path = tmp_path / "inputs.npy"
    np.save(inputs_path, runner.repeat_to(samples.inputs, 4))
    notes: list[str] = []
    records = runner.measure_keras(config, manifest, samples, inputs_path, notes)
    assert not [n for n in notes if any(d in n for d in DISAGREEMENT)], notes
    assert {(r["subject"], r.get("batch_size")) for r in records} == {
        ("keras", None), ("keras_call", 1), ("keras_call", 4), ("keras_predict", 1), ("keras_predict", 4)}
    other = manifest._replace(source_model={**manifest.source_model, "sha256": "0" * 64})
    source, reason = runner.keras_source(config, other)
    assert source is None and "sha256 differs" in reason


def test_series_colours_are_all_different_however_many_series():
    for count in (3, 10, 14, 20, 27):
        colours = [tuple(np.round(c, 4)) for c in report._series_colors(count)]
        assert len(set(colours)) == count


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_chart_legends_sit_outside_every_plot_and_each_series_has_its_own_colour(any_quick_run):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, doc = any_quick_run
    doc = {**doc, "config": {**doc["config"], "threads": [1, 2]},
           "records": doc["records"] + [{**r, "threads": 2} for r in doc["records"]
                                        if r["kind"] == "latency" and r["subject"] == "edge_runtime"]}
    for make in (report.latency_figure, report.size_figure):
        fig = make(doc, plt)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
        assert legends, make.__name__
        for legend in legends:
            for ax in fig.axes:
                assert not _overlaps(legend.get_window_extent(renderer), ax.get_window_extent(renderer)), make.__name__
        plt.close(fig)
    fig = report.latency_figure(doc, plt)
    for ax in fig.axes:  # one panel per thread count
        runtime_lines = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
        assert len(runtime_lines) == len({(r["artifact"], r["backend"]) for r in doc["records"]
                                          if r["kind"] == "latency" and r["subject"] == "edge_runtime"})
        assert len({line.get_color() if isinstance(line.get_color(), str) else tuple(line.get_color())
                    for line in runtime_lines}) == len(runtime_lines)
        per_sample = {round(r["p50_ms"] / r["batch_size"], 9) for r in doc["records"]
                      if r["kind"] == "latency" and r["subject"] == "edge_runtime"}
        for line in runtime_lines:  # latency per sample: the batch-4 point is the call latency / 4
            x, y = line.get_data()
            assert list(x) == [1, 4] and {round(v, 9) for v in y} <= per_sample
    plt.close(fig)
