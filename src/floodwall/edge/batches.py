"""How one-second batches travel from the workers to the supervisor's detector: one pipe per worker, never blocking.

Why not a `multiprocessing.Queue`: its reader blocks until a whole message has arrived, so a worker killed in the
middle of writing one (out of memory during a flood) would leave half a message in the shared pipe and the
detector's thread stuck for good, silently. Here each worker (each `EdgeControl.worker_handle`) gets its own pipe;
the supervisor reads every pipe without blocking and keeps the bytes of an unfinished frame until the rest comes.
Half a frame from a dead worker stays half a frame in a pipe nobody writes to any more: nothing else is delayed.

- Worker side (`BatchWriter`): `put_nowait` holds at most `capacity` batches and raises `queue.Full` beyond (the
  shipper drops and counts them); a daemon thread pickles them and writes length-prefixed frames, so the event
  loop never waits on the pipe.
- Supervisor side (`BatchHub`): a thread of its own reads every pipe as soon as bytes arrive (one `selectors`
  wait over all of them) and keeps the complete batches; `get_nowait` returns them or raises `queue.Empty`; at most
  `max_batches` wait to be taken (the oldest are dropped and counted beyond). A pipe is closed when its worker
  index comes round again two handles later (the worker that used it has drained and gone by then), as the
  metrics rows are reused.

Why a reading thread, not a read when the detector asks: a pipe holds 64 KiB, and one second of a fast flood is
about 1.4 MB (170 bytes a row at 8,000 requests/s). Read only when the detector took its batches, once a second, a
worker's writer waited on a full pipe between steps: its one-second batches reached the detector in clumps, up to
6 s late, and a worker holds only `capacity` of them before it drops the next. Flood addresses first seen in those
rows were decided up to 12 s after the rest (issue 7).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import selectors
import struct
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

from floodwall.edge.live import RecordedBatch
from floodwall.edge.metrics import Metrics

__all__ = ["BatchHub", "BatchWriter"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!Q")
_READ_BYTES = 1 << 20
_MAX_FRAME_BYTES = 1 << 31  # a length beyond this is not ours: the pipe is dropped


class BatchWriter:
    """A worker's end of its pipe; see the module docstring. Picklable while a process is being started."""

    def __init__(self, connection: Connection, capacity: int) -> None:
        self._connection = connection
        self.capacity = capacity
        self._start()

    def _start(self) -> None:
        self._pending: deque[RecordedBatch] = deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.broken = False

    def __getstate__(self) -> dict[str, Any]:
        return {"connection": self._connection, "capacity": self.capacity}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._connection = state["connection"]
        self.capacity = state["capacity"]
        self._start()

    def put_nowait(self, batch: RecordedBatch) -> None:
        with self._ready:
            if self.broken or len(self._pending) >= self.capacity:
                raise queue.Full
            self._pending.append(batch)
            self._ready.notify()
        if self._thread is None:
            self._thread = threading.Thread(target=self._feed, name="floodwall-batches", daemon=True)
            self._thread.start()

    def _feed(self) -> None:
        fd = self._connection.fileno()
        while True:
            with self._ready:
                while not self._pending and not self._closed:
                    self._ready.wait()
                if not self._pending:
                    return
                batch = self._pending.popleft()
            frame = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
            data = memoryview(_HEADER.pack(len(frame)) + frame)
            try:
                while data:
                    data = data[os.write(fd, data) :]
            except OSError as error:  # the supervisor is gone: nothing to ship to any more
                log.warning("live batches cannot reach the detector (%s); recording stops", error)
                with self._ready:
                    self.broken = True
                    self._pending.clear()
                return

    def close(self, timeout_s: float = 2.0) -> None:
        """Write what is queued (waiting at most `timeout_s`), then stop the thread."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)


class _Pipe:
    def __init__(self, reader: Connection, writer: Connection) -> None:
        self.reader, self.writer = reader, writer
        self.fd = reader.fileno()
        self.buffer = bytearray()
        self.done = False  # closed, at its end, or failed: nothing more to read
        os.set_blocking(self.fd, False)

    def close(self) -> None:
        self.done = True
        self.reader.close()
        self.writer.close()


class BatchHub:
    """The supervisor's end of every worker's pipe; see the module docstring. Its reading thread starts with the
    first `writer()` and stops at `close()`."""

    def __init__(
        self, mp_context: Any, *, max_batches: int = 64, writer_capacity: int = 8, metrics: Metrics | None = None
    ) -> None:
        self._context = mp_context
        self.metrics = metrics
        self.max_batches = max_batches
        self.writer_capacity = writer_capacity
        self._pipes: dict[tuple[int, int], _Pipe] = {}
        self._ready: deque[RecordedBatch] = deque()
        self.dropped_batches = 0
        self.dropped_rows = 0
        # Everything above is shared with the reading thread, under this lock; the wait for bytes is outside it.
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_fds: tuple[int, int] | None = None  # wakes the reading thread when pipes change or at close
        self._stopping = False

    def writer(self, index: int, turn: int) -> BatchWriter:
        """A new pipe for worker `index` in row `turn` (0 or 1); the pipe used there two handles ago is closed."""
        with self._lock:
            old = self._pipes.pop((index, turn), None)
            if old is not None:
                self._read(old)
                old.close()
            reader, writer = self._context.Pipe(duplex=False)
            self._pipes[(index, turn)] = _Pipe(reader, writer)
            if self._thread is None:
                self._start()
        self._wake()
        return BatchWriter(writer, self.writer_capacity)

    def get_nowait(self) -> RecordedBatch:
        with self._lock:
            if not self._ready:
                raise queue.Empty
            return self._ready.popleft()

    # -- the reading thread -----------------------------------------------------------------------------------

    def _start(self) -> None:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        self._wake_fds = (wake_read, wake_write)
        self._selector = selectors.DefaultSelector()
        self._selector.register(wake_read, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="floodwall-batch-hub", daemon=True)
        self._thread.start()

    def _wake(self) -> None:
        if self._wake_fds is not None:
            with contextlib.suppress(BlockingIOError):  # full: the thread has wake-ups enough waiting already
                os.write(self._wake_fds[1], b"!")

    def _run(self) -> None:
        watched: dict[int, _Pipe] = {}  # fd -> the pipe registered for it (only this thread changes the selector)
        while not self._stopping:
            try:
                self._wait_and_read(watched)
            except Exception:  # a bug, not an outage: logged with its cause, and the reading goes on
                log.exception("reading the workers' batch pipes failed; reading again in 0.1 s")
                time.sleep(0.1)

    def _wait_and_read(self, watched: dict[int, _Pipe]) -> None:
        selector = self._selector
        assert selector is not None
        with self._lock:
            if self._stopping:
                return
            current = {pipe.fd: pipe for pipe in self._pipes.values() if not pipe.done}
            for fd, pipe in list(watched.items()):
                if current.get(fd) is not pipe:  # closed (its fd number may be a new pipe's already)
                    selector.unregister(fd)
                    del watched[fd]
            for fd, pipe in current.items():
                if fd not in watched:
                    selector.register(fd, selectors.EVENT_READ, pipe)
                    watched[fd] = pipe
        events = selector.select()
        with self._lock:
            for key, _ in events:
                if key.data is None:
                    self._drain_wake()
                elif not key.data.done:  # a pipe closed since the wait is not read: its fd may be reused
                    self._read(key.data)

    def _drain_wake(self) -> None:
        assert self._wake_fds is not None
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_fds[0], 4096):
                pass

    def _read(self, pipe: _Pipe) -> None:
        while not pipe.done:
            try:
                chunk = os.read(pipe.fd, _READ_BYTES)
            except BlockingIOError:
                break
            except OSError as error:
                log.error("a worker's batch pipe failed (%s); dropped", error)
                pipe.done = True
                return
            if not chunk:  # every writer gone (the hub holds one, so only after close): nothing more will come
                pipe.done = True
                break
            pipe.buffer += chunk
            self._frames(pipe)

    def _frames(self, pipe: _Pipe) -> None:
        buffer = pipe.buffer
        start = 0
        while len(buffer) - start >= _HEADER.size:
            (length,) = _HEADER.unpack_from(buffer, start)
            if length > _MAX_FRAME_BYTES:
                log.error("a worker's batch pipe carries a frame of %d bytes; its data is dropped", length)
                buffer.clear()
                return
            end = start + _HEADER.size + length
            if len(buffer) < end:
                break
            try:
                batch = pickle.loads(buffer[start + _HEADER.size : end])
            except Exception as error:  # not a worker's frame: logged and skipped, the reading goes on
                log.error("a worker's batch pipe carries an unreadable frame of %d bytes (%s); dropped", length, error)
                batch = None
            start = end
            if isinstance(batch, RecordedBatch):
                self._keep(batch)
        del buffer[:start]

    def _keep(self, batch: RecordedBatch) -> None:
        self._ready.append(batch)
        while len(self._ready) > self.max_batches:
            lost = self._ready.popleft()
            self.dropped_batches += 1
            self.dropped_rows += lost.rows
            if self.metrics is not None:
                self.metrics.live_rows(0, lost.rows)

    def close(self) -> None:
        with self._lock:
            self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        with self._lock:
            for pipe in self._pipes.values():
                pipe.close()
            self._pipes.clear()
            if self._selector is not None:
                self._selector.close()
            if self._wake_fds is not None:
                for fd in self._wake_fds:
                    os.close(fd)
                self._wake_fds = None
