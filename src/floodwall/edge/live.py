"""Live requests at the edge become one-second Request frames for the detector, without slowing the request path.

Per request a worker calls `LiveRecorder.record(...)`: sixteen stores into preallocated lists and one index bump.
Once a second, on the worker's own event loop (between requests, never inside one), `LiveShipper.ship()` takes the
rows recorded since the last call and puts them on the way to the one detector (`floodwall.edge.decisions`), which
runs in the supervisor process and so sees every worker's traffic. The way is a pipe per worker
(`floodwall.edge.batches`), or any queue with `put_nowait` (one process, tests).

Bounded so that a flood cannot exhaust memory: a recorder holds at most `capacity` rows per second (the rest are
counted as dropped), a worker holds a few batches for the pipe (`put_nowait`; beyond, the batch is dropped and its
rows counted), the supervisor at most `queue_batches`, and the detector keeps only the engine's own short horizon.
Dropping rows under extreme load is the right way to fail: the edge keeps serving and enforcing, detection sees a
sample of the flood, which is still a flood. Drops are visible in the metrics (`floodwall_live_rows_dropped_total`).

Rows become frames in the detector (`batches_frame`), columnar: `client_net` through
`floodwall.logs.frame.client_networks`, `source` is the recorder's name ("edge" by default, or "edge-<worker>"),
`line` the recorder's running request number (1-based), so evidence points at a request of one worker.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import polars as pl

from floodwall.edge.http import Request
from floodwall.edge.metrics import Metrics
from floodwall.logs.frame import PARSED_FIELDS, client_networks
from floodwall.model import REQUEST_SCHEMA, empty_requests

__all__ = ["RECORDED_FIELDS", "BatchQueue", "LiveRecorder", "LiveShipper", "RecordedBatch", "batches_frame"]

#: Distinct texts (user agents, referers, targets) a recorder remembers before clearing its memory (a flood of
#: random ones only refills it).
_REMEMBERED: Final = 4096
_PROTOCOLS: Final = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}
#: What `record` takes, in order: the Request frame's columns a request carries (`ts` as epoch seconds).
RECORDED_FIELDS: Final = PARSED_FIELDS


@dataclass(frozen=True, slots=True)
class RecordedBatch:
    """The rows one recorder took in (about) one second, column by column, as plain lists (cheap to pickle)."""

    source: str
    first_line: int  # the `line` of the first row
    columns: tuple[list[object], ...]  # in RECORDED_FIELDS order, all of `rows` length
    dropped: int  # rows the recorder could not hold since the previous batch

    @property
    def rows(self) -> int:
        return len(self.columns[0])


class LiveRecorder:
    """One worker's rows since the last `take()`, in preallocated lists; see the module docstring.

    Not thread-safe: `record` and `take` are called from the same event loop.
    """

    __slots__ = (
        "_bytes",
        "_cache_status",
        "_capacity",
        "_client",
        "_columns",
        "_dropped",
        "_forwarded_for",
        "_host",
        "_line",
        "_method",
        "_n",
        "_path",
        "_protocol",
        "_query",
        "_referer",
        "_request_time",
        "_status",
        "_targets",
        "_texts",
        "_ts",
        "_upstream_status",
        "_upstream_time",
        "_user_agent",
        "source",
    )

    def __init__(self, capacity: int = 50_000, source: str = "edge") -> None:
        if capacity < 1:
            raise ValueError("a live recorder needs room for at least one row")
        self._capacity = capacity
        self.source = source
        self._columns: tuple[list[object], ...] = tuple([None] * capacity for _ in RECORDED_FIELDS)
        (
            self._ts,
            self._client,
            self._method,
            self._path,
            self._query,
            self._protocol,
            self._status,
            self._bytes,
            self._referer,
            self._user_agent,
            self._host,
            self._request_time,
            self._upstream_time,
            self._upstream_status,
            self._cache_status,
            self._forwarded_for,
        ) = self._columns
        self._n = 0
        self._dropped = 0
        self._line = 1  # the line number of the next batch's first row
        self._texts: dict[bytes, str] = {}
        self._targets: dict[str, tuple[str, str | None]] = {}

    def text(self, value: bytes | None) -> str | None:
        """A field's bytes as the row's text (latin-1, None when absent or empty), one `str` per distinct value:
        readers repeat their user agent and referer, and a repeated object is pickled once per batch (a reference
        after that), which halves what the pipe carries and what the supervisor unpickles."""
        if not value:
            return None
        text = self._texts.get(value)
        if text is None:
            if len(self._texts) >= _REMEMBERED:
                self._texts.clear()
            text = self._texts[value] = value.decode("latin-1")
        return text

    def split_target(self, target: str) -> tuple[str, str | None]:
        """A request target's path and query (None without a `?`), one pair per distinct target (see `text`)."""
        split = self._targets.get(target)
        if split is None:
            if len(self._targets) >= _REMEMBERED:
                self._targets.clear()
            path, question, query = target.partition("?")
            split = self._targets[target] = (path, query if question else None)
        return split

    def record(
        self,
        ts: float,
        client: str | None,
        method: str | None,
        path: str | None,
        query: str | None,
        protocol: str | None,
        status: int | None,
        bytes_sent: int | None,
        referer: str | None,
        user_agent: str | None,
        host: str | None = None,
        request_time: float | None = None,
        upstream_time: float | None = None,
        upstream_status: int | None = None,
        cache_status: str | None = None,
        forwarded_for: str | None = None,
    ) -> None:
        """One answered request; `ts` in epoch seconds (the clock the access log uses). Missing values are None."""
        n = self._n
        if n >= self._capacity:
            self._dropped += 1
            return
        self._ts[n] = ts
        self._client[n] = client
        self._method[n] = method
        self._path[n] = path
        self._query[n] = query
        self._protocol[n] = protocol
        self._status[n] = status
        self._bytes[n] = bytes_sent
        self._referer[n] = referer
        self._user_agent[n] = user_agent
        self._host[n] = host
        self._request_time[n] = request_time
        self._upstream_time[n] = upstream_time
        self._upstream_status[n] = upstream_status
        self._cache_status[n] = cache_status
        self._forwarded_for[n] = forwarded_for
        self._n = n + 1

    def record_request(
        self, request: Request, status: int, body_bytes: int, duration_s: float, wall_s: float | None = None
    ) -> None:
        """`record` for an answered request (the connection's call: its fields read here, not passed one by one,
        and its repeated texts kept as one `str` each, see `text`); `wall_s` is its time (now by default)."""
        n = self._n
        if n >= self._capacity:
            self._dropped += 1
            return
        self._ts[n] = time.time() if wall_s is None else wall_s
        self._client[n] = request.client or None
        if request.method == "-":  # a request we could not read: no request line
            self._method[n] = self._path[n] = self._query[n] = self._protocol[n] = None
        else:
            self._method[n] = request.method
            self._path[n], self._query[n] = self.split_target(request.target)
            version = request.version
            self._protocol[n] = _PROTOCOLS.get(version) or f"HTTP/{version}"
        self._status[n] = status
        self._bytes[n] = body_bytes
        # `text` for the three fields, its lookup spelled out: a value seen before (nearly every one) costs a dict
        # lookup instead of a call; a new one goes through `text`.
        texts, text = self._texts, self.text
        referer, agent, forwarded = request.referer, request.user_agent, request.forwarded_for
        self._referer[n] = (texts.get(referer) or text(referer)) if referer else None
        self._user_agent[n] = (texts.get(agent) or text(agent)) if agent else None
        self._host[n] = request.host or None
        self._request_time[n] = duration_s
        self._upstream_time[n] = request.upstream_s
        self._upstream_status[n] = request.upstream_status
        self._cache_status[n] = request.cache_status
        self._forwarded_for[n] = (texts.get(forwarded) or text(forwarded)) if forwarded else None
        self._n = n + 1

    def __len__(self) -> int:
        return self._n

    def take(self) -> RecordedBatch:
        """The rows recorded since the last call (copies of the filled part); the recorder starts empty again."""
        n = self._n
        batch = RecordedBatch(
            source=self.source,
            first_line=self._line,
            columns=tuple(column[:n] for column in self._columns),
            dropped=self._dropped,
        )
        self._line += n + self._dropped
        self._n = 0
        self._dropped = 0
        return batch


class BatchQueue(Protocol):
    """Where a worker puts its batches: a `multiprocessing.Queue(maxsize=...)` or a `queue.Queue(maxsize=...)`."""

    def put_nowait(self, item: RecordedBatch, /) -> None: ...


class LiveShipper:
    """Hands a recorder's batches to the detector's queue once a second; a full queue drops the batch, counted."""

    def __init__(self, recorder: LiveRecorder, batches: BatchQueue, metrics: Metrics | None = None) -> None:
        self.recorder = recorder
        self.batches = batches
        self.metrics = metrics
        self.shipped_rows = 0
        self.dropped_rows = 0

    def ship(self) -> int:
        """Take the recorder's rows and queue them (never blocks); returns the rows queued."""
        batch = self.recorder.take()
        if batch.rows == 0 and batch.dropped == 0:
            return 0
        dropped = batch.dropped
        shipped = batch.rows
        try:
            self.batches.put_nowait(batch)
        except queue.Full:  # multiprocessing.Queue raises queue.Full too
            dropped += shipped
            shipped = 0
        self.shipped_rows += shipped
        self.dropped_rows += dropped
        if self.metrics is not None:
            self.metrics.live_rows(shipped, dropped)
        return shipped


_TYPED: Final = {name: REQUEST_SCHEMA[name] for name in RECORDED_FIELDS if name != "ts"}


def batches_frame(batches: Sequence[RecordedBatch], site: str) -> pl.DataFrame:
    """One Request frame (REQUEST_SCHEMA, sorted by `ts`) from the batches of any number of recorders."""
    parts = []
    for batch in batches:
        if batch.rows == 0:
            continue
        data: dict[str, object] = dict(zip(RECORDED_FIELDS, batch.columns, strict=True))
        frame = pl.DataFrame(data, schema={"ts": pl.Float64, **_TYPED}, strict=False)
        parts.append(
            frame.with_columns(
                pl.lit(batch.source, dtype=pl.String).alias("source"),
                pl.int_range(batch.first_line, batch.first_line + batch.rows, dtype=pl.Int64).alias("line"),
            )
        )
    if not parts:
        return empty_requests()
    frame = pl.concat(parts) if len(parts) > 1 else parts[0]
    frame = frame.with_columns(
        (pl.col("ts") * 1_000_000).round().cast(pl.Int64).cast(REQUEST_SCHEMA["ts"]).alias("ts"),
        client_networks(frame["client"]).alias("client_net"),
        pl.lit(site, dtype=pl.String).alias("site"),
    )
    frame = frame.select([pl.col(name).cast(dtype) for name, dtype in REQUEST_SCHEMA.items()])
    # One worker's rows come in time order already: checking instead of sorting, 0.37 -> 0.32 µs a row here.
    return frame if frame["ts"].is_sorted() else frame.sort("ts", maintain_order=True)
