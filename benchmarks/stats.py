"""Timing loops and latency statistics shared by every measurement.

Every number in a benchmark report comes through here, so that an edge_runtime call,
a hand-written interpreter loop and a Keras call are timed in exactly the same way:
a few warm-up calls (caches, lazy allocation, thread-pool start-up), then timed calls
until *both* a minimum count and a minimum accumulated time are reached. A count
alone is too short for fast calls (timer noise dominates); a time alone gives too
few samples for slow ones (p99 would be meaningless).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class TimingPolicy:
    """How long to warm up and how much to measure.

    ``max_seconds`` bounds one measurement even when ``min_runs`` calls would take
    longer (Keras ``model.predict`` at a large batch), so a run always ends; the
    record's ``count`` then says how many calls were actually timed.
    """

    warmup_runs: int = 5
    min_runs: int = 50
    min_seconds: float = 0.5
    max_seconds: float = 5.0

    def to_dict(self) -> dict[str, float]:
        """The policy as a JSON-ready dict, stored with the results it produced."""
        return asdict(self)


DEFAULT_POLICY = TimingPolicy()
QUICK_POLICY = TimingPolicy(warmup_runs=2, min_runs=10, min_seconds=0.05, max_seconds=0.5)


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency distribution of one measurement, in milliseconds.

    ``first_ms`` is the very first (un-warmed) call, reported separately like
    LiteRT's ``benchmark_model`` does, because it is what an application that
    classifies a single image pays.
    """

    count: int
    batch_size: int
    first_ms: float
    min_ms: float
    max_ms: float
    mean_ms: float
    std_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    throughput_sps: float

    def to_dict(self) -> dict[str, float | int]:
        """The statistics as a flat JSON-ready dict."""
        return asdict(self)

    def format_line(self) -> str:
        """One fixed-format line in the style of LiteRT's ``benchmark_model``.

        Times are in microseconds so that sub-millisecond batch-1 calls stay
        readable and two lines can be compared column by column.

        Examples
        --------
        >>> s = summarize([0.001, 0.002, 0.003], batch_size=1, first_s=0.01)
        >>> s.format_line()
        'count=3 first=10000 min=1000 max=3000 avg=2000 std=816 p50=2000 p90=2800 p99=2980 (us) throughput=500.0/s'
        """
        us = {k: getattr(self, f"{k}_ms") * 1000.0 for k in ("first", "min", "max", "mean", "std", "p50", "p90", "p99")}
        return (
            f"count={self.count} first={us['first']:.0f} min={us['min']:.0f} max={us['max']:.0f} "
            f"avg={us['mean']:.0f} std={us['std']:.0f} p50={us['p50']:.0f} p90={us['p90']:.0f} "
            f"p99={us['p99']:.0f} (us) throughput={self.throughput_sps:.1f}/s"
        )


def summarize(samples_s: Sequence[float], batch_size: int, first_s: float) -> LatencyStats:
    """Reduce per-call wall times (seconds) to the statistics a report shows.

    Throughput is samples per second at the *mean* latency (total work / total
    time), not at the median, because that is what a sustained workload gets.

    Parameters
    ----------
    samples_s
        Timed calls after warm-up, in seconds; at least one.
    batch_size
        Images per call, to turn calls/s into samples/s.
    first_s
        The first, cold call in seconds.

    Returns
    -------
    LatencyStats

    Examples
    --------
    >>> summarize([0.002, 0.002], batch_size=8, first_s=0.004).throughput_sps
    4000.0
    """
    arr = np.asarray(samples_s, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("summarize needs at least one sample")
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    mean = float(arr.mean())
    return LatencyStats(
        count=int(arr.size),
        batch_size=int(batch_size),
        first_ms=float(first_s) * 1e3,
        min_ms=float(arr.min()) * 1e3,
        max_ms=float(arr.max()) * 1e3,
        mean_ms=mean * 1e3,
        std_ms=float(arr.std()) * 1e3,
        p50_ms=float(p50) * 1e3,
        p90_ms=float(p90) * 1e3,
        p99_ms=float(p99) * 1e3,
        throughput_sps=batch_size / mean if mean > 0 else math.inf,
    )


def median(values: Iterable[float | None], digits: int | None = None) -> float | None:
    """The median over rounds or repeats of what was measured; ``None`` if nothing was.

    ``None`` and NaN are measurements that did not happen (a run without a number) and
    are left out. Without ``digits`` an odd count returns one of the values as it is
    (an int stays an int in a results file); with ``digits`` a float rounded to them.

    Examples
    --------
    >>> median([3, None, 1, float("nan"), 2])
    2
    >>> median([1.0, 2.0004], digits=3), median([None])
    (1.5, None)
    """
    measured = [v for v in values if v is not None and not math.isnan(v)]
    if not measured:
        return None
    middle = statistics.median(measured)
    return middle if digits is None else round(float(middle), digits)


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - start) * 1e-9


def measure(fn: Callable[[], object], batch_size: int, policy: TimingPolicy) -> LatencyStats:
    """Time ``fn`` on its own: first call, warm-up, then the timed loop.

    Examples
    --------
    >>> stats = measure(lambda: sum(range(100)), batch_size=1, policy=QUICK_POLICY)
    >>> stats.count >= QUICK_POLICY.min_runs
    True
    """
    return measure_interleaved({"only": fn}, batch_size, policy)["only"]


def measure_interleaved(
    fns: Mapping[str, Callable[[], object]],
    batch_size: int,
    policy: TimingPolicy,
    round_calls: int = 10,
) -> dict[str, LatencyStats]:
    """Time several functions that do the same work, alternating between them.

    Calls run in short rounds (``round_calls`` of each, the order reversed every
    round: A B, B A, A B, ...), so a frequency change, a noisy neighbour or thermal
    throttling part-way through hits every function alike and their *ratio* stays
    trustworthy on a shared or throttling machine. Timing stops once every function
    has at least ``min_runs`` samples and ``min_seconds`` of accumulated call time,
    or when ``max_seconds`` of wall time have passed (after at least one round).

    Parameters
    ----------
    fns
        Name -> zero-argument callable; each call processes ``batch_size`` samples.
    batch_size
        Samples per call.
    policy
        Warm-up and stopping rule.
    round_calls
        Calls of one function before switching to the next.

    Returns
    -------
    dict
        Name -> :class:`LatencyStats`, in the order of ``fns``.
    """
    names = list(fns)
    first = {name: _timed(fns[name]) for name in names}
    for name in names:
        for _ in range(policy.warmup_runs):
            fns[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    totals = dict.fromkeys(names, 0.0)
    deadline = time.perf_counter() + policy.max_seconds
    order = names
    while True:
        for name in order:
            fn = fns[name]
            bucket = samples[name]
            for _ in range(round_calls):
                bucket.append(_timed(fn))
            totals[name] += sum(bucket[-round_calls:])
        order = order[::-1]
        done = all(len(samples[n]) >= policy.min_runs and totals[n] >= policy.min_seconds for n in names)
        if done or time.perf_counter() >= deadline:
            break
    return {name: summarize(samples[name], batch_size, first[name]) for name in names}
