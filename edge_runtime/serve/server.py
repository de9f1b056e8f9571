"""One serving process: the listening socket, the event loop, connections and shutdown.

An :class:`InferenceServer` is what each worker process runs (and what the tests run
in a thread): it accepts connections on a listening socket (its own, or one shared
by every worker process), runs them as :class:`~edge_runtime.serve.http.Connection`
protocols on an asyncio loop, hands inference to a
:class:`~edge_runtime.serve.batching.Batcher`, enforces timeouts and the connection
limit, and on shutdown stops accepting, finishes the requests in flight and returns.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from edge_runtime.errors import Keras2EdgeError
from edge_runtime.sample_set import load_samples
from edge_runtime.serve.batching import DISAGREE, Batcher, ModelPool, same_output
from edge_runtime.serve.config import ServeConfig
from edge_runtime.serve.http import METHODS, Connection, Route
from edge_runtime.serve.log import JsonLog
from edge_runtime.serve.metrics import Metrics
from edge_runtime.serve.routes import ROUTES, expire

# The stdlib default backlog of 5 makes the kernel reset connections when a burst of
# clients arrives between two accept() calls.
BACKLOG = 128
# Timeouts are checked this often (at most; shorter timeouts are checked 4x per timeout).
_SWEEP_SECONDS = 0.25
# How long a worker with more connections than another leaves a new one for the other.
_ACCEPT_DEFER_SECONDS = 0.002


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 when ``host`` contains a colon).

    Raises
    ------
    Keras2EdgeError
        The address is in use, not local, or not permitted (the message names it).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=BACKLOG)
    except OSError as exc:
        raise Keras2EdgeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def self_check_images(model: Any) -> np.ndarray:
    """The inputs ``/healthz`` classifies: the artifact directory's real test samples.

    Real inputs (``samples.npz``, or the embedded MNIST digits for an MNIST model
    converted before it existed), because a model that answers every input the same
    way would pass a check on a blank image.

    Raises
    ------
    DataError
        No usable samples for this model.
    """
    return load_samples(model.path.parent, model.input.shape).inputs


def make_metrics(routes: dict[str, Route], slots: int = 1) -> Metrics:
    """Metrics labelled by ``routes`` (``-``: connections refused before a request)."""
    return Metrics([*routes, "-"], [*METHODS, "-"], slots=slots)


class InferenceServer:
    """Serves a :class:`ModelPool` over HTTP until :meth:`shutdown`.

    Parameters
    ----------
    config
        Address, limits, batching and token.
    pool
        The models that answer ``/v1/predict`` and ``/healthz`` (one runner thread each).
    log_stream
        Where the JSON-lines log goes (stderr by default).
    sock
        A listening socket to serve instead of binding ``config.host:config.port``
        (worker processes share the supervisor's).
    metrics
        Shared metrics (worker processes); a private one by default.
    workers
        Model instances over all processes, as reported by ``/v1/model`` and ``/metrics``.

    Raises
    ------
    Keras2EdgeError
        The address cannot be bound, or the models disagree on the self-check images.

    Examples
    --------
    >>> pool = ModelPool([edge_runtime.load("out/tflite_int8.tflite")])  # doctest: +SKIP
    >>> server = InferenceServer(ServeConfig(port=0), pool)  # doctest: +SKIP
    >>> threading.Thread(target=server.serve_forever).start()  # doctest: +SKIP
    >>> server.shutdown(); server.server_close()  # doctest: +SKIP
    """

    def __init__(
        self,
        config: ServeConfig,
        pool: ModelPool,
        log_stream: IO[str] | None = None,
        *,
        sock: socket.socket | None = None,
        metrics: Metrics | None = None,
        workers: int | None = None,
        routes: dict[str, Route] = ROUTES,
    ) -> None:
        self.config = config
        self.pool = pool
        self.routes = routes
        self.log = JsonLog(log_stream)
        self.pid = os.getpid()  # in the access log: which worker process answered
        self.metrics = metrics if metrics is not None else make_metrics(routes)
        self.workers = workers if workers is not None else pool.size
        # The model_info labels of /metrics, built once: the model and the worker count never change.
        self.model_labels = {"sha256": pool.first.sha256, "backend": pool.first.backend, "workers": self.workers}
        check_images = self_check_images(pool.first)
        self.reference = self._reference_output(check_images)
        self.socket = sock if sock is not None else listen(config.host, config.port)
        self.server_address = self.socket.getsockname()
        self.server_port: int = self.server_address[1]
        self.connections: set[Connection] = set()
        self.receiving = 0  # predict requests whose body is still arriving (for batching)
        self.draining = False
        self.on_draining: list[Callable[[], None]] = []  # called once the listening socket is closed
        self._loop = asyncio.new_event_loop()
        self._stopped = threading.Event()
        self._sweep_seconds = min(_SWEEP_SECONDS, config.request_timeout / 4, config.keepalive_timeout / 4)
        self.batcher = Batcher(
            pool,
            self._loop.call_soon_threadsafe,
            max_batch=config.max_batch,
            max_wait_us=config.max_wait_us,
            max_images=config.max_images,
            receiving=lambda: self.receiving,
            check_images=check_images,
            expected=self.reference,
            on_predict_calls=self.metrics.add_predict_calls,
        )

    def _reference_output(self, images: np.ndarray) -> np.ndarray:
        """Run the self-check images through every instance; they must all agree.

        The result is what ``/healthz`` later compares against, so a health check
        proves the interpreters still compute what they computed at start-up.
        """
        outputs = [np.array(model.predict(images)) for model in self.pool.models]
        if not all(same_output(other, outputs[0]) for other in outputs):
            raise Keras2EdgeError(DISAGREE)
        return outputs[0]

    # --------------------------------------------------------------- lifecycle

    def serve_forever(self) -> None:
        """Accept and answer requests until :meth:`shutdown` (or :meth:`begin_drain`) has drained them."""
        loop = self._loop
        asyncio.set_event_loop(loop)
        self.socket.setblocking(False)
        loop.add_reader(self.socket.fileno(), self._on_readable)
        self.batcher.start()
        loop.call_later(self._sweep_seconds, self._sweep)
        try:
            loop.run_forever()
        finally:
            self._stopped.set()

    def begin_drain(self) -> None:
        """Stop accepting, close idle connections, finish the requests in flight (event-loop thread)."""
        if self.draining:
            return
        self.draining = True
        if self.socket.fileno() >= 0:
            self._loop.remove_reader(self.socket.fileno())
            self.socket.close()
        for callback in self.on_draining:
            callback()
        for connection in list(self.connections):
            connection.drain()
        self._stop_when_drained()

    def shutdown(self) -> None:
        """Drain (from any thread) and wait until :meth:`serve_forever` has returned."""
        self._loop.call_soon_threadsafe(self.begin_drain)
        self._stopped.wait()

    def server_close(self) -> None:
        """Release the socket, the runner threads and the loop."""
        self.socket.close()
        self.batcher.stop()
        if not self._loop.is_running():
            self._loop.close()

    def add_signal_handlers(self, handler: Callable[[int], None], signals: tuple[int, ...]) -> None:
        """Call ``handler(signum)`` on the event loop when one of ``signals`` arrives (main thread only)."""
        for signum in signals:
            self._loop.add_signal_handler(signum, handler, signum)

    def _stop_when_drained(self) -> None:
        if self.draining and not self.connections and self.batcher.idle:
            self._loop.stop()

    # -------------------------------------------------------------- connections

    def _on_readable(self) -> None:
        """A client is waiting: accept it, unless another worker has fewer connections.

        The kernel wakes every worker for a new connection and the quickest one wins,
        which can hand all connections of a burst to one worker and leave a core idle
        for as long as they stay open (keep-alive). So a worker with more open
        connections than another (the counts are in the shared metrics) waits
        ``_ACCEPT_DEFER_SECONDS`` and takes the connection only if nobody has by then.
        """
        counts = self.metrics.connections_by_worker()
        if len(counts) > 1 and counts[self.metrics.slot] > counts.min():
            self._loop.remove_reader(self.socket.fileno())
            self._loop.call_later(_ACCEPT_DEFER_SECONDS, self._accept_deferred)
            return
        self._accept()

    def _accept_deferred(self) -> None:
        if self.draining:
            return
        if self._accept():
            self._loop.add_reader(self.socket.fileno(), self._on_readable)

    def _accept(self) -> bool:
        """Accept one connection (one per wake-up, so worker processes sharing the socket take turns).

        Returns False if accepting is paused for a moment (out of file descriptors).
        """
        try:
            client, _ = self.socket.accept()
        except (BlockingIOError, InterruptedError):
            return True  # another worker process took it
        except OSError as exc:
            self.log.write(event="connection_error", error=f"{type(exc).__name__}: {exc}")
            self._loop.remove_reader(self.socket.fileno())
            self._loop.call_later(0.1, self._resume_accepting)
            return False
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Counted from now on, not from when its transport is ready a loop iteration
        # later, so that the other workers see it before the next connection of a burst.
        self.metrics.add_connections(1)
        self._loop.create_task(self._start_connection(client))
        return True

    def _resume_accepting(self) -> None:
        if not self.draining:
            self._loop.add_reader(self.socket.fileno(), self._on_readable)

    async def _start_connection(self, client: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(lambda: Connection(self), client)
        except OSError as exc:  # the client reset the connection before it was set up
            self.metrics.add_connections(-1)
            self.log.write(event="connection_error", error=f"{type(exc).__name__}: {exc}")
            client.close()

    def connection_opened(self, connection: Connection) -> None:
        """Admit a new connection (already counted), or answer it 503 when more than ``max_connections`` are open."""
        self.connections.add(connection)
        if self.metrics.open_connections() > self.config.max_connections:
            connection.counted = False
            self.metrics.add_connections(-1)
            message = f"more than {self.config.max_connections} connections at once (--max-connections); retry later"
            connection.refuse(message)

    def connection_closed(self, connection: Connection) -> None:
        """Forget a closed connection; the last one to close ends a drain."""
        self.connections.discard(connection)
        if connection.counted:
            connection.counted = False
            self.metrics.add_connections(-1)
        self._stop_when_drained()

    @property
    def open_connections(self) -> int:
        """Connections counted against ``max_connections``, over all worker processes."""
        return self.metrics.open_connections()

    def _sweep(self) -> None:
        """Enforce timeouts: slow or idle connections, and jobs no model took in time."""
        now = time.monotonic()
        for connection in list(self.connections):
            connection.check_deadline(now)
        for job in self.batcher.expired(now):
            expire(job)
        self._stop_when_drained()
        self._loop.call_later(self._sweep_seconds, self._sweep)
