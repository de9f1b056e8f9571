"""Request metrics shared by every worker process, rendered as one Prometheus view.

Why shared memory: with several worker processes a scrape of ``/metrics`` lands on
one of them, and a per-process view would make every counter jump between
scrapes. The supervisor creates one anonymous shared ``mmap`` *before* it forks the
workers; every worker owns one fixed-size slot of float64 counters in it and is its
only writer, and whoever answers ``/metrics`` sums all slots. That needs no lock, no
socket and no extra process, and a counter survives its worker being restarted
(the replacement continues in the same slot). Labelling per process instead would
multiply the series by the worker count for no gain to a user, who wants the total.

A slot is written only by its worker's event-loop thread. Each update is bracketed
by a sequence number (a seqlock): a reader copies a slot and retries when the
number changed or was odd meanwhile, so one scrape never sees a request counted in
the request total but not yet in the latency histogram.

Label values come from fixed tables (routes, methods, status codes), so a client
cannot grow the metric set; anything else is counted as ``other``.
"""

from __future__ import annotations

import bisect
import mmap
from collections.abc import Sequence

import numpy as np

# Upper bounds (seconds) of the request-latency histogram: 1 ms .. 5 s covers a Pi Zero
# classifying a large batch as well as a desktop answering /healthz.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Every status the server sends; any other would be counted as "other".
STATUSES = (200, 400, 401, 404, 405, 408, 411, 413, 415, 431, 500, 501, 503, 505)
OTHER = "other"
# Slot layout: a few scalars, then the request counters and the per-endpoint histograms.
_SEQ, _IN_FLIGHT, _CONNECTIONS, _IMAGES, _PREDICT_CALLS, _SCALARS = range(6)
_SNAPSHOT_TRIES = 1000


def _label_value(value: object) -> str:
    """Escape a Prometheus label value (backslash, double quote, newline)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Counters, a latency histogram and gauges in shared memory, one slot per worker.

    Parameters
    ----------
    endpoints
        Endpoint label values (the routes, plus ``other`` and ``-`` for requests that
        never reached a route).
    methods
        Method label values (anything else counts as ``other``).
    slots
        Worker processes that will write; create the object before forking them and
        call :meth:`bind` in each.

    Examples
    --------
    >>> m = Metrics(["/healthz", "other"], ["GET"])
    >>> m.observe("/healthz", "GET", 200, 0.003)
    >>> 'keras2edge_http_requests_total{endpoint="/healthz",method="GET",status="200"} 1' in m.render({})
    True
    """

    def __init__(self, endpoints: Sequence[str], methods: Sequence[str], slots: int = 1) -> None:
        self.endpoints = tuple(dict.fromkeys([*endpoints, OTHER]))
        self.methods = tuple(dict.fromkeys([*methods, OTHER]))
        self.statuses = (*STATUSES, OTHER)
        self.slots = slots
        self._endpoint_index = {e: i for i, e in enumerate(self.endpoints)}
        self._method_index = {m: i for i, m in enumerate(self.methods)}
        self._status_index = {s: i for i, s in enumerate(STATUSES)}
        n_e, n_m, n_s, n_b = len(self.endpoints), len(self.methods), len(self.statuses), len(LATENCY_BUCKETS) + 1
        self._requests = _SCALARS
        self._buckets = self._requests + n_e * n_m * n_s
        self._sums = self._buckets + n_e * n_b
        self._width = self._sums + n_e
        self._map = mmap.mmap(-1, slots * self._width * 8)  # anonymous and shared with forked children
        self._all = np.frombuffer(self._map, dtype=np.float64).reshape(slots, self._width)
        self.bind(0)

    def bind(self, slot: int) -> None:
        """Make this process write to ``slot`` (a worker calls it once, after the fork)."""
        if not 0 <= slot < self.slots:
            raise ValueError(f"slot {slot} out of range 0..{self.slots - 1}")
        self.slot = slot
        self._mine = memoryview(self._map).cast("d")[slot * self._width : (slot + 1) * self._width]

    def reset_gauges(self, slot: int) -> None:
        """Zero a dead worker's gauges (its counters stay: they are totals)."""
        self._all[slot, _IN_FLIGHT] = 0
        self._all[slot, _CONNECTIONS] = 0

    # ------------------------------------------------------------------ writers

    def observe(self, endpoint: str, method: str, status: int, seconds: float, images: int = 0) -> None:
        """Record one finished request."""
        e = self._endpoint_index.get(endpoint, self._endpoint_index[OTHER])
        m = self._method_index.get(method, self._method_index[OTHER])
        s = self._status_index.get(status, len(STATUSES))
        mine = self._mine
        mine[_SEQ] += 1
        mine[self._requests + (e * len(self.methods) + m) * len(self.statuses) + s] += 1
        mine[self._buckets + e * (len(LATENCY_BUCKETS) + 1) + bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        mine[self._sums + e] += seconds
        mine[_IMAGES] += images
        mine[_SEQ] += 1

    def add_in_flight(self, delta: int) -> None:
        """Requests being handled by this worker: +1 when one starts, -1 when it is answered."""
        self._mine[_IN_FLIGHT] += delta

    def add_connections(self, delta: int) -> None:
        """Open connections of this worker."""
        self._mine[_CONNECTIONS] += delta

    def add_predict_calls(self, n: int) -> None:
        """``predict`` calls made (a batched call answers several requests)."""
        self._mine[_PREDICT_CALLS] += n

    # ------------------------------------------------------------------ readers

    def open_connections(self) -> int:
        """Open connections over all workers (what ``--max-connections`` limits)."""
        return int(self._all[:, _CONNECTIONS].sum())

    def connections_by_worker(self) -> np.ndarray:
        """Open connections of each worker (index: slot)."""
        return self._all[:, _CONNECTIONS]

    def _snapshot(self) -> np.ndarray:
        """Every slot copied consistently (seqlock), summed."""
        total = np.zeros(self._width)
        for slot in range(self.slots):
            row = self._all[slot]
            for _ in range(_SNAPSHOT_TRIES):
                before = row[_SEQ]
                copy = row.copy()
                if before == row[_SEQ] and before % 2 == 0:
                    break
            total += copy
        return total

    def render(self, model_labels: dict[str, object]) -> str:
        """The metrics in Prometheus text exposition format 0.0.4."""
        snap = self._snapshot()
        n_m, n_s, n_b = len(self.methods), len(self.statuses), len(LATENCY_BUCKETS) + 1
        lines = [
            "# HELP keras2edge_http_requests_total HTTP requests by endpoint, method and status code.",
            "# TYPE keras2edge_http_requests_total counter",
        ]
        requests = snap[self._requests : self._buckets].reshape(len(self.endpoints), n_m, n_s)
        rows = [
            (self.endpoints[e], self.methods[m], str(self.statuses[s]), int(requests[e, m, s]))
            for e, m, s in zip(*np.nonzero(requests))
        ]
        for endpoint, method, status, n in sorted(rows):
            lines.append(
                f'keras2edge_http_requests_total{{endpoint="{endpoint}",method="{method}",status="{status}"}} {n}'
            )
        lines += [
            "# HELP keras2edge_http_request_duration_seconds Time from parsed request to response ready.",
            "# TYPE keras2edge_http_request_duration_seconds histogram",
        ]
        for e, endpoint in sorted(enumerate(self.endpoints), key=lambda item: item[1]):
            # Every request lands in exactly one bucket (the last one holds those over the largest
            # bound), so the cumulative total is the endpoint's request count.
            cumulative = np.cumsum(snap[self._buckets + e * n_b : self._buckets + (e + 1) * n_b])
            count = int(cumulative[-1])
            if not count:
                continue
            for bound, n in zip(LATENCY_BUCKETS, cumulative):
                lines.append(
                    f'keras2edge_http_request_duration_seconds_bucket{{endpoint="{endpoint}",le="{bound}"}} {int(n)}'
                )
            lines.append(f'keras2edge_http_request_duration_seconds_bucket{{endpoint="{endpoint}",le="+Inf"}} {count}')
            lines.append(
                f'keras2edge_http_request_duration_seconds_sum{{endpoint="{endpoint}"}} {snap[self._sums + e]:.6f}'
            )
            lines.append(f'keras2edge_http_request_duration_seconds_count{{endpoint="{endpoint}"}} {count}')
        info = ",".join(f'{k}="{_label_value(v)}"' for k, v in model_labels.items())
        lines += [
            "# HELP keras2edge_http_requests_in_flight Requests being handled right now.",
            "# TYPE keras2edge_http_requests_in_flight gauge",
            f"keras2edge_http_requests_in_flight {int(snap[_IN_FLIGHT])}",
            "# HELP keras2edge_http_connections_open Client connections open right now.",
            "# TYPE keras2edge_http_connections_open gauge",
            f"keras2edge_http_connections_open {int(snap[_CONNECTIONS])}",
            "# HELP keras2edge_predicted_images_total Images classified by /v1/predict.",
            "# TYPE keras2edge_predicted_images_total counter",
            f"keras2edge_predicted_images_total {int(snap[_IMAGES])}",
            "# HELP keras2edge_predict_calls_total Model predict calls; images_total / calls_total is the mean batch.",
            "# TYPE keras2edge_predict_calls_total counter",
            f"keras2edge_predict_calls_total {int(snap[_PREDICT_CALLS])}",
            "# HELP keras2edge_model_info The loaded model artifact (always 1).",
            "# TYPE keras2edge_model_info gauge",
            f"keras2edge_model_info{{{info}}} 1",
        ]
        return "\n".join(lines) + "\n"
