"""Following a live access log with `tail -F` semantics, in micro-batches of at most one second.

    follower = Follower("/var/log/nginx/access.log")
    for batch in follower:            # LineBatch: whole lines, the number of the first, the file they came from
        ...                           # follower.stop() (from any thread) ends the iteration

    for frame in follow_requests("/var/log/nginx/access.log", site="example-news"):
        ...                           # a Request frame per batch; an empty one on idle windows
    for frame, read_at in follow_timed_requests("/var/log/nginx/access.log", site="example-news"):
        ...                           # the same, with the clock's time of the last look whose lines it holds

What it copes with, as GNU `tail -F` does (coreutils `tail.c`, "--follow=name --retry"):

- the file does not exist yet: it is opened, from its start, once it appears;
- rotation by rename (logrotate's default, nginx reopening on USR1): detected by a change of device or inode at
  the path. The old file, still open, is read to its end, and then for as long as it keeps growing (the server
  writes it until it reopens its log), while the new file is read from its start;
- rotation by copytruncate: the file shrinks below the offset read so far, so reading restarts at 0. (Lines
  written between logrotate's copy and its truncate are lost, as logrotate's manual warns; a file truncated and
  refilled beyond our offset within one poll cannot be told from growth, by tail either);
- a partial last line is held back until its newline arrives; it is handed on as a line when its file is rotated
  away (renamed or truncated), since nothing will complete it.

Lines are numbered from 1 in each file (after a rotation, the new file starts at line 1 again; `LineBatch.rotation`
tells the files apart). Reading polls: it sleeps `poll_interval` seconds between looks (no busy loop, no inotify).
Compressed (`.gz`) files cannot grow line by line and are refused with a `LogFormatError`.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from types import TracebackType
from typing import Final

import polars as pl

from floodwall.errors import LogFormatError
from floodwall.logs.formats import FORMATS, SAMPLE_LINES, FormatGuess, sniff_format
from floodwall.logs.parse import ChunkParser
from floodwall.logs.reader import _zone
from floodwall.logs.sources import DEFAULT_CHUNK_BYTES, PROBE_BYTES
from floodwall.model import empty_requests
from floodwall.types import Clock, SystemClock

__all__ = ["Follower", "LineBatch", "follow_requests", "follow_timed_requests"]

_GZIP_MAGIC: Final = b"\x1f\x8b"
_READ_BYTES: Final = 1024 * 1024
_MIN_READ_BYTES: Final = 4096


@dataclass(frozen=True, slots=True)
class LineBatch:
    """Whole lines found in one window: `data` ends with a line break, or is empty on an idle window.

    `first_line` numbers the first line within its file; `rotation` counts the rotations seen before that file
    (0 for the file followed at the start). `started` and `ended` are the clock's times at the window's edges;
    `read_at` is the clock's time of the last look whose lines the batch holds (its lines were all written by
    then: a live judge projects the second being written from it), `ended` when no look happened in the window.
    """

    data: bytes
    first_line: int
    lines: int
    source: str
    rotation: int
    started: datetime
    ended: datetime
    read_at: datetime | None = None


@dataclass(slots=True)
class _Segment:
    """Lines of one file gathered in the current window."""

    rotation: int
    first_line: int
    parts: list[bytes] = field(default_factory=list)
    lines: int = 0


@dataclass(slots=True)
class _OpenFile:
    """A file being read: an OS descriptor (reads never buffer past what is accounted for) and where we are."""

    fd: int
    identity: tuple[int, int]  # (st_dev, st_ino)
    rotation: int
    offset: int = 0  # bytes read so far, the held-back partial line included
    partial: bytes = b""
    next_line: int = 1
    quiet_since: datetime | None = None  # for a renamed-away file: since when it has not grown


class Follower:
    """Follows one log file by name; iterate it for `LineBatch`es. See the module docstring.

    Time is cut into windows of `batch_seconds` of `clock` time, aligned to the Follower's creation. Each look at
    the file reads the clock once, and what it finds goes into the window that time falls in, so a batch holds
    the lines found by looks in `[started, ended)`, at most one second. A window is cut at the first look after
    its end (the follower sleeps until then); a window with `max_batch_bytes` waiting (catching up on a large
    file) is cut early, into several batches. Every window in which a look happened yields at least one batch:
    an empty one when nothing arrived, so a live loop can advance its own clock; a rotation
    within a window yields one batch per file, the older file's first. `start_at_end=True` skips what the file
    already holds when created (lines are still numbered from the file's start, which costs one read of the
    file); a file that appears later is always read from its start. After a rotation by rename the old file is
    kept open and read until it has not grown for `rotation_grace_s` seconds of clock time, because the server
    goes on writing it until it reopens its log (nginx on USR1, sent by logrotate's postrotate after the new
    file exists). On `stop()` the whole lines read so far are yielded and the iteration ends; a partial last
    line is not.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock | None = None,
        poll_interval: float = 0.2,
        start_at_end: bool = True,
        batch_seconds: float = 1.0,
        max_batch_bytes: int = DEFAULT_CHUNK_BYTES,
        rotation_grace_s: float = 5.0,
        stop_event: threading.Event | None = None,
    ) -> None:
        if not 0 < batch_seconds <= 1.0:
            raise ValueError(f"batch_seconds must be in (0, 1], got {batch_seconds}")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        self.path = Path(path)
        self.name = str(path)
        if self.name.endswith(".gz"):
            raise LogFormatError(f"{self.name}: compressed logs cannot be followed; read them with `floodwall read`")
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.poll_interval = poll_interval
        self.batch_seconds = batch_seconds
        self.max_batch_bytes = max_batch_bytes
        self.rotation_grace_s = rotation_grace_s
        self._stop = stop_event if stop_event is not None else threading.Event()
        self._current: _OpenFile | None = None
        self._retired: _OpenFile | None = None  # renamed away, still read for a while
        self._rotation = 0
        self._window_start = self.clock()  # windows are [start + k * batch_seconds, start + (k + 1) * batch_seconds)
        self._batch_start = self._window_start  # a cut by size starts a batch within a window
        self._segments: dict[int, _Segment] = {}  # by rotation, so each holds consecutive lines of one file
        self._buffered = 0
        self._looked: datetime | None = None  # the clock's time of the last look in the current batch
        self._current = self._open(at_end=start_at_end)

    # -- control ------------------------------------------------------------------------------------------------

    def stop(self) -> None:
        """End the iteration at its next look (safe from any thread)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        """Close the files being followed (the iteration does this itself when it ends)."""
        for open_file in (self._retired, self._current):
            if open_file is not None:
                os.close(open_file.fd)
        self._retired = self._current = None

    def __enter__(self) -> Follower:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
        self.close()

    # -- iteration ----------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[LineBatch]:
        window = timedelta(seconds=self.batch_seconds)
        try:
            while not self._stop.is_set():
                now = self.clock()  # one reading per look: the look belongs to the window this time falls in
                if now < self._window_start:  # the clock was stepped back: start the windows again from here
                    self._window_start = self._batch_start = now
                if now >= self._window_start + window:
                    yield from self._cut(self._window_start + window, idle_tick=True)
                    # Windows stay aligned to the first; those in which no look happened (a slow consumer) are
                    # skipped, their lines being found by this look.
                    skipped = (now - self._window_start) // window
                    self._window_start += skipped * window
                    self._batch_start = self._window_start
                self._poll(now)
                self._looked = now
                if self._buffered >= self.max_batch_bytes:
                    yield from self._cut(now, idle_tick=False)
                    continue
                # Sleep until the next look or the window's end, whichever is first; stop() wakes us at once.
                remaining = (self._window_start + window - now).total_seconds()
                self._stop.wait(max(0.0, min(self.poll_interval, remaining)))
            yield from self._cut(self.clock(), idle_tick=False)
        finally:
            self.close()

    def _cut(self, ended: datetime, *, idle_tick: bool) -> Iterator[LineBatch]:
        started, segments = self._batch_start, self._segments
        read_at = self._looked if self._looked is not None and self._looked <= ended else ended
        self._batch_start, self._segments, self._buffered, self._looked = ended, {}, 0, None
        batches = [
            LineBatch(b"".join(s.parts), s.first_line, s.lines, self.name, s.rotation, started, ended, read_at)
            for _, s in sorted(segments.items())
        ]
        if not batches and idle_tick:
            next_line = self._current.next_line if self._current is not None else 1
            batches = [LineBatch(b"", next_line, 0, self.name, self._rotation, started, ended, read_at)]
        yield from batches

    # -- reading ------------------------------------------------------------------------------------------------

    def _open(self, *, at_end: bool) -> _OpenFile | None:
        """The file now at the path, opened at its end or its start; None when there is none yet."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LogFormatError(f"{self.name}: cannot open: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise LogFormatError(f"{self.name}: is a directory, not a log file")
            if os.pread(fd, 2, 0) == _GZIP_MAGIC:
                raise LogFormatError(
                    f"{self.name}: compressed logs cannot be followed; read them with `floodwall read`"
                )
            offset, lines = self._skip_existing(fd) if at_end else (0, 0)
        except BaseException:
            os.close(fd)
            raise
        return _OpenFile(fd, (st.st_dev, st.st_ino), self._rotation, offset=offset, next_line=lines + 1)

    @staticmethod
    def _skip_existing(fd: int) -> tuple[int, int]:
        """(the offset after the last complete line, the number of complete lines) of what the file holds now.

        A partial last line is not skipped: it is read, and handed on once its newline arrives.
        """
        offset = lines = last_break_end = 0
        while block := os.pread(fd, DEFAULT_CHUNK_BYTES, offset):
            lines += block.count(b"\n")
            cut = block.rfind(b"\n")
            if cut >= 0:
                last_break_end = offset + cut + 1
            offset += len(block)
        return last_break_end, lines

    def _poll(self, now: datetime) -> None:
        """One look: read what is new, follow the path to a new file or back to the start of a truncated one."""
        if self._retired is not None and not self._read_retired(now):
            return  # the window is full; the rest is read after the cut
        if self._current is None:
            self._current = self._open(at_end=False)
            if self._current is None:
                return
        current = self._current
        if not self._drain(current):
            return
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return  # renamed away and not yet recreated: keep reading the old file, the server may still write it
        if (st.st_dev, st.st_ino) != current.identity:
            if self._retired is not None:  # a second rotation within the grace period: the oldest is done
                self._retire(self._retired)
            current.quiet_since = now
            self._retired, self._current = current, None
            self._rotation += 1
            self._current = self._open(at_end=False)
            if self._current is not None:
                self._drain(self._current)
        elif st.st_size < current.offset:
            self._flush_partial(current)
            self._rotation += 1
            current.rotation, current.offset, current.next_line = self._rotation, 0, 1
            self._drain(current)

    def _read_retired(self, now: datetime) -> bool:
        """Read the renamed-away file; close it once quiet for the grace period. False when the window filled."""
        retired = self._retired
        assert retired is not None
        before = retired.offset
        if not self._drain(retired):
            return False
        if retired.offset != before or retired.quiet_since is None:
            retired.quiet_since = now
        elif (now - retired.quiet_since).total_seconds() >= self.rotation_grace_s:
            self._retire(retired)
        return True

    def _retire(self, retired: _OpenFile) -> None:
        self._drain(retired)
        self._flush_partial(retired)  # nothing will complete it now
        os.close(retired.fd)
        self._retired = None

    def _drain(self, source: _OpenFile) -> bool:
        """Read a file to its end; False when the window filled up first."""
        while self._buffered < self.max_batch_bytes:
            # Reads stop near the size limit (a window overshoots it by at most one read or one line).
            size = min(_READ_BYTES, max(self.max_batch_bytes - self._buffered, _MIN_READ_BYTES))
            block = os.pread(source.fd, size, source.offset)
            if not block:
                return True
            source.offset += len(block)
            data = source.partial + block if source.partial else block
            cut = data.rfind(b"\n")
            if cut < 0:
                source.partial = data
                if len(data) >= self.max_batch_bytes:  # no newline in sight: hand it on rather than grow forever
                    self._flush_partial(source)
                continue
            source.partial = data[cut + 1 :]
            self._add(source, data[: cut + 1])
        return False

    def _flush_partial(self, source: _OpenFile) -> None:
        if source.partial:
            self._add(source, source.partial + b"\n")
            source.partial = b""

    def _add(self, source: _OpenFile, whole_lines: bytes) -> None:
        segment = self._segments.get(source.rotation)
        if segment is None:
            segment = self._segments[source.rotation] = _Segment(source.rotation, source.next_line)
        count = whole_lines.count(b"\n")
        segment.parts.append(whole_lines)
        segment.lines += count
        self._buffered += len(whole_lines)
        source.next_line += count


def follow_requests(
    path: str | Path,
    *,
    site: str,
    fmt: str = "auto",
    tz: str | None = None,
    json_fields: dict[str, str] | None = None,
    clock: Clock | None = None,
    poll_interval: float = 0.2,
    start_at_end: bool = True,
    stop_event: threading.Event | None = None,
    use_fast_path: bool = True,
) -> Iterator[pl.DataFrame]:
    """Request frames from a live log: one per `Follower` batch, so at least one per window of one second.

    Idle windows yield an *empty* frame (zero rows, the Request schema), so a live loop can advance its clock.
    The format is sniffed once, from the first lines seen (`sniff_format`); until enough lines have arrived to
    recognise it, empty frames are yielded and the lines wait. A log in no known format raises `LogFormatError`
    once `SAMPLE_LINES` lines have been seen. Set `stop_event` to end the iteration. The file is opened (and,
    with `start_at_end`, its end found) by this call, not at the first frame.
    """
    timed = follow_timed_requests(
        path,
        site=site,
        fmt=fmt,
        tz=tz,
        json_fields=json_fields,
        clock=clock,
        poll_interval=poll_interval,
        start_at_end=start_at_end,
        stop_event=stop_event,
        use_fast_path=use_fast_path,
    )
    return (frame for frame, _ in timed)


def follow_timed_requests(
    path: str | Path,
    *,
    site: str,
    fmt: str = "auto",
    tz: str | None = None,
    json_fields: dict[str, str] | None = None,
    clock: Clock | None = None,
    poll_interval: float = 0.2,
    start_at_end: bool = True,
    stop_event: threading.Event | None = None,
    use_fast_path: bool = True,
) -> Iterator[tuple[pl.DataFrame, datetime]]:
    """`follow_requests`, each frame with `LineBatch.read_at` of the batch (the last of those it holds): when its
    lines had all been read, by `clock`."""
    if fmt != "auto" and fmt not in FORMATS:
        raise LogFormatError(f"{path}: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    zone = _zone(tz)
    follower = Follower(
        path, clock=clock, poll_interval=poll_interval, start_at_end=start_at_end, stop_event=stop_event
    )
    return _parse_batches(follower, site, fmt, zone, json_fields, use_fast_path)


def _parse_batches(
    follower: Follower,
    site: str,
    fmt: str,
    zone: tzinfo | None,
    json_fields: dict[str, str] | None,
    use_fast_path: bool,
) -> Iterator[tuple[pl.DataFrame, datetime]]:
    parser: ChunkParser | None = None
    waiting: list[LineBatch] = []
    with follower:
        for batch in follower:
            read_at = batch.read_at or batch.ended
            if parser is None:
                if batch.lines:
                    waiting.append(batch)
                guess = _sniff(waiting, fmt, follower.name)
                if guess is None:
                    yield empty_requests(), read_at
                    continue
                parser = ChunkParser(
                    guess,
                    site=site,
                    source=follower.name,
                    tz=zone,
                    json_fields=json_fields,
                    use_fast_path=use_fast_path,
                )
                frames = [parser.parse(held.data, held.first_line) for held in waiting]
                waiting = []
                yield (pl.concat(frames).sort("ts", maintain_order=True) if len(frames) > 1 else frames[0]), read_at
                continue
            yield (parser.parse(batch.data, batch.first_line) if batch.lines else empty_requests()), read_at


def _sniff(waiting: list[LineBatch], fmt: str, source: str) -> FormatGuess | None:
    """The format of the first lines held, or None while there are too few to tell."""
    lines = sum(batch.lines for batch in waiting)
    if lines == 0:
        return None
    probe = b"".join(batch.data for batch in waiting)[:PROBE_BYTES]
    try:
        return sniff_format(probe, fmt, source)
    except LogFormatError:
        if lines < SAMPLE_LINES and len(probe) < PROBE_BYTES:
            return None
        raise
