"""HTTP inference service: ``python -m edge_runtime serve MODEL``.

On a Raspberry Pi the model usually serves other programs (a camera script, a web
page, another machine on the LAN), so this module puts a small, dependable HTTP API
in front of :func:`edge_runtime.load`.

Why the standard library (:class:`http.server.ThreadingHTTPServer`): it adds no
dependency, no compiled wheel and no event loop to a device that may only have
numpy and a 32-bit ARM CPU; it imports in milliseconds and adds a few MB of RSS
(7 MB measured on x86-64, next to ~50 MB for numpy and the interpreters). The work per request is dominated by inference (milliseconds), not by HTTP parsing, so
an asynchronous server would not make a Pi faster. What the standard library does
not do (limits, timeouts, auth, metrics, graceful shutdown) is done here, in one
small file that can be read in one sitting.

Endpoints::

    POST /v1/predict   PNG/JPEG body, or JSON {"images": [28x28 lists]} / {"images_b64": [...]}
    GET  /healthz      model loaded and a self-check inference gives the load-time answer
    GET  /v1/model     manifest summary of the loaded artifact
    GET  /metrics      Prometheus text format

Concurrency: interpreters are not thread-safe (a LiteRT ``Interpreter`` keeps its
input/output tensors inside the object), so the server holds a pool of ``--workers``
independent :class:`Model` instances handed out through a queue; a request borrows
one instance to decode its images and run one ``predict`` call, so at most
``--workers`` images are decoded or classified at once. HTTP connections get one
thread each (HTTP/1.0, one request per connection) and read their body before they
borrow a model, which keeps slow clients from blocking the models.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hmac
import ipaddress
import json
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import numpy as np

from edge_runtime.backends import BACKEND_NAMES
from edge_runtime.cli_support import positive_float, positive_int
from edge_runtime.errors import InputError, Keras2EdgeError
from edge_runtime.images import load_image
from edge_runtime.model import load
from edge_runtime.records.manifest import InputSpec
from edge_runtime.sample_set import load_samples

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_WORKERS = 1
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_IMAGES = 256
# Each connection is a thread that may hold a body of up to --max-body-bytes; this
# bounds the memory clients can pin on a small device (32 x 4 MiB = 128 MiB).
DEFAULT_MAX_CONNECTIONS = 32
DEFAULT_REQUEST_TIMEOUT = 10.0
MIN_TOKEN_CHARS = 16

# Upper bounds (seconds) of the request-latency histogram: 1 ms .. 5 s covers a Pi Zero
# classifying a large batch as well as a desktop answering /healthz.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# path -> allowed methods. Anything else is 404 (unknown path) or 405 (wrong method).
ROUTES: dict[str, tuple[str, ...]] = {
    "/v1/predict": ("POST",),
    "/healthz": ("GET",),
    "/v1/model": ("GET",),
    "/metrics": ("GET",),
}
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_IMAGE_TYPES = ("image/png", "image/jpeg")
_READ_CHUNK = 64 * 1024
_LINGER_SECONDS = 1.0


@dataclass(frozen=True)
class ServeConfig:
    """Limits and security settings of one server.

    Parameters
    ----------
    host, port
        Address to listen on; port 0 picks a free port (see ``InferenceServer.server_port``).
    max_body_bytes
        Larger request bodies are refused with 413 before they are read.
    max_images
        More images in one request are refused with 413, so one client cannot make a
        worker run an arbitrarily large batch.
    request_timeout
        Seconds allowed for reading a request (socket timeout for every read, and a
        deadline for the whole body; slower clients get 408 or are disconnected),
        and for waiting for a free worker (503 after that).
    token
        Bearer token every request must carry; ``None`` means no authentication.
    max_connections
        Connections served at once; more are answered 503 at once and closed, so
        slow or many clients cannot pin unbounded threads and request bodies.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_images: int = DEFAULT_MAX_IMAGES
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    token: str | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS


class _HTTPError(Exception):
    """An error answer: status code, one-line message, optional extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# --------------------------------------------------------------------------- models


class ModelPool:
    """Independent model instances lent to one request at a time.

    Interpreters are not thread-safe, so each instance is used by at most one thread
    at a time: :meth:`acquire` takes an instance off a queue and puts it back after
    use. The pool size also bounds how many decodes and inferences run at once, which keeps a
    Pi's few cores from being oversubscribed by many concurrent clients.

    Parameters
    ----------
    models
        One or more loaded models of the same artifact (same ``sha256``).
    """

    def __init__(self, models: Sequence[Any]) -> None:
        if not models:
            raise ValueError("ModelPool needs at least one model")
        if len({m.sha256 for m in models}) != 1:
            raise ValueError("all models in a pool must be the same artifact")
        self.size = len(models)
        self.first = models[0]
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for model in models:
            self._idle.put(model)

    @contextlib.contextmanager
    def acquire(self, timeout: float) -> Iterator[Any]:
        """Borrow an idle model for the ``with`` block; 503 if none frees up in time."""
        try:
            model = self._idle.get(timeout=timeout)
        except queue.Empty:
            raise _HTTPError(HTTPStatus.SERVICE_UNAVAILABLE, "all workers are busy, retry later") from None
        try:
            yield model
        finally:
            self._idle.put(model)


# -------------------------------------------------------------------------- metrics


def _label_value(value: object) -> str:
    """Escape a Prometheus label value (backslash, double quote, newline)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Request counters, a latency histogram and an in-flight gauge, thread-safe.

    Label values are limited to the known routes and methods (anything else is
    counted as ``other``) so a client cannot grow the metric set without bound.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._buckets: dict[str, list[int]] = {}
        self._sum: dict[str, float] = {}
        self._count: dict[str, int] = {}
        self._in_flight = 0
        self._images = 0

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        """Count the ``with`` block as one request in flight."""
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def observe(self, endpoint: str, method: str, status: int, seconds: float, images: int = 0) -> None:
        """Record one finished request."""
        with self._lock:
            key = (endpoint, method, status)
            self._requests[key] = self._requests.get(key, 0) + 1
            buckets = self._buckets.setdefault(endpoint, [0] * len(LATENCY_BUCKETS))
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1
            self._sum[endpoint] = self._sum.get(endpoint, 0.0) + seconds
            self._count[endpoint] = self._count.get(endpoint, 0) + 1
            self._images += images

    def render(self, model_labels: dict[str, object]) -> str:
        """The metrics in Prometheus text exposition format 0.0.4."""
        info = ",".join(f'{k}="{_label_value(v)}"' for k, v in model_labels.items())
        with self._lock:
            lines = [
                "# HELP keras2edge_http_requests_total HTTP requests by endpoint, method and status code.",
                "# TYPE keras2edge_http_requests_total counter",
            ]
            for (endpoint, method, status), n in sorted(self._requests.items()):
                lines.append(
                    f'keras2edge_http_requests_total{{endpoint="{endpoint}",method="{method}",status="{status}"}} {n}'
                )
            lines += [
                "# HELP keras2edge_http_request_duration_seconds Time from parsed request to response ready.",
                "# TYPE keras2edge_http_request_duration_seconds histogram",
            ]
            for endpoint in sorted(self._buckets):
                for bound, n in zip(LATENCY_BUCKETS, self._buckets[endpoint]):
                    lines.append(f'keras2edge_http_request_duration_seconds_bucket{{endpoint="{endpoint}",le="{bound}"}} {n}')
                count = self._count[endpoint]
                lines.append(f'keras2edge_http_request_duration_seconds_bucket{{endpoint="{endpoint}",le="+Inf"}} {count}')
                lines.append(f'keras2edge_http_request_duration_seconds_sum{{endpoint="{endpoint}"}} {self._sum[endpoint]:.6f}')
                lines.append(f'keras2edge_http_request_duration_seconds_count{{endpoint="{endpoint}"}} {count}')
            lines += [
                "# HELP keras2edge_http_requests_in_flight Requests being handled right now.",
                "# TYPE keras2edge_http_requests_in_flight gauge",
                f"keras2edge_http_requests_in_flight {self._in_flight}",
                "# HELP keras2edge_predicted_images_total Images classified by /v1/predict.",
                "# TYPE keras2edge_predicted_images_total counter",
                f"keras2edge_predicted_images_total {self._images}",
                "# HELP keras2edge_model_info The loaded model artifact (always 1).",
                "# TYPE keras2edge_model_info gauge",
                f"keras2edge_model_info{{{info}}} 1",
            ]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- server


class InferenceServer(ThreadingHTTPServer):
    """A :class:`ThreadingHTTPServer` that owns a :class:`ModelPool`, metrics and a log.

    Request threads are not daemonic and ``server_close`` joins them, so stopping the
    server (see :func:`serve`) lets in-flight requests finish.

    Parameters
    ----------
    config
        Address, limits and token.
    pool
        The models that answer ``/v1/predict`` and ``/healthz``.
    log_stream
        Where the JSON-lines access log goes (stderr by default).

    Examples
    --------
    >>> server = InferenceServer(ServeConfig(port=0), ModelPool([edge_runtime.load("out/tflite_int8.tflite")]))  # doctest: +SKIP
    >>> threading.Thread(target=server.serve_forever).start()  # doctest: +SKIP
    """

    daemon_threads = False
    block_on_close = True
    # The stdlib default backlog of 5 makes the kernel reset connections when a burst
    # of clients arrives between two accept() calls.
    request_queue_size = 128

    def __init__(self, config: ServeConfig, pool: ModelPool, log_stream: IO[str] | None = None) -> None:
        if ":" in config.host:
            self.address_family = socket.AF_INET6
        self.config = config
        self.pool = pool
        self.metrics = Metrics()
        self._log_stream = log_stream if log_stream is not None else sys.stderr
        self._log_lock = threading.Lock()
        # Real test inputs (the artifact directory's samples.npz; the embedded MNIST digits
        # for an older MNIST conversion): a model that answers every input the same way
        # would pass a check on a blank image.
        self._check_images = load_samples(pool.first.path.parent, pool.first.input.shape).inputs
        self._expected = self._reference_output()
        self._connection_slots = threading.BoundedSemaphore(config.max_connections)
        super().__init__((config.host, config.port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in a thread if a slot is free, else answer 503 and close."""
        if not self._connection_slots.acquire(blocking=False):
            self._refuse_busy(request, client_address)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._connection_slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connection_slots.release()

    def _refuse_busy(self, request: Any, client_address: Any) -> None:
        message = f"more than {self.config.max_connections} connections at once (--max-connections); retry later"
        body = _json_bytes({"error": message, "status": 503})
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n").encode()
        self.metrics.observe("-", "-", 503, 0.0)
        self.log(event="refused", client=str(client_address[0]), status=503, reason="max connections")
        with contextlib.suppress(OSError):
            request.settimeout(1.0)
            request.sendall(head + body)
        self.shutdown_request(request)

    def _reference_output(self) -> np.ndarray:
        """Run the self-check images through every instance; they must all agree.

        The result is what ``/healthz`` later compares against, so a health check
        proves the interpreters still compute what they computed at start-up.
        """
        outputs = []
        for _ in range(self.pool.size):
            with self.pool.acquire(timeout=0) as model:
                outputs.append(np.array(model.predict(self._check_images)))
        for other in outputs[1:]:
            if other.shape != outputs[0].shape or not np.allclose(other, outputs[0], atol=1e-5):
                raise Keras2EdgeError("model instances disagree on the self-check images; the artifact is not deterministic")
        return outputs[0]

    def self_check(self) -> float:
        """Classify the self-check images and compare with the start-up answer.

        Returns
        -------
        float
            Seconds the check took; raises :class:`_HTTPError` (503) on a mismatch.
        """
        start = time.perf_counter()
        with self.pool.acquire(timeout=self.config.request_timeout) as model:
            output = np.array(model.predict(self._check_images))
        if output.shape != self._expected.shape or not np.allclose(output, self._expected, atol=1e-5):
            raise _HTTPError(HTTPStatus.SERVICE_UNAVAILABLE, "self-check inference gave a different answer than at start-up")
        return time.perf_counter() - start

    def log(self, **fields: object) -> None:
        """Write one JSON object per line to the log stream (safe across threads)."""
        record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **fields}
        line = json.dumps(record, separators=(",", ":"), default=str)
        with self._log_lock:
            self._log_stream.write(line + "\n")
            self._log_stream.flush()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log errors outside a handler (e.g. a client resetting the connection) as JSON."""
        exc = sys.exc_info()[1]
        self.log(event="connection_error", remote=client_address[0], error=f"{type(exc).__name__}: {exc}")


class _Handler(BaseHTTPRequestHandler):
    """One HTTP request: route, authorise, answer with JSON, log, count."""

    server: InferenceServer
    server_version = "keras2edge"
    sys_version = ""
    # HTTP/1.0: one request per connection, so an idle keep-alive client can never
    # hold up a graceful shutdown and every thread lives for one request only.
    protocol_version = "HTTP/1.0"

    def setup(self) -> None:
        self.timeout = self.server.config.request_timeout  # socket timeout for every read/write
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the stdlib's free-text log; :meth:`_dispatch` writes JSON lines instead."""

    def _dispatch(self) -> None:
        start = time.perf_counter()
        path = urlsplit(self.path).path
        endpoint = path if path in ROUTES else "other"
        self._body_left = self._declared_length(check_limit=False)  # unread until _read_body
        self._images = 0
        status, body, content_type, headers = HTTPStatus.OK, b"", "application/json", {}
        with self.server.metrics.in_flight():
            try:
                self._authorize()
                if path not in ROUTES:
                    raise _HTTPError(HTTPStatus.NOT_FOUND, f"no such endpoint: {path[:100]}")
                if self.command not in ROUTES[path]:
                    allowed = ", ".join(ROUTES[path])
                    raise _HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} accepts {allowed}", {"Allow": allowed})
                body, content_type = getattr(self, "_" + path.strip("/").replace("/", "_"))()
            except _HTTPError as exc:
                status, headers = exc.status, exc.headers
                body = _json_bytes({"error": exc.message, "status": int(exc.status)})
            except Exception as exc:  # a bug: answer 500, keep serving, log the traceback
                status = HTTPStatus.INTERNAL_SERVER_ERROR
                body = _json_bytes({"error": "internal server error", "status": 500})
                self.server.log(event="error", path=path[:200], error=repr(exc), traceback=traceback.format_exc())
            # Counted and logged before it is sent, so a client that has its answer
            # already finds it in /metrics and in the log.
            self._record(endpoint, path, int(status), len(body), time.perf_counter() - start)
        self._respond(status, body, content_type, headers)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer protocol errors the stdlib detects (bad request line, unknown method) in JSON too."""
        self._body_left = self._images = 0
        self.close_connection = True
        body = _json_bytes({"error": message or HTTPStatus(code).phrase, "status": code})
        self._record("other", urlsplit(getattr(self, "path", "")).path, code, len(body), 0.0)
        self._respond(code, body, "application/json", {})

    def _record(self, endpoint: str, path: str, status: int, bytes_out: int, seconds: float) -> None:
        """Count the request in the metrics and write its access-log line."""
        method = self.command if self.command in _METHODS else "other"
        self.server.metrics.observe(endpoint, method, status, seconds, self._images)
        self.server.log(
            event="access",
            remote=self.client_address[0],
            method=str(self.command)[:20],
            path=path[:200],
            status=status,
            bytes_out=bytes_out,
            images=self._images,
            duration_ms=round(seconds * 1000, 3),
        )

    def _respond(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()
        except OSError as exc:  # the client went away (the request is already counted and logged)
            self.server.log(event="connection_error", remote=self.client_address[0], error=f"{type(exc).__name__}: {exc}")
            return
        if self._body_left:
            self._linger()

    def _linger(self) -> None:
        """Discard an unread request body briefly so the client receives our answer.

        Closing a socket with unread input makes the kernel send a reset, and the
        client may then lose the 413/401 response it was about to read.
        """
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(_LINGER_SECONDS)
            deadline = time.monotonic() + _LINGER_SECONDS
            while self._body_left > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(_READ_CHUNK, self._body_left))
                if not chunk:
                    break
                self._body_left -= len(chunk)

    # ---------------------------------------------------------------- request parts

    def _authorize(self) -> None:
        token = self.server.config.token
        if token is None:
            return
        scheme, _, given = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise _HTTPError(
                HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="keras2edge"'}
            )

    def _declared_length(self, check_limit: bool = True) -> int:
        raw = self.headers.get("Content-Length")
        # ASCII digits only ("²".isdigit() is true but int() rejects it), and few enough
        # of them that int() cannot hit Python's digit limit; a longer value is refused as malformed.
        digits = raw.strip() if raw is not None else ""
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 18):
            if not check_limit:
                return 0
            if raw is None:
                raise _HTTPError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header with the body size is required")
            raise _HTTPError(HTTPStatus.BAD_REQUEST, f"Content-Length must be a non-negative integer, not {raw[:40]!r}")
        length = int(digits)
        if check_limit and length > self.server.config.max_body_bytes:
            raise _HTTPError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body is {length} bytes; the limit is {self.server.config.max_body_bytes} (--max-body-bytes)",
            )
        return length

    def _read_body(self) -> bytes:
        """Read exactly Content-Length bytes, within the request deadline (408 otherwise)."""
        length = self._body_left = self._declared_length()
        deadline = time.monotonic() + self.server.config.request_timeout
        chunks = []
        while self._body_left > 0:
            if time.monotonic() > deadline:
                raise _HTTPError(HTTPStatus.REQUEST_TIMEOUT, "the request body was not received in time")
            try:
                chunk = self.rfile.read1(min(_READ_CHUNK, self._body_left))
            except TimeoutError:
                raise _HTTPError(HTTPStatus.REQUEST_TIMEOUT, "the request body was not received in time") from None
            if not chunk:
                raise _HTTPError(HTTPStatus.BAD_REQUEST, f"body ended after {length - self._body_left} of {length} bytes")
            chunks.append(chunk)
            self._body_left -= len(chunk)
        return b"".join(chunks)

    def _count_images(self, n: int) -> None:
        if n == 0:
            raise _HTTPError(HTTPStatus.BAD_REQUEST, "no images in the request")
        if n > self.server.config.max_images:
            raise _HTTPError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"{n} images in one request; the limit is {self.server.config.max_images} (--max-images)",
            )

    def _parse_images(self, body: bytes, model: Any) -> np.ndarray:
        """Turn the request body into one batch ``(N, H, W)`` for a single predict call."""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type in _IMAGE_TYPES:
            return _decode_image(body, "body", model.input)[np.newaxis]
        if content_type != "application/json":
            raise _HTTPError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"Content-Type must be image/png, image/jpeg or application/json, not {content_type[:60] or 'missing'!r}",
            )
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise _HTTPError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {exc}") from None
        keys = sorted(set(document) & {"images", "images_b64"}) if isinstance(document, dict) else []
        if len(keys) != 1 or not isinstance(document[keys[0]], list):
            raise _HTTPError(HTTPStatus.BAD_REQUEST, 'JSON body must be an object with a list "images" or "images_b64"')
        items = document[keys[0]]
        self._count_images(len(items))
        if keys[0] == "images_b64":
            return np.stack([_decode_image(_b64(item, i), f"images_b64[{i}]", model.input) for i, item in enumerate(items)])
        return _pixel_array(items)

    # -------------------------------------------------------------------- endpoints

    def _v1_predict(self) -> tuple[bytes, str]:
        start = time.perf_counter()
        body = self._read_body()  # before taking a worker: a slow client must not hold one
        with self.server.pool.acquire(timeout=self.server.config.request_timeout) as model:
            # Decoding is CPU- and memory-heavy (a photo is megapixels), so it is bounded
            # by the worker pool like inference is: at most --workers images at a time.
            images = self._parse_images(body, model)
            infer_start = time.perf_counter()
            try:
                # A copy: the model may reuse its output buffer once it is back in the pool.
                probabilities = np.array(model.predict(images), dtype=np.float32)
            except InputError as exc:  # the client's images do not fit the model
                raise _HTTPError(HTTPStatus.BAD_REQUEST, str(exc)) from None
            except Keras2EdgeError as exc:  # the backend failed: the server's fault, not the request's
                raise _HTTPError(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc)) from None
            inference = time.perf_counter() - infer_start
        self._images = len(images)
        labels = [model.class_labels[i] for i in probabilities.argmax(axis=1)]
        return _json_bytes(
            {
                "labels": labels,
                "probabilities": probabilities.tolist(),
                "model_sha256": model.sha256,
                "backend": model.backend,
                "latency_ms": {
                    "inference": round(inference * 1000, 3),
                    "server": round((time.perf_counter() - start) * 1000, 3),
                },
            }
        ), "application/json"

    def _healthz(self) -> tuple[bytes, str]:
        seconds = self.server.self_check()
        model = self.server.pool.first
        return _json_bytes(
            {"status": "ok", "model_sha256": model.sha256, "self_check_ms": round(seconds * 1000, 3)}
        ), "application/json"

    def _v1_model(self) -> tuple[bytes, str]:
        config = self.server.config
        info = dict(self.server.pool.first.info())
        info["server"] = {
            "workers": self.server.pool.size,
            "max_body_bytes": config.max_body_bytes,
            "max_images": config.max_images,
            "request_timeout_s": config.request_timeout,
            "auth": "bearer" if config.token else "none",
        }
        return _json_bytes(info), "application/json"

    def _metrics(self) -> tuple[bytes, str]:
        model = self.server.pool.first
        labels = {"sha256": model.sha256, "backend": model.backend, "workers": self.server.pool.size}
        return self.server.metrics.render(labels).encode(), "text/plain; version=0.0.4; charset=utf-8"


def _json_bytes(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":"), default=str).encode()


def _b64(item: object, index: int) -> bytes:
    if not isinstance(item, str):
        raise _HTTPError(HTTPStatus.BAD_REQUEST, f"images_b64[{index}] must be a base64 string")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _HTTPError(HTTPStatus.BAD_REQUEST, f"images_b64[{index}] is not valid base64: {exc}") from None




def _decode_image(data: bytes, where: str, spec: InputSpec) -> np.ndarray:
    """PNG/JPEG bytes -> model-sized uint8 image, decoded in memory (nothing touches the disk).

    Errors name ``where`` (``body``, ``images_b64[3]``), never a server path.
    """
    try:
        return load_image(data, spec.image_size, color_mode=spec.color_mode, digits=spec.digits,
                          crop_to_aspect_ratio=spec.crop_to_aspect_ratio, name=where)
    except Keras2EdgeError as exc:
        raise _HTTPError(HTTPStatus.BAD_REQUEST, str(exc)) from None


def _pixel_array(items: list[Any]) -> np.ndarray:
    """JSON nested lists -> uint8 (integers 0..255) or float32 (anything else numeric).

    The dtype is passed on unchanged so ``predict`` applies the same rules to JSON
    input as to a numpy array in Python (uint8 pixels are scaled, floats are not).
    """
    try:
        array = np.asarray(items)
    except ValueError as exc:  # ragged nesting
        raise _HTTPError(HTTPStatus.BAD_REQUEST, f'"images" is not a list of equally sized 2-D arrays: {exc}') from None
    if array.ndim != 3:
        raise _HTTPError(HTTPStatus.BAD_REQUEST, f'"images" must be a list of 2-D pixel arrays, got {array.ndim - 1}-D items')
    if array.dtype.kind in "iu":
        if array.size and (array.min() < 0 or array.max() > 255):
            raise _HTTPError(HTTPStatus.BAD_REQUEST, '"images" integer pixels must be in 0..255')
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        return array.astype(np.float32)
    raise _HTTPError(HTTPStatus.BAD_REQUEST, '"images" must contain only numbers')


# ------------------------------------------------------------------------------ CLI


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine.

    Examples
    --------
    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to a LAN address
        return False


def check_bind(host: str, has_token: bool, insecure: bool) -> None:
    """Refuse to expose the model beyond this machine without a token or ``--insecure``.

    Raises
    ------
    Keras2EdgeError
        ``host`` is not a loopback address and neither a token nor ``insecure`` is given.
    """
    if not (has_token or insecure or is_loopback(host)):
        raise Keras2EdgeError(
            f"--host {host} accepts connections from other machines; give --token-file FILE (bearer token) or --insecure"
        )


def read_token(path: Path) -> str:
    """Read a bearer token from ``path`` (surrounding whitespace stripped).

    The token must be at least 16 printable ASCII characters without spaces, e.g. the
    output of ``python -c "import secrets; print(secrets.token_urlsafe(32))"``.
    """
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise Keras2EdgeError(f"cannot read token file {path}: {exc}") from None
    if len(token) < MIN_TOKEN_CHARS or not (token.isascii() and token.isprintable()) or " " in token:
        raise Keras2EdgeError(
            f"token file {path} must hold one token of at least {MIN_TOKEN_CHARS} printable ASCII characters without spaces"
        )
    return token


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, got {value}")
    return value


def add_subparser(subparsers: Any) -> None:
    """Register ``serve`` with the ``python -m edge_runtime`` command registry."""
    parser = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP",
        description="Serve MODEL over HTTP: POST /v1/predict, GET /healthz, /v1/model, /metrics.",
    )
    parser.add_argument("model", type=Path, metavar="MODEL", help=".tflite or .onnx artifact (its manifest.json beside it is used)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default %(default)s, this machine only)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help="TCP port, 0 = any free port (default %(default)s)")
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=DEFAULT_WORKERS,
        help="model instances = images decoded/classified in parallel (default %(default)s)",
    )
    parser.add_argument("--token-file", type=Path, help="file holding the bearer token clients must send")
    parser.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without a token")
    parser.add_argument(
        "--max-body-bytes", type=positive_int, default=DEFAULT_MAX_BODY_BYTES, help="larger bodies get 413 (default %(default)s)"
    )
    parser.add_argument(
        "--max-images", type=positive_int, default=DEFAULT_MAX_IMAGES, help="more images per request get 413 (default %(default)s)"
    )
    parser.add_argument(
        "--max-connections",
        type=positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        help="connections served at once; more get 503 (default %(default)s)",
    )
    parser.add_argument(
        "--request-timeout",
        type=positive_float,
        default=DEFAULT_REQUEST_TIMEOUT,
        help="seconds to receive a request or wait for a free worker (default %(default)s)",
    )
    parser.add_argument("--backend", choices=BACKEND_NAMES, default="auto", help="inference backend (default %(default)s)")
    parser.add_argument("--threads", type=positive_int, default=None, help="inference threads per worker")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the security settings, load ``--workers`` models and serve until SIGTERM."""
    check_bind(args.host, has_token=args.token_file is not None, insecure=args.insecure)
    token = read_token(args.token_file) if args.token_file is not None else None
    config = ServeConfig(
        host=args.host,
        port=args.port,
        max_body_bytes=args.max_body_bytes,
        max_images=args.max_images,
        request_timeout=args.request_timeout,
        token=token,
        max_connections=args.max_connections,
    )
    models = [load(args.model, backend=args.backend, threads=args.threads) for _ in range(args.workers)]
    try:
        server = InferenceServer(config, ModelPool(models))
    except OSError as exc:
        raise Keras2EdgeError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return serve(server)


def serve(server: InferenceServer) -> int:
    """Serve until SIGTERM/SIGINT, then stop accepting and let in-flight requests finish.

    Must run in the main thread (signal handlers). Returns exit status 0.
    """
    def stop(signum: int, _frame: object) -> None:
        server.log(event="stopping", signal=signal.Signals(signum).name)
        # shutdown() waits for serve_forever() to return, which runs in this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    model = server.pool.first
    server.log(
        event="listening",
        host=server.server_address[0],
        port=server.server_port,
        model_sha256=model.sha256,
        backend=model.backend,
        workers=server.pool.size,
        auth="bearer" if server.config.token else "none",
    )
    try:
        server.serve_forever()
    finally:
        server.socket.close()  # refuse new connections from here on
        server.log(event="draining")
        server.server_close()  # joins the request threads still running
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    server.log(event="stopped")
    return 0
