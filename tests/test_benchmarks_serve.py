"""``python -m benchmarks serve``: a quick real run against FastAPI + uvicorn, and its input checks.

The run uses wrk (installed by ``.ci/run``) at 1 and 4 connections for about a
minute in all; it checks that both servers answered every request, that each
measurement is internally consistent and that the report states the targets. It
does not check which server is faster: that is for the benchmark on a quiet machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import edge_runtime
from benchmarks import serve as bench
from edge_runtime.serve import ServeConfig
from tests.test_serve import running

pytestmark = pytest.mark.slow


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", "serve", *args], capture_output=True, text=True, timeout=600
    )


def test_quick_run_measures_both_servers_and_writes_the_report(small_mlp_artifacts, tmp_path):
    out = tmp_path / "serve-report"
    result = _run(
        str(small_mlp_artifacts / "tflite_int8.tflite"),
        "--out",
        str(out),
        "--quick",
        "--connections",
        "1,4",
        "--client",
        "wrk",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    combos = {(r["server"], r["body"], r["connections"]) for r in doc["records"]}
    assert combos == {(s, b, c) for s in ("edge_runtime", "fastapi") for b in ("png", "json") for c in (1, 4)}
    for record in doc["records"]:
        assert record["requests"] > 0 and record["errors"] == 0, record
        assert record["p50_ms"] <= record["p90_ms"] <= record["p99_ms"]
        assert record["images_per_s"] == pytest.approx(
            record["requests_per_s"] * (4 if record["body"] == "json" else 1), rel=0.01
        )
        assert record["rss_mib"] > 10 and record["cpu_s_per_1000"] > 0
    assert doc["soak"]["errors"] == 0 and len(doc["soak"]["rss_mib_samples"]) >= 2
    assert set(doc["startup_s"]) == {"edge_runtime", "fastapi"}
    report = (out / "report.md").read_text()
    assert "## Targets" in report and "FastAPI" in report and "@app.post" in report
    assert (out / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_run_on_an_rgb_conv_net_sends_both_servers_its_own_colour_images(rgb_cnn_artifacts, tmp_path):
    """Not only MNIST: the bodies are the model's test samples and the FastAPI app reads the model's input."""
    out = tmp_path / "serve-rgb"
    result = _run(str(rgb_cnn_artifacts / "tflite_int8.tflite"), "--out", str(out), "--quick", "--connections", "4")
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads((out / "results.json").read_text())
    assert {(r["server"], r["body"]) for r in doc["records"]} == {
        (server, body) for server in ("edge_runtime", "fastapi") for body in ("png", "json")}
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in doc["records"])
    assert doc["input"] == edge_runtime.load(rgb_cnn_artifacts / "tflite_int8.tflite").input.describe()
    assert "rgb" in doc["input"] and doc["input"] in (out / "report.md").read_text()


@pytest.mark.parametrize("fixture", ["small_mlp_artifacts", "rgb_cnn_artifacts"])
def test_reference_app_answers_what_edge_runtime_answers(fixture, request, tmp_path):
    """A fair comparison: the FastAPI app does the same work, so it gives the same probabilities."""
    model_path = request.getfixturevalue(fixture) / "tflite_int8.tflite"
    model = edge_runtime.load(model_path)
    png, as_json = bench.request_bodies(model_path)
    images = json.loads(as_json.data)["images"]
    server = bench.start_reference(model_path, 1, tmp_path)
    try:
        server.wait_ready(png)
        answers = [json.loads(bench.post(server.port, body)[1]) for body in (png, as_json)]
    finally:
        server.stop()
    expected = model.predict(np.asarray(images, np.uint8))
    np.testing.assert_allclose(answers[0]["probabilities"][0], expected[0], atol=1e-6)
    np.testing.assert_allclose(answers[1]["probabilities"], expected, atol=1e-6)


def test_feature_model_is_refused_in_one_line(feature_mlp_artifacts, tmp_path):
    result = _run(str(feature_mlp_artifacts / "tflite_int8.tflite"), "--out", str(tmp_path / "out"), "--quick")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "the serve benchmark sends images; the model reads 13 features" in result.stderr
    assert not (tmp_path / "out").exists()


def test_python_client_drives_a_keep_alive_server_without_errors(small_mlp_artifacts):
    model = edge_runtime.load(small_mlp_artifacts / "tflite_int8.tflite")
    body = bench.request_bodies(small_mlp_artifacts / "tflite_int8.tflite")[1]
    with running(ServeConfig(host="127.0.0.1", port=0), [model]) as (server, log):
        with tempfile.TemporaryDirectory() as tmp:
            result = bench.run_python(server.server_port, body, 3, 1.0, Path(tmp))
    answered = [r for r in log.records() if r.get("event") == "access"]
    assert result["requests"] > 0 and result["errors"] == 0
    assert len(answered) == result["requests"] and all(r["images"] == bench.JSON_BATCH for r in answered)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["/nonexistent/model.tflite", "--out", "OUT"], "MODEL '/nonexistent/model.tflite' is not a file"),
        (["MODEL", "--out", "OUT", "--connections", "4,0"], "--connections"),
        (["MODEL", "--out", "OUT", "--batching-model", "/nonexistent.tflite"], "--batching-model"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_before_measuring(small_mlp_artifacts, tmp_path, args, fragment):
    args = [
        str(small_mlp_artifacts / "tflite_int8.tflite") if a == "MODEL" else str(tmp_path / "out") if a == "OUT" else a
        for a in args
    ]
    result = _run(*args)
    assert result.returncode == 2
    assert fragment in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_existing_output_is_not_replaced_without_force(small_mlp_artifacts, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = _run(str(small_mlp_artifacts / "tflite_int8.tflite"), "--out", str(out), "--quick")
    assert result.returncode == 2 and "--force" in result.stderr
    assert (out / "keep.txt").read_text() == "mine"


def test_missing_reference_server_says_which_extra_to_install(small_mlp_artifacts, tmp_path, monkeypatch, capsys):
    import importlib.util

    from benchmarks.__main__ import main
    from edge_runtime.cli_support import run_cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    code = run_cli("python -m benchmarks", main, ["serve", str(small_mlp_artifacts / "tflite_int8.tflite"),
                                                  "--out", str(tmp_path / "out"), "--quick"])
    assert code == 2
    assert "needs fastapi: pip install 'keras2edge[bench-serve]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
