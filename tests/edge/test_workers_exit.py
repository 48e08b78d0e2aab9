"""A worker lets go of its pipe to the detector at exit: the last rows get a bounded time, then it exits anyway."""

from __future__ import annotations

import multiprocessing
import time

from floodwall.edge import workers
from floodwall.edge.batches import BatchWriter


def test_a_worker_exits_within_its_flush_time_when_nobody_reads_its_pipe(monkeypatch) -> None:
    # The supervisor is gone (nobody reads) and the pipe is full: the writer's thread is stuck in its write. The
    # worker's exit path returns after the flush time instead of raising or waiting for ever.
    monkeypatch.setattr(workers, "_FLUSH_AT_EXIT_S", 0.3)
    reader, writer_end = multiprocessing.Pipe(duplex=False)
    writer = BatchWriter(writer_end, capacity=8)
    writer.put_nowait(b"x" * 4_000_000)  # type: ignore[arg-type]  # any picklable batch; far more than a pipe holds
    started = time.monotonic()
    workers._let_go_of(writer)
    assert time.monotonic() - started < 10
    workers._let_go_of(None)  # live detection off: nothing to let go of
    # The process would exit here. A test goes on: the stuck write must end (on a broken pipe) before its file
    # descriptor is closed, or its number, reused by the next pipe the tests open, would receive the rest.
    reader.close()
    _thread_ends(writer)
    assert writer.broken
    writer_end.close()


def test_a_worker_s_last_rows_reach_a_reading_detector_at_exit() -> None:
    reader, writer_end = multiprocessing.Pipe(duplex=False)
    writer = BatchWriter(writer_end, capacity=8)
    writer.put_nowait(b"last rows")  # type: ignore[arg-type]
    workers._let_go_of(writer)
    assert reader.poll(5)
    _thread_ends(writer)
    reader.close()
    writer_end.close()


def _thread_ends(writer: BatchWriter) -> None:
    thread = writer._thread
    assert thread is not None
    thread.join(10)
    assert not thread.is_alive()
