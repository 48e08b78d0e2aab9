"""One client connection of the edge: HTTP/1.1 on asyncio (uvloop) with httptools, parsed, queued, answered in order.

What it guarantees whatever the client sends:

- Answers leave in the order requests arrived (pipelining, RFC 9112 section 9.3.2): requests are parsed as bytes
  come and queued; one request per connection is answered at a time. Reading pauses while too many wait.
- Request bodies are read in full before the request goes on (Content-Length or chunked, at most
  `max_body_bytes`: 413 beyond), as nginx buffers them, so a slow POST never holds an origin connection.
- Time limits: `header_timeout_s` from a request's first byte to the end of its headers (slowloris),
  `body_timeout_s` for its body (slow POST) and for a client that stops reading our answer, `keepalive_timeout_s`
  between requests. One sweep per second checks every connection's deadline, so the request path only stores a
  float. A connection past its deadline is closed.
- Malformed requests get 400, headers over `max_header_bytes` 431, then the connection closes; an exception of
  ours is logged (at most once every 10 s, never per request) and answered 500 or the connection is dropped:
  it never reaches the event loop, so a worker never dies of hostile input.

The usual request (a whole GET or HEAD head with plain fields, in one feed) is read by one C call,
`floodwall.edge._headscan.scan`, instead of httptools' dozen Python callbacks; whatever that scanner is unsure of
goes to httptools, so both give the same requests (tests/edge/test_headscan.py), and an install without a
compiler reads every head with httptools.

Deciding what to answer is the pipeline's business (`floodwall.edge.pipeline`); this module frames and writes.
What each answer leaves behind (counters, an access log line, a row for the live detector) is written in `finish`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, cast

import httptools

from floodwall.edge import metrics as outcomes
from floodwall.edge.clientaddr import canonical_address
from floodwall.edge.http import Answer, Headers, Request, render_head, render_message, status_line

if TYPE_CHECKING:
    from floodwall.edge.gate import AcceptGate
    from floodwall.edge.server import EdgeServer

__all__ = ["EdgeConnection"]

_scan: Callable[[bytes, int], tuple[Any, ...] | None] | None = None
try:  # the C fast path for plain heads (optional: without a compiler, httptools reads every head)
    from floodwall.edge import _headscan
except ImportError:  # pragma: no cover - depends on the build
    pass
else:
    _scan = _headscan.scan

#: Requests parsed ahead of the one being answered before reading pauses (bounds a pipelining client's memory).
_MAX_QUEUED: Final = 16
_IDLE, _HEADERS, _BODY = 0, 1, 2
_NO_BODY_STATUS: Final = frozenset({204, 304})
#: The usual methods' names as text, made once (the parser gives bytes).
_METHODS: Final = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")}
_NEVER: Final = float("inf")


class _Reject(Exception):
    """A request we refuse to parse further: answered with `status`, then the connection closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class EdgeConnection(asyncio.Protocol):
    """One client connection: parse, queue, answer in order; see the module docstring."""

    # Per-connection state starts as these class-level values (immutable ones only): under a connection flood,
    # every accepted connection builds one of these objects, and a banned peer's never needs more than a few.
    transport: asyncio.Transport | None = None
    #: The request parser, made in `connection_made` for a connection the gate lets in (a refused one never
    #: parses, and making a parser costs as much as refusing).
    parser: httptools.HttpRequestParser
    peer = ""
    deadline = float("inf")
    closed = False
    _state = _IDLE
    _task: asyncio.Task[None] | None = None
    _busy = False
    _read_paused = False
    _write_paused = False
    _drain: asyncio.Future[None] | None = None
    _stopped_reading = False
    _refused: AcceptGate | None = None  # refused at accept, not answered yet
    # The request being parsed (the lists are made anew by `on_message_begin`).
    _url = b""
    _headers: Headers
    _body: list[bytes]
    _body_size = 0
    _header_bytes = 0
    _count_fields = True  # count each field's size against max_header_bytes (see data_received)
    _closing_seen = False  # httptools read a closing request: it refuses what follows, so it reads it all
    _partial_bytes = 0
    _started = 0.0
    # The answer being written.
    _chunked = False
    _sent = 0
    _status = 0

    def __init__(self, server: EdgeServer) -> None:
        self.server = server
        self.limits = server.limits
        self.loop = asyncio.get_running_loop()
        self._queue: deque[Request | _Reject] = deque()

    # -- asyncio.Protocol -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not registered subclasses
        peer = transport.get_extra_info("peername")
        text = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        # One canonical form for bans, limits and logs: a dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
        # An IPv4 socket's peer is already canonical (the kernel's dotted quad): no parsing for it.
        self.peer = text if ":" not in text else (canonical_address(text) or text)
        self.deadline = self.loop.time() + self.limits.header_timeout_s
        self.server.connections.add(self)
        gate = self.server.gate
        if gate is not None and gate.refuses(self.peer):
            self._refuse(gate)
            return
        self.parser = httptools.HttpRequestParser(self)
        if self.server.priority is not None:
            self.server.priority.note(self.peer)

    def _refuse(self, gate: AcceptGate) -> None:
        """A banned peer (`floodwall.edge.gate`): its first bytes get the pre-rendered 403, unparsed, then a
        lingering close: our side half-closes, what the client sends is discarded unread, and the connection closes
        at its end of file (or at the header deadline), so the answer is not lost to a reset. The answer waits for
        the client's first bytes: a client reads its answer after sending its request, and some drop one that came
        before (the deadline sweep closes a peer that sends nothing)."""
        self._stopped_reading = True  # data_received answers once, then discards
        self._refused = gate
        gate.refused += 1
        server = self.server
        if server.metrics is not None:
            server.metrics.request(outcomes.BANNED, 0.0)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        # The parser holds our callbacks and we hold it: left alone, every closed connection would be cyclic
        # garbage, and under a flood of short connections the collector's passes (a full one scans every object
        # of the worker) stall the loop for everyone. Dropped here, the connection is freed when the last
        # reference to it goes.
        self.__dict__.pop("parser", None)
        self.server.connections.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._wake_writer()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()
        if self._queue and not self._busy and not self.closed:
            self._serve_next()

    def _wake_writer(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._stopped_reading:
            refused = self._refused
            if refused is not None:
                self._refused = None
                self._write(refused.answer)
                if self.transport is not None and not self.closed:
                    self.transport.write_eof()
                access_log = self.server.access_log
                if access_log is not None:
                    # The evidence of what was refused (`floodwall.edge.gate`): its request line as first sent.
                    access_log.record_refused(self.peer, data, refused.body_bytes)
            return
        # The field-by-field size count (431) matters only when this feed can complete a head near the limit: a
        # field counts at most 5/4 of its bytes on the wire ("a:\r\n" counts 5), so a head held in fewer than 4/5
        # of the limit's bytes cannot pass it. Most requests come whole in a few hundred bytes and skip the count.
        pending = self._partial_bytes if self._state == _HEADERS else 0
        if pending + len(data) > self.limits.max_header_bytes * 4 // 5:
            self._count_fields = True
            # The fields of earlier feeds were not counted: they are at most those feeds' bytes.
            self._header_bytes = max(self._header_bytes, pending)
        else:
            self._count_fields = False
            if self._state == _IDLE and _scan is not None and not self._closing_seen:
                # Whole plain heads, the usual request, read in one C call each; the rest goes to httptools.
                data = self._scan_heads(data)
        if data:
            self._feed(data)
        if self._queue and not self._busy:
            priority = self.server.priority
            if priority is not None and priority.waits(self.peer):
                # The worker is behind and this address is new: known readers first (`floodwall.edge.priority`).
                self._busy = True
                self.loop.call_later(priority.defer_s, self._serve_deferred)
            else:
                self._serve_next()

    def _scan_heads(self, data: bytes) -> bytes:
        """Queue the plain GET and HEAD requests at the start of `data` that `_headscan` reads whole (what the
        httptools callbacks below would queue for them: the scanner refuses whatever they would treat otherwise);
        returns the bytes left for httptools. Only called between requests, with no head partly received, and for
        a feed too short to reach the header size limits (see `data_received`)."""
        scan = _scan
        if scan is None:
            return data
        pos = 0
        end = len(data)
        queue = self._queue
        while pos < end:
            head = scan(data, pos)
            if head is None:
                break
            if not head[4]:
                # A closing request goes to httptools, which then refuses whatever follows it on the connection
                # (400), now or in a later feed: it must have seen the request to know.
                break
            self._started = started = self.loop.time()
            queue.append(Request.scanned(head, not self.server.draining, self.peer, started))
            pos = head[0]
            if len(queue) >= _MAX_QUEUED and not self._read_paused and self.transport is not None:
                self._read_paused = True
                self.transport.pause_reading()
        if pos == 0:
            return data
        self.deadline = _NEVER
        return data[pos:]

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request asked to switch protocols (WebSocket, h2c). We answer it as plain HTTP/1.1 (the Upgrade
            # field is not relayed) and close after, since what follows on this connection is not HTTP/1.1.
            self._stop_reading()
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Reject):
                self._reject(cause)
            else:
                self.server.bugs.exception("request parsing failed in our callback")
                self._reject(_Reject(500, "The edge failed to read this request."))
        except httptools.HttpParserError as exc:
            self._reject(_Reject(400, f"The request is not valid HTTP/1.1 ({_short(exc)})."))
        else:
            if self._state == _HEADERS:
                self._partial_bytes += len(data)
                if self._partial_bytes > self.limits.max_header_bytes:
                    self._reject(_Reject(431, "The request's header fields are too large."))

    def _serve_deferred(self) -> None:
        self._busy = False
        if self._queue and not self.closed:
            self._serve_next()

    def eof_received(self) -> bool | None:
        # A client may half-close after its last request and still read the answers (RFC 9112 section 9.6).
        self._stop_reading()
        if not self._busy and not self._queue:
            self.close()
        return True

    # -- httptools callbacks ----------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._state = _HEADERS
        self._started = now = self.loop.time()
        self.deadline = now + self.limits.header_timeout_s
        self._url = b""
        self._headers = []
        self._body = []
        self._body_size = self._header_bytes = self._partial_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > self.limits.max_header_bytes:
            raise _Reject(414 if len(self._url) > self.limits.max_header_bytes // 2 else 431, "URI Too Long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._count_fields:
            self._header_bytes += len(name) + len(value) + 4
            if self._header_bytes > self.limits.max_header_bytes:
                raise _Reject(431, "The request's header fields are too large.")
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._state = _BODY
        self.deadline = self.loop.time() + self.limits.body_timeout_s
        for name, value in self._headers:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise _Reject(400, "The Content-Length field is not a number.") from None
                if declared > self.limits.max_body_bytes:
                    raise _Reject(413, "The request's body is too large.")
            elif name == b"expect" and value.lower() == b"100-continue" and self.idle_writer:
                # The client waits for this before sending the body (RFC 9110 section 10.1.1); only said when no
                # earlier answer is being written, so answers stay in order.
                self._write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.limits.max_body_bytes:
            raise _Reject(413, "The request's body is too large.")
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self.parser
        try:
            target = self._url.decode("ascii")
        except UnicodeDecodeError:
            raise _Reject(400, "The request target is not ASCII.") from None
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        if (method == "CONNECT" or target[:1] != "/") and (method != "OPTIONS" or target != "*"):
            raise _Reject(400, "This server is not a forward proxy: the target must be a path.")
        body = self._body
        keep_alive = parser.should_keep_alive()
        if not keep_alive:
            self._closing_seen = True  # what follows is httptools' to refuse: no more fast path
        request = Request(
            method,
            target,
            self._headers,
            b"".join(body) if body else b"",
            version=parser.get_http_version(),
            keep_alive=keep_alive and not self.server.draining,
            peer=self.peer,
            started=self._started,
        )
        self._state = _IDLE
        self.deadline = _NEVER
        self._queue.append(request)
        if len(self._queue) >= _MAX_QUEUED and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    # -- answering --------------------------------------------------------------------------------------------

    @property
    def idle_writer(self) -> bool:
        """No answer being written or waiting to be."""
        return not self._busy and not self._queue

    @property
    def idle(self) -> bool:
        """Nothing being answered, nothing queued, no request half received: safe to close."""
        return not self._busy and not self._queue and self._state == _IDLE

    def _stop_reading(self) -> None:
        self._stopped_reading = True
        if self.transport is not None and not self._read_paused:
            with contextlib.suppress(RuntimeError):
                self.transport.pause_reading()
            self._read_paused = True

    def _reject(self, reject: _Reject) -> None:
        self._stop_reading()
        self._state = _IDLE
        self._queue.append(reject)

    def _serve_next(self) -> None:
        """Answer queued requests synchronously while the pipeline can (gates, cache hits); else start a task."""
        while self._queue and not self.closed:
            if self._write_paused:
                # The client is not reading what we wrote: answer no more (queued requests wait, and reading pauses
                # once enough are queued), and give it `body_timeout_s` to catch up before the sweep drops it.
                self.deadline = self.loop.time() + self.limits.body_timeout_s
                return
            item = self._queue[0]
            if isinstance(item, _Reject):
                self._queue.clear()
                self._send_reject(item)
                return
            try:
                answer = self.server.pipeline.answer_now(item)
            except Exception:
                self.server.bugs.exception("the pipeline failed")
                answer = Answer.text(
                    500, "The edge failed on this request.", self.server.contact, outcome=outcomes.ERROR
                )
            if answer is None:
                self._queue.popleft()
                self._busy = True
                try:
                    started = self.server.pipeline.start_now(item, self)
                except Exception:
                    self.server.bugs.exception("the pipeline failed")
                    started = False
                if not started:
                    self._task = self.loop.create_task(self._serve_async(item))
                return
            self._queue.popleft()
            self.send_answer(item, answer)
            if not item.keep_alive:
                self.close()
                return
        self._after_answers()

    async def _serve_async(self, request: Request, work: Coroutine[Any, Any, None] | None = None) -> None:
        try:
            await (work if work is not None else self.server.pipeline.answer_later(request, self))
        except asyncio.CancelledError:
            return  # the client went away
        except Exception:
            self.failed(request)
            return
        self.answered(request)

    def continue_with(self, request: Request, work: Coroutine[Any, Any, None]) -> None:
        """Go on answering `request` in a task running `work` (a relay started by callbacks that needs to wait
        after all: a large answer to stream, a retry)."""
        self._task = self.loop.create_task(self._serve_async(request, work))

    def answered(self, request: Request) -> None:
        """`request`'s answer is out: on to the next queued request, or close."""
        self._busy = False
        if self.closed:
            return
        if not request.keep_alive:
            self.close()
            return
        if self._queue:
            self._serve_next()
        else:  # what `_serve_next` ends with, without its loop (the usual case: no request waiting)
            self._after_answers()

    def failed(self, request: Request) -> None:
        """Our own exception while answering `request` (called where it was caught): logged, answered 500 when
        nothing was sent yet, else the connection is dropped."""
        self.server.bugs.exception("the pipeline failed")
        if self._status == 0 and not self.closed:
            self.send_answer(
                request,
                Answer.text(500, "The edge failed on this request.", self.server.contact, outcome=outcomes.ERROR),
            )
            self.answered(request)
        else:
            self.abort()

    def _after_answers(self) -> None:
        if self.closed:
            return
        if self._stopped_reading and not self._queue:
            self.close()
            return
        if self._state == _IDLE:
            self.deadline = self.loop.time() + self.limits.keepalive_timeout_s
        if self._read_paused and not self._stopped_reading and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()

    def _send_reject(self, reject: _Reject) -> None:
        request = Request("-", "-", [], b"", keep_alive=False, peer=self.peer, started=self._started)
        request.version = "1.1"
        answer = Answer.text(reject.status, reject.message, self.server.contact, outcome=outcomes.ERROR)
        self.send_answer(request, answer)
        self.close()

    def send_answer(self, request: Request, answer: Answer, *, logged_request: bool = True) -> None:
        """Write a whole answer made by the edge or taken from the cache."""
        request.cache_status = answer.cache
        request.outcome = answer.outcome
        body = answer.body
        head = answer.head
        if head is not None and answer.status not in _NO_BODY_STATUS:
            # A cache hit: the entry's head was rendered when stored; only the per-answer lines are added (a fresh
            # hit's whole head for a kept-alive client (no Connection line) is made once per second: `keepalive_head`).
            if not request.keep_alive:
                head = head + answer.extra_head + b"connection: close\r\n\r\n"
            elif request.version == "1.0":
                head = head + answer.extra_head + b"connection: keep-alive\r\n\r\n"
            elif answer.keepalive_head is not None:
                head = answer.keepalive_head
            else:
                head = head + answer.extra_head + b"\r\n"
            self._status = answer.status
            self._chunked = False
            if request.method == "HEAD":
                self._sent = 0
                self._write(head)
            else:
                self._sent = len(body)
                self._write(head + body)
            self.finish(request, logged=logged_request)
            return
        send = request.method != "HEAD" and answer.status not in _NO_BODY_STATUS
        self.start(
            request, answer.status, answer.headers, len(body), date=answer.cache is None, first=body if send else b""
        )
        self.finish(request, logged=logged_request)

    def send_relayed(
        self, request: Request, status: int, headers: Headers, drop: frozenset[bytes], body: bytes
    ) -> None:
        """Write a relayed answer the origin gave whole (a status with a body, not HEAD): its fields less `drop`,
        ours, and the body in one write, rendered in one pass (what `start` and `finish` do, for the common case)."""
        if not request.keep_alive:
            ending = b"connection: close\r\n\r\n"
        elif request.version == "1.0":
            ending = b"connection: keep-alive\r\n\r\n"
        else:
            ending = b"\r\n"
        cache = request.cache_status
        if cache is not None:
            tail = b"content-length: %d\r\nx-floodwall-cache: %b\r\n%b" % (len(body), cache.encode(), ending)
        else:
            tail = b"content-length: %d\r\n%b" % (len(body), ending)
        self._status = status
        self._sent = len(body)
        self._chunked = False
        self._write(render_message(status_line(status), headers, drop, tail, body))
        self.finish(request)

    def start(
        self,
        request: Request,
        status: int,
        headers: Headers,
        length: int | None,
        *,
        date: bool = False,
        first: bytes = b"",
    ) -> None:
        """Write the head of an answer, with `first`, the body or its first piece, in the same write (one system
        call, one packet for a small answer). `length` None means unknown: chunked to HTTP/1.1 clients, else the
        connection's end marks the body's."""
        fields = list(headers)
        no_body = request.method == "HEAD" or status in _NO_BODY_STATUS or 100 <= status < 200
        self._chunked = False
        if length is not None:
            if status not in _NO_BODY_STATUS:
                fields.append((b"content-length", b"%d" % length))
        elif not no_body:
            if request.version == "1.1":
                self._chunked = True
                fields.append((b"transfer-encoding", b"chunked"))
            else:
                request.keep_alive = False  # HTTP/1.0: the end of the body is the end of the connection
        if request.cache_status is not None:
            fields.append((b"x-floodwall-cache", request.cache_status.encode("ascii")))
        if date:
            fields.append((b"date", self.server.date()))
        if not request.keep_alive:
            fields.append((b"connection", b"close"))
        elif request.version == "1.0":
            fields.append((b"connection", b"keep-alive"))
        self._status = status
        self._sent = len(first)
        head = render_head(status, fields)
        if not first:
            self._write(head)
        elif self._chunked:
            self._write(b"%b%x\r\n%b\r\n" % (head, len(first), first))
        else:
            self._write(head + first)

    def write(self, chunk: bytes) -> None:
        """Write a piece of the body (framed as a chunk when the length is unknown)."""
        if not chunk:
            return
        self._sent += len(chunk)
        if self._chunked:
            self._write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            self._write(chunk)

    async def flush(self) -> None:
        """Wait while the client is slow to read (at most `body_timeout_s`, then the connection is dropped)."""
        if not self._write_paused or self.closed:
            return
        self._drain = self.loop.create_future()
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                await self._drain
        except TimeoutError:
            self.abort()
        finally:
            self._drain = None
        if self.closed:
            raise asyncio.CancelledError  # nobody is reading: stop working for them

    def finish(self, request: Request, *, logged: bool = True) -> None:
        """End the answer: the last chunk, the access log line and the counters."""
        if self._chunked:
            self._write(b"0\r\n\r\n")
            self._chunked = False
        duration_s = self.loop.time() - request.started
        server = self.server
        if server.metrics is not None:
            server.metrics.request(request.outcome, duration_s)
        if logged:
            wall_s = time.time()  # one clock read for the log line and the live row
            if server.access_log is not None:
                server.access_log.record(request, self._status, self._sent, duration_s, wall_s)
            if server.recorder is not None:
                server.recorder.record_request(request, self._status, self._sent, duration_s, wall_s)
        self._status = 0

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    # -- closing ----------------------------------------------------------------------------------------------

    def expire(self) -> None:
        """The deadline passed: a slow client (headers, body, or reading our answer) or an idle keep-alive."""
        if self._state != _IDLE or self._write_paused:
            self.abort()  # nothing worth flushing to a client that does not read
        else:
            self.close()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()
            self.server.connections.discard(self)

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()
            self.server.connections.discard(self)


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 80 else text[:77] + "..."
