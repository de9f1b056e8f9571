"""``python -m edge_runtime watch MODEL SOURCE``: classify what a camera sees, as it sees it.

    python -m edge_runtime watch MODEL SOURCE [--resize crop|squash] [--every N | --fps F]
        [--threshold P] [--on-change] [--max-frames N] [--realtime] [--timeout S]
        [--size WxH] [--top-k K] [--json] [--backend B] [--threads N]

SOURCE is ``picamera2`` (the Pi camera), a V4L2 camera (``0``, ``/dev/video0``), a
video file, or a directory or glob of images (name order); see
:mod:`edge_runtime.frames`.

Why a command and not an example to copy: the capture loop people write by hand
gets three things wrong that this one cannot. It creates **one** :class:`Model` and
reuses it (an interpreter per frame costs more than the inference). Frames are
converted to **RGB** by the source and fitted to the model by
:func:`edge_runtime.images.fit_image`, the same code that prepares image files and
HTTP uploads, so a colour model never sees BGR and a frame is cropped and resized
exactly as training resized its images. And capture runs in **its own thread**:

- a live camera keeps producing frames while the model works; only the newest
  frame waits for the model, older ones are **dropped and counted**, so the label
  always describes the present instead of falling further behind;
- a video file or a set of images waits for the model: nothing is lost, unless
  ``--realtime`` asks to play the video at its own frame rate (then it drops
  frames like a camera).

Output: one JSON line per classified frame on stdout (``frame``, ``time``,
``label``, ``probability``, ``top_k``, ``latency_ms``; ``file`` for images), or a
live one-line status when stdout is a terminal (``--json`` forces lines). A summary
goes to stderr at the end: frames read, classified, skipped (``--every`` /
``--fps``), dropped, mean and p99 latency, classified frames per second.
SIGINT and SIGTERM end the run with the summary and exit status 0; a camera that
delivers no frame for ``--timeout`` seconds ends it with the summary, a one-line
error and exit status 2.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from edge_runtime.backends import BACKEND_NAMES
from edge_runtime.cli_support import float_in_range, positive_float, positive_int
from edge_runtime.errors import DataError, InputError, Keras2EdgeError
from edge_runtime.frames import Frame, FrameSource, open_source
from edge_runtime.images import fit_image

RESIZE_MODES = ("crop", "squash")
DEFAULT_TOP_K = 3
DEFAULT_TIMEOUT = 5.0
# Frames a video file or image set reads ahead of inference (decoding overlaps inference).
READ_AHEAD = 4
# The p99 latency is taken over this many most recent frames, so a run of days keeps bounded memory.
LATENCY_WINDOW = 100_000
# How often the waiting inference thread checks for a stop or a stalled camera.
POLL_SECONDS = 0.05
STATUS_REFRESH_SECONDS = 0.1


class WatchOptions(NamedTuple):
    """How ``watch`` chooses, fits and reports frames (the command-line options).

    Attributes
    ----------
    crop : bool
        Centre-crop each frame to the model's aspect ratio before resizing
        (``--resize crop``, no distortion); False squashes the whole frame.
        Digit models crop to the ink themselves and ignore it.
    every : int
        Classify every N-th frame read.
    fps : float or None
        Classify at most this many frames per second of the source's time (the
        video's own timeline; the clock for cameras and images).
    threshold : float
        Report only frames whose top probability is at least this.
    on_change : bool
        Report only frames whose label differs from the last one reported.
    max_frames : int or None
        Stop after classifying this many frames.
    realtime : bool
        Play a video file at its own frame rate, dropping frames the model has no time for.
    timeout : float
        Seconds without a frame after which a live camera counts as stalled.
    top_k : int
        Entries in each record's ``top_k``.
    """

    crop: bool = True
    every: int = 1
    fps: float | None = None
    threshold: float = 0.0
    on_change: bool = False
    max_frames: int | None = None
    realtime: bool = False
    timeout: float = DEFAULT_TIMEOUT
    top_k: int = DEFAULT_TOP_K


class WatchSummary(NamedTuple):
    """The end-of-run account: every frame read was classified, skipped or dropped.

    Attributes
    ----------
    frames_read : int
        Frames taken from the source.
    classified : int
        Frames the model classified.
    skipped : int
        Frames passed over on purpose (``--every`` / ``--fps``).
    dropped : int
        Frames chosen for classification that were never classified: replaced by
        a newer frame while the model was busy (live sources, ``--realtime``), or
        still waiting when the run stopped.
    latency_mean_ms, latency_p99_ms : float or None
        Fitting plus inference per classified frame (p99 over the last
        :data:`LATENCY_WINDOW` frames); None when nothing was classified.
    seconds : float
        Wall time from the first read to the end.
    stopped_by : str
        ``"end of source"``, ``"max frames"``, ``"SIGINT"``, ``"SIGTERM"``,
        ``"stop"`` or ``"error"``.
    """

    frames_read: int
    classified: int
    skipped: int
    dropped: int
    latency_mean_ms: float | None
    latency_p99_ms: float | None
    seconds: float
    stopped_by: str

    @property
    def fps(self) -> float:
        """Classified frames per second of wall time."""
        return self.classified / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        """The one-line summary printed on stderr.

        Examples
        --------
        >>> WatchSummary(60, 30, 30, 0, 1.25, 2.5, 1.0, "end of source").describe()
        'watch: 60 frames read, 30 classified, 30 skipped, 0 dropped; latency mean 1.25 ms, p99 2.50 ms; 30.0 frames/s classified in 1.00 s (end of source)'
        """  # noqa: E501 (a doctest's expected output is one line)
        latency = (
            "no latency (nothing classified)"
            if self.latency_mean_ms is None
            else f"latency mean {self.latency_mean_ms:.2f} ms, p99 {self.latency_p99_ms:.2f} ms"
        )
        return (
            f"watch: {self.frames_read} frames read, {self.classified} classified, {self.skipped} skipped, "
            f"{self.dropped} dropped; {latency}; {self.fps:.1f} frames/s classified in {self.seconds:.2f} s "
            f"({self.stopped_by})"
        )


class _Item(NamedTuple):
    index: int
    time: float
    frame: Frame


_WAIT = object()  # nothing arrived within the poll interval
_END = object()  # the reader finished


class _Handoff:
    """The frames between the capture thread and the inference thread.

    ``keep_latest`` (live sources): one slot, a new frame replaces one the model has
    not taken yet, and the replaced frame is counted as dropped. Otherwise a short
    queue whose ``put`` waits for room, so a file is read at the pace of inference.
    """

    def __init__(self, keep_latest: bool) -> None:
        self.keep_latest = keep_latest
        self.dropped = 0
        self._items: collections.deque[_Item] = collections.deque()
        self._capacity = 1 if keep_latest else READ_AHEAD
        self._finished = False
        self._cond = threading.Condition()

    def put(self, item: _Item, stop: threading.Event) -> None:
        with self._cond:
            if self.keep_latest:
                if self._items:
                    self._items.popleft()
                    self.dropped += 1
            else:
                while len(self._items) >= self._capacity and not stop.is_set():
                    self._cond.wait(POLL_SECONDS)
                if stop.is_set():
                    self.dropped += 1  # read and chosen, never classified
                    return
            self._items.append(item)
            self._cond.notify_all()

    def get(self, timeout: float) -> Any:
        """The next frame, :data:`_WAIT` after ``timeout`` without one, or :data:`_END`."""
        with self._cond:
            if not self._items and not self._finished:
                self._cond.wait(timeout)
            if self._items:
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            return _END if self._finished else _WAIT

    def finish(self) -> None:
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def abandon(self) -> None:
        """Count the frames still waiting at the end as dropped."""
        with self._cond:
            self.dropped += len(self._items)
            self._items.clear()


def _chooser(every: int, fps: float | None) -> Callable[[int, float], bool]:
    """Whether frame ``index`` at ``time`` seconds is one to classify (``--every`` / ``--fps``)."""
    if fps is None:
        return lambda index, _time: index % every == 0
    last = [-1]

    def take(_index: int, t: float) -> bool:
        # The first frame of each 1/fps interval of the source's time: exact on a video's timeline.
        interval = math.floor(t * fps + 1e-9)
        if interval > last[0]:
            last[0] = interval
            return True
        return False

    return take


class _Reader:
    """The capture thread: reads frames, chooses which to classify, hands them over."""

    def __init__(self, source: FrameSource, options: WatchOptions, handoff: _Handoff, stop: threading.Event) -> None:
        self.source = source
        self.options = options
        self.handoff = handoff
        self.stop = stop
        self.frames_read = 0
        self.skipped = 0
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self.last_frame_at = self.started

    def _next(self) -> Frame | None:
        try:
            return self.source.read()
        except (RuntimeError, OSError, ValueError) as exc:  # a camera failing mid-stream
            if isinstance(exc, Keras2EdgeError):
                raise
            raise DataError(
                f"SOURCE {self.source.name}: reading a frame failed ({' '.join(str(exc).split())})"
            ) from None

    def run(self) -> None:
        options, source = self.options, self.source
        choose = _chooser(options.every, options.fps)
        paced = not self.handoff.keep_latest
        chosen = 0
        try:
            while not self.stop.is_set():
                frame = self._next()
                now = time.monotonic()
                if frame is None:
                    if source.live:  # no frame this time; watch's timeout decides when the camera has stalled
                        self.stop.wait(0.005)
                        continue
                    break
                self.last_frame_at = now
                index = self.frames_read
                self.frames_read += 1
                t = frame.position if frame.position is not None else now - self.started
                if options.realtime and frame.position is not None:
                    if self.stop.wait(max(0.0, self.started + frame.position - time.monotonic())):
                        self.frames_read -= 1  # stopped before this frame was due
                        break
                if not choose(index, t):
                    self.skipped += 1
                    continue
                self.handoff.put(_Item(index, t, frame), self.stop)
                chosen += 1
                if paced and options.max_frames is not None and chosen >= options.max_frames:
                    break  # every chosen frame of a paced source is classified: read no further
        except BaseException as exc:  # handed to the inference thread, which re-raises it
            self.error = exc
        finally:
            self.handoff.finish()
            source.close()


class Watch:
    """One model classifying one frame source; see the module docstring.

    Parameters
    ----------
    model : Model
        A loaded image model (:func:`edge_runtime.load`); used from one thread only.
    source : FrameSource
        From :func:`edge_runtime.frames.open_source`, or any object with its API.
    options : WatchOptions

    Raises
    ------
    DataError
        A feature model (``watch`` needs images), or ``--realtime`` on a source
        with no frame rate.

    Examples
    --------
    >>> model = edge_runtime.load("out/artifacts/tflite_int8.tflite")  # doctest: +SKIP
    >>> run = Watch(model, open_source("clip.avi"), WatchOptions(every=5))  # doctest: +SKIP
    >>> run.run(lambda record, reported: print(record["label"]) if reported else None)  # doctest: +SKIP
    """

    def __init__(self, model: Any, source: FrameSource, options: WatchOptions = WatchOptions()) -> None:
        spec = model.input
        if not spec.is_image:
            raise DataError(f"MODEL reads {spec.describe()}, not images: watch needs an image model")
        if options.realtime and not source.live and source.fps is None:
            raise DataError(f"--realtime plays a video at its own frame rate; SOURCE {source.name} has none")
        self.model = model
        self.source = source
        self.options = options
        self.top_k = min(options.top_k, model.num_classes)
        self.stop = threading.Event()
        self.stopped_by = "stop"
        self.classified = 0
        self._handoff = _Handoff(keep_latest=source.live or options.realtime)
        self._reader = _Reader(source, options, self._handoff, self.stop)
        self._latency_sum = 0.0
        self._latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self._ended: float | None = None
        self._last_label: str | None = None

    @property
    def dropped(self) -> int:
        return self._handoff.dropped

    @property
    def frames_read(self) -> int:
        return self._reader.frames_read

    def elapsed(self) -> float:
        """Seconds since reading started (until the end, once ended)."""
        return (self._ended or time.monotonic()) - self._reader.started

    def summary(self) -> WatchSummary:
        """The account so far (final after :meth:`run` returned or raised)."""
        mean = p99 = None
        if self.classified:
            mean = self._latency_sum / self.classified
            p99 = float(np.percentile(np.fromiter(self._latencies, float), 99))
        return WatchSummary(
            self.frames_read, self.classified, self._reader.skipped, self.dropped, mean, p99, self.elapsed(),
            self.stopped_by,
        )

    def _fit(self, pixels: np.ndarray) -> np.ndarray:
        spec = self.model.input
        return fit_image(pixels, spec.image_size, color_mode=spec.color_mode, digits=spec.digits,
                         crop_to_aspect_ratio=self.options.crop)

    def _classify(self, item: _Item) -> tuple[dict[str, Any], bool]:
        """The record of one frame, and whether it passes ``--threshold`` / ``--on-change``."""
        options = self.options
        started = time.perf_counter()
        row = self.model.predict(self._fit(item.frame.pixels))[0]
        latency = (time.perf_counter() - started) * 1000
        self.classified += 1
        self._latency_sum += latency
        self._latencies.append(latency)
        labels = self.model.class_labels
        order = np.argsort(-row, kind="stable")[: self.top_k]
        label, probability = labels[order[0]], float(row[order[0]])
        record: dict[str, Any] = {
            "frame": item.index,
            "time": round(item.time, 3),
            "label": label,
            "probability": round(probability, 6),
            "top_k": [{"label": labels[i], "probability": round(float(row[i]), 6)} for i in order],
            "latency_ms": round(latency, 3),
        }
        if item.frame.name is not None:
            record["file"] = item.frame.name
        reported = probability >= options.threshold and not (options.on_change and label == self._last_label)
        if reported:
            self._last_label = label
        return record, reported

    def run(self, on_frame: Callable[[dict[str, Any], bool], None]) -> WatchSummary:
        """Classify frames until the source ends, ``max_frames``, or :attr:`stop` is set.

        Parameters
        ----------
        on_frame : callable
            Called in this thread with each classified frame's record and whether
            it passes the report filters (``threshold``, ``on_change``).

        Returns
        -------
        WatchSummary

        Raises
        ------
        DataError
            The source failed, or a live source delivered no frame for
            ``options.timeout`` seconds. :meth:`summary` still gives the account.
        """
        # One-off costs of the first frame (imports on the fitting path, the interpreter's memory
        # planning and weight packing) are paid on a blank frame, so the first camera frame is not late.
        height, width = self.model.input.image_size
        try:
            self.model.predict(self._fit(np.zeros((2 * height, 2 * width, 3), np.uint8)))
        except BaseException:
            self.source.close()  # the capture thread, which closes it otherwise, never started
            raise
        thread = threading.Thread(target=self._reader.run, name="watch-capture", daemon=True)
        self._reader.started = self._reader.last_frame_at = time.monotonic()
        thread.start()
        try:
            while not self.stop.is_set():
                item = self._handoff.get(POLL_SECONDS)
                if item is _END:
                    self.stopped_by = "end of source"
                    break
                if item is _WAIT:
                    silent = time.monotonic() - self._reader.last_frame_at
                    if self.source.live and silent > self.options.timeout:
                        self.stopped_by = "error"
                        raise DataError(
                            f"SOURCE {self.source.name}: no frame for {self.options.timeout:g} s; "
                            "the camera stopped delivering"
                        )
                    continue
                record, reported = self._classify(item)
                on_frame(record, reported)
                if self.options.max_frames is not None and self.classified >= self.options.max_frames:
                    self.stopped_by = "max frames"
                    break
        except BaseException:
            self.stopped_by = "error"
            raise
        finally:
            self._ended = time.monotonic()
            self.stop.set()
            # A camera blocked in its driver may never return: do not wait for it forever.
            thread.join(timeout=max(1.0, self.options.timeout))
            self._handoff.abandon()
        if self._reader.error is not None:
            self.stopped_by = "error"
            raise self._reader.error
        return self.summary()


class JsonLines:
    """One JSON object per reported frame, flushed at once so a pipe sees it live."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(self, record: dict[str, Any], reported: bool) -> None:
        if reported:
            self.stream.write(json.dumps(record) + "\n")
            self.stream.flush()

    def close(self) -> None:
        """Nothing to finish: every line is complete."""


class StatusLine:
    """A terminal line rewritten in place (at most ten times a second) with the current label.

    With ``--on-change`` each reported change also stays on the screen as a line
    of its own, so the terminal keeps the history of what was seen.
    """

    def __init__(self, stream: IO[str], watch: Watch) -> None:
        self.stream = stream
        self.watch = watch
        self._shown: dict[str, Any] | None = None
        self._drawn_at = 0.0

    def _status(self, record: dict[str, Any] | None) -> str:
        watch = self.watch
        fps = watch.classified / max(watch.elapsed(), 1e-9)
        seen = "waiting for a confident frame" if record is None else f"{record['label']}  {record['probability']:.2f}"
        return f"frame {watch.frames_read:>6}  {seen}  {fps:6.1f} fps  {watch.dropped} dropped"

    def __call__(self, record: dict[str, Any], reported: bool) -> None:
        now = time.monotonic()
        changed = reported and self.watch.options.on_change
        if reported:
            self._shown = record
        if changed:
            line = f"{record['time']:9.2f} s  frame {record['frame']}: {record['label']} ({record['probability']:.2f})"
            self.stream.write("\r\x1b[K" + line + "\n")
        if changed or now - self._drawn_at >= STATUS_REFRESH_SECONDS:
            self.stream.write("\r\x1b[K" + self._status(self._shown))
            self.stream.flush()
            self._drawn_at = now

    def close(self) -> None:
        self.stream.write("\r\x1b[K" + self._status(self._shown) + "\n")
        self.stream.flush()


@contextmanager
def _stop_on_signals(watch: Watch) -> Iterator[None]:
    """SIGINT / SIGTERM end the run cleanly (summary, exit 0) instead of killing it mid-frame."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return

    def stop(signum: int, _frame: object) -> None:
        watch.stopped_by = signal.Signals(signum).name
        watch.stop.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _frame_size(text: str) -> tuple[int, int]:
    """``argparse`` type for ``--size``: ``WIDTHxHEIGHT``."""
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}")
    return int(width), int(height)


def run(args: argparse.Namespace) -> int:
    """Classify frames from a camera, a video or images with one model, as they come."""
    import edge_runtime

    model = edge_runtime.load(args.model, backend=args.backend, threads=args.threads)
    if args.top_k is not None and args.top_k > model.num_classes:
        raise InputError(f"--top-k {args.top_k} is more than the model's {model.num_classes} classes")
    options = WatchOptions(
        crop=args.resize == "crop",
        every=args.every or 1,
        fps=args.fps,
        threshold=args.threshold,
        on_change=args.on_change,
        max_frames=args.max_frames,
        realtime=args.realtime,
        timeout=args.timeout,
        top_k=args.top_k or DEFAULT_TOP_K,
    )
    if not model.input.is_image:
        raise DataError(f"MODEL reads {model.input.describe()}, not images: watch needs an image model")
    source = open_source(args.source, color_mode=model.input.color_mode, digits=model.input.digits, size=args.size)
    try:
        watch = Watch(model, source, options)
    except Keras2EdgeError:
        source.close()
        raise
    output = JsonLines(sys.stdout) if args.json or not sys.stdout.isatty() else StatusLine(sys.stdout, watch)
    try:
        with _stop_on_signals(watch):
            watch.run(output)
    finally:
        output.close()
        print(watch.summary().describe(), file=sys.stderr, flush=True)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``watch`` options (shared by the subcommand and ``python -m edge_runtime.watch``)."""
    parser.add_argument(
        "model", type=Path, metavar="MODEL", help=".tflite or .onnx image model (manifest.json beside it is used)"
    )
    parser.add_argument(
        "source", metavar="SOURCE",
        help="picamera2, a camera (0, /dev/video0), a video file, or a directory / glob of images",
    )
    parser.add_argument(
        "--backend", choices=BACKEND_NAMES, default="auto", help="inference backend (default %(default)s)"
    )
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="inference threads (default: the backend's choice)"
    )
    parser.add_argument(
        "--resize", choices=RESIZE_MODES, default="crop",
        help="fit frames to the model's aspect ratio by a centred crop (default) or by squashing the whole frame",
    )
    subset = parser.add_mutually_exclusive_group()
    subset.add_argument("--every", type=positive_int, default=None, metavar="N", help="classify every N-th frame")
    subset.add_argument(
        "--fps", type=positive_float, default=None, metavar="F", help="classify at most F frames per second"
    )
    parser.add_argument(
        "--threshold", type=float_in_range(0, 1), default=0.0, metavar="P",
        help="report only frames whose top probability is at least P",
    )
    parser.add_argument(
        "--on-change", action="store_true", help="report only frames whose label differs from the last one reported"
    )
    parser.add_argument(
        "--max-frames", type=positive_int, default=None, metavar="N", help="stop after classifying N frames"
    )
    parser.add_argument(
        "--realtime", action="store_true",
        help="play a video file at its own frame rate, dropping frames the model has no time for",
    )
    parser.add_argument(
        "--timeout", type=positive_float, default=DEFAULT_TIMEOUT, metavar="S",
        help="a camera that delivers no frame for S seconds is an error (default %(default)g)",
    )
    parser.add_argument(
        "--size", type=_frame_size, default=None, metavar="WxH", help="camera capture size (picamera2 default 640x480)"
    )
    parser.add_argument(
        "--top-k", type=positive_int, default=None, metavar="K",
        help=f"labels in each record's top_k (default {DEFAULT_TOP_K})",
    )
    parser.add_argument("--json", action="store_true", help="JSON lines even when stdout is a terminal")


def add_subparser(subparsers: Any) -> None:
    """Register ``watch`` in the ``python -m edge_runtime`` command registry."""
    parser = subparsers.add_parser(
        "watch", help="classify a camera, video or image folder live", description=run.__doc__
    )
    add_arguments(parser)
    parser.set_defaults(func=run)
