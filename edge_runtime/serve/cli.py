"""``python -m edge_runtime serve``: arguments, security checks, and starting the server.

The security rules live here because they are decisions about the command line, made
before anything listens: the server binds to 127.0.0.1 unless told otherwise, and
refuses an address other machines can reach unless it is given a bearer token
(``--token-file``) or an explicit ``--insecure``.
"""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path
from typing import Any

from edge_runtime.backends import BACKEND_NAMES
from edge_runtime.cli_support import int_in_range, positive_float, positive_int
from edge_runtime.errors import Keras2EdgeError
from edge_runtime.serve import config as defaults
from edge_runtime.serve.config import ServeConfig

MIN_TOKEN_CHARS = 16


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

    Examples
    --------
    >>> check_bind("127.0.0.1", has_token=False, insecure=False)
    """
    if not (has_token or insecure or is_loopback(host)):
        raise Keras2EdgeError(
            f"--host {host} accepts connections from other machines; "
            "give --token-file FILE (bearer token) or --insecure"
        )


def read_token(path: Path) -> str:
    """Read a bearer token from ``path`` (surrounding whitespace stripped).

    The token must be at least 16 printable ASCII characters without spaces, e.g. the
    output of ``python -c "import secrets; print(secrets.token_urlsafe(32))"``.

    Raises
    ------
    Keras2EdgeError
        The file cannot be read or does not hold a usable token.
    """
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise Keras2EdgeError(f"cannot read token file {path}: {exc}") from None
    if len(token) < MIN_TOKEN_CHARS or not (token.isascii() and token.isprintable()) or " " in token:
        raise Keras2EdgeError(
            f"token file {path} must hold one token of at least {MIN_TOKEN_CHARS} printable ASCII characters "
            "without spaces"
        )
    return token


def add_subparser(subparsers: Any) -> None:
    """Register ``serve`` with the ``python -m edge_runtime`` command registry."""
    parser = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP",
        description="Serve MODEL over HTTP: POST /v1/predict, GET /healthz, /v1/model, /metrics, "
        "and a web page at / to try the model from a browser.",
    )
    parser.add_argument(
        "model", type=Path, metavar="MODEL", help=".tflite or .onnx artifact (its manifest.json beside it is used)"
    )
    parser.add_argument(
        "--host", default=defaults.DEFAULT_HOST, help="address to bind (default %(default)s, this machine only)"
    )
    parser.add_argument(
        "--port", type=int_in_range(0, 65535), default=defaults.DEFAULT_PORT,
        help="TCP port, 0 = any free port (default %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=defaults.usable_cores(),
        help="worker processes, each with its own model (default: the number of cores, %(default)s)",
    )
    parser.add_argument("--token-file", type=Path, help="file holding the bearer token clients must send")
    parser.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without a token")
    parser.add_argument(
        "--max-body-bytes",
        type=positive_int,
        default=defaults.DEFAULT_MAX_BODY_BYTES,
        help="larger bodies get 413 (default %(default)s)",
    )
    parser.add_argument(
        "--max-images",
        type=positive_int,
        default=defaults.DEFAULT_MAX_IMAGES,
        help="more images per request get 413 (default %(default)s)",
    )
    parser.add_argument(
        "--max-connections",
        type=positive_int,
        default=defaults.DEFAULT_MAX_CONNECTIONS,
        help="connections served at once over all workers; more get 503 (default %(default)s)",
    )
    parser.add_argument(
        "--request-timeout",
        type=positive_float,
        default=defaults.DEFAULT_REQUEST_TIMEOUT,
        help="seconds to receive a request or wait for the model (default %(default)s)",
    )
    parser.add_argument(
        "--keepalive-timeout",
        type=positive_float,
        default=defaults.DEFAULT_KEEPALIVE_TIMEOUT,
        help="seconds an idle connection stays open (default %(default)s)",
    )
    parser.add_argument(
        "--keepalive-requests",
        type=positive_int,
        default=defaults.DEFAULT_KEEPALIVE_REQUESTS,
        help="requests per connection before it is closed (default %(default)s)",
    )
    parser.add_argument(
        "--max-batch",
        type=positive_int,
        default=defaults.DEFAULT_MAX_BATCH,
        help="images per batched predict call; requests are never split (default %(default)s)",
    )
    parser.add_argument(
        "--max-wait-us",
        type=int_in_range(0),
        default=defaults.DEFAULT_MAX_WAIT_US,
        help="microseconds a batch may wait for requests still being received; never waits when "
        "none are (default %(default)s)",
    )
    parser.add_argument(
        "--no-ui", dest="ui", action="store_false", help="do not serve the web page at / (the API only)"
    )
    parser.add_argument(
        "--backend", choices=BACKEND_NAMES, default="auto", help="inference backend (default %(default)s)"
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="inference threads per worker (default %(default)s: the workers already use every core)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the security settings, then serve in this process (one worker) or in worker processes."""
    from edge_runtime.model import load
    from edge_runtime.serve.batching import ModelPool
    from edge_runtime.serve.server import InferenceServer
    from edge_runtime.serve.workers import Supervisor, serve

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
        keepalive_timeout=args.keepalive_timeout,
        keepalive_requests=args.keepalive_requests,
        max_batch=args.max_batch,
        max_wait_us=args.max_wait_us,
        ui=args.ui,
    )
    if args.workers > 1:
        return Supervisor(config, args.model, args.backend, args.threads, args.workers).run()
    model = load(args.model, backend=args.backend, threads=args.threads)
    return serve(InferenceServer(config, ModelPool([model])))
