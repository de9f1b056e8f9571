"""HTTP/1.1 on one connection: framing, keep-alive, limits, timeouts, responses.

A hand-written :class:`asyncio.Protocol` on the standard library's event loop. It
parses exactly what the service needs (a request line, headers, a body framed by
``Content-Length``) and writes each response with one ``write``. The choice was
measured (see the package docstring): per request it costs about half the CPU of
``http.server`` and the same as uvicorn with its compiled httptools parser and uvloop,
while adding no dependency, no compiled wheel and nothing to import at start-up.

What a connection does, in order, for each request:

1. read the head (request line + headers) within ``request_timeout`` of its first
   byte (an idle connection waits ``keepalive_timeout`` instead, then is closed);
2. check the bearer token, the route, the method and, for routes that take a body,
   ``Content-Length`` against ``max_body_bytes``: failures are answered before the
   body is read, and the unread body is then discarded for up to a second so the
   client, still sending, receives the answer instead of a reset;
3. read the body within ``request_timeout`` (408 otherwise);
4. hand the request to its route's handler, which answers now or later (after
   inference in a batch); reading further requests waits until it has answered;
5. count and log the request, then send the answer; keep the connection open
   (HTTP/1.1, or HTTP/1.0 with ``Connection: keep-alive``) up to ``keepalive_requests``.

HTTP/1.0 clients get ``HTTP/1.0`` answers and, unless they ask to keep it alive,
a closed connection, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
# Pipelined bytes buffered while a request is being answered before reading pauses.
_MAX_PENDING = 256 * 1024
_LINGER_SECONDS = 1.0
_HEAD, _BODY, _BUSY, _LINGER, _CLOSED = range(5)


class HTTPError(Exception):
    """An error answer: status code, one-line message, optional extra headers.

    Examples
    --------
    >>> HTTPError(404, "no such endpoint: /x").status
    404
    """

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.headers = headers or {}


@dataclass
class Request:
    """One parsed request; ``body`` is filled in once it has been received."""

    method: str
    path: str
    minor: int  # HTTP/1.<minor>
    headers: dict[str, str]
    start: float  # time.perf_counter() when the head was parsed
    keep_alive: bool = False
    body: bytes = b""


@dataclass(frozen=True)
class Route:
    """An entry of the route table: allowed methods and the handler.

    ``handler(server, request, connection)`` answers with ``connection.reply(...)``,
    at once or later from the event loop (for work done elsewhere); an
    :class:`HTTPError` it raises becomes the answer. ``reads_body`` routes get the
    request body (bounded by ``--max-body-bytes``); the others are answered without
    reading one. ``public`` routes are answered without the bearer token: only the
    web page's static files, which hold no secret, and which a browser must load
    before it can ask for the token (a navigation cannot send ``Authorization``).
    """

    methods: tuple[str, ...]
    handler: Callable[[Any, Request, Connection], None]
    reads_body: bool = False
    public: bool = False


def json_error(exc: HTTPError) -> bytes:
    """The JSON body of an error answer: ``{"error": message, "status": code}``."""
    return b'{"error":%s,"status":%d}' % (_json_string(exc.message), exc.status)


def _json_string(text: str) -> bytes:
    import json

    return json.dumps(text).encode()


_date_cache = [0, ""]


def _http_date() -> str:
    """The ``Date`` header, formatted once per second."""
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0], _date_cache[1] = now, formatdate(now, usegmt=True)
    return _date_cache[1]


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def parse_head(head: bytes) -> tuple[str, str, int, dict[str, str]]:
    """Request line and headers -> (method, path, minor version, lower-cased headers).

    Raises
    ------
    HTTPError
        400 malformed, 501 unknown method, 505 HTTP/2 or later, 431 too many headers.
        ``exc.method`` and ``exc.path`` hold what could be read, for the log.

    Examples
    --------
    >>> parse_head(b"GET /v1/model?x=1 HTTP/1.1\\r\\nHost: pi\\r\\nAccept: */*")
    ('GET', '/v1/model', 1, {'host': 'pi', 'accept': '*/*'})
    """
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    words = lines[0].split()
    method = words[0][:20] if words else "-"
    path = words[1] if len(words) > 1 else ""
    try:
        if len(words) != 3:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"bad request line {lines[0][:100]!r}")
        version = words[2]
        if version == "HTTP/1.1":
            minor = 1
        elif version == "HTTP/1.0":
            minor = 0
        else:
            major, _, rest = version.removeprefix("HTTP/").partition(".")
            if not (version.startswith("HTTP/") and major.isdigit() and rest.isdigit()):
                raise HTTPError(HTTPStatus.BAD_REQUEST, f"bad HTTP version {version[:20]!r}")
            if int(major) != 1:
                raise HTTPError(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"HTTP version {version[:20]} is not supported")
            minor = 1
        if method not in METHODS:
            raise HTTPError(HTTPStatus.NOT_IMPLEMENTED, f"unsupported method {method!r}")
        if not path.startswith("/"):
            path = urlsplit(path).path or "/"
        path = path.partition("?")[0]
        if len(lines) - 1 > MAX_HEADERS:
            raise HTTPError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"more than {MAX_HEADERS} headers")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise HTTPError(HTTPStatus.BAD_REQUEST, f"malformed header line {line[:60]!r}")
            key, value = name.lower(), value.strip()
            if key in headers:
                if key == "content-length" and headers[key] != value:
                    raise HTTPError(HTTPStatus.BAD_REQUEST, "conflicting Content-Length headers")
                value = headers[key] if key == "content-length" else f"{headers[key]}, {value}"
            headers[key] = value
    except HTTPError as exc:
        exc.method, exc.path = method, path.partition("?")[0]  # type: ignore[attr-defined]
        raise
    return method, path, minor, headers


def declared_length(headers: dict[str, str], max_body_bytes: int | None) -> int:
    """The body size the client announced; with ``max_body_bytes``, checked strictly.

    Without a limit (the lenient reading used to know how much to discard after an
    early error) anything malformed counts as no body.

    Raises
    ------
    HTTPError
        Only when ``max_body_bytes`` is given: 411 no length (or a
        ``Transfer-Encoding``), 400 malformed, 413 over the limit.

    Examples
    --------
    >>> declared_length({"content-length": "12"}, 100)
    12
    >>> declared_length({"content-length": "²"}, None)
    0
    """
    raw = headers.get("content-length")
    # ASCII digits only ("²".isdigit() is true but int() rejects it), and few enough of
    # them that int() cannot hit Python's digit limit; a longer value is malformed.
    digits = raw.strip() if raw is not None else ""
    valid = digits.isascii() and digits.isdigit() and len(digits) <= 18
    if max_body_bytes is None:
        return int(digits) if valid else 0
    if "transfer-encoding" in headers:
        raise HTTPError(
            HTTPStatus.LENGTH_REQUIRED, "Transfer-Encoding is not supported; send the body with a Content-Length"
        )
    if not valid:
        if raw is None:
            raise HTTPError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header with the body size is required")
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"Content-Length must be a non-negative integer, not {raw[:40]!r}")
    length = int(digits)
    if length > max_body_bytes:
        raise HTTPError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"body is {length} bytes; the limit is {max_body_bytes} (--max-body-bytes)",
        )
    return length


def _wants_keep_alive(minor: int, headers: dict[str, str]) -> bool:
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    return "keep-alive" in tokens if minor == 0 else "close" not in tokens


class Connection(asyncio.Protocol):
    """One client connection; see the module docstring for what it does per request.

    Parameters
    ----------
    server
        The process's :class:`~edge_runtime.serve.server.InferenceServer`: its config,
        route table, metrics, log and connection bookkeeping.
    """

    def __init__(self, server: Any) -> None:
        self.server = server
        self.config = server.config
        self.transport: asyncio.Transport | None = None
        self.remote = "-"
        self.buffer = bytearray()
        self.state = _HEAD
        self.request: Request | None = None
        self.route: Route | None = None
        self.body_left = 0  # body bytes announced but not read yet
        self.announced = 0  # Content-Length of the request whose body is being read
        self.served = 0
        # Whether the server counts this connection as open: it does from accept() on
        # (InferenceServer._accept), until it is refused or closed.
        self.counted = True
        self.deadline: float | None = None
        self.head_started = False  # the deadline is the request's, not the idle one
        self.close_after = False  # answer the current request, then close
        self.reading_paused = False
        self.writing_paused = False
        self._processing = False

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if peer else "-"
        # The first request must begin within request_timeout, later ones within keepalive_timeout.
        self.deadline = time.monotonic() + self.config.request_timeout
        self.server.connection_opened(self)

    def data_received(self, data: bytes) -> None:
        if self.state == _LINGER:
            self.body_left -= len(data)
            if self.body_left <= 0:
                self._close()
            return
        if self.state == _CLOSED:
            return
        self.buffer += data
        if self.state == _BUSY or self.writing_paused:
            if len(self.buffer) > _MAX_PENDING:
                self._pause_reading()
            return
        self._process()

    def eof_received(self) -> bool:
        if self.state == _BODY:
            message = f"body ended after {len(self.buffer)} of {self.announced} bytes"
            self._abandon_body()
            self._answer_error(HTTPError(HTTPStatus.BAD_REQUEST, message))
            return True
        if self.state == _BUSY:
            self.close_after = True  # answer, then close
            return True
        return False  # idle or lingering: let asyncio close the connection

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state == _BODY:
            self._abandon_body()
            self.transport = None
            self._answer_error(
                HTTPError(HTTPStatus.BAD_REQUEST, "client closed the connection before sending the whole body")
            )
        self.state = _CLOSED
        self.transport = None
        self.server.connection_closed(self)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.state == _HEAD:
            self._resume_reading()
            self._process()

    # ------------------------------------------------------------------ requests

    def _process(self) -> None:
        """Parse and dispatch every complete request in the buffer, one at a time."""
        if self._processing:
            return
        self._processing = True
        try:
            while self.state in (_HEAD, _BODY) and not self.writing_paused:
                if self.state == _HEAD and not self._read_head():
                    return
                if self.state == _BODY and not self._read_body():
                    return
        finally:
            self._processing = False

    def _read_head(self) -> bool:
        """Parse a complete head from the buffer and check it; False if more bytes are needed."""
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                self._protocol_error(
                    HTTPError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head is larger than 64 KiB")
                )
            elif buffer and not self.head_started:
                # The request has begun: it must be complete within request_timeout.
                self.head_started = True
                self.deadline = time.monotonic() + self.config.request_timeout
            return False
        head = bytes(buffer[:end])
        del buffer[: end + 4]
        start = time.perf_counter()
        try:
            method, path, minor, headers = parse_head(head)
        except HTTPError as exc:
            self._protocol_error(exc)
            return False
        self.served += 1
        self.head_started = False
        keep_alive = (
            _wants_keep_alive(minor, headers)
            and "transfer-encoding" not in headers  # a body we do not read: never reuse the connection
            and self.served < self.config.keepalive_requests
            and not self.close_after
            and not self.server.draining
        )
        request = self.request = Request(method, path, minor, headers, start, keep_alive)
        self.server.metrics.add_in_flight(1)
        self.deadline = None
        route = self.route = self.server.routes.get(path)
        self.body_left = declared_length(headers, None)  # what to discard if answered early
        try:
            if route is None or not route.public:  # unknown paths too: 401 tells a prober nothing
                self._authorize(headers)
            if route is None:
                raise HTTPError(HTTPStatus.NOT_FOUND, f"no such endpoint: {path[:100]}")
            if method not in route.methods:
                allowed = ", ".join(route.methods)
                raise HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} accepts {allowed}", {"Allow": allowed})
            if route.reads_body:
                self.body_left = self.announced = declared_length(headers, self.config.max_body_bytes)
        except HTTPError as exc:
            self.state = _BUSY
            self._answer_error(exc)
            return self.state == _HEAD
        if route.reads_body:
            self.state = _BODY
            self.server.receiving += 1
            if minor == 1 and headers.get("expect", "").lower() == "100-continue" and len(self.buffer) < self.body_left:
                assert self.transport is not None
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits a second for it otherwise
            return True
        self._dispatch(request, route)
        return self.state == _HEAD

    def _read_body(self) -> bool:
        """Take the body from the buffer and dispatch; False if more bytes are needed."""
        buffer, need = self.buffer, self.body_left
        if len(buffer) < need:
            if self.deadline is None:
                self.deadline = time.monotonic() + self.config.request_timeout
            return False
        request = self.request
        assert request is not None and self.route is not None
        if len(buffer) == need:
            request.body = bytes(buffer)
            buffer.clear()
        else:
            request.body = bytes(buffer[:need])
            del buffer[:need]
        self.body_left = 0
        self.deadline = None
        self._leave_body()
        self._dispatch(request, self.route)
        return self.state == _HEAD

    def _leave_body(self) -> None:
        if self.state == _BODY:
            self.state = _BUSY
            self.server.receiving -= 1

    def _abandon_body(self) -> None:
        """Stop reading a body that will not arrive (timeout, end of stream): answer, then close."""
        self._leave_body()
        self.buffer.clear()
        self.body_left = 0
        self.close_after = True

    def _dispatch(self, request: Request, route: Route) -> None:
        self.state = _BUSY
        try:
            route.handler(self.server, request, self)
        except HTTPError as exc:
            self._answer_error(exc)
        except Exception as exc:  # a bug: answer 500, keep serving, log the traceback
            self.crash(request, exc)

    def _authorize(self, headers: dict[str, str]) -> None:
        token = self.config.token
        if token is None:
            return
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPError(
                HTTPStatus.UNAUTHORIZED,
                "missing or wrong bearer token",
                {"WWW-Authenticate": 'Bearer realm="keras2edge"'},
            )

    # ------------------------------------------------------------------ answers

    def reply(
        self,
        request: Request,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        images: int = 0,
    ) -> None:
        """Count, log and send the answer to ``request`` (a no-op if it was already answered)."""
        if request is not self.request:
            return
        self.request = None
        seconds = time.perf_counter() - request.start
        server = self.server
        # Counted and logged before it is sent, so a client that has its answer finds
        # it in /metrics and in the log.
        endpoint = request.path if request.path in server.routes else "other"
        method = request.method if request.method in METHODS else "other"
        server.metrics.observe(endpoint, method, status, seconds, images)
        server.metrics.add_in_flight(-1)
        server.log.write(
            event="access",
            pid=server.pid,
            remote=self.remote,
            method=request.method[:20],
            path=request.path[:200],
            status=status,
            bytes_out=len(body),
            images=images,
            duration_ms=round(seconds * 1000, 3),
        )
        close = not request.keep_alive or self.close_after or self.body_left > 0
        if self.transport is None or self.state == _CLOSED:
            return  # the client went away; the request is counted and logged
        head = _response_head(request.minor, status, content_type, len(body), headers, close)
        self.transport.write(head if request.method == "HEAD" else head + body)
        if close:
            self._finish()
            return
        self.state = _HEAD
        self.deadline = time.monotonic() + self.config.keepalive_timeout
        self._resume_reading()
        if self.buffer and not self._processing:
            self._process()

    def crash(self, request: Request, exc: BaseException) -> None:
        """Answer 500 for an unexpected exception, without internals, and log the traceback."""
        self.server.log.write(
            event="error",
            path=request.path[:200],
            error=repr(exc),
            traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        )
        self.reply(request, HTTPStatus.INTERNAL_SERVER_ERROR, json_error(HTTPError(500, "internal server error")))

    def _answer_error(self, exc: HTTPError) -> None:
        if self.request is not None:
            self.reply(self.request, exc.status, json_error(exc), "application/json", exc.headers)

    def _protocol_error(self, exc: HTTPError) -> None:
        """Answer a request that could not be parsed (in JSON too) and close the connection.

        What the client may still be sending is discarded for a moment first, so that it
        receives the answer rather than a connection reset.
        """
        self.close_after = True
        self.body_left = 1 << 62
        self.buffer.clear()
        request = self.request = Request(
            getattr(exc, "method", "-"), getattr(exc, "path", ""), 1, {}, time.perf_counter()
        )
        self.server.metrics.add_in_flight(1)
        self.state = _BUSY
        self.reply(request, exc.status, json_error(exc), "application/json", exc.headers)

    def _finish(self) -> None:
        """Close after an answer; first discard an unread body so the client gets the answer."""
        if self.transport is None:
            return
        if self.body_left > 0 and self.transport.can_write_eof():
            self.state = _LINGER
            self.body_left -= len(self.buffer)
            self.buffer.clear()
            self.deadline = time.monotonic() + _LINGER_SECONDS
            self._resume_reading()
            with contextlib.suppress(OSError):
                self.transport.write_eof()
            if self.body_left > 0:
                return
        self._close()

    def _close(self) -> None:
        self.state = _CLOSED
        if self.transport is not None:
            self.transport.close()

    # --------------------------------------------------------------- supervision

    def refuse(self, message: str) -> None:
        """Answer 503 at once (too many connections) and close, without reading a request."""
        body = json_error(HTTPError(HTTPStatus.SERVICE_UNAVAILABLE, message))
        self.server.metrics.observe("-", "-", HTTPStatus.SERVICE_UNAVAILABLE, 0.0)
        self.server.log.write(event="refused", client=self.remote, status=503, reason="max connections")
        assert self.transport is not None
        self.transport.write(_response_head(1, 503, "application/json", len(body), {"Retry-After": "1"}, True) + body)
        self.body_left = 1 << 62  # discard whatever the client sends until it stops or a second passes
        self._finish()

    def check_deadline(self, now: float) -> None:
        """Enforce the timeouts; the server calls this a few times a second."""
        if self.deadline is None or now < self.deadline:
            return
        self.deadline = None
        if self.state == _HEAD and not self.buffer:
            self._close()  # idle keep-alive connection
        elif self.state == _HEAD:
            self._protocol_error(HTTPError(HTTPStatus.REQUEST_TIMEOUT, "the request head was not received in time"))
        elif self.state == _BODY:
            self._abandon_body()
            self._answer_error(HTTPError(HTTPStatus.REQUEST_TIMEOUT, "the request body was not received in time"))
        elif self.state == _LINGER:
            self._close()

    def drain(self) -> None:
        """Server shutdown: close now if idle, else after answering the current request."""
        self.close_after = True
        if self.state == _HEAD and not self.buffer:
            self._close()

    @property
    def idle(self) -> bool:
        """Whether no request is being received or answered."""
        return self.state in (_HEAD, _CLOSED) and not self.buffer

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()


def _response_head(
    minor: int, status: int, content_type: str, length: int, headers: dict[str, str] | None, close: bool
) -> bytes:
    lines = [
        f"HTTP/1.{minor} {status} {_phrase(status)}\r\nServer: keras2edge\r\nDate: {_http_date()}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\nCache-Control: no-store\r\n"
    ]
    if headers:
        lines.extend(f"{name}: {value}\r\n" for name, value in headers.items())
    if close:
        lines.append("Connection: close\r\n")
    elif minor == 0:
        lines.append("Connection: keep-alive\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")
