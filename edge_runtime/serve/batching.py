"""Dynamic batching: requests that arrive together run as one ``predict`` call.

The event loop never runs a model: it queues a :class:`Job` and goes back to the
network. One runner thread per model instance takes every queued job (up to
``max_batch`` of them), decodes their bodies, runs the images of all of them
through one ``predict`` call and hands the answers back to the loop. While that
call runs, new requests queue up and become the next batch, so batches grow with the
load by themselves; an idle server runs a lone request at once. ``max_wait_us``
optionally holds a batch back for requests whose bodies are still arriving, never
when there are none.

Why a thread and not the loop: the loop stays free to read requests, answer
``/metrics``, enforce timeouts and tell a client the model is busy (503 after
``request_timeout`` in the queue) while a long batch runs; native backends release
the GIL while they compute. Interpreters are not thread-safe, so each model
instance belongs to exactly one runner thread.

Why it pays: the per-call overhead of a backend (and of the hand-off between the
loop and the runner) is paid once per batch, and a network computes a batch more
efficiently than the same images one by one. Measured on a shared 2-core x86-64
machine at 16 connections, two workers, PNG bodies, server CPU per request with
batching vs ``--max-batch 1``: int8 MNIST MLP 0.26-0.30 ms vs 0.35-0.47 ms; the
stand-in MobileNet-like int8 colour net (``python -m benchmarks serve --batching-model
standin``) 0.40-0.51 ms vs 0.53-0.64 ms, about 1.2x, which is what the network itself
gains there (16 images in one call: 1.22x the images per second of 16 single calls).
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import numpy as np

from edge_runtime.errors import InputError, Keras2EdgeError
from edge_runtime.serve.http import HTTPError, json_error
from edge_runtime.serve.inputs import decode_request

# deliver(status, body, images, error): runs on the event loop; error is an unexpected exception (answer 500).
Deliver = Callable[[int, bytes, int, "BaseException | None"], None]
BUSY = HTTPError(HTTPStatus.SERVICE_UNAVAILABLE, "all workers are busy, retry later")
DISAGREE = "model instances disagree on the self-check images; the artifact is not deterministic"


def same_output(output: np.ndarray, expected: np.ndarray) -> bool:
    """Whether a self-check output is the expected one: same shape, every value within 1e-5.

    One rule for every comparison of self-check outputs (the model instances of a
    process at start-up, the worker processes with each other, ``/healthz`` with
    start-up), so they cannot drift apart. NaN never matches.

    Examples
    --------
    >>> same_output(np.array([[0.25, 0.75]]), np.array([[0.25, 0.750001]]))
    True
    >>> same_output(np.array([[0.25, 0.75]]), np.array([0.25, 0.75]))
    False
    """
    return output.shape == expected.shape and bool(np.allclose(output, expected, atol=1e-5))


class ModelPool:
    """The model instances of one process, each to be used by one thread only.

    Parameters
    ----------
    models
        One or more loaded models of the same artifact (same ``sha256``).

    Raises
    ------
    ValueError
        No models, or models of different artifacts.
    """

    def __init__(self, models: Sequence[Any]) -> None:
        if not models:
            raise ValueError("ModelPool needs at least one model")
        if len({m.sha256 for m in models}) != 1:
            raise ValueError("all models in a pool must be the same artifact")
        self.models = list(models)
        self.size = len(self.models)
        self.first = self.models[0]


@dataclass(eq=False)
class Job:
    """One request waiting for a model: a prediction or the ``/healthz`` self-check."""

    kind: str  # "predict" or "check"
    body: bytes
    content_type: str
    deliver: Deliver
    start: float  # perf_counter() when the request's head was parsed
    expires: float  # monotonic() after which it is answered 503 if no model has taken it
    images: np.ndarray | None = field(default=None, repr=False)


class Batcher:
    """Queue of jobs and the runner threads that batch them through the models.

    Parameters
    ----------
    pool
        The models; one runner thread each.
    call_soon_threadsafe
        The event loop's ``call_soon_threadsafe``: how answers get back to the loop.
    max_batch, max_wait_us, max_images
        See :class:`~edge_runtime.serve.config.ServeConfig`.
    receiving
        How many requests are being received right now (bodies still arriving); a
        batch waits for them only while this is positive, and at most ``max_wait_us``.
    check_images, expected
        The self-check: images and the outputs they gave at start-up.
    on_predict_calls
        Called on the loop with the number of ``predict`` calls each batch made.
    """

    def __init__(
        self,
        pool: ModelPool,
        call_soon_threadsafe: Callable[..., Any],
        *,
        max_batch: int,
        max_wait_us: int,
        max_images: int,
        receiving: Callable[[], int],
        check_images: np.ndarray,
        expected: np.ndarray,
        on_predict_calls: Callable[[int], None],
    ) -> None:
        self._pool = pool
        self._call_soon_threadsafe = call_soon_threadsafe
        self._max_batch = max_batch
        self._max_wait = max_wait_us / 1e6
        self._max_images = max_images
        self._receiving = receiving
        self._check_images = check_images
        self._expected = expected
        self._on_predict_calls = on_predict_calls
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._busy = 0
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._run, args=(model,), name=f"keras2edge-model-{i}", daemon=True)
            for i, model in enumerate(pool.models)
        ]

    def start(self) -> None:
        """Start the runner threads."""
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Let the runners finish the queued jobs, then join them."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            if thread.is_alive():
                thread.join()

    @property
    def idle(self) -> bool:
        """No job queued or running."""
        return not self._queue and not self._busy

    def submit(self, job: Job) -> None:
        """Queue a job (from the event loop); its ``deliver`` is called on the loop later."""
        with self._cond:
            self._queue.append(job)
            self._cond.notify()

    def expired(self, now: float) -> list[Job]:
        """Remove and return the queued jobs no model took before their ``expires`` time."""
        with self._cond:
            late = [job for job in self._queue if job.expires <= now]
            for job in late:
                self._queue.remove(job)
        return late

    # ------------------------------------------------------------ runner threads

    def _take(self) -> list[Job] | None:
        """Wait for work and take a batch of jobs; None when stopping with nothing queued."""
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            if self._max_wait and len(self._queue) < self._max_batch and self._receiving() > 0:
                deadline = time.monotonic() + self._max_wait
                while len(self._queue) < self._max_batch and self._receiving() > 0:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            jobs = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
            self._busy += 1
            return jobs

    def _run(self, model: Any) -> None:
        while (jobs := self._take()) is not None:
            try:
                answers, calls = self._execute(model, jobs)
            except BaseException as exc:  # every job must get an answer
                answers, calls = [(job, (500, b"", 0, exc)) for job in jobs], 0
            finally:
                with self._cond:
                    self._busy -= 1
            self._call_soon_threadsafe(self._deliver, answers, calls)

    def _deliver(self, answers: list[tuple[Job, tuple[int, bytes, int, BaseException | None]]], calls: int) -> None:
        if calls:
            self._on_predict_calls(calls)
        for job, answer in answers:
            try:
                job.deliver(*answer)
            except Exception:  # the other jobs of the batch must still be answered
                traceback.print_exc()

    def _execute(
        self, model: Any, jobs: list[Job]
    ) -> tuple[list[tuple[Job, tuple[int, bytes, int, BaseException | None]]], int]:
        """Decode, predict in as few calls as possible, and build every job's answer."""
        answers: dict[Job, tuple[int, bytes, int, BaseException | None]] = {}
        calls = 0
        ready: list[Job] = []
        for job in jobs:
            if job.kind == "check":
                answers[job] = self._self_check(model)
                calls += 1
                continue
            try:
                job.images = decode_request(job.body, job.content_type, model.input, self._max_images)
                ready.append(job)
            except HTTPError as exc:
                answers[job] = (exc.status, json_error(exc), 0, None)
            except Exception as exc:  # a bug in decoding: this request only
                answers[job] = (500, b"", 0, exc)
        for group in self._groups(ready):
            calls += self._predict(model, group, answers)
        return [(job, answers[job]) for job in jobs], calls

    def _groups(self, jobs: list[Job]) -> list[list[Job]]:
        """Jobs whose images can be stacked (same dtype and image shape), at most ``max_batch`` images each.

        A job with more images than ``max_batch`` forms a group of its own: requests are never split.
        """
        groups: dict[tuple[Any, ...], list[list[Job]]] = {}
        filled: dict[tuple[Any, ...], int] = {}  # images in each key's last chunk
        for job in jobs:
            assert job.images is not None
            key = (job.images.dtype.str, job.images.shape[1:])
            chunks = groups.setdefault(key, [[]])
            if chunks[-1] and filled[key] + len(job.images) > self._max_batch:
                chunks.append([])
                filled[key] = 0
            chunks[-1].append(job)
            filled[key] = filled.get(key, 0) + len(job.images)
        return [chunk for chunks in groups.values() for chunk in chunks]

    def _predict(self, model: Any, group: list[Job], answers: dict[Job, Any]) -> int:
        """One predict call for the group; answers every job in it. Returns the calls made."""
        arrays = [job.images for job in group]
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)  # type: ignore[arg-type]
        started = time.perf_counter()
        try:
            probabilities = model.predict(batch)
        except InputError as exc:
            if len(group) > 1:  # find the request at fault: each one alone
                return 1 + sum(self._predict(model, [job], answers) for job in group)
            error = HTTPError(HTTPStatus.BAD_REQUEST, str(exc))
            answers[group[0]] = (error.status, json_error(error), 0, None)
            return 1
        except Keras2EdgeError as exc:  # the backend failed: the server's fault, not the request's
            error = HTTPError(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc))
            for job in group:
                answers[job] = (error.status, json_error(error), 0, None)
            return 1
        except Exception as exc:  # a bug: 500 for these requests, traceback logged
            for job in group:
                answers[job] = (500, b"", 0, exc)
            return 1
        inference_ms = round((time.perf_counter() - started) * 1000, 3)
        labels = model.class_labels
        winners = probabilities.argmax(axis=1).tolist()
        offset = 0
        for job in group:
            n = len(job.images)  # type: ignore[arg-type]
            rows = probabilities[offset : offset + n]
            document = {
                "labels": [labels[i] for i in winners[offset : offset + n]],
                "probabilities": rows.tolist(),
                "model_sha256": model.sha256,
                "backend": model.backend,
                "latency_ms": {"inference": inference_ms, "server": round((time.perf_counter() - job.start) * 1000, 3)},
            }
            answers[job] = (200, json.dumps(document, separators=(",", ":")).encode(), n, None)
            job.images = None
            offset += n
        return 1

    def _self_check(self, model: Any) -> tuple[int, bytes, int, BaseException | None]:
        """Classify the self-check images; 503 unless the answer is the start-up one."""
        started = time.perf_counter()
        try:
            output = np.asarray(model.predict(self._check_images))
        except Keras2EdgeError as exc:
            error = HTTPError(HTTPStatus.SERVICE_UNAVAILABLE, f"self-check inference failed: {exc}")
            return error.status, json_error(error), 0, None
        if not same_output(output, self._expected):
            error = HTTPError(
                HTTPStatus.SERVICE_UNAVAILABLE, "self-check inference gave a different answer than at start-up"
            )
            return error.status, json_error(error), 0, None
        seconds = time.perf_counter() - started
        document = {"status": "ok", "model_sha256": model.sha256, "self_check_ms": round(seconds * 1000, 3)}
        return 200, json.dumps(document, separators=(",", ":")).encode(), 0, None
