"""The origin side: a pool of keep-alive connections to the one origin the edge protects.

- Connections are reused (last in, first out, so idle ones age out at the origin's end rather than ours) and
  parsed with httptools' response parser; `Content-Length`, chunked and close-delimited bodies are all read.
- At most `LimitSettings.origin_concurrency` requests are in flight at once per worker: a flood that gets past
  the cache waits here instead of drowning the origin (the origin's own capacity is what the edge protects).
- A request on a reused connection that fails before any byte of the answer arrived is retried once on a new
  connection when it is idempotent: the origin may have closed the idle connection just as we wrote to it
  (RFC 9112 section 9.3.1).
- Failures are `OriginError` with the status the edge answers: 502 (refused, reset, garbled) or 504 (timeout).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Protocol, cast
from urllib.parse import urlsplit

import httptools

from floodwall.edge.http import HOP_BY_HOP, Headers, render_message
from floodwall.edge.limits import OriginGate
from floodwall.edge.metrics import Metrics
from floodwall.errors import ConfigError

log = logging.getLogger("floodwall.edge.upstream")

__all__ = [
    "WHOLE_ANSWER_BYTES",
    "Origin",
    "OriginConnection",
    "OriginError",
    "OriginPool",
    "OriginResponse",
    "OriginSink",
    "parse_origin",
]

#: Bytes of an answer buffered from the origin before reading from it pauses (the client is slower).
_HIGH_WATER: Final = 256 * 1024
#: Idle connections kept per worker.
_MAX_IDLE: Final = 256
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
#: Methods whose requests always state their body's length (an empty one too).
_SENDS_BODY: Final = frozenset({"POST", "PUT", "PATCH"})
_KEEP_ALL: Final[frozenset[bytes]] = frozenset()
#: The largest answer read whole by the C scanner (larger ones go through httptools, piece by piece); a sink is
#: told of such an answer by `origin_whole` alone.
WHOLE_ANSWER_BYTES: Final = 64 * 1024

_scan_answer: Callable[[bytes], tuple[Any, ...] | None] | None = None
try:  # the C fast path for whole small answers (optional: without a compiler, httptools reads every answer)
    from floodwall.edge import _headscan
except ImportError:  # pragma: no cover - depends on the build
    pass
else:
    _scan_answer = _headscan.scan_answer


class OriginError(Exception):
    """The origin failed; `status` is what the edge answers: 502 (failed), 503 (too many waiting), 504 (timeout)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Origin:
    """Where the origin is: scheme, host, port, and the Host value to send when the client sent none."""

    __slots__ = ("host", "host_header", "port", "tls")

    def __init__(self, host: str, port: int, tls: bool) -> None:
        self.host, self.port, self.tls = host, port, tls
        default = 443 if tls else 80
        name = f"[{host}]" if ":" in host else host
        self.host_header = name if port == default else f"{name}:{port}"

    def __repr__(self) -> str:
        return f"Origin({'https' if self.tls else 'http'}://{self.host_header})"


def parse_origin(url: str) -> Origin:
    """`http://127.0.0.1:8080` to an `Origin`; anything else than an http(s) URL with a host is a ConfigError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"origin {url!r}: expected http://HOST[:PORT] or https://HOST[:PORT]")
    if parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"origin {url!r}: a path or query is not supported; give the origin's root")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"origin {url!r}: the port is not a number from 1 to 65535") from None
    tls = parts.scheme == "https"
    return Origin(parts.hostname, port or (443 if tls else 80), tls)


class _Connection(asyncio.Protocol):
    """One connection to the origin, answering one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.open = False
        self.reused = False
        self._head: asyncio.Future[tuple[int, Headers]] | None = None
        self._headers: Headers = []
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: OriginError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._head_only = False
        self._paused = False
        self.keep_alive = True
        self.got_bytes = False
        self._close_delimited = False
        #: Set while the pool relays an answer by callbacks (`OriginPool.start`), not to an awaiting coroutine.
        self.sink: OriginSink | None = None
        self.deadline = 0.0  # loop time by which a sink's answer must be whole
        self._sink_done = False  # the sink's answer ended inside the parser: told once the parser returns
        self._fresh = False  # a request was sent and no byte of its answer came yet

    # -- asyncio.Protocol -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not registered subclasses
        self.open = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self._done:
            return
        if self._close_delimited:  # the body of an answer without a length ends here (RFC 9112 section 6.3, item 8)
            self._done = True
            self.keep_alive = False
            self._wake()
        else:
            self._fail(OriginError(502, "the origin closed the connection mid-answer"))

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        if self._fresh:
            # The first bytes of the answer: a small one with a length usually comes whole in them, and is then
            # read by one C call instead of httptools' callbacks; whatever that scanner is unsure of, httptools reads.
            self._fresh = False
            scan = _scan_answer
            if scan is not None and not self._head_only:
                head = scan(data)
                if head is not None and head[0] + head[3] == len(data) and head[3] <= WHOLE_ANSWER_BYTES:
                    self._whole(head, data)
                    return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(OriginError(502, f"the origin's answer is not HTTP/1.1: {exc}"))
            self.close()
            return
        if self._sink_done:
            # Told after the parser returned, never from inside it: the sink gives this connection back to the
            # pool, and the next request may use it at once.
            self._sink_done = False
            sink, self.sink = self.sink, None
            if sink is not None:
                sink.origin_done(self)

    def _whole(self, head: tuple[Any, ...], data: bytes) -> None:
        """An answer read whole by `_headscan.scan_answer`: what the callbacks below do for it, in their order."""
        end, status, headers, length, keep_alive = head
        self._headers = headers
        self.keep_alive = keep_alive
        self._close_delimited = False
        sink = self.sink
        if sink is not None and self._head is None:
            # Relayed by callbacks (the usual pass-through): head and body in one call, which is what
            # `origin_head` (small: wait for the rest) and `origin_done` would be told in a row.
            self.sink = None
            self._done = True
            sink.origin_whole(self, status, headers, (data[end:] if end else data) if length else b"")
            return
        if self._head is not None and not self._head.done():
            self._head.set_result((status, headers))
        elif self.sink is not None and not self.sink.origin_head(self, status, headers):
            self.sink = None
        if length:
            self._chunks.append(data[end:] if end else data)
            self._buffered += length
        self._done = True
        self._wake()
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.origin_done(self)

    # -- httptools callbacks ----------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (we never send Expect; some origins do it anyway): skip it
            self._headers = []
            return
        self.keep_alive = self.parser.should_keep_alive()
        names = {name for name, _ in self._headers}
        self._close_delimited = (
            b"content-length" not in names and b"transfer-encoding" not in names and status not in (204, 304)
        )
        if self._head is not None and not self._head.done():
            self._head.set_result((status, self._headers))
        elif self.sink is not None and not self.sink.origin_head(self, status, self._headers):
            self.sink = None  # the sink handed the answer to a coroutine, which reads the body as it comes
        if self._head_only:  # a HEAD's answer has no body, whatever its Content-Length says; httptools cannot
            self._done = True  # be told so, hence the connection is not reused
            self.keep_alive = False
            self._wake()

    def on_body(self, body: bytes) -> None:
        if self._head_only:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() < 200:
            return
        self._done = True
        if self.sink is not None:
            self._sink_done = True
        self._wake()

    # -- the pool's side --------------------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: OriginError) -> None:
        self._error = error
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        sink, self.sink = self.sink, None
        self._sink_done = False
        if sink is not None:
            sink.origin_failed(self, error)
        self._wake()

    def send(self, data: bytes, head_only: bool) -> asyncio.Future[tuple[int, Headers]]:
        assert self.transport is not None
        self._head = asyncio.get_running_loop().create_future()
        self._headers, self._buffered = [], 0
        self._chunks.clear()  # the last answer's were read: the same deque serves again
        self._done, self._error, self._head_only, self.got_bytes = False, None, head_only, False
        self._close_delimited = False
        self._fresh = True
        self.transport.write(data)
        return self._head

    def send_to(self, data: bytes, sink: OriginSink, deadline: float) -> None:
        """Send a request whose answer goes to `sink`'s callbacks (see `OriginPool.start`)."""
        assert self.transport is not None
        self._head = None
        self._headers, self._buffered = [], 0
        self._chunks.clear()  # the last answer's were read: the same deque serves again
        self._done, self._error, self._head_only, self.got_bytes = False, None, False, False
        self._close_delimited = False
        self.sink, self.deadline, self._sink_done = sink, deadline, False
        self._fresh = True
        self.transport.write(data)

    def body(self) -> bytes:
        """The whole body buffered so far (a sink's answer, once done)."""
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        return body

    @property
    def ready(self) -> bool:
        """`take()` has something to say without waiting: a piece, the end, or an error."""
        return bool(self._chunks) or self._done or self._error is not None

    def take(self) -> bytes:
        """The next piece when `ready`: b"" at the end; raises the error."""
        if self._chunks:
            chunk = self._chunks.popleft()
            self._buffered -= len(chunk)
            if self._paused and self._buffered < _HIGH_WATER // 4 and self.transport is not None:
                self._paused = False
                self.transport.resume_reading()
            return chunk
        if self._done:
            return b""
        assert self._error is not None
        raise self._error

    async def read(self) -> bytes:
        """The next piece of the body; b"" at its end. Raises OriginError."""
        while True:
            if self.ready:
                return self.take()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    @property
    def reusable(self) -> bool:
        return self.open and self._done and self.keep_alive and self._error is None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.open = False


OriginConnection = _Connection  # the name the sinks see


class OriginSink(Protocol):
    """Who gets an answer relayed by callbacks (`OriginPool.start`). Each request's sink hears `origin_head`
    (return False to take the answer over with `OriginPool.response`, read by a coroutine), then exactly one of
    `origin_done` (the whole answer is buffered) or `origin_failed`; or, for a small answer read whole at once
    (`_headscan.scan_answer`), only `origin_whole`, with its body (at most 64 KiB, the size `origin_head` waits for
    whole), in place of that pair."""

    def origin_head(self, conn: _Connection, status: int, headers: Headers) -> bool: ...

    def origin_whole(self, conn: _Connection, status: int, headers: Headers, body: bytes) -> None: ...

    def origin_done(self, conn: _Connection) -> None: ...

    def origin_failed(self, conn: _Connection, error: OriginError) -> None: ...


class OriginResponse:
    """An answer from the origin, its body read piece by piece with `read()`; `release()` when finished."""

    __slots__ = ("_conn", "_pool", "_released", "headers", "status")

    def __init__(self, pool: OriginPool, conn: _Connection, status: int, headers: Headers) -> None:
        self._pool, self._conn = pool, conn
        self.status, self.headers = status, headers
        self._released = False

    async def read(self) -> bytes:
        """The next piece of the body, b"" at its end; waits at most the origin timeout for each piece."""
        conn = self._conn
        if conn.ready:  # most small answers arrive with their head: no timer to set
            return conn.take()
        try:
            async with asyncio.timeout(self._pool.timeout_s):
                return await self._conn.read()
        except TimeoutError:
            raise OriginError(504, "the origin stopped sending its answer") from None

    async def read_all(self, limit: int) -> bytes | None:
        """The whole body, or None once it exceeds `limit` bytes (what was read is then lost: call it first)."""
        parts: list[bytes] = []
        size = 0
        while chunk := await self.read():
            size += len(chunk)
            if size > limit:
                return None
            parts.append(chunk)
        return b"".join(parts)

    def content_length(self) -> int | None:
        for name, value in self.headers:
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None

    def release(self) -> None:
        """Give the connection back (when the whole answer was read) or close it; free the concurrency slot."""
        if self._released:
            return
        self._released = True
        self._pool._give_back(self._conn)


def _expire_head(head: asyncio.Future[tuple[int, Headers]], timeout_s: float) -> None:
    if not head.done():
        head.set_exception(OriginError(504, f"the origin did not answer within {timeout_s:g} s"))


class OriginPool:
    """Keep-alive connections to one origin, at most `concurrency` requests in flight; see the module docstring."""

    def __init__(self, origin: Origin, *, concurrency: int, timeout_s: float, metrics: Metrics | None = None) -> None:
        self.origin = origin
        self.metrics = metrics  # its in-flight gauge follows the slots taken
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.gate = OriginGate(concurrency)
        self._idle: list[_Connection] = []
        self._waiting: set[_Connection] = set()  # sent by `start`, answer not whole yet
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop `start` runs on, once it has
        self._ssl = ssl.create_default_context() if origin.tls else None
        self._closed = False

    @property
    def in_flight(self) -> int:
        return self.gate.in_flight

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                _Connection,
                self.origin.host,
                self.origin.port,
                ssl=self._ssl,
                server_hostname=self.origin.host if self._ssl else None,
            )
        except OSError as exc:
            raise OriginError(502, f"cannot connect to the origin: {exc.strerror or exc}") from None
        return conn

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.open:
                conn.reused = True
                return conn
        return None

    def request_bytes(self, method: str, target: str, headers: Headers, body: bytes) -> bytes:
        """The request as sent to the origin: `headers` already hold Host and X-Forwarded-*, no hop-by-hop field."""
        tail = b"content-length: %d\r\n\r\n" % len(body) if body or method in _SENDS_BODY else b"\r\n"
        return render_message(f"{method} {target} HTTP/1.1\r\n".encode("latin-1"), headers, _KEEP_ALL, tail, body)

    async def request(self, method: str, target: str, headers: Headers, body: bytes) -> OriginResponse:
        """Send one request and wait for the answer's head; the caller reads the body and calls `release()`."""
        data = self.request_bytes(method, target, headers, body)
        if not await self.gate.acquire(self.timeout_s):
            raise OriginError(503, "too many requests already waiting for the origin")
        if self.metrics is not None:
            self.metrics.origin_started()
        try:
            return await self._exchange(method, data)
        except BaseException:
            self._release_slot()
            raise

    async def _exchange(self, method: str, data: bytes) -> OriginResponse:
        head_only = method == "HEAD"
        for attempt in (1, 2):
            conn = self._take_idle() or await self._connect()
            head = conn.send(data, head_only)
            # A plain timer on the head's future (cheaper per request than an asyncio.timeout context).
            timer = asyncio.get_running_loop().call_later(self.timeout_s, _expire_head, head, self.timeout_s)
            try:
                status, headers = await head
            except OriginError as error:
                conn.close()
                stale = error.status == 502 and conn.reused and not conn.got_bytes  # closed while idle, not slow
                if attempt == 1 and stale and method in _IDEMPOTENT:
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            finally:
                timer.cancel()
            return OriginResponse(self, conn, status, [(n, v) for n, v in headers if n not in HOP_BY_HOP])
        raise AssertionError("unreachable")  # pragma: no cover

    def start(self, method: str, data: bytes, sink: OriginSink) -> bool:
        """Send one request without a coroutine when an idle connection and a slot are free at once (the common
        case of a kept-alive pool under load); its answer goes to `sink`. False when it cannot start so (no idle
        connection, the slots taken, or a HEAD, whose answer has no body to wait for): use `request`.

        Why: a pass-through request awaited through `request` costs a task, a future and a timer, about a third
        of its CPU in the worker. Here it costs a callback object; the timeout is kept by a sweep of the
        connections waiting (`_sweep`, every quarter of the timeout and at least once a second)."""
        if method == "HEAD" or not self._idle or not self.gate.try_acquire():
            return False
        conn = self._take_idle()
        if conn is None:
            self.gate.release()
            return False
        if self.metrics is not None:
            self.metrics.origin_started()
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
            self._sweeper = loop.create_task(self._sweep())
        self._waiting.add(conn)
        conn.send_to(data, sink, loop.time() + self.timeout_s)
        return True

    def response(self, conn: _Connection, status: int, headers: Headers) -> OriginResponse:
        """The answer a sink hands over in `origin_head`, to be read and released like one from `request`."""
        self._waiting.discard(conn)
        return OriginResponse(self, conn, status, [(n, v) for n, v in headers if n not in HOP_BY_HOP])

    def finished(self, conn: _Connection) -> None:
        """A sink's answer is done (or failed): the connection goes back to the pool (or closes), the slot frees."""
        self._waiting.discard(conn)
        # `_give_back`, spelled out: once per relayed request, where each call is a few percent of the worker's
        # Python time.
        self.gate.release()
        if self.metrics is not None:
            self.metrics.origin_finished()
        reusable = conn.open and conn._done and conn.keep_alive and conn._error is None  # `conn.reusable`
        if reusable and not self._closed and len(self._idle) < _MAX_IDLE:
            conn.reused = False
            self._idle.append(conn)
        else:
            conn.close()

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        every_s = min(1.0, self.timeout_s / 4)
        while True:
            await asyncio.sleep(every_s)
            now = loop.time()
            for conn in [c for c in self._waiting if c.deadline < now]:
                self._waiting.discard(conn)
                conn.close()
                try:
                    conn._fail(OriginError(504, f"the origin did not answer within {self.timeout_s:g} s"))
                except Exception:  # a sink's bug must not stop the sweep: the other requests' timeouts need it
                    log.exception("an origin timeout's answer failed")

    def _release_slot(self) -> None:
        self.gate.release()
        if self.metrics is not None:
            self.metrics.origin_finished()

    def _give_back(self, conn: _Connection) -> None:
        self._release_slot()
        if conn.reusable and not self._closed and len(self._idle) < _MAX_IDLE:
            conn.reused = False
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close the idle connections; answers still being read close theirs when released."""
        self._closed = True
        for conn in self._idle:
            conn.close()
        self._idle.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._loop = None
