"""The endpoints: the route table and one handler per route.

Endpoints::

    POST /v1/predict   PNG/JPEG body, or JSON {"images": [28x28 lists]} / {"images_b64": [...]}
    GET  /healthz      model loaded and a self-check inference gives the start-up answer
    GET  /v1/model     manifest summary of the loaded artifact and the server's limits
    GET  /metrics      Prometheus text format, summed over all worker processes

Adding an endpoint (a static page at ``GET /``, say) is one function here and one
entry in :data:`ROUTES`; the protocol, limits, token check, metrics and access log
apply to it unchanged.
"""

from __future__ import annotations

import json
import time
from typing import Any

from edge_runtime.serve.batching import BUSY, Job
from edge_runtime.serve.http import Connection, Request, Route, json_error


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
    model = server.pool.first
    labels = {"sha256": model.sha256, "backend": model.backend, "workers": server.workers}
    connection.reply(request, 200, server.metrics.render(labels).encode(), "text/plain; version=0.0.4; charset=utf-8")


# path -> route. Anything else is 404 (unknown path) or 405 (wrong method).
ROUTES: dict[str, Route] = {
    "/v1/predict": Route(("POST",), predict, reads_body=True),
    "/healthz": Route(("GET",), healthz),
    "/v1/model": Route(("GET",), model_info),
    "/metrics": Route(("GET",), metrics),
}
