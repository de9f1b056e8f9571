"""The HTTP inference service: every endpoint, every error path, tokens, shutdown.

Servers run in-process on a free loopback port (port 0) with real models loaded
from the converted small MLP; one test runs the CLI in a subprocess to check that
SIGTERM lets an in-flight request finish.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edge_runtime
from edge_runtime import images as image_io
from edge_runtime.errors import Keras2EdgeError
from edge_runtime.serve import (
    InferenceServer,
    ModelPool,
    ServeConfig,
    add_subparser,
    check_bind,
    is_loopback,
    read_token,
)

TOKEN = "s3cret-token-for-tests-0123456789"
MAX_IMAGES = 8
MAX_BODY = 200_000
TIMEOUT = 1.0
# More than loopback socket buffers hold: if the server closed the connection without
# draining it, the client would get a broken pipe / reset instead of the error answer.
UNREAD_BODY = b"x" * 30_000_000


class LogSink(io.StringIO):
    """Collects the JSON-lines log; written from request threads."""

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.getvalue().splitlines()]


class SpyModel:
    """A real model whose ``predict`` calls are recorded, and can be made to fail or drift."""

    def __init__(self, model) -> None:
        self._model = model
        self.calls: list[tuple[int, ...]] = []
        self.fail: bool | BaseException = False  # True: an unexpected error; an exception: raise it
        self.drift = False
        self.hold: threading.Event | None = None  # predict waits for it once set
        self.holding = threading.Event()

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def predict(self, x):
        self.calls.append(np.shape(x))
        if self.hold is not None:
            self.holding.set()
            self.hold.wait(timeout=30)
        if isinstance(self.fail, BaseException):
            raise self.fail
        if self.fail:
            raise RuntimeError("interpreter exploded")
        out = self._model.predict(x)
        return out[:, ::-1] if self.drift else out


@contextlib.contextmanager
def running(config: ServeConfig, models: list) -> Iterator[tuple[InferenceServer, LogSink]]:
    """A server answering in a background thread for the ``with`` block, then closed."""
    log = LogSink()
    server = InferenceServer(config, ModelPool(models), log_stream=log)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, log
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def model_path(small_mlp_artifacts: Path) -> Path:
    """The int8 TFLite artifact: what a Pi would serve."""
    return small_mlp_artifacts / "tflite_int8.tflite"


@pytest.fixture(scope="module")
def served(model_path):
    """An open server with two workers and small limits, plus its log."""
    config = ServeConfig(host="127.0.0.1", port=0, max_body_bytes=MAX_BODY, max_images=MAX_IMAGES,
                         request_timeout=TIMEOUT)
    with running(config, [edge_runtime.load(model_path) for _ in range(2)]) as served:
        yield served


@pytest.fixture(scope="module")
def guarded(model_path):
    """A server that requires the bearer token TOKEN."""
    config = ServeConfig(host="127.0.0.1", port=0, token=TOKEN, request_timeout=TIMEOUT)
    with running(config, [edge_runtime.load(model_path)]) as served:
        yield served


@pytest.fixture(scope="module")
def reference(model_path):
    """A separate in-process model: what the library itself answers."""
    return edge_runtime.load(model_path)


def call(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def post_json(server, document, headers: dict | None = None):
    return call(server, "POST", "/v1/predict", json.dumps(document).encode(),
                {"Content-Type": "application/json", **(headers or {})})


def encode(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    """What the library makes of these image bytes."""
    return image_io.load_image(data)


def assert_json_error(status_body, status: int) -> dict:
    got_status, headers, body = status_body
    assert got_status == status, body
    assert headers["Content-Type"] == "application/json"
    error = json.loads(body)
    assert error["status"] == status and error["error"]
    return error


# ----------------------------------------------------------------------- predict


def test_predict_png_body_matches_library_on_decoded_image(served, reference, mnist):
    server, _ = served
    png = encode(mnist.x_test[0])
    status, _, body = call(server, "POST", "/v1/predict", png, {"Content-Type": "image/png"})
    assert status == 200
    answer = json.loads(body)
    expected = reference.predict(decode(png))
    assert answer["labels"] == [reference.class_labels[int(expected.argmax())]]
    np.testing.assert_allclose(answer["probabilities"], expected, rtol=1e-6, atol=1e-7)
    assert answer["model_sha256"] == reference.sha256
    assert answer["latency_ms"]["server"] >= answer["latency_ms"]["inference"] >= 0


def test_predict_jpeg_body_is_decoded_like_the_library_does(served, reference, mnist):
    server, _ = served
    jpeg = encode(mnist.x_test[1], "JPEG")
    status, _, body = call(server, "POST", "/v1/predict", jpeg, {"Content-Type": "image/jpeg"})
    assert status == 200
    np.testing.assert_allclose(json.loads(body)["probabilities"], reference.predict(decode(jpeg)), atol=1e-6)


def test_predict_json_batch_returns_one_answer_per_image_in_order(served, reference, mnist):
    server, _ = served
    batch = mnist.x_test[:MAX_IMAGES]
    status, _, body = post_json(server, {"images": batch.tolist()})
    assert status == 200
    answer = json.loads(body)
    expected = reference.predict(batch)
    assert answer["labels"] == [reference.class_labels[i] for i in expected.argmax(axis=1)]
    np.testing.assert_allclose(answer["probabilities"], expected, rtol=1e-6, atol=1e-7)


def test_predict_json_float_pixels_scaled_to_unit_range_equal_uint8_pixels(served, mnist):
    server, _ = served
    batch = mnist.x_test[:3]
    _, _, as_uint8 = post_json(server, {"images": batch.tolist()})
    _, _, as_float = post_json(server, {"images": (batch / 255.0).tolist()})
    np.testing.assert_allclose(json.loads(as_float)["probabilities"], json.loads(as_uint8)["probabilities"], atol=1e-5)


def test_predict_images_b64_decodes_every_image(served, reference, mnist):
    server, _ = served
    pngs = [encode(image) for image in mnist.x_test[10:13]]
    status, _, body = post_json(server, {"images_b64": [base64.b64encode(p).decode() for p in pngs]})
    assert status == 200
    expected = reference.predict(np.stack([decode(p) for p in pngs]))
    np.testing.assert_allclose(json.loads(body)["probabilities"], expected, rtol=1e-6, atol=1e-7)


def test_ipv6_loopback_bind_serves_predictions(model_path, mnist):
    with running(ServeConfig(host="::1", port=0), [edge_runtime.load(model_path)]) as (server, _):
        conn = http.client.HTTPConnection("::1", server.server_port, timeout=10)
        conn.request("POST", "/v1/predict", body=encode(mnist.x_test[0]), headers={"Content-Type": "image/png"})
        status = conn.getresponse().status
        conn.close()
    assert status == 200


def test_onnx_artifact_is_served_like_the_library_runs_it(small_mlp_artifacts, mnist):
    onnx_path = small_mlp_artifacts / "onnx_int8_static.onnx"
    reference = edge_runtime.load(onnx_path)
    with running(ServeConfig(host="127.0.0.1", port=0),
                 [edge_runtime.load(onnx_path) for _ in range(2)]) as (server, _):
        status, _, body = post_json(server, {"images": mnist.x_test[:4].tolist()})
    assert status == 200
    answer = json.loads(body)
    assert answer["backend"] == reference.backend and answer["model_sha256"] == reference.sha256
    np.testing.assert_allclose(answer["probabilities"], reference.predict(mnist.x_test[:4]), rtol=1e-6, atol=1e-7)


def test_predict_batch_is_one_predict_call(model_path, mnist):
    spy = SpyModel(edge_runtime.load(model_path))
    with running(ServeConfig(host="127.0.0.1", port=0), [spy]) as (server, _):
        spy.calls.clear()  # forget the start-up self-check
        status, _, _ = post_json(server, {"images": mnist.x_test[:5].tolist()})
    assert status == 200
    assert spy.calls == [(5, 28, 28)]


# ------------------------------------------------------------------ error paths


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", '"images" or "images_b64"'),
        (b'{"images": [], "images_b64": []}', '"images" or "images_b64"'),
        (b'{"images": "abc"}', '"images" or "images_b64"'),
        (b'{"images": []}', "no images"),
        (b'{"images": [[1, 2], [3]]}', "equally sized"),
        (b'{"images": [[1, 2, 3]]}', "2-D"),
        (b'{"images": [[[1, 2], [3, 4]]]}', "shape"),
        (b'{"images": [[["a"]]]}', "only numbers"),
        (json.dumps({"images": [[[300] * 28] * 28]}).encode(), "0..255"),
        (json.dumps({"images": [[[-1] * 28] * 28]}).encode(), "0..255"),
        (json.dumps({"images": [[[7.5] * 28] * 28]}).encode(), "range"),
        (b'{"images_b64": ["%%%"]}', "not valid base64"),
        (b'{"images_b64": [12]}', "base64 string"),
        (('{"images_b64": ["' + base64.b64encode(b"not an image").decode() + '"]}').encode(), "images_b64[0]"),
    ],
)
def test_malformed_json_predict_is_400_with_json_error(served, body, fragment):
    server, _ = served
    error = assert_json_error(call(server, "POST", "/v1/predict", body, {"Content-Type": "application/json"}), 400)
    assert fragment in error["error"]


def test_png_body_that_is_not_an_image_is_400_naming_the_body(served):
    server, _ = served
    error = assert_json_error(
        call(server, "POST", "/v1/predict", b"\x89PNG garbage", {"Content-Type": "image/png"}), 400
    )
    assert error["error"].startswith("body: cannot read image")


@contextlib.contextmanager
def files_opened() -> Iterator[list[tuple[str, str]]]:
    """Record (path, mode) of every file any thread opens inside the block (audit hook)."""
    opened: list[tuple[str, str]] = []
    _OPEN_RECORDERS.append(opened)
    try:
        yield opened
    finally:
        _OPEN_RECORDERS.remove(opened)


_OPEN_RECORDERS: list[list[tuple[str, str]]] = []


def _record_opens(event: str, args: tuple) -> None:
    if event == "open" and _OPEN_RECORDERS:
        path, mode, flags = args
        writes = (bool(mode and any(c in mode for c in "wax+"))
                  or bool((flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)))
        for opened in _OPEN_RECORDERS:
            opened.append((str(path), "write" if writes else "read"))


sys.addaudithook(_record_opens)  # audit hooks cannot be removed; it records only inside files_opened()


def test_predict_decodes_images_in_memory_and_never_opens_a_client_named_path(served, mnist, model_path):
    """Image bodies are decoded from the request bytes: no temporary file, no path taken from the client."""
    server, _ = served
    client_path = str(model_path)  # a real file the server could read if it took paths from clients
    with files_opened() as opened:
        assert call(server, "POST", "/v1/predict", encode(mnist.x_test[0]), {"Content-Type": "image/png"})[0] == 200
        b64 = [base64.b64encode(encode(mnist.x_test[1])).decode(), base64.b64encode(client_path.encode()).decode()]
        assert_json_error(post_json(server, {"images_b64": b64}), 400)
        assert_json_error(call(server, "POST", "/v1/predict", client_path.encode(), {"Content-Type": "image/png"}), 400)
    assert [entry for entry in opened if entry[1] == "write"] == []
    assert client_path not in [path for path, _ in opened]


def test_unsupported_content_type_is_415(served):
    server, _ = served
    error = assert_json_error(call(server, "POST", "/v1/predict", b"1,2,3", {"Content-Type": "text/csv"}), 415)
    assert "text/csv" in error["error"]


def test_too_many_images_is_413(served, mnist):
    server, _ = served
    error = assert_json_error(post_json(server, {"images": mnist.x_test[: MAX_IMAGES + 1].tolist()}), 413)
    assert "--max-images" in error["error"]


def test_body_over_limit_is_413_and_reaches_client_still_sending(served):
    server, _ = served
    error = assert_json_error(call(server, "POST", "/v1/predict", UNREAD_BODY, {"Content-Type": "image/png"}), 413)
    assert "--max-body-bytes" in error["error"]


def test_missing_content_length_is_411(served):
    server, _ = served
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as sock:
        sock.sendall(b"POST /v1/predict HTTP/1.0\r\nContent-Type: image/png\r\n\r\n")
        reply = sock.makefile("rb").read()
    assert reply.startswith(b"HTTP/1.0 411 ")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["status"] == 411


def _raw(server, request: bytes) -> tuple[bytes, dict]:
    """Send bytes as they are (no client-side checks) and return the status line and JSON body."""
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as sock:
        sock.sendall(request)
        reply = sock.makefile("rb").read()
    head, _, body = reply.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], json.loads(body)


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET / too many words HTTP/1.0\r\n\r\n", 400),
        (b"BREW /v1/predict HTTP/1.0\r\n\r\n", 501),
        (b"POST /v1/predict HTTP/1.0\r\nContent-Type: image/png\r\nContent-Length: -5\r\n\r\n", 400),
        # "\xb2" is latin-1 superscript two: str.isdigit() accepts it, int() does not.
        (b"POST /v1/predict HTTP/1.0\r\nContent-Type: image/png\r\nContent-Length: \xb2\r\n\r\n", 400),
        (b"POST /v1/predict HTTP/1.0\r\nContent-Type: image/png\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", 400),
    ],
)
def test_protocol_errors_are_answered_in_json(served, request_bytes, status):
    server, log = served
    status_line, error = _raw(server, request_bytes)
    assert status_line.split(b" ")[1] == str(status).encode()
    assert error["status"] == status and error["error"]
    assert log.records()[-1]["status"] == status


def test_body_shorter_than_content_length_is_400(served):
    server, _ = served
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as sock:
        sock.sendall(b"POST /v1/predict HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{}")
        sock.shutdown(socket.SHUT_WR)
        reply = sock.makefile("rb").read()
    assert reply.startswith(b"HTTP/1.0 400 ")
    assert b"body ended after 2 of 100 bytes" in reply


def test_body_sent_too_slowly_is_408(served):
    server, _ = served
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=5 * TIMEOUT) as sock:
        sock.sendall(b"POST /v1/predict HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        reply = sock.makefile("rb").read()  # server gives up after TIMEOUT seconds of silence
    assert reply.startswith(b"HTTP/1.0 408 ")


def test_unknown_path_is_404(served):
    server, _ = served
    assert_json_error(call(server, "GET", "/v1/nothing"), 404)


@pytest.mark.parametrize(
    "method, path, allow",
    [("POST", "/healthz", "GET"), ("GET", "/v1/predict", "POST"), ("DELETE", "/metrics", "GET")],
)
def test_wrong_method_is_405_with_allow_header(served, method, path, allow):
    server, _ = served
    status_body = call(server, method, path)
    assert_json_error(status_body, 405)
    assert status_body[1]["Allow"] == allow


def test_early_error_on_request_with_unread_body_still_reaches_client(served):
    server, _ = served
    assert_json_error(call(server, "POST", "/healthz", UNREAD_BODY, {"Content-Type": "image/png"}), 405)


def test_error_inside_a_handler_is_500_and_server_keeps_serving(model_path, mnist):
    broken = SpyModel(edge_runtime.load(model_path))
    with running(ServeConfig(host="127.0.0.1", port=0), [broken]) as (server, log):
        broken.fail = True
        failed = call(server, "POST", "/v1/predict", encode(mnist.x_test[0]), {"Content-Type": "image/png"})
        broken.fail = False
        healthy = call(server, "GET", "/healthz")
    assert assert_json_error(failed, 500)["error"] == "internal server error"  # no internals leaked to the client
    assert healthy[0] == 200
    assert any(r.get("event") == "error" and "interpreter exploded" in r["error"] for r in log.records())


# -------------------------------------------------------------- other endpoints


def test_healthz_runs_self_check_inference(served, reference):
    server, _ = served
    status, _, body = call(server, "GET", "/healthz")
    assert status == 200
    answer = json.loads(body)
    assert answer["status"] == "ok" and answer["model_sha256"] == reference.sha256


def test_healthz_is_503_when_inference_no_longer_matches_startup(model_path):
    drifting = SpyModel(edge_runtime.load(model_path))
    with running(ServeConfig(host="127.0.0.1", port=0), [drifting]) as (server, _):
        drifting.drift = True
        status_body = call(server, "GET", "/healthz")
    assert "self-check" in assert_json_error(status_body, 503)["error"]


def test_all_workers_busy_is_503_after_request_timeout(model_path, mnist):
    busy = SpyModel(edge_runtime.load(model_path))
    with running(ServeConfig(host="127.0.0.1", port=0, request_timeout=0.2), [busy]) as (server, _):
        busy.hold = threading.Event()
        slow = threading.Thread(target=post_json, args=(server, {"images": mnist.x_test[:1].tolist()}))
        slow.start()
        assert busy.holding.wait(timeout=10)
        try:
            status_body = call(server, "GET", "/healthz")
        finally:
            busy.hold.set()
            slow.join()
    assert "busy" in assert_json_error(status_body, 503)["error"]


def test_v1_model_summarises_manifest_and_limits(served, reference):
    server, _ = served
    status, _, body = call(server, "GET", "/v1/model")
    assert status == 200
    info = json.loads(body)
    assert info["sha256"] == reference.sha256
    assert list(info["class_labels"]) == list(reference.class_labels)
    assert info["server"] == {
        "workers": 2,
        "max_body_bytes": MAX_BODY,
        "max_images": MAX_IMAGES,
        "request_timeout_s": TIMEOUT,
        "auth": "none",
    }


_SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? [0-9.e+-]+$')


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_images_and_latency_in_prometheus_format(served, reference, mnist):
    server, _ = served
    before = call(server, "GET", "/metrics")[2].decode()
    post_json(server, {"images": mnist.x_test[:3].tolist()})
    call(server, "GET", "/no-such-page")
    status, headers, body = call(server, "GET", "/metrics")
    text = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    for line in text.splitlines():
        assert line.startswith("# ") or _SAMPLE.match(line), line
    ok = 'keras2edge_http_requests_total{endpoint="/v1/predict",method="POST",status="200"}'
    missing = 'keras2edge_http_requests_total{endpoint="other",method="GET",status="404"}'
    assert _metric(text, ok) == _metric(before, ok) + 1
    assert _metric(text, missing) == _metric(before, missing) + 1
    assert (_metric(text, "keras2edge_predicted_images_total")
            == _metric(before, "keras2edge_predicted_images_total") + 3)
    assert _metric(text, "keras2edge_http_requests_in_flight") == 1  # this very request
    count = _metric(text, 'keras2edge_http_request_duration_seconds_count{endpoint="/v1/predict"}')
    inf = _metric(text, 'keras2edge_http_request_duration_seconds_bucket{endpoint="/v1/predict",le="+Inf"}')
    predict_total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith('keras2edge_http_requests_total{endpoint="/v1/predict"')
    )
    assert count == inf == predict_total > 0
    assert f'sha256="{reference.sha256}"' in text and "keras2edge_model_info{" in text


def test_access_log_is_one_json_object_per_request(served):
    server, log = served
    call(server, "GET", "/v1/model?x=1")
    record = [r for r in log.records() if r.get("event") == "access"][-1]
    assert record["method"] == "GET" and record["path"] == "/v1/model" and record["status"] == 200
    assert record["remote"] == "127.0.0.1" and record["duration_ms"] >= 0 and record["bytes_out"] > 0


# ------------------------------------------------------------------------ tokens


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-0123456789abc", f"Basic {TOKEN}", f"Bearer {TOKEN}x"])
def test_missing_or_wrong_token_is_401(guarded, header):
    server, _ = guarded
    status_body = call(server, "GET", "/v1/model", headers={"Authorization": header} if header else {})
    assert_json_error(status_body, 401)
    assert status_body[1]["WWW-Authenticate"].startswith("Bearer")


def test_wrong_token_on_predict_is_401_and_reaches_client_still_sending(guarded):
    server, log = guarded
    headers = {"Authorization": "Bearer nope", "Content-Type": "image/png"}
    assert_json_error(call(server, "POST", "/v1/predict", UNREAD_BODY, headers), 401)
    assert log.records()[-1]["images"] == 0


def test_right_token_is_accepted_and_not_logged(guarded, mnist):
    server, log = guarded
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert call(server, "GET", "/healthz", headers=auth)[0] == 200
    assert post_json(server, {"images": mnist.x_test[:2].tolist()}, auth)[0] == 200
    assert TOKEN not in log.getvalue()


def test_token_is_required_on_unknown_paths_too(guarded):
    server, _ = guarded
    assert_json_error(call(server, "GET", "/secret-probe"), 401)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.3.2.1"])
def test_loopback_bind_needs_no_token(host):
    assert is_loopback(host)
    check_bind(host, has_token=False, insecure=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "raspberrypi.local"])
def test_non_loopback_bind_is_refused_without_token_or_insecure(host):
    with pytest.raises(Keras2EdgeError, match="--token-file"):
        check_bind(host, has_token=False, insecure=False)
    check_bind(host, has_token=True, insecure=False)
    check_bind(host, has_token=False, insecure=True)


@pytest.mark.parametrize("content", ["", "short", "has a space in it 0123456789", "tøken-with-non-ascii-0123456789"])
def test_weak_or_malformed_token_file_is_rejected(tmp_path, content):
    path = tmp_path / "token"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(Keras2EdgeError, match="token file"):
        read_token(path)


def test_token_file_is_read_without_surrounding_whitespace(tmp_path):
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n", encoding="utf-8")
    assert read_token(path) == TOKEN


def test_missing_token_file_is_a_clear_error(tmp_path):
    with pytest.raises(Keras2EdgeError, match="cannot read token file"):
        read_token(tmp_path / "absent")


# ---------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge_runtime")
    add_subparser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_serve_arguments_default_to_loopback_port_8080_one_worker_per_core(tmp_path):
    args = _parser().parse_args(["serve", str(tmp_path)])
    cores = len(os.sched_getaffinity(0))
    assert (args.host, args.port, args.workers, args.token_file, args.insecure) == (
        "127.0.0.1", 8080, cores, None, False
    )


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "edge_runtime", *args], capture_output=True, text=True, env=env,
                          timeout=60, **kwargs)


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--host", "0.0.0.0"], "--token-file"),
        (["--token-file", "/nonexistent/token"], "cannot read token file"),
    ],
)
def test_refused_serve_settings_exit_2_with_one_line(model_path, extra, fragment):
    result = _cli("serve", str(model_path), "--port", "0", *extra)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and fragment in result.stderr
    assert result.stderr.startswith("python -m edge_runtime: error: ")


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--workers", "0"], "--workers"),
        (["--port", "70000"], "--port"),
        (["--request-timeout", "soon"], "expected a number"),
    ],
)
def test_invalid_serve_arguments_exit_2_with_error_line(model_path, extra, fragment):
    result = _cli("serve", str(model_path), "--port", "0", *extra)
    assert result.returncode == 2
    assert fragment in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_port_in_use_exits_2_with_one_line(model_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = _cli("serve", str(model_path), "--port", str(taken.getsockname()[1]))
    assert result.returncode == 2
    assert "cannot listen on" in result.stderr and "Traceback" not in result.stderr


def _read_event(stream, event: str, deadline: float) -> dict:
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        if line.startswith("{") and json.loads(line).get("event") == event:
            return json.loads(line)
    raise AssertionError(f"server never logged {event!r}")


def test_sigterm_stops_accepting_and_lets_in_flight_request_finish(model_path, tmp_path, mnist):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_runtime", "serve", str(model_path), "--port", "0",
         "--token-file", str(token_file)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 60
    try:
        port = _read_event(proc.stderr, "listening", deadline)["port"]
        body = json.dumps({"images": mnist.x_test[:2].tolist()}).encode()
        half = len(body) // 2
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(
            b"POST /v1/predict HTTP/1.0\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[:half]
        )
        # Wait until the server is handling it (in-flight: this request + the metrics request).
        metrics = ""
        while "keras2edge_http_requests_in_flight 2" not in metrics and time.monotonic() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            metrics = conn.getresponse().read().decode()
            conn.close()
        proc.send_signal(signal.SIGTERM)
        _read_event(proc.stderr, "draining", deadline)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        sock.sendall(body[half:])
        reply = sock.makefile("rb").read()
        sock.close()
        assert reply.startswith(b"HTTP/1.0 200 ")
        assert len(json.loads(reply.split(b"\r\n\r\n", 1)[1])["labels"]) == 2
        assert proc.wait(timeout=30) == 0
        _read_event(proc.stderr, "stopped", deadline)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_connections_beyond_the_limit_get_503_and_the_slot_is_freed_afterwards(model_path):
    config = ServeConfig(host="127.0.0.1", port=0, request_timeout=5.0, max_connections=1)
    with running(config, [edge_runtime.load(model_path)]) as (server, log):
        idle = socket.create_connection(("127.0.0.1", server.server_port), timeout=5)  # holds the only slot
        try:
            deadline = time.monotonic() + 5
            while server.open_connections < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            status_line, error = _raw(server, b"GET /healthz HTTP/1.0\r\n\r\n")
            assert status_line.split(b" ")[1] == b"503" and "--max-connections" in error["error"]
            assert log.records()[-1]["reason"] == "max connections"
        finally:
            idle.close()
        deadline = time.monotonic() + 10
        while True:
            status, _, _ = call(server, "GET", "/healthz")
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status == 200



def test_backend_failure_during_predict_is_a_500_not_the_clients_fault(model_path, mnist):
    failing = SpyModel(edge_runtime.load(model_path))
    with running(ServeConfig(host="127.0.0.1", port=0), [failing]) as (server, _):
        failing.fail = edge_runtime.BackendError("litert failed to run tflite_int8.tflite")
        reply = call(server, "POST", "/v1/predict", encode(mnist.x_test[0]), {"Content-Type": "image/png"})
    assert "litert failed to run" in assert_json_error(reply, 500)["error"]


@pytest.mark.parametrize(("fmt", "media_type"), [("GIF", "image/gif"), ("BMP", "image/bmp"), ("WEBP", "image/webp"),
                                                 ("TIFF", "image/tiff")])
def test_any_image_format_pillow_reads_is_classified_like_the_png(served, mnist, fmt, media_type):
    import io

    from PIL import Image

    server, _ = served
    answers = []
    for kind, mime in (("PNG", "image/png"), (fmt, media_type)):
        buffer = io.BytesIO()
        Image.fromarray(mnist.x_test[3]).save(buffer, format=kind, **({"lossless": True} if kind == "WEBP" else {}))
        status, _, body = call(server, "POST", "/v1/predict", buffer.getvalue(), {"Content-Type": mime})
        assert status == 200, body
        answers.append(json.loads(body)["probabilities"])
    assert answers[0] == answers[1]
