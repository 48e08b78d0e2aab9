"""Batches from workers to the detector: whole batches arrive from several worker processes, a worker killed in the
middle of writing one delays nobody, and every queue on the way is bounded."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest

from floodwall.edge.batches import BatchHub, BatchWriter
from floodwall.edge.live import LiveRecorder, LiveShipper, RecordedBatch
from floodwall.testing import wait_until

AT = datetime(2024, 11, 4, 8, 0, tzinfo=UTC).timestamp()
FORK = multiprocessing.get_context("fork")


def batch_of(rows: int, source: str = "edge-0") -> RecordedBatch:
    recorder = LiveRecorder(capacity=rows + 1, source=source)
    for k in range(rows):
        recorder.record(AT + k / 1000, f"192.0.2.{k % 250}", "GET", f"/{k}", None, "HTTP/1.1", 200, 10, None, "ua")
    return recorder.take()


def ship_from_a_worker(writer: BatchWriter, source: str, batches: int, rows: int) -> None:
    for _ in range(batches):
        writer.put_nowait(batch_of(rows, source))
    writer.close(timeout_s=30)


def drain(hub: BatchHub) -> list[RecordedBatch]:
    got = []
    while True:
        try:
            got.append(hub.get_nowait())
        except queue.Empty:
            return got


def test_whole_batches_arrive_from_several_worker_processes() -> None:
    hub = BatchHub(FORK, max_batches=64)
    try:
        workers = [
            FORK.Process(target=ship_from_a_worker, args=(hub.writer(k, 0), f"edge-{k}", 3, 20_000)) for k in range(2)
        ]
        for worker in workers:
            worker.start()
        got: list[RecordedBatch] = []
        assert wait_until(lambda: len(got.__iadd__(drain(hub))) == 6, within_s=60.0, every_s=0.02)
        for worker in workers:
            worker.join(30)
            assert worker.exitcode == 0
        assert sorted(b.source for b in got) == ["edge-0"] * 3 + ["edge-1"] * 3
        assert all(b.rows == 20_000 and b.columns[3][-1] == "/19999" for b in got)  # large frames whole
    finally:
        hub.close()


def test_a_worker_killed_mid_write_delays_nobody() -> None:
    hub = BatchHub(FORK)
    try:
        dying = hub.writer(0, 0)
        # What a worker killed mid-write leaves: a frame's header and part of its body, and nothing after.
        frame_length = 10_000
        os.write(dying._connection.fileno(), struct.pack("!Q", frame_length) + b"x" * 100)
        healthy = FORK.Process(target=ship_from_a_worker, args=(hub.writer(1, 0), "edge-1", 2, 100))
        healthy.start()
        got: list[RecordedBatch] = []
        assert wait_until(lambda: len(got.__iadd__(drain(hub))) == 2, within_s=30.0, every_s=0.02)
        healthy.join(30)
        assert [b.source for b in got] == ["edge-1", "edge-1"]
        replacement = hub.writer(0, 0)  # the respawned worker gets a fresh pipe; the broken one is closed
        replacement.put_nowait(batch_of(5, "edge-0"))
        replacement.close()
        assert wait_until(lambda: len(got.__iadd__(drain(hub))) == 3, within_s=30.0, every_s=0.02)
        assert got[-1].source == "edge-0" and got[-1].rows == 5
    finally:
        hub.close()


def test_a_killed_worker_process_leaves_the_others_flowing() -> None:
    hub = BatchHub(FORK)
    try:
        victim = FORK.Process(target=ship_from_a_worker, args=(hub.writer(0, 0), "edge-0", 50, 50_000))
        victim.start()
        assert wait_until(lambda: Path(f"/proc/{victim.pid}").exists(), within_s=10.0)
        os.kill(victim.pid or 0, signal.SIGKILL)  # killed while writing (or about to): whatever it left is harmless
        victim.join(10)
        drain(hub)
        other = FORK.Process(target=ship_from_a_worker, args=(hub.writer(1, 0), "edge-1", 1, 10))
        other.start()
        got: list[RecordedBatch] = []
        assert wait_until(lambda: any(b.source == "edge-1" for b in got.__iadd__(drain(hub))), within_s=30.0)
        other.join(30)
    finally:
        hub.close()


def test_every_queue_on_the_way_is_bounded() -> None:
    hub = BatchHub(FORK, max_batches=3, writer_capacity=2)
    try:
        writer = hub.writer(0, 0)
        writer._thread = object()  # type: ignore[assignment]  # no feeder: nothing leaves the worker's queue
        recorder = LiveRecorder(capacity=10)
        shipper = LiveShipper(recorder, writer)
        for _ in range(5):
            recorder.record(AT, "192.0.2.1", "GET", "/", None, None, 200, 1, None, None)
            shipper.ship()
        assert shipper.shipped_rows == 2 and shipper.dropped_rows == 3  # the worker holds two, drops the rest
    finally:
        hub.close()

    hub = BatchHub(FORK, max_batches=3, writer_capacity=10)
    try:
        fresh = hub.writer(1, 0)
        for _ in range(5):
            fresh.put_nowait(batch_of(4, "edge-1"))
        fresh.close()  # all five written to the pipe
        # Nobody takes them: the hub keeps the newest three, the two oldest dropped and counted.
        assert wait_until(lambda: hub.dropped_batches == 2, within_s=10.0)
        got = drain(hub)
        assert len(got) == 3 and hub.dropped_batches == 2 and hub.dropped_rows == 8
    finally:
        hub.close()


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_a_pipe_is_closed_when_its_row_comes_round_again(turns: int) -> None:
    hub = BatchHub(FORK)
    try:
        writers = [hub.writer(0, k % 2) for k in range(turns + 1)]
        assert len(hub._pipes) == min(turns + 1, 2)
        if turns >= 2:
            assert writers[0]._connection.closed  # the worker two handles ago is gone; its pipe too
    finally:
        hub.close()


def test_a_flood_seconds_batch_leaves_the_worker_before_the_detector_asks_for_it() -> None:
    # A second of a fast flood (8,000 requests, about 1.3 MB pickled) is twenty times a pipe's buffer. The detector
    # takes batches once a second; if the hub read the pipes only then, the worker's writer would wait on a full pipe
    # between two of its steps, its next batches would queue up behind (and be dropped past `writer_capacity`), and
    # the flood's rows would reach the judge seconds late: addresses left undecided (issue 7).
    hub = BatchHub(FORK)
    try:
        writer = hub.writer(0, 0)
        seconds = [batch_of(8_000) for _ in range(3)]
        for batch in seconds:
            writer.put_nowait(batch)
        writer.close(timeout_s=20)  # returns once all three are in the pipe, or gives up after 20 s
        assert writer._thread is not None and not writer._thread.is_alive(), "the worker is stuck on a full pipe"
        got: list[RecordedBatch] = []
        assert wait_until(lambda: len(got.__iadd__(drain(hub))) >= 3, within_s=10.0)
        assert [b.rows for b in got] == [8_000] * 3 and got[-1].columns[3][-1] == "/7999"
        assert hub.dropped_batches == 0
    finally:
        hub.close()


def test_an_unreadable_frame_is_dropped_and_the_batches_after_it_arrive() -> None:
    hub = BatchHub(FORK)
    try:
        writer = hub.writer(0, 0)
        garbage = b"not a pickle"
        os.write(writer._connection.fileno(), struct.pack("!Q", len(garbage)) + garbage)
        writer.put_nowait(batch_of(5))
        writer.close()
        got: list[RecordedBatch] = []
        assert wait_until(lambda: len(got.__iadd__(drain(hub))) >= 1, within_s=10.0)
        assert [b.rows for b in got] == [5]
    finally:
        hub.close()
