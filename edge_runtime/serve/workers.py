"""Worker processes: use every core, restart a crashed worker, drain them all on SIGTERM.

Python runs one thread of Python code at a time per process, so a server that must
use four cores needs four processes. ``serve --workers N`` (N > 1) makes this
process a supervisor that binds the listening socket once, creates the shared
metrics, and forks N workers. Each worker loads its own model (interpreters and
their thread pools do not survive a fork, so nothing native is inherited) and
accepts connections from the shared socket with its own event loop. The kernel wakes
them all for a new connection and the quickest wins, which alone gave one worker all
four connections of a ``wrk -c4`` run (one core idle for as long as they stayed open);
so a worker with more open connections than another leaves a new one to it for 2 ms
(see ``InferenceServer._on_readable``), which split the same run 4,355 / 5,376
requests. The supervisor serves nothing: it waits for signals and for workers that exit.

Shutdown (SIGTERM or SIGINT to the supervisor): it closes its copy of the listening
socket and sends SIGTERM to every worker; each worker closes its copy, tells the
supervisor so, then finishes the requests it has in flight and exits. Once every
worker has closed its copy no new connection is accepted (the supervisor logs
``draining`` only then), and once every worker has exited it logs ``stopped`` and
exits 0. A worker that dies on its own is logged and started again (at most once a
second); one that cannot start again stops the server with status 1, for systemd's
``Restart=on-failure``.

With ``--workers 1`` the server runs in this process, without a supervisor.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import Keras2EdgeError
from edge_runtime.serve.batching import DISAGREE, ModelPool, same_output
from edge_runtime.serve.config import ServeConfig
from edge_runtime.serve.log import JsonLog
from edge_runtime.serve.metrics import Metrics
from edge_runtime.serve.routes import ROUTES
from edge_runtime.serve.server import InferenceServer, listen, make_metrics

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Loading a model and its self-check take well under a second; a slow SD card may not.
_START_TIMEOUT = 120.0
_RESPAWN_INTERVAL = 1.0


def listening_record(
    server_host: str, port: int, model: dict[str, Any], workers: int, config: ServeConfig
) -> dict[str, Any]:
    """The fields of the ``listening`` log line (the tests and scripts read the port from it)."""
    return {
        "event": "listening",
        "host": server_host,
        "port": port,
        "model_sha256": model["sha256"],
        "backend": model["backend"],
        "workers": workers,
        "auth": "bearer" if config.token else "none",
    }


def serve(server: InferenceServer) -> int:
    """Serve in this process until SIGTERM/SIGINT, then drain and return 0 (main thread only)."""

    def stop(signum: int) -> None:
        server.log.write(event="stopping", signal=signal.Signals(signum).name)
        server.begin_drain()

    server.on_draining.append(lambda: server.log.write(event="draining"))
    server.add_signal_handlers(stop, STOP_SIGNALS)
    model = server.pool.first
    record = listening_record(
        server.server_address[0],
        server.server_port,
        {"sha256": model.sha256, "backend": model.backend},
        server.workers,
        server.config,
    )
    server.log.write(**record)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    server.log.write(event="stopped")
    return 0


@dataclass
class _Worker:
    slot: int
    pid: int
    pipe: int  # read end: the worker's status lines
    buffer: bytes = b""
    ready: bool = False
    closed: bool = False  # its copy of the listening socket is closed
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    """Forks and watches the worker processes; see the module docstring.

    Parameters
    ----------
    config
        The server settings every worker uses.
    model_path, backend, threads
        What each worker loads (``edge_runtime.load(model_path, backend, threads)``).
    workers
        Number of worker processes.
    """

    def __init__(self, config: ServeConfig, model_path: Path, backend: str, threads: int | None, workers: int) -> None:
        self.config = config
        self.model_path = model_path
        self.backend = backend
        self.threads = threads
        self.count = workers
        self.log = JsonLog()
        self.socket = listen(config.host, config.port)
        self.metrics: Metrics = make_metrics(ROUTES, slots=workers)
        self.workers: dict[int, _Worker] = {}
        self.exit_status = 0
        self._stopping = False
        self._pending_respawn: dict[int, float] = {}
        self._reference: np.ndarray | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._signals: list[int] = []

    # ------------------------------------------------------------------- parent

    def run(self) -> int:
        """Start the workers, supervise them until a stop signal, drain them; the exit status."""
        previous_wakeup = signal.set_wakeup_fd(self._wake_w)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (*STOP_SIGNALS, signal.SIGCHLD)}
        try:
            self._start_all()
            self._supervise()
            return self._drain()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_wakeup)
            self.socket.close()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)

    def _start_all(self) -> None:
        for slot in range(self.count):
            self._spawn(slot)
        deadline = time.monotonic() + _START_TIMEOUT
        while not all(w.ready for w in self.workers.values()):
            if time.monotonic() > deadline:
                self._kill_all()
                raise Keras2EdgeError(f"workers did not start within {_START_TIMEOUT:.0f} s")
            self._poll(1.0)
            failed = self._reap()
            if failed or self._stop_requested():
                self._kill_all()
                if failed:
                    raise Keras2EdgeError(failed)
                return
        model = self._first_ready_model
        address = self.socket.getsockname()
        self.log.write(**listening_record(address[0], address[1], model, self.count, self.config))

    def _supervise(self) -> None:
        while not self._stop_requested():
            self._poll(1.0)
            failed = self._reap()
            if failed:
                self.log.write(event="error", error=f"a worker could not be restarted: {failed}")
                self.exit_status = 1
                return
            now = time.monotonic()
            for slot, when in list(self._pending_respawn.items()):
                if now >= when:
                    del self._pending_respawn[slot]
                    self._spawn(slot)

    def _stop_requested(self) -> bool:
        for signum in self._signals:
            if signum in STOP_SIGNALS and not self._stopping:
                self._stopping = True
                self.log.write(event="stopping", signal=signal.Signals(signum).name)
        self._signals.clear()
        return self._stopping

    def _drain(self) -> int:
        self._stopping = True
        self._pending_respawn.clear()
        self.socket.close()
        for worker in self.workers.values():
            _signal(worker.pid, signal.SIGTERM)
        announced = False
        while self.workers:
            if not announced and all(w.closed for w in self.workers.values()):
                self.log.write(event="draining")
                announced = True
            self._poll(1.0)
            self._reap()
            self._signals.clear()
        if not announced:
            self.log.write(event="draining")
        self.log.write(event="stopped")
        return self.exit_status

    def _kill_all(self) -> None:
        for worker in self.workers.values():
            _signal(worker.pid, signal.SIGKILL)
        while self.workers:
            pid, _ = os.waitpid(-1, 0)
            for slot, worker in list(self.workers.items()):
                if worker.pid == pid:
                    os.close(worker.pipe)
                    del self.workers[slot]

    def _poll(self, timeout: float) -> None:
        """Wait for a status line from a worker or a signal, and handle the lines."""
        fds = [self._wake_r, *(w.pipe for w in self.workers.values())]
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            return
        for fd in readable:
            if fd == self._wake_r:
                while True:
                    try:
                        if not os.read(fd, 512):
                            break
                    except BlockingIOError:
                        break
                continue
            worker = next(w for w in self.workers.values() if w.pipe == fd)
            data = os.read(fd, 65536)
            worker.buffer += data
            *lines, worker.buffer = worker.buffer.split(b"\n")
            for line in lines:
                self._status(worker, line.decode("utf-8", "replace"))

    def _status(self, worker: _Worker, line: str) -> None:
        kind, _, rest = line.partition(" ")
        if kind == "ready":
            info = json.loads(rest)
            reference = np.asarray(info.pop("reference"), dtype=np.float32)
            if self._reference is None:
                self._reference, self._first_ready_model = reference, info
            elif not same_output(reference, self._reference):
                worker.buffer = b""
                self._failure = DISAGREE
                return
            worker.ready = True
            if self._stopping:
                _signal(worker.pid, signal.SIGTERM)
        elif kind == "closed":
            worker.closed = True
        elif kind == "error":
            self._failure = rest

    _failure: str | None = None

    def _reap(self) -> str | None:
        """Collect exited workers; schedule restarts. Returns a start-up failure message, if any."""
        failure, self._failure = self._failure, None
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            slot = next((s for s, w in self.workers.items() if w.pid == pid), None)
            if slot is None:
                continue
            worker = self.workers.pop(slot)
            self._poll_remaining(worker)
            failure = failure or self._failure
            self._failure = None
            os.close(worker.pipe)
            self.metrics.reset_gauges(slot)
            code = os.waitstatus_to_exitcode(status)
            if self._stopping:
                if code != 0:
                    self.exit_status = 1
                continue
            if not worker.ready:
                failure = failure or f"worker {slot} exited with status {code} while starting"
                continue
            self.log.write(event="worker_exited", worker=slot, pid=pid, status=code)
            self._pending_respawn[slot] = max(time.monotonic(), worker.started + _RESPAWN_INTERVAL)
        return failure

    def _poll_remaining(self, worker: _Worker) -> None:
        """Read what an exited worker wrote last (its error message)."""
        try:
            while data := os.read(worker.pipe, 65536):
                worker.buffer += data
        except OSError:
            pass
        for line in worker.buffer.split(b"\n"):
            if line:
                self._status(worker, line.decode("utf-8", "replace"))

    def _spawn(self, slot: int) -> None:
        read_end, write_end = os.pipe()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_end)
            code = 1
            try:
                code = self._worker_main(slot, write_end)
            except BaseException:  # report anything, never return into the parent's code
                _send(write_end, "error " + " ".join(traceback.format_exc().split())[-500:])
            finally:
                sys.stderr.flush()
                os._exit(code)
        os.close(write_end)
        self.workers[slot] = _Worker(slot, pid, read_end)

    # ------------------------------------------------------------------- worker

    def _worker_main(self, slot: int, pipe: int) -> int:
        """Run in the forked worker: load the model, serve the shared socket, drain on SIGTERM."""
        for sig in (*STOP_SIGNALS, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        for fd in (self._wake_r, self._wake_w, *(w.pipe for w in self.workers.values())):
            os.close(fd)
        from edge_runtime.model import load

        self.metrics.bind(slot)
        try:
            model = load(self.model_path, backend=self.backend, threads=self.threads)
            server = InferenceServer(
                self.config, ModelPool([model]), sock=self.socket, metrics=self.metrics, workers=self.count
            )
        except Keras2EdgeError as exc:
            _send(pipe, "error " + " ".join(str(exc).split()))
            return 2
        info = {"sha256": model.sha256, "backend": model.backend, "reference": server.reference.tolist()}
        server.on_draining.append(lambda: _send(pipe, "closed"))
        server.add_signal_handlers(lambda _signum: server.begin_drain(), STOP_SIGNALS)
        _send(pipe, "ready " + json.dumps(info))
        try:
            server.serve_forever()
        finally:
            server.server_close()
        return 0


def _send(pipe: int, line: str) -> None:
    os.write(pipe, (line + "\n").encode())


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
