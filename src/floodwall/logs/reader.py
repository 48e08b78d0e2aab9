"""Reading access logs as a stream of Request frames: several inputs, in time order, in bounded memory.

    reader = LogReader(["access.log.2.gz", "access.log.1", "access.log"], site="example-news")
    for frame in reader:          # Request frames of at most `batch_rows` rows (plus a chunk), sorted by time
        ...
    reader.inputs                 # per input: the format chosen and why, lines, bad lines and samples

Inputs are ordered by their first timestamp and merged, so rotated files can be given in any order and logs of
several virtual hosts interleave correctly. Memory holds at most one chunk per overlapping input.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

from floodwall.errors import ConfigError
from floodwall.logs.formats import FormatGuess, sniff_format
from floodwall.logs.parse import BadLine, ChunkParser, ParseStats
from floodwall.logs.sources import DEFAULT_CHUNK_BYTES, LogSource
from floodwall.model import empty_requests

__all__ = ["InputStats", "LogReader", "ProgressCallback", "parse_bytes", "read_ahead"]

log = logging.getLogger(__name__)

#: Called with (bytes consumed so far, total bytes or None) as reading goes on.
ProgressCallback = Callable[[int, int | None], None]
DEFAULT_BATCH_ROWS: Final = 200_000
#: Chunks of one input parsed side by side: one per core of the 2-core machines Floodwall is sized for.
PARALLEL_CHUNKS: Final = 2


@dataclass(slots=True)
class InputStats:
    """What reading one input found: `report.json`'s `inputs` entries start from this."""

    path: str
    format: str
    format_reason: str
    sha256: str | None = None  # of the bytes as stored, computed as they were read
    size_bytes: int = 0
    lines: int = 0
    parsed: int = 0
    bad_lines: int = 0
    bad_samples: list[BadLine] = field(default_factory=list)
    fast_lines: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None


def _zone(tz: str | None) -> ZoneInfo | None:
    if tz is None:
        return None
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"--tz {tz!r}: not a known time zone (use an IANA name such as Europe/Budapest)") from None


class _Stream:
    """One input being read: its source, its parser, and the rows read but not yet handed on."""

    def __init__(self, source: LogSource, guess: FormatGuess, parser: ChunkParser, stats: InputStats) -> None:
        self.source = source
        self.guess = guess
        self.parser = parser
        self.stats = stats
        self.first_ts: datetime | None = None
        self._chunks = source.chunks()
        self.buffer = empty_requests()
        self.done = False
        self._parse = ParseStats()
        # Chunks are parsed PARALLEL_CHUNKS at a time on worker threads (the C scanner and Polars release the GIL)
        # and handed on in order.
        self._workers: ThreadPoolExecutor | None = None
        self._in_flight: deque[Future[tuple[pl.DataFrame, ParseStats]]] = deque()
        self._exhausted = False

    def _submit(self) -> None:
        assert self._workers is not None
        while not self._exhausted and len(self._in_flight) < PARALLEL_CHUNKS:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._exhausted = True
                break
            self._in_flight.append(self._workers.submit(self.parser.parse_chunk, chunk.data, chunk.first_line))

    def fill(self) -> None:
        """Read chunks until the buffer holds rows or the input ends."""
        if self._workers is None and not self.done:
            self._workers = ThreadPoolExecutor(max_workers=PARALLEL_CHUNKS, thread_name_prefix="floodwall-read")
        while self.buffer.height == 0 and not self.done:
            assert self._workers is not None
            self._submit()
            if not self._in_flight:
                self.done = True
                self._workers.shutdown(wait=True)
                self.stats.sha256 = self.source.sha256
                self.stats.size_bytes = self.source.stored_bytes
                break
            frame, chunk_stats = self._in_flight.popleft().result()
            self._parse.merge(chunk_stats)
            self._submit()
            self._update_stats(frame)
            self.buffer = frame

    def _update_stats(self, frame: pl.DataFrame) -> None:
        parse = self._parse
        self.stats.lines, self.stats.parsed, self.stats.bad_lines = parse.lines, parse.parsed, parse.bad_lines
        self.stats.fast_lines = parse.fast
        self.stats.bad_samples = parse.bad_samples
        if frame.height:
            low, high = frame["ts"].min(), frame["ts"].max()
            assert isinstance(low, datetime) and isinstance(high, datetime)
            self.stats.first_ts = low if self.stats.first_ts is None else min(low, self.stats.first_ts)
            self.stats.last_ts = high if self.stats.last_ts is None else max(high, self.stats.last_ts)


class LogReader:
    """Iterates Request frames from access logs; see the module docstring."""

    def __init__(
        self,
        inputs: Sequence[str | Path],
        *,
        site: str,
        fmt: str = "auto",
        tz: str | None = None,
        json_fields: dict[str, str] | None = None,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        progress: ProgressCallback | None = None,
        use_fast_path: bool = True,
        announce: bool = True,
    ) -> None:
        if not inputs:
            raise ConfigError("no input given: name at least one log file, or - for stdin")
        if sum(1 for name in inputs if str(name) == "-") > 1:
            raise ConfigError("stdin (-) can be read only once")
        self.site = site
        self.batch_rows = batch_rows
        self.progress = progress
        zone = _zone(tz)
        self.sources = [LogSource(str(name), chunk_bytes) for name in inputs]
        self.inputs: list[InputStats] = []
        self._pending: list[_Stream] = []
        for source in self.sources:
            guess = sniff_format(source.probe(), fmt, source.name)
            log.log(logging.INFO if announce else logging.DEBUG, "%s: format %s", source.name, guess.describe())
            parser = ChunkParser(
                guess, site=site, source=source.name, tz=zone, json_fields=json_fields, use_fast_path=use_fast_path
            )
            stats = InputStats(path=source.name, format=guess.name, format_reason=guess.describe())
            self.inputs.append(stats)
            stream = _Stream(source, guess, parser, stats)
            stream.first_ts = self._first_time(source, guess, zone, json_fields)
            self._pending.append(stream)
        # Oldest input first; inputs whose first line has no readable time keep their given order, last.
        self._pending.sort(key=lambda s: (s.first_ts is None, s.first_ts or datetime.min))
        self.total_bytes: int | None = None
        sizes = [source.size for source in self.sources]
        if all(size is not None for size in sizes):
            self.total_bytes = sum(size for size in sizes if size is not None)

    @staticmethod
    def _first_time(
        source: LogSource, guess: FormatGuess, zone: ZoneInfo | None, json_fields: dict[str, str] | None
    ) -> datetime | None:
        probe = source.probe()
        cut = probe.rfind(b"\n")
        sample = probe[: cut + 1] if cut >= 0 else probe
        if not sample:
            return None
        trial = ChunkParser(guess, site="", source=source.name, tz=zone, json_fields=json_fields)
        frame = trial.parse(sample, 1)
        value = frame["ts"].min() if frame.height else None
        return value if isinstance(value, datetime) else None

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(sum(source.bytes_consumed for source in self.sources), self.total_bytes)

    def __iter__(self) -> Iterator[pl.DataFrame]:
        active: list[_Stream] = []
        pending = list(self._pending)
        out: list[pl.DataFrame] = []
        out_rows = 0
        while active or pending:
            if not active:
                active.append(pending.pop(0))
            for stream in active:
                stream.fill()
            self._report()
            active = [s for s in active if not (s.done and s.buffer.height == 0)]
            if not active:
                continue
            watermark = min(s.buffer["ts"].max() for s in active)  # type: ignore[type-var]
            # An input that starts before the watermark must join before anything is handed on.
            while pending and pending[0].first_ts is not None and pending[0].first_ts <= watermark:  # type: ignore[operator]
                joining = pending.pop(0)
                joining.fill()
                if joining.buffer.height:
                    active.append(joining)
                    watermark = min(watermark, joining.buffer["ts"].max())  # type: ignore[type-var]
            ready: list[pl.DataFrame] = []
            for stream in active:
                mask = stream.buffer["ts"] <= watermark
                if mask.all():  # one input, or the oldest: no copy of the rows (two, with the rest, were a fifth of
                    ready.append(stream.buffer)  # the reading thread's time)
                    stream.buffer = stream.buffer.clear()
                    continue
                ready.append(stream.buffer.filter(mask))
                stream.buffer = stream.buffer.filter(~mask)
            batch = pl.concat(ready) if len(ready) > 1 else ready[0]
            if len(ready) > 1:
                batch = batch.sort("ts", maintain_order=True)
            out.append(batch)
            out_rows += batch.height
            if out_rows >= self.batch_rows:
                yield pl.concat(out, rechunk=True) if len(out) > 1 else out[0]
                out, out_rows = [], 0
        if out_rows:
            yield pl.concat(out, rechunk=True) if len(out) > 1 else out[0]
        self._report()


def parse_bytes(
    data: bytes,
    *,
    site: str,
    source: str,
    fmt: str = "combined",
    first_line: int = 1,
    guess: FormatGuess | None = None,
) -> tuple[pl.DataFrame, ChunkParser]:
    """Parse whole lines already in memory (the follower's and the edge's micro-batches, tests)."""
    guess = guess or sniff_format(data, fmt, source)
    parser = ChunkParser(guess, site=site, source=source)
    return parser.parse(data, first_line), parser


def read_ahead(frames: Iterable[pl.DataFrame], depth: int = 1) -> Iterator[pl.DataFrame]:
    """`frames`, made on a thread of their own, at most `depth` frames ahead of the one the consumer took last.

    `analyze` spends most of its time on a batch in Polars and the C scanner, which release the GIL, yet a 2-core
    machine stayed a third idle: the reader parsed two chunks ahead and no more, so before each batch the detector
    waited for the rest of it (2.6 s of 24 at 5M lines). Here the next batch is read while the last one is judged.
    Only `depth` batches are made ahead (a batch of 200k requests is about 70 MB). An error while reading is raised
    to the consumer; a consumer that stops early stops the thread.
    """
    handoff: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
    room = threading.Semaphore(depth)
    stop = threading.Event()

    def wait_for_room() -> bool:
        while not stop.is_set():
            if room.acquire(timeout=0.1):
                return True
        return False

    def produce() -> None:
        iterator = iter(frames)
        try:
            while wait_for_room():
                frame = next(iterator, None)
                if frame is None:
                    handoff.put(("end", None))
                    return
                handoff.put(("frame", frame))
        except BaseException as exc:  # handed to the consumer, which raises it
            handoff.put(("error", exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="floodwall-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(item, BaseException)
                raise item
            assert isinstance(item, pl.DataFrame)
            room.release()
            yield item
    finally:
        stop.set()
        thread.join()
