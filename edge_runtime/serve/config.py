"""The settings of one server: limits, timeouts, batching, authentication.

Every module of the server reads its limits from one frozen :class:`ServeConfig`, so
the command line, the worker processes and the tests cannot disagree about them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_IMAGES = 256
# Every connection may hold a request body of up to --max-body-bytes while it is
# received; this bounds the memory clients can pin on a small device (32 x 4 MiB).
DEFAULT_MAX_CONNECTIONS = 32
DEFAULT_REQUEST_TIMEOUT = 10.0
# An idle keep-alive connection costs a file descriptor and a few kB; clients that
# send again within this many seconds skip the TCP handshake.
DEFAULT_KEEPALIVE_TIMEOUT = 5.0
# Connections are recycled after this many requests, so the kernel spreads long-lived
# clients over the worker processes again now and then.
DEFAULT_KEEPALIVE_REQUESTS = 1000
# Images in one batched predict call. A single request with more images (up to
# --max-images) still runs as one call: requests are never split.
DEFAULT_MAX_BATCH = 32
# No waiting by default: requests that queued while the model was busy are batched
# anyway, and an idle server answers at once.
DEFAULT_MAX_WAIT_US = 0


def usable_cores() -> int:
    """The number of CPU cores this process may run on (its affinity mask, else all cores).

    The default of ``serve --workers``, and what the benchmarks count as the machine's
    cores: in a container or under ``taskset`` fewer than ``os.cpu_count()``.

    Examples
    --------
    >>> usable_cores() >= 1
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


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
        Seconds allowed for receiving one request (headers, then body; slower
        clients get 408) and for waiting for the model (503 after that).
    token
        Bearer token every request must carry; ``None`` means no authentication.
    max_connections
        Connections served at once over all worker processes; more are answered 503
        and closed, so slow or many clients cannot pin unbounded request bodies. The
        count lives in memory the workers share without a lock, so workers accepting
        at the same instant may let in up to ``workers - 1`` connections more.
    keepalive_timeout
        Seconds an idle HTTP/1.1 connection is kept open between requests.
    keepalive_requests
        Requests served on one connection before it is closed.
    max_batch
        Images per batched ``predict`` call (requests are never split).
    max_wait_us
        Microseconds a batch may wait for requests that are being received when the
        batch is started; 0 never waits. Nothing waits when no other request is in flight.
    ui
        Serve the web page at ``GET /`` (``--no-ui`` turns it off, for a server that
        only other programs talk to).

    Examples
    --------
    >>> ServeConfig(port=0).host
    '127.0.0.1'
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_images: int = DEFAULT_MAX_IMAGES
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    token: str | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    keepalive_requests: int = DEFAULT_KEEPALIVE_REQUESTS
    max_batch: int = DEFAULT_MAX_BATCH
    max_wait_us: int = DEFAULT_MAX_WAIT_US
    ui: bool = True
