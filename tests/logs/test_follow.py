"""The follower: `tail -F` on a live log, in micro-batches of at most one second.

Most tests drive the follower by pulling from it with a clock that moves one second each time it is read, so every
pull makes exactly one look at the file and cuts a window: nothing here waits on wall time but the tests that run
a writer thread, and those wait with deadlines.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from floodwall.errors import LogFormatError
from floodwall.logs import Follower, LineBatch, follow_requests
from floodwall.model import REQUEST_SCHEMA
from floodwall.testing import FakeClock


class SteppingClock(FakeClock):
    """Moves `step_s` forward each time it is read, then calls `on_read` with the new time."""

    def __init__(self, step_s: float = 1.0, on_read: Callable[[datetime], None] | None = None) -> None:
        super().__init__()
        self.step_s = step_s
        self.on_read = on_read

    def __call__(self) -> datetime:
        now = self.advance(self.step_s)
        if self.on_read is not None:
            self.on_read(now)
        return now


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def lines_of(batches: list[LineBatch]) -> list[bytes]:
    return [line for batch in batches for line in batch.data.splitlines()]


def numbered(batch: LineBatch) -> list[tuple[int, int, bytes]]:
    """(rotation, line number, text) for each line of a batch."""
    return [(batch.rotation, batch.first_line + i, line) for i, line in enumerate(batch.data.splitlines())]


COMBINED = (
    '203.0.113.{n} - - [10/Oct/2024:13:55:{s:02d} +0000] "GET /news/{n}?page=2 HTTP/1.1" 200 {n} '
    '"https://example.org/" "Mozilla/5.0 (X11; Linux x86_64)"\n'
)


def combined(n: int) -> bytes:
    return COMBINED.format(n=n % 250, s=n % 60).encode()


def collect(batches: Iterator[LineBatch], count: int) -> list[LineBatch]:
    """Pull batches until `count` lines have arrived (each pull is one look with a SteppingClock of 1 s)."""
    out: list[LineBatch] = []
    for _ in range(50):
        if sum(b.lines for b in out) >= count:
            break
        out.append(next(batches))
    return [b for b in out if b.lines]


def test_appended_lines_arrive_with_their_numbers(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"old 1\nold 2\nold 3\n")
    follower = Follower(log, clock=SteppingClock(), poll_interval=0.01)
    batches = iter(follower)
    append(log, b"new 4\nnew 5\n")
    (batch,) = collect(batches, 2)
    assert numbered(batch) == [(0, 4, b"new 4"), (0, 5, b"new 5")]
    assert batch.source == str(log)
    idle = next(batches)
    assert idle.lines == 0 and idle.data == b""  # an idle window still yields, empty
    append(log, b"new 6\n")
    assert numbered(collect(batches, 1)[0]) == [(0, 6, b"new 6")]


def test_start_at_beginning_reads_what_is_there(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"a\nb\n")
    batches = iter(Follower(log, clock=SteppingClock(), poll_interval=0.01, start_at_end=False))
    assert numbered(collect(batches, 2)[0]) == [(0, 1, b"a"), (0, 2, b"b")]


def test_partial_last_line_is_held_back_until_complete(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"done\nhal")
    batches = iter(Follower(log, clock=SteppingClock(), poll_interval=0.01))
    append(log, b"f a li")
    assert lines_of(collect(batches, 1)) == []  # only a partial line has arrived since the start
    append(log, b"ne\nnext\n")
    (batch,) = collect(batches, 2)
    assert numbered(batch) == [(0, 2, b"half a line"), (0, 3, b"next")]


def test_rename_rotation_reads_the_old_file_out_then_the_new_one(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    follower = Follower(log, clock=SteppingClock(), poll_interval=0.01, rotation_grace_s=3)
    batches = iter(follower)
    with log.open("ab", buffering=0) as server:  # the server's descriptor, which survives the rename
        server.write(b"one 1\none 2\n")
        assert lines_of(collect(batches, 2)) == [b"one 1", b"one 2"]
        server.write(b"one 3\n")
        log.rename(tmp_path / "access.log.1")
        server.write(b"one 4\n")  # written after the rename, before the new file exists
        assert lines_of(collect(batches, 2)) == [b"one 3", b"one 4"]
        log.write_bytes(b"two 1\n")  # logrotate's `create`
        server.write(b"one 5\non")  # the server has not reopened yet
        got = collect(batches, 2)
        assert [numbered(b) for b in got] == [[(0, 5, b"one 5")], [(1, 1, b"two 1")]]
    with log.open("ab", buffering=0) as reopened:
        reopened.write(b"two 2\n")
        got = collect(batches, 1)
        assert [numbered(b) for b in got] == [[(1, 2, b"two 2")]]
        # Quiet for the grace period, the old file is closed and its partial last line handed on.
        got = collect(batches, 1)
        assert [numbered(b) for b in got] == [[(0, 6, b"on")]]
        reopened.write(b"two 3\n")
        assert [numbered(b) for b in collect(batches, 1)] == [[(1, 3, b"two 3")]]


def test_copytruncate_restarts_from_the_top(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    batches = iter(Follower(log, clock=SteppingClock(), poll_interval=0.01))
    append(log, b"a 1\na 2\na 3\npart")
    assert lines_of(collect(batches, 3)) == [b"a 1", b"a 2", b"a 3"]
    (tmp_path / "access.log.1").write_bytes(log.read_bytes())  # logrotate's copy
    with log.open("r+b") as f:  # ... and truncate, then the server writes on
        f.truncate(0)
    append(log, b"b 1\nb 2\n")
    got = collect(batches, 3)
    assert [numbered(b) for b in got] == [[(0, 4, b"part")], [(1, 1, b"b 1"), (1, 2, b"b 2")]]


def test_a_file_created_later_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    batches = iter(Follower(log, clock=SteppingClock(), poll_interval=0.01, start_at_end=True))
    assert next(batches).lines == 0
    log.write_bytes(b"first\nsecond\n")
    assert numbered(collect(batches, 2)[0]) == [(0, 1, b"first"), (0, 2, b"second")]


def test_batches_cover_at_most_one_second(tmp_path: Path) -> None:
    """A line is written at each reading of a clock moving 0.3 s a time; each lands in the window it was written in."""
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    written_at: dict[bytes, datetime] = {}

    def write_one(now: datetime) -> None:
        line = f"line {len(written_at)}".encode()
        written_at[line] = now
        append(log, line + b"\n")

    clock = SteppingClock(step_s=0.3)
    follower = Follower(log, clock=clock, poll_interval=0.001)
    clock.on_read = write_one
    got = collect(iter(follower), 30)
    assert len(got) >= 5
    for batch in got:
        assert (batch.ended - batch.started).total_seconds() <= 1.0
        for line in batch.data.splitlines():
            assert batch.started <= written_at[line] < batch.ended
    seen = lines_of(got)
    assert seen == sorted(seen, key=lambda line: int(line.split()[1]))
    assert len(set(seen)) == len(seen)


def test_catching_up_is_cut_by_size(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(b"%05d\n" % i for i in range(20_000)))  # 6 bytes a line
    follower = Follower(log, clock=FakeClock(), start_at_end=False, max_batch_bytes=12_000, poll_interval=0.01)
    got = collect(iter(follower), 20_000)  # the clock stands still: only size cuts these windows
    assert len(got) >= 8
    assert all(len(b.data) <= 12_000 + 4096 for b in got)  # the limit, overshot by at most one small read
    assert [int(line) for line in lines_of(got)] == list(range(20_000))
    assert all(b.first_line == int(b.data[:5]) + 1 for b in got)


def test_stop_ends_the_iteration_from_another_thread(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    follower = Follower(log, poll_interval=0.01)  # the real clock
    seen: list[bytes] = []
    reader = threading.Thread(target=lambda: seen.extend(lines_of(list(follower))))
    reader.start()
    append(log, b"a\nb\n")
    time.sleep(0.05)
    started = time.monotonic()
    follower.stop()
    reader.join(timeout=2)
    assert not reader.is_alive() and time.monotonic() - started < 0.5
    assert seen == [b"a", b"b"]


def test_nothing_is_lost_or_repeated_across_busy_rotations(tmp_path: Path) -> None:
    """A writer thread logs 3,000 lines, renaming the log every 500 and writing on to the old file a little after."""
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    follower = Follower(log, poll_interval=0.003, rotation_grace_s=0.3)
    expected = [f"line {i}".encode() for i in range(3000)]

    def write() -> None:
        server = log.open("ab", buffering=0)
        for i, line in enumerate(expected):
            if i and i % 500 == 0:
                log.rename(tmp_path / f"access.log.{i}")
                log.write_bytes(b"")  # created first, then the server reopens a little later
                for _ in range(3):
                    time.sleep(0.002)
                server.close()
                server = log.open("ab", buffering=0)
            server.write(line + b"\n")
            if i % 50 == 0:
                time.sleep(0.002)
        server.close()

    got: list[LineBatch] = []
    writer = threading.Thread(target=write)
    writer.start()
    deadline = time.monotonic() + 10
    for batch in follower:
        got.append(batch)
        if sum(b.lines for b in got) >= len(expected) or time.monotonic() > deadline:
            follower.stop()
    writer.join()
    assert lines_of(got) == expected
    # Within each file, line numbers count from 1 without gaps.
    by_rotation: dict[int, list[int]] = {}
    for batch in got:
        by_rotation.setdefault(batch.rotation, []).extend(n for _, n, _ in numbered(batch))
    assert len(by_rotation) == 6
    for numbers in by_rotation.values():
        assert numbers == list(range(1, len(numbers) + 1))


def test_late_writes_to_a_renamed_file_are_not_lost(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    follower = Follower(log, clock=SteppingClock(), poll_interval=0.01, rotation_grace_s=10)
    batches = iter(follower)
    with log.open("ab", buffering=0) as server:
        log.rename(tmp_path / "access.log.1")
        log.write_bytes(b"new\n")
        assert lines_of(collect(batches, 1)) == [b"new"]
        server.write(b"late\n")
        got = collect(batches, 1)
    assert [numbered(b) for b in got] == [[(0, 1, b"late")]]


def test_compressed_logs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match="compressed"):
        Follower(tmp_path / "access.log.gz")
    disguised = tmp_path / "access.log"
    disguised.write_bytes(gzip.compress(b"a\n"))
    with pytest.raises(LogFormatError, match="compressed"):
        Follower(disguised)
    with pytest.raises(LogFormatError, match="directory"):
        Follower(tmp_path)


def test_follow_requests_parses_batches_and_ticks_when_idle(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(combined(0))
    stop = threading.Event()
    frames = follow_requests(log, site="example-news", clock=SteppingClock(), poll_interval=0.01, stop_event=stop)
    append(log, b"not a log line\n")
    for _ in range(2):  # an idle window (the look that finds the line comes after the first cut), then the line
        waiting = next(frames)
        assert waiting.height == 0 and dict(waiting.schema) == dict(REQUEST_SCHEMA)  # one odd line: too few to sniff
    append(log, combined(1) + combined(2))
    frame = next(frames)
    assert frame["line"].to_list() == [3, 4]  # the odd line 2 was counted bad, not fatal
    assert frame["client"].to_list() == ["203.0.113.1", "203.0.113.2"]
    assert frame["site"].unique().to_list() == ["example-news"]
    assert frame["status"].dtype == pl.Int16
    idle = next(frames)
    assert idle.height == 0 and idle.columns == list(REQUEST_SCHEMA)
    append(log, combined(3))
    assert next(frames)["line"].to_list() == [5]
    stop.set()
    assert list(frames) == []


def test_follow_requests_refuses_a_log_in_no_known_format(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    frames = follow_requests(log, site="s", clock=SteppingClock(), poll_interval=0.01)
    append(log, b"".join(b"junk %d\n" % i for i in range(300)))
    with pytest.raises(LogFormatError, match="not a known access-log format"):
        for _ in range(3):
            next(frames)


def test_files_are_closed_when_the_iteration_ends(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"a\n")
    before = len(list(Path("/proc/self/fd").iterdir()))
    follower = Follower(log, clock=SteppingClock(), poll_interval=0.01)
    batches = iter(follower)
    next(batches)
    follower.stop()
    assert list(batches) == []
    assert len(list(Path("/proc/self/fd").iterdir())) == before


def test_a_clock_stepped_back_does_not_stall_the_windows(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    clock = SteppingClock()
    batches = iter(Follower(log, clock=clock, poll_interval=0.01))
    next(batches)
    clock.set(clock() - timedelta(hours=1))
    append(log, b"after the step\n")
    (batch,) = collect(batches, 1)
    assert batch.data == b"after the step\n"
    assert timedelta(0) < batch.ended - batch.started <= timedelta(seconds=1)


def test_a_batch_tells_when_its_lines_had_all_been_read(tmp_path: Path) -> None:
    """`read_at` is the time of the last look whose lines the batch holds (the live judge projects the second being
    written from it): every line was written by then, and the last one then."""
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    written_at: dict[bytes, datetime] = {}

    def write_one(now: datetime) -> None:
        line = f"line {len(written_at)}".encode()
        written_at[line] = now
        append(log, line + b"\n")

    clock = SteppingClock(step_s=0.3)
    follower = Follower(log, clock=clock, poll_interval=0.001)
    clock.on_read = write_one
    got = [batch for batch in collect(iter(follower), 30) if batch.lines]
    assert len(got) >= 5
    for batch in got:
        assert batch.read_at is not None and batch.started <= batch.read_at <= batch.ended
        assert max(written_at[line] for line in batch.data.splitlines()) == batch.read_at
