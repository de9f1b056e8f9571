"""The endpoints: the route table and one handler per route.

Endpoints::

    POST /v1/predict   an image body (image/*), or JSON {"images": [HxW(xC) lists]} / {"images_b64": [...]}
                       / {"features": [[...], ...]} (feature models)
    GET  /healthz      model loaded and a self-check inference gives the start-up answer
    GET  /v1/model     manifest summary of the loaded artifact and the server's limits
    GET  /metrics      Prometheus text format, summed over all worker processes
    GET  /             the web page (and its files under /ui/): try the model from a browser

Adding an endpoint is one function here and one entry in :data:`ROUTES`; the
protocol, limits, token check, metrics and access log apply to it unchanged.
"""

from __future__ import annotations

import json
import time
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any

from edge_runtime.serve.batching import BUSY, Job
from edge_runtime.serve.http import Connection, HTTPError, Request, Route, json_error

# The page's files, shipped as package data: plain HTML, CSS and JavaScript, no build step.
UI_DIR = Path(__file__).with_name("ui")
# URL path -> (file in UI_DIR, Content-Type).
UI_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/ui/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/ui/app.css": ("app.css", "text/css; charset=utf-8"),
    "/ui/icon.svg": ("icon.svg", "image/svg+xml"),
}
# The page may load nothing but its own files and talk to nothing but this server;
# no other site may frame it (it can hold the bearer token).
UI_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _json(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":"), default=str).encode()


def _queue(server: Any, request: Request, connection: Connection, kind: str) -> None:
    """Hand the request to the batcher; the answer is sent from the event loop when it is ready."""

    def deliver(status: int, body: bytes, images: int, error: BaseException | None) -> None:
        if error is not None:
            connection.crash(request, error)
        else:
            connection.reply(request, status, body, images=images)

    server.batcher.submit(
        Job(
            kind=kind,
            body=request.body,
            content_type=request.headers.get("content-type", ""),
            deliver=deliver,
            start=request.start,
            expires=time.monotonic() + server.config.request_timeout,
        )
    )


def expire(job: Job) -> None:
    """Answer a job no model took within ``request_timeout``: 503, retry later."""
    job.deliver(BUSY.status, json_error(BUSY), 0, None)


def predict(server: Any, request: Request, connection: Connection) -> None:
    """``POST /v1/predict``: decoded and classified in the next batch."""
    _queue(server, request, connection, "predict")


def healthz(server: Any, request: Request, connection: Connection) -> None:
    """``GET /healthz``: the self-check images through the model, compared with start-up."""
    _queue(server, request, connection, "check")


def model_info(server: Any, request: Request, connection: Connection) -> None:
    """``GET /v1/model``: what is loaded and with which limits."""
    config = server.config
    info = dict(server.pool.first.info())
    info["server"] = {
        "workers": server.workers,
        "max_body_bytes": config.max_body_bytes,
        "max_images": config.max_images,
        "request_timeout_s": config.request_timeout,
        "auth": "bearer" if config.token else "none",
    }
    connection.reply(request, 200, _json(info))


def metrics(server: Any, request: Request, connection: Connection) -> None:
    """``GET /metrics``: Prometheus text exposition format 0.0.4."""
    body = server.metrics.render(server.model_labels).encode()
    connection.reply(request, 200, body, "text/plain; version=0.0.4; charset=utf-8")


@cache
def _ui_file(name: str) -> bytes:
    """A file of the page, read once per process (the files are a few kB and never change)."""
    return (UI_DIR / name).read_bytes()


def page(server: Any, request: Request, connection: Connection) -> None:
    """``GET /`` and the page's files: a browser UI on ``/v1/model`` and ``/v1/predict``.

    Answered without the token: the files hold no secret, and the page asks for the
    token and sends it with its API calls. With ``--no-ui`` every path of the page is 404.
    """
    if not server.config.ui:
        raise HTTPError(HTTPStatus.NOT_FOUND, f"no such endpoint: {request.path} (the web page is off: --no-ui)")
    name, content_type = UI_FILES[request.path]
    connection.reply(request, 200, _ui_file(name), content_type, UI_HEADERS)


# path -> route. Anything else is 404 (unknown path) or 405 (wrong method).
ROUTES: dict[str, Route] = {
    "/v1/predict": Route(("POST",), predict, reads_body=True),
    "/healthz": Route(("GET",), healthz),
    "/v1/model": Route(("GET",), model_info),
    "/metrics": Route(("GET",), metrics),
    **{path: Route(("GET", "HEAD"), page, public=True) for path in UI_FILES},
}
