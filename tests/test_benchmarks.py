"""Benchmarks: the --quick CLI on the small MLP, its outputs, and the pieces under it.

No test asserts anything about how fast something is (timings on a shared 2-core
machine are not reproducible); they pin the schema, that every measured number is
finite and positive, the bad-input behaviour of the CLI, and the measurement logic.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import baselines, coldstart, machine, report, runner, stats
from tests.measured import bad_numbers

LATENCY_FIELDS = ("count", "batch_size", "first_ms", "min_ms", "max_ms", "mean_ms", "std_ms", "p50_ms", "p90_ms",
                  "p99_ms", "throughput_sps")
COLD_FIELDS = runner.COLD_FIELDS
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cli(*args: str | os.PathLike[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "benchmarks", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="session")
def bench_artifacts(tmp_path_factory, small_mlp_artifacts, mnist) -> Path:
    """A private copy of the small MLP's artifacts with a real parity.json beside them."""
    from convert.parity import run_parity

    directory = tmp_path_factory.mktemp("bench") / "artifacts"
    shutil.copytree(small_mlp_artifacts, directory)
    run_parity(directory, dataset=mnist, diagnose=False)
    return directory


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory, bench_artifacts) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("bench_out") / "report"
    done = _cli(bench_artifacts, "--out", out, "--quick", "--batch-sizes", "1,4")
    assert done.returncode == 0, done.stderr[-2000:]
    return out, done


@pytest.fixture(scope="session")
def quick_doc(quick_run) -> dict:
    return json.loads((quick_run[0] / "results.json").read_text())


def test_quick_run_writes_every_output_file(quick_run):
    out, _ = quick_run
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["results.json", "results.csv", "report.md", report.LATENCY_CHART, report.SIZE_CHART])
    for chart in (report.LATENCY_CHART, report.SIZE_CHART):
        assert (out / chart).read_bytes().startswith(PNG_MAGIC)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "staging directory left behind"


def test_quick_results_are_schema_versioned_with_one_record_per_measurement(quick_doc, bench_artifacts):
    assert quick_doc["schema_version"] == runner.SCHEMA_VERSION
    assert quick_doc["tool"] == "keras2edge.benchmarks" and quick_doc["mode"] == "quick"
    names = {a.name for a in runner.load_manifest(bench_artifacts).artifacts}
    latency = [r for r in quick_doc["records"] if r["kind"] == "latency"]
    runtime = {(r["artifact"], r["batch_size"]) for r in latency if r["subject"] == "edge_runtime"}
    # every artifact measured through edge_runtime at both batch sizes, each with its hand-written loop
    assert runtime == {(n, b) for n in names for b in (1, 4)}
    baseline = {(r["artifact"], r["backend"], r["batch_size"]) for r in latency if r["subject"] == "baseline"}
    assert baseline == {(r["artifact"], r["backend"], r["batch_size"]) for r in latency
                        if r["subject"] == "edge_runtime" and baselines.has_baseline(r["backend"])}
    assert len(quick_doc["ratios"]) == len(baseline)
    cold = {r["subject"] for r in quick_doc["records"] if r["kind"] == "cold_start"}
    assert {"edge_runtime", "bare_litert", "bare_onnxruntime", "keras"} <= cold
    assert {(r["artifact"], r["bare"]) for r in quick_doc["cold_start_ratios"]} == {
        ("tflite_int8", "bare_litert"), ("onnx_int8_static", "bare_onnxruntime")}
    assert {r["subject"] for r in latency} >= {"keras_call", "keras_predict"}
    assert set(quick_doc["summary"]["acceptance"]) == set(runner.TARGETS)


def test_every_measured_number_is_finite_and_positive(quick_doc):
    measured = quick_doc["records"] + quick_doc["ratios"] + quick_doc["cold_start"] + quick_doc["cold_start_ratios"]
    for record in measured:
        fields = LATENCY_FIELDS if record.get("kind") == "latency" else COLD_FIELDS if "total_ms" in record else ()
        for field in fields:
            assert field in record, (field, record)
    bad = bad_numbers(measured)
    assert not bad, bad[:5]
    for key, check in quick_doc["summary"]["acceptance"].items():
        assert check["value"] is not None and math.isfinite(check["value"]) and check["value"] > 0, key
        assert isinstance(check["passed"], bool)


def test_accuracy_and_size_come_from_parity_and_manifest(quick_doc, bench_artifacts):
    from edge_runtime.records.parity import ParityRecord

    parity = ParityRecord.read(bench_artifacts)
    sizes = {a.name: a.bytes for a in runner.load_manifest(bench_artifacts).artifacts}
    for art in quick_doc["artifacts"]:
        assert art["bytes"] == sizes[art["name"]]
        assert art["accuracy"] == parity.artifacts[art["name"]].accuracy
        assert art["agreement"] == parity.artifacts[art["name"]].agreement
    assert quick_doc["keras_accuracy"] == parity.keras_accuracy


def test_csv_has_one_row_per_record(quick_run, quick_doc):
    rows = list(csv.DictReader((quick_run[0] / "results.csv").open()))
    assert len(rows) == len(quick_doc["records"])
    assert [r["kind"] for r in rows] == [r["kind"] for r in quick_doc["records"]]


def test_report_names_fastest_smallest_and_keras_speedup(quick_run, quick_doc):
    text = (quick_run[0] / "report.md").read_text()
    summary = quick_doc["summary"]
    assert f"`{summary['fastest_batch1']['artifact']}`" in text.split("## Artifacts")[0]
    assert f"`{summary['smallest_within_gate']['name']}`" in text.split("## Artifacts")[0]
    assert "Speed-up over Keras `model(x)` at batch 1" in text
    for heading in ("## edge_runtime vs the hand-written interpreter loop", "## Cold start", "## Keras baseline",
                    "## Machine"):
        assert heading in text
    assert "--quick" in text  # the report says what the quick run left out


def test_progress_goes_to_stderr_and_stdout_stays_empty(quick_run):
    _, done = quick_run
    assert done.stdout == ""
    assert "[benchmarks]" in done.stderr and "count=" in done.stderr


def test_compare_and_force_put_two_runs_side_by_side(quick_run, bench_artifacts):
    out, _ = quick_run
    other = out.parent / "other.json"
    doc = json.loads((out / "results.json").read_text())
    doc["machine"]["cpu_model"] = "Raspberry Pi 5 test double"
    other.write_text(json.dumps(doc))
    done = _cli(bench_artifacts, "--out", out, "--quick", "--batch-sizes", "1", "--threads", "1",
                "--compare", other, "--force")
    assert done.returncode == 0, done.stderr[-2000:]
    text = (out / "report.md").read_text()
    section = text.split("## Comparison with another machine")[1]
    assert "Raspberry Pi 5 test double" in section and "other/this" in section
    assert json.loads((out / "results.json").read_text())["config"]["batch_sizes"] == [1]


@pytest.mark.parametrize("args, message", [
    (["{missing}", "--out", "{out}"], "does not exist"),
    (["{empty}", "--out", "{out}"], "no manifest.json"),
    (["{art}", "--out", "{out}", "--batch-sizes", "1,x"], "--batch-sizes"),
    (["{art}", "--out", "{out}", "--threads", "0"], "--threads"),
    (["{art}", "--out", "{out}", "--compare", "{missing}"], "--compare"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, bench_artifacts, args, message):
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "nope", "empty": tmp_path / "empty", "out": tmp_path / "out",
             "art": bench_artifacts}
    done = _cli(*[a.format(**paths) for a in args], timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr
    assert not (tmp_path / "out").exists()


def test_existing_out_is_refused_without_force_and_left_alone(tmp_path, bench_artifacts):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    done = _cli(bench_artifacts, "--out", out, "--quick", timeout=60)
    assert done.returncode == 2 and "--force" in done.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_summarize_percentiles_and_throughput():
    s = stats.summarize([i / 1000 for i in range(1, 101)], batch_size=10, first_s=0.5)
    assert (s.count, s.min_ms, s.max_ms, s.first_ms) == (100, 1.0, 100.0, 500.0)
    assert s.p50_ms == pytest.approx(50.5) and s.p90_ms == pytest.approx(90.1) and s.p99_ms == pytest.approx(99.01)
    assert s.throughput_sps == pytest.approx(10 / 0.0505)
    assert s.format_line().startswith("count=100 first=500000 min=1000 max=100000 avg=50500")


def test_interleaved_timing_alternates_and_reaches_min_runs():
    calls: list[str] = []
    policy = stats.TimingPolicy(warmup_runs=1, min_runs=40, min_seconds=0.0, max_seconds=60.0)
    result = stats.measure_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                       batch_size=1, policy=policy, round_calls=5)
    timed = calls[4:]  # first call + one warm-up of each
    assert timed[:20] == ["a"] * 5 + ["b"] * 5 + ["b"] * 5 + ["a"] * 5
    assert result["a"].count == result["b"].count == 40


def test_interleaved_timing_stops_at_max_seconds_even_below_min_runs():
    policy = stats.TimingPolicy(warmup_runs=0, min_runs=10**9, min_seconds=0.0, max_seconds=0.01)
    result = stats.measure(lambda: None, batch_size=1, policy=policy)
    assert 0 < result.count < 10**9


def test_cpu_model_reads_raspberry_pi_cpuinfo_and_throttle_bits():
    pi = ("processor\t: 0\nBogoMIPS\t: 108.00\nCPU part\t: 0xd0b\n\n"
          "Revision\t: d04170\nModel\t: Raspberry Pi 5 Model B Rev 1.0\n")
    assert machine.cpu_model(pi) == "Raspberry Pi 5 Model B Rev 1.0"
    assert machine.cpu_model("CPU part\t: 0xd03\n") == "ARM CPU part 0xd03"
    assert machine.decode_throttled(0x4) == ["throttled now"]


def test_machine_info_names_cpu_cores_and_library_versions():
    info = machine.machine_info()
    assert info["logical_cores"] >= 1 and info["usable_cores"] >= 1
    assert info["libraries"]["numpy"] == np.__version__
    assert set(info["state"]) >= {"governor", "temperature_c", "throttled", "load_average"}


def test_keras_baseline_is_skipped_with_a_note_when_tensorflow_is_missing(monkeypatch, bench_artifacts, tmp_path):
    real = runner.importlib.util.find_spec
    monkeypatch.setattr(runner.importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow"
                        else real(name, *a))
    notes: list[str] = []
    config = runner.BenchConfig.for_mode(bench_artifacts, [1], [1], quick=True)
    manifest = runner.load_manifest(bench_artifacts)
    samples = runner.benchmark_samples(bench_artifacts, manifest)
    assert runner.measure_keras(config, manifest, samples, tmp_path / "unused.npy", notes) == []
    assert notes == ["TensorFlow not installed: Keras baseline skipped"]


def test_cold_start_child_reports_its_own_peak_rss_not_the_parents(bench_artifacts, tmp_path):
    ballast = np.ones(300 * 2**20, dtype=np.uint8)  # the parent now holds >= 300 MiB resident
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((1, 28, 28), dtype=np.uint8))
    manifest = runner.load_manifest(bench_artifacts)
    art = manifest.artifact(name="tflite_int8")
    pre = manifest.preprocessing_for(art)
    result = coldstart.run_in_child({"subject": "litert", "artifact": str(bench_artifacts / art.file),
                                     "images": str(images), "scale": pre.scale, "offset": pre.offset,
                                     "mean": pre.mean, "std": pre.std, "shape": pre.model_input_shape})
    assert 0 < result["peak_rss_bytes"] < ballast.nbytes
    assert result["total_ms"] == pytest.approx(result["import_ms"] + result["load_ms"] + result["first_inference_ms"])
    assert 0 < result["cpu_ms"] and result["backend"] == "litert"


def test_busy_or_throttled_machine_is_flagged_in_the_notes():
    idle = {"usable_cores": 4, "state": {"load_average": [0.5, 0.4, 0.3]},
            "state_after": {"load_average": [1.0, 0.5, 0.3], "throttled_flags": []}}
    assert runner._busy_note(idle) is None
    busy = {**idle, "state_after": {"load_average": [6.5, 2.0, 1.0], "throttled_flags": ["throttled now"]}}
    note = runner._busy_note(busy)
    assert "6.5 on 4 usable cores" in note and "throttled now" in note


def test_incomplete_compare_file_is_refused_before_benchmarking(tmp_path):
    from benchmarks.report import load_results
    from edge_runtime.errors import DataError

    path = tmp_path / "results.json"
    path.write_text(json.dumps({"tool": "keras2edge.benchmarks", "schema_version": 1,
                                "machine": {}, "cold_start": [], "records": [{"kind": "latency"}]}))
    with pytest.raises(DataError, match="lacks subject, artifact, backend, p50_ms"):
        load_results(path)


def test_keras_baseline_refuses_a_model_the_artifacts_were_not_converted_from(bench_artifacts, small_cnn_path):
    from dataclasses import replace

    config = replace(runner.BenchConfig.for_mode(bench_artifacts, [1], [1], quick=True), keras_model=small_cnn_path)
    source, reason = runner.keras_source(config, runner.load_manifest(bench_artifacts))
    assert source is None and "sha256 differs" in reason
