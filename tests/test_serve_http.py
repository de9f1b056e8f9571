"""HTTP/1.1 behaviour of the server: keep-alive, its limits, pipelining, and dynamic batching.

Servers run in-process on a free loopback port with the small converted MLP, as in
``tests/test_serve.py`` (whose helpers are reused).
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading
import time

import edge_runtime
from edge_runtime.serve import ModelPool, ServeConfig
from tests.test_serve import SpyModel, encode, running

PNG_HEADERS = {"Content-Type": "image/png"}


def _png_request(png: bytes, version: str = "1.1", extra: str = "") -> bytes:
    return (
        f"POST /v1/predict HTTP/{version}\r\nHost: x\r\nContent-Type: image/png\r\n{extra}"
        f"Content-Length: {len(png)}\r\n\r\n"
    ).encode() + png


def _read_response(stream) -> tuple[str, dict[str, str], bytes]:
    """One response from a socket file: status line, headers (lower-case), body."""
    status = stream.readline().decode().strip()
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, stream.read(int(headers["content-length"]))


def test_http11_connection_is_kept_alive_across_requests(small_mlp_artifacts, mnist):
    model = edge_runtime.load(small_mlp_artifacts / "tflite_int8.tflite")
    with running(ServeConfig(host="127.0.0.1", port=0), [model]) as (server, _):
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        answers, sockets = [], []
        for image in mnist.x_test[:3]:
            conn.request("POST", "/v1/predict", body=encode(image), headers=PNG_HEADERS)
            response = conn.getresponse()
            answers.append((response.status, response.getheader("Connection")))
            response.read()
            sockets.append(conn.sock)  # http.client drops its socket when the server closes
        open_during = server.open_connections
        conn.close()
    assert answers == [(200, None)] * 3  # HTTP/1.1 default: kept open
    assert sockets[0] is not None and sockets == [sockets[0]] * 3
    assert open_during == 1


def test_http10_client_asking_for_keep_alive_gets_it_and_plain_http10_is_closed(small_mlp_artifacts, mnist):
    png = encode(mnist.x_test[0])
    model = edge_runtime.load(small_mlp_artifacts / "tflite_int8.tflite")
    with running(ServeConfig(host="127.0.0.1", port=0), [model]) as (server, _):
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as sock:
            stream = sock.makefile("rb")
            sock.sendall(_png_request(png, "1.0", "Connection: keep-alive\r\n"))
            first = _read_response(stream)
            sock.sendall(_png_request(png, "1.0"))
            second = _read_response(stream)
            assert stream.read() == b""  # then the server closes
    assert first[0].startswith("HTTP/1.0 200") and first[1]["connection"] == "keep-alive"
    assert second[0].startswith("HTTP/1.0 200") and second[1]["connection"] == "close"


def test_pipelined_requests_are_answered_in_order_on_one_connection(small_mlp_artifacts, mnist):
    model = edge_runtime.load(small_mlp_artifacts / "tflite_int8.tflite")
    reference = edge_runtime.load(small_mlp_artifacts / "tflite_int8.tflite")
    images = mnist.x_test[:4]
    with running(ServeConfig(host="127.0.0.1", port=0), [model]) as (server, _):
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as sock:
            sock.sendall(b"".join(_png_request(encode(image)) for image in images))
            stream = sock.makefile("rb")
            labels = [json.loads(_read_response(stream)[2])["labels"][0] for _ in images]
    assert labels == reference.classify(images)


def test_keep_alive_connection_is_closed_after_the_request_cap(small_mlp_artifacts, mnist):
    png = encode(mnist.x_test[0])
    model = edge_runtime.load(small_mlp_artifacts / "tflite_int8.tflite")
    with running(ServeConfig(host="127.0.0.1", port=0, keepalive_requests=2), [model]) as (server, _):
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as sock:
            stream = sock.makefile("rb")
            sock.sendall(_png_request(png))
            first = _read_response(stream)
            sock.sendall(_png_request(png))
            second = _read_response(stream)
            assert stream.read() == b""
    assert "connection" not in first[1]
    assert second[0].startswith("HTTP/1.1 200") and second[1]["connection"] == "close"


def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(small_mlp_artifacts, mnist):
    model = edge_runtime.load(small_mlp_artifacts / "tflite_int8.tflite")
    with running(ServeConfig(host="127.0.0.1", port=0, keepalive_timeout=0.3), [model]) as (server, _):
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as sock:
            stream = sock.makefile("rb")
            sock.sendall(_png_request(encode(mnist.x_test[0])))
            assert _read_response(stream)[0].startswith("HTTP/1.1 200")
            started = time.monotonic()
            assert stream.read() == b""  # closed by the server, not by the 10 s client timeout
            waited = time.monotonic() - started
    assert waited < 5


def test_requests_that_arrive_while_the_model_is_busy_run_as_one_predict_call(small_mlp_artifacts, mnist):
    spy = SpyModel(edge_runtime.load(small_mlp_artifacts / "tflite_int8.tflite"))
    reference = edge_runtime.load(small_mlp_artifacts / "tflite_int8.tflite")
    images = mnist.x_test[:6]
    with running(ServeConfig(host="127.0.0.1", port=0, max_batch=8), [spy]) as (server, _):
        spy.calls.clear()
        spy.hold = threading.Event()
        results: dict[int, list[str]] = {}

        def client(i: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
            conn.request("POST", "/v1/predict", body=encode(images[i]), headers=PNG_HEADERS)
            results[i] = json.loads(conn.getresponse().read())["labels"]
            conn.close()

        first = threading.Thread(target=client, args=(0,))
        first.start()
        assert spy.holding.wait(timeout=10)  # the model is busy with request 0
        others = [threading.Thread(target=client, args=(i,)) for i in range(1, len(images))]
        for thread in others:
            thread.start()
        deadline = time.monotonic() + 10
        while len(server.batcher._queue) < len(others) and time.monotonic() < deadline:
            time.sleep(0.01)
        spy.hold.set()
        for thread in [first, *others]:
            thread.join(timeout=30)
    assert spy.calls == [(1, 28, 28), (len(others), 28, 28)]
    assert [results[i][0] for i in range(len(images))] == reference.classify(images)


def test_a_lone_request_is_not_held_back_by_max_wait(small_mlp_artifacts, mnist):
    model = edge_runtime.load(small_mlp_artifacts / "tflite_int8.tflite")
    with running(ServeConfig(host="127.0.0.1", port=0, max_wait_us=20_000_000), [model]) as (server, _):
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
        started = time.monotonic()
        conn.request("POST", "/v1/predict", body=encode(mnist.x_test[0]), headers=PNG_HEADERS)
        status = conn.getresponse().status
        elapsed = time.monotonic() - started
        conn.close()
    assert status == 200
    assert elapsed < 10  # a 20 s wait would have been used if the server waited for company


def test_a_bad_request_in_a_batch_fails_alone(small_mlp_artifacts, mnist):
    spy = SpyModel(edge_runtime.load(small_mlp_artifacts / "tflite_int8.tflite"))
    good = json.dumps({"images": mnist.x_test[:2].tolist()}).encode()
    bad = json.dumps({"images": [[[7.5] * 28] * 28]}).encode()  # floats out of range: predict refuses them
    with running(ServeConfig(host="127.0.0.1", port=0), [spy]) as (server, _):
        spy.hold = threading.Event()
        statuses: dict[str, int] = {}

        def client(name: str, body: bytes) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
            conn.request("POST", "/v1/predict", body=body, headers={"Content-Type": "application/json"})
            statuses[name] = conn.getresponse().status
            conn.close()

        first = threading.Thread(target=client, args=("first", good))
        first.start()
        assert spy.holding.wait(timeout=10)
        threads = [
            threading.Thread(target=client, args=(name, body))
            for name, body in (("good", good), ("bad", bad), ("good2", good))
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(server.batcher._queue) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        spy.hold.set()
        for thread in [first, *threads]:
            thread.join(timeout=30)
    assert statuses == {"first": 200, "good": 200, "bad": 400, "good2": 200}


def test_a_worker_ahead_in_connections_still_accepts_when_the_others_do_not(small_mlp_artifacts, mnist):
    """Balancing leaves a new connection to a less busy worker only for a moment, never for good."""
    from edge_runtime.serve.routes import ROUTES
    from edge_runtime.serve.server import InferenceServer, make_metrics

    metrics = make_metrics(ROUTES, slots=2)  # slot 1: a worker with no connections that never accepts
    model = edge_runtime.load(small_mlp_artifacts / "tflite_int8.tflite")
    server = InferenceServer(ServeConfig(host="127.0.0.1", port=0), ModelPool([model]), io.StringIO(), metrics=metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        first = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        first.request("POST", "/v1/predict", body=encode(mnist.x_test[0]), headers=PNG_HEADERS)
        assert first.getresponse().read()
        assert list(metrics.connections_by_worker()) == [1, 0]  # this worker is now ahead
        second = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        second.request("POST", "/v1/predict", body=encode(mnist.x_test[1]), headers=PNG_HEADERS)
        status = second.getresponse().status
        assert list(metrics.connections_by_worker()) == [2, 0]
        first.close()
        second.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert status == 200


def test_expect_100_continue_is_answered_before_the_body_is_sent(small_mlp_artifacts, mnist):
    png = encode(mnist.x_test[0])
    model = edge_runtime.load(small_mlp_artifacts / "tflite_int8.tflite")
    with running(ServeConfig(host="127.0.0.1", port=0), [model]) as (server, _):
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=10) as sock:
            stream = sock.makefile("rb")
            head = _png_request(png, extra="Expect: 100-continue\r\n")[: -len(png)]
            sock.sendall(head)
            interim = stream.readline() + stream.readline()
            sock.sendall(png)
            status, _, body = _read_response(stream)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert status.startswith("HTTP/1.1 200") and json.loads(body)["labels"]


def test_colour_model_is_served_png_and_json_like_the_library_runs_it(rgb_cnn_artifacts):
    from PIL import Image

    from edge_runtime.sample_set import load_samples

    path = rgb_cnn_artifacts / "tflite_int8.tflite"
    reference = edge_runtime.load(path)
    images = load_samples(rgb_cnn_artifacts, reference.input.shape).inputs[:3]
    buffer = io.BytesIO()
    Image.fromarray(images[0]).save(buffer, format="PNG")
    with running(ServeConfig(host="127.0.0.1", port=0), [edge_runtime.load(path)]) as (server, _):
        conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        conn.request("POST", "/v1/predict", body=buffer.getvalue(), headers=PNG_HEADERS)
        from_png = json.loads(conn.getresponse().read())
        conn.request(
            "POST",
            "/v1/predict",
            body=json.dumps({"images": images.tolist()}),
            headers={"Content-Type": "application/json"},
        )
        from_json = json.loads(conn.getresponse().read())
        conn.request("GET", "/healthz")
        health = conn.getresponse()
        health.read()
        conn.close()
    assert from_png["labels"] == reference.classify(images[:1])
    assert from_json["labels"] == reference.classify(images)
    assert health.status == 200  # the self-check runs the artifact's own colour samples
