"""Bounded load test of ``python -m edge_runtime serve`` (loopback only).

16 concurrent clients send a mix of single PNG images and JSON batches for 20 s (or
until MAX_REQUESTS, whichever comes first), then the test stops by itself. It
asserts correctness only: no failed request and every label equal to what the
library answers in-process for the same bytes, and server RSS (the supervisor and
its worker processes) after the run within 10% of RSS after the warm-up (growth
under steady load is a leak). Speed is machine-
and load-dependent, so it is reported, not asserted:

    pytest tests/test_serve_load.py -s      # prints one JSON line of figures

Figures: requests, images, throughput, latency p50/p90/p99, and the server's RSS
after a concurrent warm-up vs after the run.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest

import edge_runtime
from tests.test_serve import decode, encode

pytestmark = pytest.mark.slow

CLIENTS = 16
DURATION_S = 20.0
MAX_REQUESTS = 50_000
WARMUP_PER_CLIENT = 25
WORKERS = 2
BATCH = 4


def _requests(model, images: np.ndarray) -> list[tuple[bytes, str, list[str]]]:
    """(body, content type, expected labels): PNG singles and JSON batches, alternating."""
    pngs = [encode(image) for image in images[:16]]
    singles = [(p, "image/png", model.classify(decode(p))) for p in pngs]
    batches = [
        (
            json.dumps({"images": images[i : i + BATCH].tolist()}).encode(),
            "application/json",
            model.classify(images[i : i + BATCH]),
        )
        for i in range(16, len(images), BATCH)
    ]
    return [r for pair in zip(singles, batches) for r in pair]


class Client(threading.Thread):
    """Sends requests round-robin until the deadline or the shared request budget runs out."""

    def __init__(
        self, port: int, requests: list, offset: int, deadline: float, budget: list[int], lock: threading.Lock
    ):
        super().__init__(daemon=True)
        self.port, self.requests, self.offset, self.deadline = port, requests, offset, deadline
        self.budget, self.lock = budget, lock
        self.latencies: list[float] = []
        self.images = 0
        self.failures: list[str] = []

    def run(self) -> None:
        i = self.offset
        while time.monotonic() < self.deadline:
            with self.lock:
                if self.budget[0] <= 0:
                    return
                self.budget[0] -= 1
            body, content_type, expected = self.requests[i % len(self.requests)]
            i += 1
            start = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("POST", "/v1/predict", body=body, headers={"Content-Type": content_type})
                response = conn.getresponse()
                payload = response.read()
                conn.close()
            except OSError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            self.latencies.append(time.perf_counter() - start)
            if response.status != 200:
                self.failures.append(f"HTTP {response.status}: {payload[:200]!r}")
            elif json.loads(payload)["labels"] != expected:
                self.failures.append(f"labels {json.loads(payload)['labels']} != {expected}")
            else:
                self.images += len(expected)


def _rss(process: psutil.Process) -> int:
    """Resident memory of the server: the supervisor and every worker process."""
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])


def _drive(port: int, requests: list, duration: float, budget: int) -> tuple[list[Client], float]:
    deadline = time.monotonic() + duration
    lock = threading.Lock()
    remaining = [budget]
    clients = [Client(port, requests, k * 3, deadline, remaining, lock) for k in range(CLIENTS)]
    start = time.perf_counter()
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=duration + 60)
    return clients, time.perf_counter() - start


def test_sixteen_clients_for_twenty_seconds_get_correct_labels_and_no_failures(
    small_mlp_artifacts, mnist, record_property
):
    model_path = small_mlp_artifacts / "tflite_int8.tflite"
    requests = _requests(edge_runtime.load(model_path), mnist.x_test[:80])
    server = subprocess.Popen(
        [sys.executable, "-m", "edge_runtime", "serve", str(model_path), "--port", "0", "--workers", str(WORKERS)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        port = None
        for line in server.stderr:
            if line.startswith("{") and json.loads(line).get("event") == "listening":
                port = json.loads(line)["port"]
                break
        assert port is not None, "server did not start"
        # Drain the access log so the server never blocks on a full pipe.
        drain = threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True)
        drain.start()
        process = psutil.Process(server.pid)

        warm, _ = _drive(port, requests, duration=DURATION_S, budget=CLIENTS * WARMUP_PER_CLIENT)
        rss_warm = _rss(process)
        clients, elapsed = _drive(port, requests, duration=DURATION_S, budget=MAX_REQUESTS)
        rss_after = _rss(process)

        failures = [f for c in warm + clients for f in c.failures]
        latencies = np.array([t for c in clients for t in c.latencies])
        figures = {
            "clients": CLIENTS,
            "workers": WORKERS,
            "duration_s": round(elapsed, 2),
            "requests": int(latencies.size),
            "images": sum(c.images for c in clients),
            "failed": len(failures),
            "throughput_rps": round(latencies.size / elapsed, 1),
            "images_per_s": round(sum(c.images for c in clients) / elapsed, 1),
            "latency_ms_p50": round(float(np.percentile(latencies, 50)) * 1000, 2),
            "latency_ms_p90": round(float(np.percentile(latencies, 90)) * 1000, 2),
            "latency_ms_p99": round(float(np.percentile(latencies, 99)) * 1000, 2),
            "rss_mb_after_warmup": round(rss_warm / 2**20, 1),
            "rss_mb_after_run": round(rss_after / 2**20, 1),
            "rss_growth_pct": round(100 * (rss_after - rss_warm) / rss_warm, 2),
        }
        print("serve load test:", json.dumps(figures))
        for key, value in figures.items():
            record_property(key, value)
        assert failures == [], failures[:5]
        assert latencies.size > 0
        # Not a speed check: memory that grows under steady load is a leak.
        assert rss_after <= 1.10 * rss_warm, figures
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
    assert server.returncode == 0
