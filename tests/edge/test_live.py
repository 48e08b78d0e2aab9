"""Live detection at the edge: requests recorded one by one, batched each second, judged, decided and stored.

The traffic is made here, request by request (the recorder is what a worker calls per request), with a fake clock
moved one second per step, as the detector's thread would see it.
"""

from __future__ import annotations

import multiprocessing
import queue
import random
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from floodwall.config import DetectSettings, Settings
from floodwall.edge.decisions import LiveDetector
from floodwall.edge.live import LiveRecorder, LiveShipper, RecordedBatch, batches_frame
from floodwall.edge.metrics import Metrics
from floodwall.errors import ServiceError
from floodwall.model import REQUEST_SCHEMA, Action, Decision
from floodwall.store import MemoryStore
from floodwall.testing import FakeClock, record_reader_second

START = datetime(2024, 11, 4, 8, 0, tzinfo=UTC)
FLOOD_AGENTS = tuple(
    f"Mozilla/5.0 (Windows NT 6.1) AppleWebKit/537.36 Chrome/{100 + k}.0 Safari/537.36" for k in range(8)
)
HISTORY_S = 330  # the live profile of quiet clients is rebuilt every 300 s: give it one
SETTINGS = Settings(detect=DetectSettings(signatures=False))


def due(second: int) -> bool:
    """Whether the detector steps after `second`: every second from a minute before the onset, every ten before
    (the quiet history only builds the baseline and profile; big batches make the test quicker, not different)."""
    return second >= HISTORY_S - 60 or second % 10 == 9


def reader_second(rng: random.Random, recorder: LiveRecorder, second: int, views: int = 8) -> None:
    record_reader_second(rng, recorder, START.timestamp() + second, views)


def flood_second(rng: random.Random, recorder: LiveRecorder, second: int, rps: int = 400) -> set[str]:
    at0 = START.timestamp() + second
    sent = set()
    for k in range(rps):
        client = f"203.0.113.{rng.randrange(1, 200)}"
        sent.add(client)
        query = f"k{rng.randrange(10**5)}={rng.randrange(10**9)}"
        recorder.record(at0 + k / rps, client, "GET", "/", query, "HTTP/1.1", 200, 5120, None, rng.choice(FLOOD_AGENTS))
    return sent


def run(flood_from: int | None, seconds: int) -> tuple[list[tuple[int, list[Decision]]], MemoryStore, set[str]]:
    """Seconds of readers (and a flood from `flood_from`), one detector step per second; decisions by second."""
    rng = random.Random(7)
    clock = FakeClock(START)
    store = MemoryStore(clock=clock)
    recorder = LiveRecorder(capacity=5000)
    told: list[list[Decision]] = []
    detector = LiveDetector("example-news", store, settings=SETTINGS, clock=clock, on_decisions=told.append)
    decided: list[tuple[int, list[Decision]]] = []
    flooders: set[str] = set()
    for second in range(seconds):
        reader_second(rng, recorder, second)
        if flood_from is not None and second >= flood_from:
            flooders |= flood_second(rng, recorder, second)
        clock.set(START + timedelta(seconds=second + 1))
        if not due(second):
            continue
        detector.add(recorder.take())
        stored = detector.step()
        if stored:
            decided.append((second, stored))
    assert told == [batch for _, batch in decided]  # what the CLI is told is what was stored
    return decided, store, flooders


def test_a_flood_is_banned_within_ten_seconds_with_reasons_and_readers_are_not() -> None:
    onset = HISTORY_S
    decided, store, flooders = run(flood_from=onset, seconds=onset + 15)
    assert decided, "no decision during the flood"
    first_second, first = decided[0]
    assert first_second - onset <= 10
    bans = [d for _, batch in decided for d in batch if d.action is Action.BAN]
    assert bans, f"only {[d.action for d in first]}"
    assert all(d.reasons for d in bans)
    assert {d.target for _, batch in decided for d in batch} <= flooders  # no reader touched
    active = store.active()
    assert {d.target for d in active} <= flooders and len(active) >= len(flooders) // 2
    assert all(d.site == "example-news" and d.origin == "floodwall-policy" for d in active)


def test_steady_readers_get_no_decision() -> None:
    decided, store, _ = run(flood_from=None, seconds=HISTORY_S + 15)
    assert decided == [] and store.active() == []


def test_recorded_rows_become_a_request_frame() -> None:
    first, second = LiveRecorder(capacity=10, source="edge-0"), LiveRecorder(capacity=10, source="edge-1")
    at = START.timestamp()
    first.record(at + 0.5, "192.0.2.7", "GET", "/a", "q=1", "HTTP/1.1", 200, 10, None, "ua", host="example.test")
    second.record(
        at + 0.25, "2001:db8:1:2::9", "POST", "/login", None, "HTTP/1.1", 403, 0, "r", None, cache_status="MISS"
    )
    first.record(at + 0.75, "192.0.2.8", "GET", "/b", None, None, None, None, None, None, request_time=0.002)
    frame = batches_frame([first.take(), second.take()], "example-news")
    assert dict(frame.schema) == dict(REQUEST_SCHEMA)
    assert frame.get_column("client").to_list() == ["2001:db8:1:2::9", "192.0.2.7", "192.0.2.8"]
    assert frame.get_column("client_net").to_list() == ["2001:db8:1::/48", "192.0.2.0/24", "192.0.2.0/24"]
    assert frame.get_column("source").to_list() == ["edge-1", "edge-0", "edge-0"]
    assert frame.get_column("line").to_list() == [1, 1, 2]
    assert frame.get_column("ts")[0] == START + timedelta(seconds=0.25)
    assert frame.row(2, named=True)["status"] is None and frame.row(2, named=True)["request_time"] == 0.002
    assert frame.row(1, named=True)["host"] == "example.test"


def test_a_full_recorder_drops_and_counts_and_line_numbers_stay_true() -> None:
    recorder = LiveRecorder(capacity=3)
    for k in range(5):
        recorder.record(START.timestamp() + k, f"192.0.2.{k}", "GET", "/", None, "HTTP/1.1", 200, 1, None, None)
    batch = recorder.take()
    assert batch.rows == 3 and batch.dropped == 2
    recorder.record(START.timestamp() + 9, "192.0.2.9", "GET", "/", None, "HTTP/1.1", 200, 1, None, None)
    assert recorder.take().first_line == 6  # request 6 of this recorder, the dropped two counted


def test_a_full_queue_drops_batches_counted_in_the_metrics() -> None:
    batches: queue.Queue[RecordedBatch] = queue.Queue(maxsize=2)
    metrics = Metrics()
    recorder = LiveRecorder(capacity=100)
    shipper = LiveShipper(recorder, batches, metrics)
    for second in range(4):
        for k in range(10):
            recorder.record(
                START.timestamp() + second + k / 10, "192.0.2.1", "GET", "/", None, None, 200, 1, None, None
            )
        shipper.ship()
    assert batches.qsize() == 2 and shipper.shipped_rows == 20 and shipper.dropped_rows == 20
    text = metrics.render().decode()
    assert "floodwall_live_rows_total 20\n" in text and "floodwall_live_rows_dropped_total 20\n" in text


def test_batches_from_worker_processes_reach_the_detector() -> None:
    context = multiprocessing.get_context("spawn")
    batches = context.Queue(maxsize=8)
    for worker in range(2):
        recorder = LiveRecorder(capacity=100, source=f"edge-{worker}")
        for k in range(5):
            recorder.record(START.timestamp() + k, f"192.0.2.{worker}", "GET", "/", None, None, 200, 1, None, None)
        LiveShipper(recorder, batches).ship()
    clock = FakeClock(START + timedelta(seconds=60))
    detector = LiveDetector("example-news", MemoryStore(clock=clock), settings=SETTINGS, batches=batches, clock=clock)
    deadline = 50
    while detector.rows_fed < 10 and deadline:  # the queue's feeder thread hands them over asynchronously
        detector.step()
        deadline -= 1
        multiprocessing.connection.wait([], timeout=0.05)
    assert detector.rows_fed == 10
    batches.close()
    batches.join_thread()


class FailingStore(MemoryStore):
    """A store whose service went away until `up` is set again (no mock of ours: the real memory store behind)."""

    up = True

    def put(self, decisions):  # type: ignore[no-untyped-def]
        if not self.up:
            raise ServiceError("store down (test)")
        return super().put(decisions)

    def epoch(self) -> str:
        if not self.up:
            raise ServiceError("store down (test)")
        return super().epoch()

    def times_decided(self, target, since=None, action=None):  # type: ignore[no-untyped-def]
        if not self.up:
            raise ServiceError("store down (test)")
        return super().times_decided(target, since=since, action=action)


def test_decisions_made_while_the_store_is_down_are_written_when_it_is_back() -> None:
    rng = random.Random(3)
    clock = FakeClock(START)
    store = FailingStore(clock=clock)
    metrics = Metrics()
    recorder = LiveRecorder(capacity=5000)
    detector = LiveDetector("example-news", store, settings=SETTINGS, clock=clock, metrics=metrics)
    for second in range(HISTORY_S + 15):
        reader_second(rng, recorder, second)
        if second >= HISTORY_S:
            store.up = False
            flood_second(rng, recorder, second)
        clock.set(START + timedelta(seconds=second + 1))
        if due(second):
            detector.add(recorder.take())
            assert detector.step() == []
    held = detector.cache.decisions()
    assert held and all(detector.cache.lookup(d.target) is d.action for d in held)  # kept and held locally
    assert "floodwall_store_errors_total 0\n" not in metrics.render().decode()
    store.up = True
    written = detector.step()
    assert {d.target for d in written} == {d.target for d in held}
    assert {d.target for d in store.active()} == {d.target for d in held}


@pytest.mark.parametrize("rows", [0, 1])
def test_an_empty_or_tiny_step_is_harmless(rows: int) -> None:
    clock = FakeClock(START + timedelta(seconds=5))
    detector = LiveDetector("example-news", MemoryStore(clock=clock), settings=SETTINGS, clock=clock)
    recorder = LiveRecorder(capacity=10)
    for k in range(rows):
        recorder.record(START.timestamp() + k, "192.0.2.1", "GET", "/", None, None, 200, 1, None, None)
    detector.add(recorder.take())
    assert detector.step() == [] and detector.rows_fed == rows
    assert batches_frame([], "x").height == 0 and isinstance(batches_frame([], "x"), pl.DataFrame)


def test_rows_that_come_after_their_step_are_fed_and_counted_late() -> None:
    # Two workers: edge-1's second of rows reaches the detector only after the step that was due to judge it (its
    # pipe or its event loop fell behind). The rows are still judged, and the health says how many came late.
    clock = FakeClock(START)
    detector = LiveDetector("example-news", MemoryStore(clock=clock), settings=SETTINGS, clock=clock)
    on_time, behind = LiveRecorder(capacity=100, source="edge-0"), LiveRecorder(capacity=100, source="edge-1")
    for k in range(10):
        on_time.record(START.timestamp() + 0.5 + k / 20, "192.0.2.1", "GET", "/", None, None, 200, 1, None, None)
        behind.record(START.timestamp() + 0.5 + k / 20, "192.0.2.2", "GET", "/", None, None, 200, 1, None, None)
    detector.add(on_time.take())
    clock.set(START + timedelta(seconds=2.5))  # rows before 1.5 s are due: all of edge-0's
    detector.step()
    assert detector.rows_fed == 10 and detector.status()["rows_late"] == 0
    detector.add(behind.take())
    clock.set(START + timedelta(seconds=3.5))
    detector.step()
    assert detector.rows_fed == 20 and detector.status()["rows_late"] == 10


def test_an_answered_request_becomes_the_row_of_its_fields() -> None:
    from floodwall.edge.http import Request

    recorder = LiveRecorder(capacity=4, source="edge-0")
    headers = [
        (b"host", b"news.example"),
        (b"user-agent", b"Reader/1.0 \xe9"),
        (b"referer", b"https://news.example/"),
        (b"x-forwarded-for", b"198.51.100.7"),
    ]
    read = Request("GET", "/story?page=2", headers, b"", version="1.0", peer="192.0.2.1")
    read.cache_status, read.upstream_status, read.upstream_s = "MISS", 200, 0.25
    unread = Request("-", "-", [], b"", keep_alive=False, peer="192.0.2.2")
    for request in (read, read, unread):
        recorder.record_request(request, 400 if request is unread else 200, 17, 0.5)
    frame = batches_frame([recorder.take()], "bench")
    rows = frame.drop("ts").to_dicts()
    assert [row.pop("line") for row in rows] == [1, 2, 3]
    assert (
        rows[0]
        == rows[1]
        == {
            "client": "192.0.2.1",
            "client_net": "192.0.2.0/24",
            "method": "GET",
            "path": "/story",
            "query": "page=2",
            "protocol": "HTTP/1.0",
            "status": 200,
            "bytes": 17,
            "referer": "https://news.example/",
            "user_agent": "Reader/1.0 é",
            "host": "news.example",
            "request_time": 0.5,
            "upstream_time": 0.25,
            "upstream_status": 200,
            "cache_status": "MISS",
            "forwarded_for": "198.51.100.7",
            "site": "bench",
            "source": "edge-0",
        }
    )
    unread_row = {key: value for key, value in rows[2].items() if value is not None}
    assert unread_row == {
        "client": "192.0.2.2",
        "client_net": "192.0.2.0/24",
        "status": 400,
        "bytes": 17,
        "request_time": 0.5,
        "site": "bench",
        "source": "edge-0",
    }
