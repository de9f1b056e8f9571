"""The JSON-lines log every server process writes (access log and lifecycle events).

One JSON object per line is what log collectors (journald, Loki, ``jq``) parse
without configuration. Worker processes share the supervisor's stderr; each line is
written with one ``write`` call, which a pipe or a terminal does not interleave
with another process's line as long as it is shorter than ``PIPE_BUF`` (4 KiB).
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import datetime, timezone
from typing import IO


class JsonLog:
    """Thread-safe writer of one JSON object per line, each with a UTC timestamp.

    Parameters
    ----------
    stream
        Text stream to write to; ``None`` means ``sys.stderr`` at the time of each write
        (so a worker process writes to the stderr it inherited).

    Examples
    --------
    >>> import io
    >>> log = JsonLog(io.StringIO())
    >>> log.write(event="listening", port=8080)
    >>> sorted(json.loads(log.stream.getvalue()))
    ['event', 'port', 'ts']
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    @property
    def stream(self) -> IO[str]:
        """Where the lines go."""
        return self._stream if self._stream is not None else sys.stderr

    def write(self, **fields: object) -> None:
        """Write one record; ``fields`` must be JSON-serialisable (``str()`` is used otherwise)."""
        record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **fields}
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            stream = self.stream
            stream.write(line)
            stream.flush()
