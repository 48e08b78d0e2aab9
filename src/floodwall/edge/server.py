"""The client side of one worker: `EdgeServer` listens, sweeps deadlines once a second, and drains on stop; each
TCP connection is an `EdgeConnection` (`floodwall.edge.connection`).

Deciding what to answer is the pipeline's business (`floodwall.edge.pipeline`); the connection frames and writes.
Two defences act on connections rather than requests, before the pipeline: the accept-time gate refuses a banned
address before reading it (`floodwall.edge.gate`), and while the worker is behind, new addresses wait so that known
readers go first (`floodwall.edge.priority`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from email.utils import formatdate
from typing import TYPE_CHECKING

from floodwall.edge.connection import EdgeConnection
from floodwall.edge.settings import LimitSettings

if TYPE_CHECKING:
    from floodwall.edge.accesslog import AccessLog
    from floodwall.edge.gate import AcceptGate
    from floodwall.edge.live import LiveRecorder
    from floodwall.edge.metrics import Metrics
    from floodwall.edge.pipeline import Pipeline
    from floodwall.edge.priority import ReaderPriority

__all__ = ["EdgeConnection", "EdgeServer"]

log = logging.getLogger("floodwall.edge.server")


class _RateLimitedLog:
    """Logs a failure with its cause at most once per `every_s`, counting the ones it held back."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._last = -1e9
        self._held = 0

    def exception(self, what: str) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            self._held += 1
            return
        held, self._held, self._last = self._held, 0, now
        log.exception("%s (%d more like it since the last report)", what, held)


class _DateHeader:
    """The `Date` field of our own answers (RFC 9110 section 6.6.1), formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, formatdate(now, usegmt=True).encode("ascii")
        return self._value


class EdgeServer:
    """Serves connections of one worker through `pipeline`; `start` listens, `drain` stops gracefully."""

    def __init__(
        self,
        pipeline: Pipeline,
        limits: LimitSettings,
        *,
        contact: str,
        access_log: AccessLog | None = None,
        metrics: Metrics | None = None,
        recorder: LiveRecorder | None = None,
        gate: AcceptGate | None = None,
        priority: ReaderPriority | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.gate = gate
        self.priority = priority
        self._watcher: asyncio.Task[None] | None = None
        self.recorder = recorder
        self.limits = limits
        self.contact = contact
        self.access_log = access_log
        self.metrics = metrics
        self.connections: set[EdgeConnection] = set()
        self.date = _DateHeader()
        self.bugs = _RateLimitedLog()
        self.draining = False
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def protocol(self) -> EdgeConnection:
        return EdgeConnection(self)

    async def start(self, sock: socket.socket) -> None:
        """Serve on an already bound socket (the workers share one port with SO_REUSEPORT)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.protocol, sock=sock, backlog=1024)
        self._sweeper = asyncio.create_task(self._sweep())
        if self.priority is not None:
            self._watcher = asyncio.create_task(self.priority.watch())

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            for conn in [c for c in self.connections if c.deadline < now]:
                conn.expire()

    async def drain(self, grace_s: float) -> None:
        """Stop accepting, let answers in progress finish (up to `grace_s`), close idle connections, stop."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + grace_s
        while True:
            for conn in list(self.connections):
                if conn.idle:
                    conn.close()
            if not self.connections or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.close()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._server is not None:
            await self._server.wait_closed()
