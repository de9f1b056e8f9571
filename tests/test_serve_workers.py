"""Worker processes of ``python -m edge_runtime serve --workers 2``: one metrics view,
restart after a crash, SIGTERM drains every worker, start-up errors reach the user.

Each test runs the real CLI in a subprocess on a free loopback port.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest

from tests.test_serve import _metric, _read_event, encode

WORKERS = 2


class Served:
    """A running CLI server: its process, port and every log record read so far."""

    def __init__(self, proc: subprocess.Popen, port: int, records: list[dict]) -> None:
        self.proc, self.port, self.records = proc, port, records

    def workers(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children()


@contextmanager
def serving(model_path, *extra: str) -> Iterator[Served]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_runtime",
            "serve",
            str(model_path),
            "--port",
            "0",
            "--workers",
            str(WORKERS),
            *extra,
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    records: list[dict] = []
    try:
        port = _read_event(proc.stderr, "listening", time.monotonic() + 60)["port"]

        def collect() -> None:
            for line in proc.stderr:
                if line.startswith("{"):
                    records.append(json.loads(line))

        threading.Thread(target=collect, daemon=True).start()
        yield Served(proc, port, records)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _predict(port: int, png: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/predict", body=png, headers={"Content-Type": "image/png"})
    status = conn.getresponse().status
    conn.close()
    return status


def _metrics(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return text


def _wait_for(condition, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def model_path(small_mlp_artifacts):
    return small_mlp_artifacts / "tflite_int8.tflite"


def test_metrics_count_every_request_once_whichever_worker_answered(model_path, mnist):
    png = encode(mnist.x_test[0])
    ok = 'keras2edge_http_requests_total{endpoint="/v1/predict",method="POST",status="200"}'
    with serving(model_path) as served:
        sent = 0
        pids: set[int] = set()
        while len(pids) < WORKERS and sent < 500:  # fresh connections until both workers have answered
            assert _predict(served.port, png) == 200
            sent += 1
            _wait_for(lambda: sum(r.get("event") == "access" for r in served.records) >= sent)
            pids = {r["pid"] for r in served.records if r.get("event") == "access"}
        text = _metrics(served.port)
    assert len(pids) == WORKERS
    assert _metric(text, ok) == sent
    assert _metric(text, "keras2edge_predicted_images_total") == sent
    assert 'workers="2"' in text


def test_a_worker_that_dies_is_restarted_and_counters_survive(model_path, mnist):
    png = encode(mnist.x_test[0])
    ok = 'keras2edge_http_requests_total{endpoint="/v1/predict",method="POST",status="200"}'
    with serving(model_path) as served:
        for _ in range(10):
            assert _predict(served.port, png) == 200
        victim = served.workers()[0]
        victim.send_signal(signal.SIGKILL)
        _wait_for(lambda: any(r.get("event") == "worker_exited" and r["pid"] == victim.pid for r in served.records))
        _wait_for(lambda: len(served.workers()) == WORKERS and victim.pid not in {p.pid for p in served.workers()})
        statuses = [_predict(served.port, png) for _ in range(20)]
        text = _metrics(served.port)
    assert statuses == [200] * 20
    assert _metric(text, ok) == 30  # requests are counted before they are answered: the dead worker's 10 stay counted
    assert _metric(text, "keras2edge_http_requests_in_flight") == 1  # the dead worker's gauges were reset


def test_sigterm_drains_in_flight_requests_in_every_worker(model_path, mnist):
    body = json.dumps({"images": mnist.x_test[:2].tolist()}).encode()
    half = len(body) // 2
    with serving(model_path) as served:
        sockets = []
        for _ in range(4):  # several half-sent requests, spread over the workers by the kernel
            sock = socket.create_connection(("127.0.0.1", served.port), timeout=10)
            sock.sendall(
                b"POST /v1/predict HTTP/1.1\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:half]
            )
            sockets.append(sock)
        _wait_for(lambda: "keras2edge_http_requests_in_flight 5" in _metrics(served.port))
        served.proc.send_signal(signal.SIGTERM)
        _wait_for(lambda: any(r.get("event") == "draining" for r in served.records))
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", served.port), timeout=5).close()
        replies = []
        for sock in sockets:
            sock.sendall(body[half:])
            replies.append(sock.makefile("rb").read())
            sock.close()
        assert served.proc.wait(timeout=30) == 0
    for reply in replies:
        assert reply.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in reply
        assert len(json.loads(reply.split(b"\r\n\r\n", 1)[1])["labels"]) == 2
    assert [r["event"] for r in served.records if r.get("event") in ("draining", "stopped")] == ["draining", "stopped"]


def test_a_model_that_fails_to_load_in_the_workers_exits_2_with_one_line(tmp_path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"TFL3" + b"\0" * 20)
    result = subprocess.run(
        [sys.executable, "-m", "edge_runtime", "serve", str(broken), "--port", "0", "--workers", str(WORKERS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("python -m edge_runtime: error: ") and result.stderr.count("\n") == 1
    assert "broken.tflite" in result.stderr and "Traceback" not in result.stderr
