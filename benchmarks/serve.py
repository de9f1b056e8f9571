"""``python -m benchmarks serve MODEL --out DIR``: edge_runtime's server against FastAPI + uvicorn.

The question a user asks before deploying: is ``python -m edge_runtime serve`` at
least as good as the server I would write myself? So this starts both on loopback:

- ``edge_runtime``: ``python -m edge_runtime serve MODEL --workers N`` with its defaults;
- ``fastapi``: :data:`REFERENCE_APP`, the obvious FastAPI app (one LiteRT or ONNX
  Runtime interpreter per process, the PNG decoded with Pillow, ``async def`` because
  an interpreter is not thread-safe), under ``uvicorn --workers N``;

with N = the number of cores, and drives both with the same load generator (``wrk``
when it is installed, else a bounded Python client), alternating them so that
machine drift hits both alike, at 1, 4, 16 and 64 connections, with a PNG body (one
image) and a JSON body (four images), both made from the model's own test samples (any
image model; the FastAPI app has the model's input size, colour mode and preprocessing
written in, as a user writes them). For every run it records requests/s, images/s,
p50/p90/p99 latency, errors (non-2xx answers and socket errors), the resident memory
of all the server's processes and their CPU seconds per 1,000 requests. It then runs
edge_runtime alone at 64 connections for ``--soak`` seconds, sampling its memory, and,
with ``--batching-model``, compares dynamic batching on and off (``--max-batch 1``)
at 16 connections on that model.

``--batching-model standin`` builds a stand-in for when no colour model is at hand: a
small MobileNet-like Keras network (Conv2D + DepthwiseConv2D, random weights, 64x64x3
input, int8) converted with ``TFLiteConverter``; it needs TensorFlow.

Everything listens on 127.0.0.1 and every run is bounded in time. Outputs, written
atomically into ``--out``: ``results.json``, ``report.md`` and ``throughput.png``.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import io
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.stats import median
from edge_runtime.atomic import check_output_dir, staged_dir, write_bytes, write_json, write_text
from edge_runtime.cli_support import ArgumentParser, positive_float, positive_int
from edge_runtime.errors import Keras2EdgeError

PROG = "python -m benchmarks serve"
SCHEMA_VERSION = 1
JSON_BATCH = 4
STANDIN = "standin"
_START_TIMEOUT = 120.0

# The server a user would write instead (run as `uvicorn reference_app:app --workers N`).
REFERENCE_APP = """\
import io, os
import numpy as np
from fastapi import FastAPI, Request
from PIL import Image

MODEL = os.environ["MODEL"]
# The model's input, copied from its manifest.json as a user writes it into the app.
WIDTH, HEIGHT, MODE = int(os.environ["WIDTH"]), int(os.environ["HEIGHT"]), os.environ["MODE"]  # "L" or "RGB"
SCALE, OFFSET = float(os.environ["SCALE"]), float(os.environ["OFFSET"])
MEAN = np.array(os.environ["MEAN"].split(","), np.float32)
STD = np.array(os.environ["STD"].split(","), np.float32)
if MODEL.endswith(".onnx"):
    import onnxruntime as ort
    session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape, dtype, quant = [1, *inp.shape[1:]], np.float32, None
    def run(x):
        return session.run(None, {inp.name: x})[0]
else:
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=MODEL, num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    shape, dtype, quant = inp["shape"], inp["dtype"], inp["quantization"]
    def run(x):
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"]).astype(np.float32)
        scale, zero = out["quantization"]
        return (y - zero) * scale if scale else y

app = FastAPI()

@app.post("/v1/predict")
async def predict(request: Request):
    if request.headers["content-type"] == "application/json":
        images = np.asarray((await request.json())["images"], dtype=np.uint8)
    else:
        image = Image.open(io.BytesIO(await request.body())).convert(MODE).resize((WIDTH, HEIGHT))
        images = np.asarray(image)[None]
    probabilities = []
    for image in images:
        x = ((image.astype(np.float32) * SCALE + OFFSET - MEAN) / STD).reshape(shape)
        if quant and quant[0]:
            x = np.clip(np.round(x / quant[0] + quant[1]), -128, 127)
        probabilities.append(run(x.astype(dtype))[0].tolist())
    return {"labels": [str(int(np.argmax(p))) for p in probabilities], "probabilities": probabilities}
"""

# wrk: one request shape per run, read from the environment; latency percentiles as JSON at the end.
WRK_SCRIPT = """\
local f = io.open(os.getenv("BODY_FILE"), "rb"); wrk.body = f:read("*all"); f:close()
wrk.method = "POST"; wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE")
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d}\\n', summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Body:
    """One kind of request: its name, bytes, content type and how many images it carries."""

    name: str
    data: bytes
    content_type: str
    images: int


@dataclass(frozen=True)
class Plan:
    """What one run measures and for how long."""

    connections: tuple[int, ...]
    duration: float
    warmup: float
    rounds: int
    soak: float
    workers: int
    client: str


# ---------------------------------------------------------------------- servers


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server under test in its own process group; stopped with SIGTERM, then SIGKILL.

    Parameters
    ----------
    name
        ``edge_runtime`` or ``fastapi`` (also the label in the results).
    command
        The command line; it must listen on ``port``.
    port
        Where it listens.
    log_path
        Its stdout and stderr (access logs) go here.
    env
        Extra environment variables.
    """

    def __init__(
        self, name: str, command: list[str], port: int, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name, self.command, self.port, self.log_path = name, command, port, log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def wait_ready(self, probe: Body, timeout: float = _START_TIMEOUT) -> float:
        """Wait until a request succeeds; returns the seconds it took from start.

        A server that answers the probe with an error status (other than 503, not
        ready yet) fails at once rather than after ``timeout``, and every failure quotes the last line of the
        server's log: the log lives in a temporary directory that is gone by the
        time the user reads the message.
        """
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.process.poll() is not None:
                raise Keras2EdgeError(f"{self.name} server exited with status {self.process.returncode}: "
                                      f"{self._last_log_line()}")
            try:
                status, _ = post(self.port, probe)
            except OSError:  # not listening yet
                time.sleep(0.05)
                continue
            if status == 200:
                return time.monotonic() - start
            if status == 503:  # up, but not ready for requests yet
                time.sleep(0.05)
                continue
            raise Keras2EdgeError(f"{self.name} server answered {status} to a {probe.name} request: "
                                  f"{self._last_log_line()}")
        raise Keras2EdgeError(f"{self.name} server did not answer within {timeout:.0f} s: {self._last_log_line()}")

    def _last_log_line(self) -> str:
        self._log.flush()
        lines = [line.strip() for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        return f"its log ends with: {lines[-1]}" if lines else "its log is empty"

    def processes(self) -> list[Any]:
        """The server's process and all its descendants (uvicorn and edge_runtime workers)."""
        import psutil

        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def usage(self) -> tuple[int, float]:
        """(resident bytes, CPU seconds) summed over every process of the server."""
        import psutil

        rss, cpu = 0, 0.0
        for proc in self.processes():
            try:
                rss += proc.memory_info().rss
                times = proc.cpu_times()
                cpu += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return rss, cpu

    def stop(self) -> int | None:
        """SIGTERM, wait, then SIGKILL the group; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        try:  # uvicorn's workers, should the supervisor have left any
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
        return self.process.returncode


def post(port: int, body: Body, timeout: float = 10.0) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/predict", body=body.data, headers={"Content-Type": body.content_type})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# ---------------------------------------------------------------- load generators


def run_wrk(port: int, body: Body, connections: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """Drive ``port`` with wrk; requests, errors and latency percentiles."""
    script = workdir / "post.lua"
    if not script.exists():
        script.write_text(WRK_SCRIPT)
    body_file = workdir / f"body-{body.name}"
    if not body_file.exists():
        body_file.write_bytes(body.data)
    threads = max(1, min(connections, os.cpu_count() or 1))
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}/v1/predict",
    ]
    env = {**os.environ, "BODY_FILE": str(body_file), "CONTENT_TYPE": body.content_type}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=seconds + 60, check=False)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if result.returncode != 0 or line is None:
        raise Keras2EdgeError(f"wrk failed ({result.returncode}): {result.stderr.strip()[:300]}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    elapsed = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "seconds": elapsed,
        "errors": raw["non_2xx"] + raw["socket_errors"],
        "non_2xx": raw["non_2xx"],
        "socket_errors": raw["socket_errors"],
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
    }


def run_python(port: int, body: Body, connections: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """Drive ``port`` from threads with keep-alive connections; the fallback when wrk is missing.

    Far slower than wrk (each thread needs the GIL), so at many connections it
    measures the client as much as the server; the report says which client ran.
    """
    deadline = time.monotonic() + seconds
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    non_2xx = [0] * connections

    def client(k: int) -> None:
        conn: http.client.HTTPConnection | None = None
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("POST", "/v1/predict", body=body.data, headers={"Content-Type": body.content_type})
                response = conn.getresponse()
                response.read()
                if response.will_close:
                    conn.close()
                    conn = None
            except OSError:
                errors[k] += 1
                if conn is not None:
                    conn.close()
                conn = None
                continue
            latencies[k].append(time.perf_counter() - start)
            if not 200 <= response.status < 300:
                non_2xx[k] += 1
        if conn is not None:
            conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    elapsed = time.perf_counter() - started
    samples = np.array([t for per in latencies for t in per]) * 1000
    p50, p90, p99 = (float(np.percentile(samples, q)) if samples.size else math.nan for q in (50, 90, 99))
    return {
        "requests": int(samples.size),
        "seconds": elapsed,
        "errors": sum(errors) + sum(non_2xx),
        "non_2xx": sum(non_2xx),
        "socket_errors": sum(errors),
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
    }


CLIENTS = {"wrk": run_wrk, "python": run_python}


def measure(server: Server, body: Body, connections: int, plan: Plan, workdir: Path, **labels: Any) -> dict[str, Any]:
    """Warm up, then one timed run: throughput, latency, errors, memory and CPU of the server."""
    drive = CLIENTS[plan.client]
    drive(server.port, body, connections, plan.warmup, workdir)
    _, cpu_before = server.usage()
    result = drive(server.port, body, connections, plan.duration, workdir)
    rss, cpu_after = server.usage()
    ok = result["requests"] - result["non_2xx"]
    seconds = result["seconds"]
    return {
        "server": server.name,
        "body": body.name,
        "connections": connections,
        "client": plan.client,
        **labels,
        "requests": result["requests"],
        "seconds": round(seconds, 3),
        "requests_per_s": round(result["requests"] / seconds, 1),
        "images_per_s": round(ok * body.images / seconds, 1),
        "p50_ms": round(result["p50_ms"], 3),
        "p90_ms": round(result["p90_ms"], 3),
        "p99_ms": round(result["p99_ms"], 3),
        "errors": result["errors"],
        "non_2xx": result["non_2xx"],
        "socket_errors": result["socket_errors"],
        "rss_mib": round(rss / 2**20, 1),
        "cpu_s_per_1000": (
            round(1000 * (cpu_after - cpu_before) / result["requests"], 4) if result["requests"] else None
        ),
    }


# ------------------------------------------------------------------------ bodies


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def request_bodies(model_path: Path) -> list[Body]:
    """A PNG of the model's first test sample and a JSON body of its first four.

    From ``samples.npz`` beside the model (a schema-1 MNIST directory without it: the
    embedded MNIST test digits), so each server gets images of the size and colour
    mode the model reads: 28x28 digits for MNIST, colour photos for an RGB conv net.

    Raises
    ------
    Keras2EdgeError
        The model reads feature vectors: the benchmark sends images.
    """
    import edge_runtime
    from edge_runtime.sample_set import load_samples

    spec = edge_runtime.load(model_path).input
    if not spec.is_image:
        raise Keras2EdgeError(f"{model_path}: the serve benchmark sends images; the model reads {spec.describe()}")
    samples = load_samples(model_path.parent, spec.shape).inputs
    pixels = np.ascontiguousarray(samples[..., 0] if samples.ndim == 4 and samples.shape[3] == 1 else samples,
                                  dtype=np.uint8)
    as_json = json.dumps({"images": pixels[:JSON_BATCH].tolist()}).encode()
    return [Body("png", _png(pixels[0]), "image/png", 1), Body("json", as_json, "application/json", JSON_BATCH)]


def make_rgb_standin(path: Path, seed: int = 0) -> Path:
    """Build the stand-in colour conv net (int8 TFLite, 64x64x3 -> 10 classes, random weights).

    A MobileNet-like stack (a strided Conv2D, then DepthwiseConv2D + 1x1 Conv2D
    blocks down to 4x4x256): the kind of network batching is meant for. Its weights
    are random: the benchmark measures speed, not accuracy. ``samples.npz`` beside it
    (pseudo-random images and the model's own answers) gives the server's
    ``/healthz`` its self-check inputs, as the converter's does for a real model.
    """
    try:
        import tensorflow as tf
    except ImportError:
        raise Keras2EdgeError("--batching-model standin needs TensorFlow: pip install 'keras2edge[train]'") from None
    tf.keras.utils.set_random_seed(seed)
    layers = tf.keras.layers
    blocks = []
    for i, width in enumerate((32, 64, 128, 256)):
        blocks += [
            layers.DepthwiseConv2D(3, strides=1 if i == 0 else 2, padding="same", activation="relu"),
            layers.Conv2D(width, 1, activation="relu"),
        ]
    model = tf.keras.Sequential(
        [
            tf.keras.Input((64, 64, 3)),
            layers.Conv2D(16, 3, strides=2, padding="same", activation="relu"),
            *blocks,
            layers.GlobalAveragePooling2D(),
            layers.Dense(10, activation="softmax"),
        ]
    )
    rng = np.random.default_rng(seed)

    def calibration():
        for _ in range(20):
            yield [rng.random((1, 64, 64, 3), dtype=np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    write_bytes(path, converter.convert())
    import edge_runtime
    from edge_runtime.sample_set import write_samples

    images = rng.integers(0, 256, size=(8, 64, 64, 3), dtype=np.uint8)
    probabilities = edge_runtime.load(path).predict(images)
    write_samples(path.parent, images, probabilities.argmax(axis=1), np.arange(len(images)), probabilities)
    return path


# -------------------------------------------------------------------------- runs


def start_ours(
    name: str, model: Path, workers: int, max_connections: int, workdir: Path, extra: Sequence[str] = ()
) -> Server:
    """``python -m edge_runtime serve`` with its defaults, except the port and the connection limit."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "edge_runtime",
        "serve",
        str(model),
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--max-connections",
        str(max_connections),
        *extra,
    ]
    return Server(name, command, port, workdir / f"{name}.log")


def start_reference(model: Path, workers: int, workdir: Path) -> Server:
    """``uvicorn reference_app:app --workers N``, as a user would start it."""
    (workdir / "reference_app.py").write_text(REFERENCE_APP)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "reference_app:app",
        "--app-dir",
        str(workdir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    return Server("fastapi", command, port, workdir / "fastapi.log", env=reference_env(model))


def reference_env(model: Path) -> dict[str, str]:
    """The reference app's constants: the model's input size, colour mode and preprocessing, from its manifest."""
    import edge_runtime

    loaded = edge_runtime.load(model)
    spec, pre = loaded.input, loaded.preprocessing
    height, width = spec.image_size
    return {
        "MODEL": str(model.absolute()),
        "WIDTH": str(width),
        "HEIGHT": str(height),
        "MODE": "RGB" if spec.color_mode == "rgb" else "L",
        "SCALE": repr(pre.scale),
        "OFFSET": repr(pre.offset),
        "MEAN": ",".join(map(repr, pre.mean)),
        "STD": ",".join(map(repr, pre.std)),
    }


def compare_servers(
    model: Path, plan: Plan, workdir: Path, progress: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Both servers, every body and connection count, alternated; plus start-up times."""
    bodies = request_bodies(model)
    servers = [
        start_ours("edge_runtime", model, plan.workers, max(plan.connections) * 2, workdir),
        start_reference(model, plan.workers, workdir),
    ]
    records: list[dict[str, Any]] = []
    startup: dict[str, Any] = {}
    try:
        for server in servers:
            startup[server.name] = round(server.wait_ready(bodies[0]), 3)
        for round_index in range(plan.rounds):
            order = servers if round_index % 2 == 0 else servers[::-1]
            for body in bodies:
                for connections in plan.connections:
                    for server in order:
                        record = measure(server, body, connections, plan, workdir, round=round_index)
                        progress(
                            f"{server.name:13s} {body.name:4s} c={connections:<3d} "
                            f"{record['requests_per_s']:8.1f} req/s p99 {record['p99_ms']:7.2f} ms  "
                            f"errors {record['errors']}  RSS {record['rss_mib']} MiB"
                        )
                        records.append(record)
    finally:
        for server in servers:
            server.stop()
    return records, startup


def soak(model: Path, plan: Plan, workdir: Path, progress: Any) -> dict[str, Any]:
    """edge_runtime alone at the largest connection count: is its memory flat?"""
    body = request_bodies(model)[0]
    connections = max(plan.connections)
    server = start_ours("soak", model, plan.workers, connections * 2, workdir)
    samples: list[tuple[float, float]] = []
    try:
        server.wait_ready(body)
        CLIENTS[plan.client](server.port, body, connections, plan.warmup, workdir)
        result: dict[str, Any] = {}
        started = time.monotonic()
        load = threading.Thread(
            target=lambda: result.update(CLIENTS[plan.client](server.port, body, connections, plan.soak, workdir))
        )
        load.start()
        interval = max(plan.soak / 12, 0.5)
        while load.is_alive():
            samples.append((round(time.monotonic() - started, 2), round(server.usage()[0] / 2**20, 2)))
            load.join(timeout=interval)
    finally:
        server.stop()
    rss = [mib for _, mib in samples]
    drift = 100 * (max(rss) - min(rss)) / rss[0] if rss else math.nan
    progress(
        f"soak: {connections} connections for {plan.soak:.0f} s, RSS {min(rss)}..{max(rss)} MiB ({drift:.1f} %), "
        f"errors {result.get('errors')}"
    )
    return {
        "connections": connections,
        "seconds": plan.soak,
        "rss_mib_samples": samples,
        "rss_spread_pct": round(drift, 2),
        "requests": result.get("requests"),
        "errors": result.get("errors"),
        "non_2xx": result.get("non_2xx"),
    }


def compare_batching(model: Path, plan: Plan, workdir: Path, progress: Any) -> list[dict[str, Any]]:
    """Dynamic batching on (defaults) vs off (``--max-batch 1``) at 16 connections, alternated."""
    body = request_bodies(model)[0]
    servers = [
        start_ours("batching_on", model, plan.workers, 64, workdir),
        start_ours("batching_off", model, plan.workers, 64, workdir, ["--max-batch", "1"]),
    ]
    records = []
    try:
        for server in servers:
            server.wait_ready(body)
        for round_index in range(plan.rounds):
            for server in servers if round_index % 2 == 0 else servers[::-1]:
                record = measure(server, body, 16, plan, workdir, round=round_index, model=model.name)
                progress(f"{server.name:13s} c=16 {record['images_per_s']:8.1f} images/s p99 {record['p99_ms']:.2f} ms")
                records.append(record)
    finally:
        for server in servers:
            server.stop()
    return records


# ------------------------------------------------------------------------ report


def summarize(
    records: list[dict[str, Any]], soak_result: dict[str, Any] | None, batching: list[dict[str, Any]]
) -> dict[str, Any]:
    """Medians over rounds per (server, body, connections), the ratios, and the targets of issue 13."""
    table: dict[tuple[str, str, int], dict[str, Any]] = {}
    keys = sorted({(r["server"], r["body"], r["connections"]) for r in records}, key=lambda k: (k[1], k[2], k[0]))
    for key in keys:
        runs = [r for r in records if (r["server"], r["body"], r["connections"]) == key]
        table[key] = {
            field: median([r[field] for r in runs], digits=3)
            for field in ("requests_per_s", "images_per_s", "p50_ms", "p90_ms", "p99_ms", "rss_mib", "cpu_s_per_1000")
        }
        table[key]["errors"] = sum(r["errors"] for r in runs)
        table[key]["non_2xx"] = sum(r["non_2xx"] for r in runs)
    rows = []
    for (server, body, connections), values in table.items():
        rows.append({"server": server, "body": body, "connections": connections, **values})
    ratios = []
    for body, connections in sorted({(b, c) for _, b, c in table}, key=lambda k: (k[0], k[1])):
        ours, theirs = table.get(("edge_runtime", body, connections)), table.get(("fastapi", body, connections))
        if ours and theirs and theirs["requests_per_s"]:
            ratios.append(
                {
                    "body": body,
                    "connections": connections,
                    "throughput_ratio": round(ours["requests_per_s"] / theirs["requests_per_s"], 3),
                    "p99_ratio": round(ours["p99_ms"] / theirs["p99_ms"], 3) if theirs["p99_ms"] else None,
                    "rss_ratio": round(ours["rss_mib"] / theirs["rss_mib"], 3) if theirs["rss_mib"] else None,
                    "cpu_ratio": (
                        round(ours["cpu_s_per_1000"] / theirs["cpu_s_per_1000"], 3)
                        if ours["cpu_s_per_1000"] and theirs["cpu_s_per_1000"]
                        else None
                    ),
                }
            )
    targets = []
    for ratio in ratios:
        if ratio["connections"] == 16:
            targets.append(
                {
                    "target": f"16 connections, {ratio['body']}: requests/s >= 1.5x FastAPI",
                    "value": ratio["throughput_ratio"],
                    "met": ratio["throughput_ratio"] >= 1.5,
                }
            )
            targets.append(
                {
                    "target": f"16 connections, {ratio['body']}: p99 <= FastAPI's",
                    "value": ratio["p99_ratio"],
                    "met": ratio["p99_ratio"] is not None and ratio["p99_ratio"] <= 1.0,
                }
            )
            targets.append(
                {
                    "target": f"16 connections, {ratio['body']}: total RSS <= FastAPI's",
                    "value": ratio["rss_ratio"],
                    "met": ratio["rss_ratio"] is not None and ratio["rss_ratio"] <= 1.0,
                }
            )
    most = max((c for _, _, c in table), default=None)
    if most is not None:
        # A record's errors are its socket errors plus its non-2xx answers.
        errors = sum(v["errors"] for (s, _, c), v in table.items() if s == "edge_runtime" and c == most)
        targets.append(
            {
                "target": f"{most} connections: no socket errors, no non-2xx answers (limit raised for the run)",
                "value": errors,
                "met": errors == 0,
            }
        )
    if soak_result:
        targets.append(
            {
                "target": f"RSS flat over {soak_result['seconds']:.0f} s at {soak_result['connections']} connections "
                "(spread <= 5 %)",
                "value": soak_result["rss_spread_pct"],
                "met": soak_result["rss_spread_pct"] <= 5.0,
            }
        )
    batching_summary = None
    if batching:
        on = median([r["images_per_s"] for r in batching if r["server"] == "batching_on"], digits=3)
        off = median([r["images_per_s"] for r in batching if r["server"] == "batching_off"], digits=3)
        ratio = round(on / off, 3) if on and off else None
        cpu_on = median([r["cpu_s_per_1000"] for r in batching if r["server"] == "batching_on"], digits=3)
        cpu_off = median([r["cpu_s_per_1000"] for r in batching if r["server"] == "batching_off"], digits=3)
        batching_summary = {
            "images_per_s_on": on,
            "images_per_s_off": off,
            "ratio": ratio,
            "cpu_s_per_1000_on": cpu_on,
            "cpu_s_per_1000_off": cpu_off,
            # Images per CPU-second, on / off: what the throughput ratio becomes once the CPU is the limit.
            "cpu_ratio": round(cpu_off / cpu_on, 3) if cpu_on and cpu_off else None,
        }
        targets.append(
            {
                "target": "dynamic batching at 16 connections: images/s >= 1.3x without it",
                "value": ratio,
                "met": ratio is not None and ratio >= 1.3,
            }
        )
    return {"table": rows, "ratios": ratios, "targets": targets, "batching": batching_summary}


def render_report(doc: dict[str, Any]) -> str:
    """The Markdown report."""
    from benchmarks.report import machine_line

    plan, summary = doc["plan"], doc["summary"]
    lines = [
        "# edge_runtime serve vs FastAPI + uvicorn",
        "",
        f"Machine: {machine_line(doc['machine'])}. Model: `{doc['model']}`. "
        f"Workers: {plan['workers']} for both servers. "
        f"Client: `{plan['client']}`, {plan['duration']:g} s per run after {plan['warmup']:g} s of warm-up, "
        f"{plan['rounds']} round(s), the two servers alternated. Model input: {doc['input']}. Bodies, from the "
        f"model's test samples: `png` = one PNG image, `json` = {JSON_BATCH} images as JSON pixel lists. "
        "The FastAPI app has the model's size, colour mode and preprocessing written in, as a user writes them. "
        "edge_runtime ran with its defaults except "
        "`--max-connections` (raised above the largest connection count: FastAPI has no such limit).",
        "",
        "Timings from a machine shared with other work are noisy; the ratios (same run, alternated) are what to read.",
        "",
        "## Targets",
        "",
    ]
    lines += [
        f"- {'met' if t['met'] else 'NOT met'}: {t['target']} (measured {t['value']})" for t in summary["targets"]
    ]
    lines += [
        "",
        "## Ratios (edge_runtime / FastAPI, medians over rounds)",
        "",
        "| body | connections | requests/s | p99 | RSS | CPU per request |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['body']} | {r['connections']} | {r['throughput_ratio']} | {r['p99_ratio']} | {r['rss_ratio']} | "
        f"{r['cpu_ratio']} |"
        for r in summary["ratios"]
    ]
    lines += [
        "",
        "## All runs (medians over rounds)",
        "",
        "| server | body | connections | requests/s | images/s | p50 ms | p90 ms | p99 ms | errors | RSS MiB | "
        "CPU s / 1000 req |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["table"]:
        lines.append(
            f"| {r['server']} | {r['body']} | {r['connections']} | {r['requests_per_s']} | {r['images_per_s']} | "
            f"{r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {r['errors']} | {r['rss_mib']} | "
            f"{r['cpu_s_per_1000']} |"
        )
    lines += [
        "",
        "![throughput vs connections](throughput.png)",
        "",
        f"Start-up (process start to first answered request): {doc['startup_s']}.",
        "",
    ]
    if doc.get("soak"):
        s = doc["soak"]
        lines += [
            "## Memory under load",
            "",
            f"edge_runtime alone, {s['connections']} connections, {s['seconds']:g} s: RSS of all processes "
            f"{', '.join(str(m) for _, m in s['rss_mib_samples'])} MiB (spread {s['rss_spread_pct']} %); "
            f"{s['requests']} requests, {s['errors']} errors.",
            "",
        ]
    if summary.get("batching"):
        b = summary["batching"]
        standin = (
            " (stand-in: random-weight MobileNet-like int8 conv net, 64x64x3)" if doc.get("batching_standin") else ""
        )
        lines += [
            "## Dynamic batching",
            "",
            f"Model `{doc['batching_model']}`{standin}, 16 connections, one image per request "
            f"(`{doc['batching'][0]['body']}`): {b['images_per_s_on']} images/s with batching, "
            f"{b['images_per_s_off']} with `--max-batch 1`: {b['ratio']}x. Server CPU per 1,000 requests: "
            f"{b['cpu_s_per_1000_on']} s with batching, {b['cpu_s_per_1000_off']} s without: "
            f"{b['cpu_ratio']}x the images per CPU-second.",
            "",
        ]
    lines += ["## The FastAPI app", "", "```python", REFERENCE_APP.rstrip(), "```", ""]
    return "\n".join(lines)


def render_chart(doc: dict[str, Any]) -> bytes:
    """Requests/s against connections, one line per server and body."""
    import matplotlib

    from benchmarks.report import figure_png

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    rows = doc["summary"]["table"]
    for server in ("edge_runtime", "fastapi"):
        for body, style in (("png", "-o"), ("json", "--s")):
            points = sorted(
                (r["connections"], r["requests_per_s"]) for r in rows if r["server"] == server and r["body"] == body
            )
            if points:
                ax.plot(*zip(*points), style, label=f"{server}, {body}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent connections")
    ax.set_ylabel("requests / s")
    ax.set_title("Throughput vs connections (medians over rounds)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    png = figure_png(fig)
    plt.close(fig)
    return png


# --------------------------------------------------------------------------- CLI


def _connections(text: str) -> tuple[int, ...]:
    from benchmarks.__main__ import positive_int_list

    try:
        return tuple(positive_int_list(text, "--connections"))
    except Keras2EdgeError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--connections ")) from None


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    parser.add_argument("model", type=Path, help="a .tflite or .onnx artifact (e.g. out/artifacts/tflite_int8.tflite)")
    parser.add_argument("--out", type=Path, required=True, help="report directory to create")
    parser.add_argument(
        "--connections",
        type=_connections,
        default=(1, 4, 16, 64),
        help="comma-separated connection counts (default 1,4,16,64)",
    )
    parser.add_argument("--duration", type=positive_float, default=8.0, help="seconds per timed run (default 8)")
    parser.add_argument("--rounds", type=positive_int, default=2, help="alternations of the two servers (default 2)")
    parser.add_argument(
        "--soak",
        type=positive_float,
        default=60.0,
        help="seconds of the memory soak at the largest " "connection count (default 60)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="worker processes of both servers " "(default: the number of cores)",
    )
    parser.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator (default: wrk when installed, else Python)",
    )
    parser.add_argument(
        "--batching-model",
        help=f"also compare dynamic batching on/off on this model; '{STANDIN}' "
        "builds the stand-in colour conv net (needs TensorFlow)",
    )
    parser.add_argument("--quick", action="store_true", help="short runs for tests: 1 round, 2 s runs, 4 s soak")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Validate every input, run the comparison, write the report atomically."""
    from benchmarks.machine import machine_info
    from edge_runtime.serve.config import usable_cores

    args = build_parser().parse_args(argv)
    if not args.model.is_file():
        raise Keras2EdgeError(f"MODEL '{args.model}' is not a file")
    if args.batching_model not in (None, STANDIN) and not Path(args.batching_model).is_file():
        raise Keras2EdgeError(f"--batching-model '{args.batching_model}' is not a file (or '{STANDIN}')")
    check_output_dir(args.out, args.force)
    import edge_runtime

    model_input = edge_runtime.load(args.model).input.describe()  # a damaged model fails here, in one line
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise Keras2EdgeError(
            f"the reference server needs {' and '.join(missing)}: pip install 'keras2edge[bench-serve]'"
        )
    client = args.client if args.client != "auto" else ("wrk" if shutil.which("wrk") else "python")
    if client == "wrk" and not shutil.which("wrk"):
        raise Keras2EdgeError("--client wrk: wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    plan = Plan(
        connections=args.connections,
        duration=2.0 if args.quick else args.duration,
        warmup=1.0 if args.quick else 2.0,
        rounds=1 if args.quick else args.rounds,
        soak=4.0 if args.quick else args.soak,
        workers=args.workers or usable_cores(),
        client=client,
    )

    def progress(message: str) -> None:
        print(f"[serve bench] {message}", file=sys.stderr, flush=True)

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="k2e-serve-bench-") as tmp:
        workdir = Path(tmp)
        records, startup = compare_servers(args.model, plan, workdir, progress)
        soak_result = soak(args.model, plan, workdir, progress)
        batching: list[dict[str, Any]] = []
        batching_model = None
        if args.batching_model:
            batching_model = (
                make_rgb_standin(workdir / "standin_rgb_conv.tflite")
                if args.batching_model == STANDIN
                else Path(args.batching_model)
            )
            batching = compare_batching(batching_model, plan, workdir, progress)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": "serve",
        "model": str(args.model),
        "input": model_input,
        "machine": machine_info(),
        "plan": {**plan.__dict__, "connections": list(plan.connections), "json_batch": JSON_BATCH},
        "startup_s": startup,
        "records": records,
        "soak": soak_result,
        "batching_model": batching_model.name if batching_model else None,
        "batching_standin": args.batching_model == STANDIN,
        "batching": batching,
        "duration_s": round(time.monotonic() - started, 1),
    }
    doc["summary"] = summarize(records, soak_result, batching)
    with staged_dir(args.out, args.force) as stage:
        write_json(stage / "results.json", doc)
        write_text(stage / "report.md", render_report(doc))
        (stage / "throughput.png").write_bytes(render_chart(doc))
    progress(f"wrote {args.out}/report.md, results.json and throughput.png in {doc['duration_s']:.0f} s")
    return 0
