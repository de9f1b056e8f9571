"""HTTP inference service: ``python -m edge_runtime serve MODEL``.

On a Raspberry Pi the model usually serves other programs (a camera script, a web
page, another machine on the LAN), so this package puts a small, dependable and
fast HTTP API in front of :func:`edge_runtime.load`. One module per job:

=================  ==================================================================
``cli``            arguments, the bind/token security checks, start-up
``workers``        worker processes: fork, restart, drain on SIGTERM
``server``         one process's event loop, accept, connection limit, timeouts
``http``           HTTP/1.1 framing, keep-alive, limits, answers (asyncio protocol)
``routes``         the route table and the endpoint handlers
``batching``       the model pool and dynamic batching of concurrent requests
``inputs``         request body -> the array given to ``predict`` (every input format)
``metrics``        Prometheus metrics in memory shared by the worker processes
``log``            the JSON-lines access and event log
``config``         the limits and their defaults
=================  ==================================================================

Endpoints (see :mod:`edge_runtime.serve.routes`)::

    POST /v1/predict   an image body (image/*), or JSON {"images": [HxW(xC) lists]} / {"images_b64": [...]}
                       / {"features": [[...], ...]} (feature models)
    GET  /healthz      model loaded and a self-check inference gives the start-up answer
    GET  /v1/model     manifest summary of the loaded artifact
    GET  /metrics      Prometheus text format
    GET  /             a web page to try the model from a browser (``--no-ui``: off)

Why this HTTP stack, measured: the same PNG request (decode, one int8 MLP ``predict``,
JSON answer) behind five stacks, one process each, ``wrk -t1 -c16`` for 4 s, the
stacks alternated, two rounds, on a shared 2-core x86-64 machine; server CPU time per
request (from ``/proc/PID/stat``, steadier than requests/s on a busy machine)::

    http.server ThreadingHTTPServer, HTTP/1.1         0.51-0.65 ms
    uvicorn, h11 parser, asyncio loop                 0.41-0.48 ms
    uvicorn, httptools parser, uvloop (compiled)      0.26-0.30 ms
    hand-written asyncio.Protocol, stdlib loop        0.26 ms     <- chosen
    the same protocol on uvloop                       0.22-0.25 ms

The hand-written protocol costs what uvicorn costs with its compiled parser and
loop, and half of what the standard library's server costs, while remaining pure
Python: nothing to install on a 32-bit Raspberry Pi OS (no httptools or uvloop
wheel there), nothing to import at start-up beyond asyncio, and one file to read.
uvloop would save another 10-15 % and was left out so that every device runs the
same code. The numbers above are from a noisy machine; ``python -m benchmarks serve``
measures the whole server against FastAPI + uvicorn on yours.
"""

from __future__ import annotations

from edge_runtime.serve.batching import ModelPool
from edge_runtime.serve.cli import add_subparser, check_bind, is_loopback, read_token, run
from edge_runtime.serve.config import ServeConfig
from edge_runtime.serve.server import InferenceServer

__all__ = [
    "InferenceServer",
    "ModelPool",
    "ServeConfig",
    "add_subparser",
    "check_bind",
    "is_loopback",
    "read_token",
    "run",
]
