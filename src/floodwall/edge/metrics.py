"""The edge's counters: one fixed block of int64 slots per worker in a shared memory map, summed for Prometheus.

Why shared memory rather than snapshots pushed to the supervisor: a worker's per-request cost is one in-place
increment of a fixed slot (no message, no lock, no growing container), the admin listener always sees the live
totals (not last second's), and a worker that dies leaves its counts behind instead of taking them with it.

Layout: the board is a file-backed `mmap` (an unlinked file in /dev/shm when there is one) of `slots` rows of
`ROW_FIELDS` int64 values. The supervisor creates it before starting its workers; a forked worker inherits the
mapping, a spawned one opens `board.path`. Each worker writes only its own row (`board.slot(i)`), so no write is
ever shared: a row has one writer (`floodwall.edge.control` gives successive generations of a worker alternate
rows, so a draining worker and its successor never share one), and aligned 8-byte stores are not torn on the
platforms we run on, so a reader summing the rows sees each value either before or after an increment. Counters
of finished workers stay in their rows, so totals only grow, as Prometheus counters must. The last row is the
supervisor's (the detector's counts).

Besides counters the board carries one shared switch, "under attack", which the admin listener flips and every
worker reads per request (`board.under_attack`): one load from the same map, no message to miss.

Rendered as the Prometheus text exposition format 0.0.4
(https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format).
"""

from __future__ import annotations

import logging
import mmap
import os
import tempfile
from bisect import bisect_left as _bucket_of
from collections.abc import Sequence
from pathlib import Path
from typing import Final

__all__ = [
    "BUCKETS_S",
    "OUTCOMES",
    "Metrics",
    "MetricsBoard",
    "render",
]

#: Request outcomes, in slot order. `served` is a pass-through answered by the origin (not cacheable), `hit`,
#: `stale` and `miss` are cache outcomes, `banned`/`challenged`/`limited`/`guarded` are the defences' answers
#: (403, challenge, 429, inline signature), `error` is a failure of ours or the origin's (5xx made by the edge).
OUTCOMES: Final = ("served", "hit", "stale", "miss", "banned", "challenged", "limited", "guarded", "error")
SERVED, HIT, STALE, MISS, BANNED, CHALLENGED, LIMITED, GUARDED, ERROR = range(len(OUTCOMES))

#: Upper bounds (seconds) of the request duration histogram; +Inf is implied.
BUCKETS_S: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

log = logging.getLogger(__name__)

# Row layout: the outcome counters, then the gauges and detector counters, then the histogram.
_INFLIGHT = len(OUTCOMES)
_DECISIONS_ACTIVE = _INFLIGHT + 1
_LIVE_ROWS = _DECISIONS_ACTIVE + 1  # rows handed to the detector
_LIVE_DROPPED = _LIVE_ROWS + 1  # rows dropped because the recorder or the queue to the detector was full
_DECISIONS_MADE = _LIVE_DROPPED + 1
_STORE_ERRORS = _DECISIONS_MADE + 1
_DURATION_SUM_US = _STORE_ERRORS + 1
_BUCKET0 = _DURATION_SUM_US + 1
ROW_FIELDS: Final = _BUCKET0 + len(BUCKETS_S) + 1
_HEADER_FIELDS: Final = 8  # [0] under-attack switch; the rest reserved
_WORD: Final = 8


class Metrics:
    """One writer's row of counters. The request path calls `request(outcome, duration_s)` once per request.

    `outcome` is one of the module constants (`HIT`, `BANNED`, ...): an index, not a string, so counting is
    a slot increment.
    """

    __slots__ = ("_row",)

    def __init__(self, row: memoryview | None = None) -> None:
        if row is None:  # a private row, for one process without a board (tests, tools)
            row = memoryview(bytearray(ROW_FIELDS * _WORD)).cast("q")
        if len(row) != ROW_FIELDS:
            raise ValueError(f"a metrics row has {ROW_FIELDS} fields, got {len(row)}")
        self._row = row

    def request(self, outcome: int, duration_s: float) -> None:
        """Count one answered request with its outcome and how long it took (seconds)."""
        row = self._row
        row[outcome] += 1
        row[_DURATION_SUM_US] += int(duration_s * 1_000_000)
        row[_BUCKET0 + _bucket_of(BUCKETS_S, duration_s)] += 1  # the first bound >= duration_s, else +Inf

    def origin_started(self) -> None:
        self._row[_INFLIGHT] += 1

    def origin_finished(self) -> None:
        self._row[_INFLIGHT] -= 1

    def reset_gauges(self) -> None:
        """Zero the gauges (not the counters, which must only grow): for a new writer taking over a row."""
        self._row[_INFLIGHT] = 0
        self._row[_DECISIONS_ACTIVE] = 0

    def set_decisions_active(self, count: int) -> None:
        self._row[_DECISIONS_ACTIVE] = count

    def live_rows(self, recorded: int, dropped: int) -> None:
        """Rows shipped to the detector, and rows lost to a full recorder or queue (a flood beyond our budget)."""
        self._row[_LIVE_ROWS] += recorded
        self._row[_LIVE_DROPPED] += dropped

    def decisions_made(self, count: int) -> None:
        self._row[_DECISIONS_MADE] += count

    def store_error(self) -> None:
        self._row[_STORE_ERRORS] += 1

    def values(self) -> list[int]:
        return self._row.tolist()

    def render(self) -> bytes:
        """This row alone in the exposition format (one process, no board)."""
        return render([self.values()])


class MetricsBoard:
    """Every worker's row in one shared map; see the module docstring. `render()` sums the rows."""

    def __init__(self, slots: int, directory: str | Path | None = None, *, path: str | Path | None = None) -> None:
        if slots < 1:
            raise ValueError("a metrics board needs at least one slot")
        size = (_HEADER_FIELDS + slots * ROW_FIELDS) * _WORD
        self._fd: int | None = None
        if path is None:
            if directory is None and Path("/dev/shm").is_dir():
                directory = "/dev/shm"
            handle, name = tempfile.mkstemp(prefix="floodwall-metrics-", dir=directory)
            os.ftruncate(handle, size)
            # Removed at once, kept open: nothing is left behind however the supervisor ends (even SIGKILL), and
            # other processes open it through our descriptor (Linux's /proc/PID/fd, like the edge itself).
            Path(name).unlink()
            self._fd = handle
            name = f"/proc/{os.getpid()}/fd/{handle}"
        else:
            name = str(path)
            handle = os.open(name, os.O_RDWR)
            if os.fstat(handle).st_size != size:
                os.close(handle)
                raise ValueError(f"metrics board {name}: size does not match {slots} slots")
        self.path = Path(name)
        self.slots = slots
        try:
            self._map = mmap.mmap(handle, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            if self._fd is None:
                os.close(handle)
        self._words = memoryview(self._map).cast("q")

    @classmethod
    def open(cls, path: str | Path, slots: int) -> MetricsBoard:
        """Attach to a board another process created (a spawned worker)."""
        return cls(slots, path=path)

    def slot(self, index: int) -> Metrics:
        """The row of worker `index` (0-based); `slots - 1` is the supervisor's by convention."""
        if not 0 <= index < self.slots:
            raise IndexError(f"metrics slot {index} outside 0..{self.slots - 1}")
        start = _HEADER_FIELDS + index * ROW_FIELDS
        return Metrics(self._words[start : start + ROW_FIELDS])

    @property
    def under_attack(self) -> bool:
        return self._words[0] != 0

    @under_attack.setter
    def under_attack(self, value: bool) -> None:
        self._words[0] = 1 if value else 0

    def rows(self) -> list[list[int]]:
        words = self._words
        return [
            words[_HEADER_FIELDS + k * ROW_FIELDS : _HEADER_FIELDS + (k + 1) * ROW_FIELDS].tolist()
            for k in range(self.slots)
        ]

    def render(self) -> bytes:
        return render(self.rows())

    def close(self) -> None:
        """Unmap; the creator also closes the file, which then goes. Rows from `slot` must not be used after."""
        try:
            self._words.release()
            self._map.close()
        except BufferError:  # rows still referenced somewhere: the map goes when they do
            log.debug("metrics board %s: rows still in use, unmapped when released", self.path)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _total(rows: Sequence[Sequence[int]], field: int) -> int:
    return sum(row[field] for row in rows)


def render(rows: Sequence[Sequence[int]]) -> bytes:
    """Sum `rows` (one per writer) into the Prometheus text exposition format 0.0.4."""
    lines = [
        "# HELP floodwall_requests_total Requests answered by the edge, by outcome.",
        "# TYPE floodwall_requests_total counter",
    ]
    lines += [f'floodwall_requests_total{{outcome="{name}"}} {_total(rows, k)}' for k, name in enumerate(OUTCOMES)]
    lines += [
        "# HELP floodwall_origin_inflight Requests in flight to the origin.",
        "# TYPE floodwall_origin_inflight gauge",
        f"floodwall_origin_inflight {_total(rows, _INFLIGHT)}",
        "# HELP floodwall_decisions_active Ban and challenge decisions held (the largest count any process holds).",
        "# TYPE floodwall_decisions_active gauge",
        f"floodwall_decisions_active {max((row[_DECISIONS_ACTIVE] for row in rows), default=0)}",
        "# HELP floodwall_live_rows_total Requests handed to the live detector.",
        "# TYPE floodwall_live_rows_total counter",
        f"floodwall_live_rows_total {_total(rows, _LIVE_ROWS)}",
        "# HELP floodwall_live_rows_dropped_total Requests not seen by the live detector (recorder or queue full).",
        "# TYPE floodwall_live_rows_dropped_total counter",
        f"floodwall_live_rows_dropped_total {_total(rows, _LIVE_DROPPED)}",
        "# HELP floodwall_decisions_made_total Decisions the live detector wrote to the store.",
        "# TYPE floodwall_decisions_made_total counter",
        f"floodwall_decisions_made_total {_total(rows, _DECISIONS_MADE)}",
        "# HELP floodwall_store_errors_total Calls to the decision store that failed (store unreachable).",
        "# TYPE floodwall_store_errors_total counter",
        f"floodwall_store_errors_total {_total(rows, _STORE_ERRORS)}",
        "# HELP floodwall_request_duration_seconds Time from a request's first byte to the end of its answer.",
        "# TYPE floodwall_request_duration_seconds histogram",
    ]
    cumulative = 0
    for k, bound in enumerate((*BUCKETS_S, float("inf"))):
        cumulative += _total(rows, _BUCKET0 + k)
        label = "+Inf" if bound == float("inf") else repr(bound)
        lines.append(f'floodwall_request_duration_seconds_bucket{{le="{label}"}} {cumulative}')
    lines.append(f"floodwall_request_duration_seconds_sum {_total(rows, _DURATION_SUM_US) / 1_000_000:.6f}")
    lines.append(f"floodwall_request_duration_seconds_count {cumulative}")
    return ("\n".join(lines) + "\n").encode()
