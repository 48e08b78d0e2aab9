"""The C fast path for plain request heads (`floodwall.edge._headscan`) against the reference, httptools.

Every byte stream is fed to two connections of one worker, one reading heads with the scanner where it can and one
with httptools alone (the path a machine without a compiler takes): they must queue the same requests, field for
field, and the same refusals. Nothing is answered (the connections are kept busy), so only the reading is compared.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import uvloop
from edge_run import MemoryTransport, edge_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floodwall.edge import connection as connection_module
from floodwall.edge.connection import EdgeConnection
from floodwall.edge.http import Request
from floodwall.edge.job import build_server

headscan = pytest.importorskip("floodwall.edge._headscan", reason="the C fast path was not built (no compiler)")

BROWSER = (
    b"GET /news/story-1.html?page=2 HTTP/1.1\r\nHost: news.example\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
    b"Referer: https://news.example/\r\nConnection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\n\r\n"
)


_WORKER = build_server(edge_settings("http://127.0.0.1:9"))


def _view(item: object) -> tuple[Any, ...]:
    if isinstance(item, Request):
        return (
            item.method,
            item.target,
            item.version,
            item.headers,
            item.body,
            item.keep_alive,
            item.peer,
            item.client,
            item.host,
            item.user_agent,
            item.referer,
            item.forwarded_for,
            item.accept_encoding,
            item.cookie,
            item.connection,
            item.no_store,
            item.cache_key,
            item.cache_status,
            item.upstream_status,
            item.upstream_s,
            item.outcome,
        )
    return ("refused", getattr(item, "status", None))


def _read(chunks: list[bytes], fast: bool) -> tuple[list[tuple[Any, ...]], tuple[Any, ...]]:
    """What one connection queues from `chunks` (fed one by one, nothing answered), and its reading state."""
    saved = connection_module._scan
    if not fast:
        connection_module._scan = None

    async def main() -> tuple[list[tuple[Any, ...]], tuple[Any, ...]]:
        conn = EdgeConnection(_WORKER.server)
        conn.connection_made(MemoryTransport())  # type: ignore[arg-type]
        conn._busy = True  # answer nothing: only the reading is compared
        for chunk in chunks:
            if conn._stopped_reading:
                break
            conn.data_received(chunk)
        queued = [_view(item) for item in conn._queue]
        state = (conn._state, conn._stopped_reading, conn._read_paused)
        conn.connection_lost(None)
        return queued, state

    try:
        return uvloop.run(main())
    finally:
        connection_module._scan = saved


_NAMES = [
    "Host",
    "HOST",
    "User-Agent",
    "Referer",
    "X-Forwarded-For",
    "Accept-Encoding",
    "Cookie",
    "Authorization",
    "Range",
    "Cache-Control",
    "Connection",
    "Content-Length",
    "Transfer-Encoding",
    "Expect",
    "Upgrade",
    "Accept",
    "X-Custom_Name",
    "X Bad",
    "Bad(name)",
    "",
]
_VALUES = [
    "news.example",
    "keep-alive",
    "Keep-Alive",
    "close",
    "CLOSE",
    "upgrade",
    "keep-alive, x-private",
    "no-store",
    "max-age=0, No-Store",
    "gzip, deflate, br",
    "session=1",
    "0",
    "5",
    "chunked",
    "100-continue",
    "Mozilla/5.0 (X11)",
    "",
    " padded ",
    "tab\there",
    "a\x7fb",
    "caf\xe9",
    "\x00",
]


@st.composite
def _heads(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"GET", b"HEAD", b"POST", b"get", b"OPTIONS", b"PUT", b"DELETE"]))
    target = draw(
        st.one_of(
            st.sampled_from(["/", "/news/story-1.html", "/a?b=c&d=%20e#frag", "*", "http://x/", "/.well-known/x"]),
            st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF), max_size=20).map(lambda s: "/" + s),
        )
    )
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"http/1.1"]))
    end = draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"]))
    lines = [method + b" " + target.encode("latin-1") + b" " + version]
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.one_of(st.sampled_from(_NAMES), st.text("aZ-_!~", min_size=1, max_size=8)))
        value = draw(st.one_of(st.sampled_from(_VALUES), st.text(max_size=12).map(lambda s: s[:12])))
        separator = draw(st.sampled_from([": ", ":", ":  ", " : ", ":\t"]))
        try:
            lines.append(name.encode("latin-1") + separator.encode() + value.encode("latin-1"))
        except UnicodeEncodeError:
            lines.append(name.encode("latin-1", "replace") + b": " + value.encode("utf-8"))
    return end.join(lines) + end + end


_URL_CHARS = "abcXYZ019-._~:/?#[]@!$&'()*+,;=%"


@st.composite
def _plain_heads(draw: st.DrawFn) -> bytes:
    """Mostly heads the scanner reads (GET or HEAD, clean fields), now and then with one byte changed."""
    method = draw(st.sampled_from([b"GET", b"HEAD"]))
    target = b"/" + draw(st.text(_URL_CHARS, max_size=20)).encode()
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    lines = [method + b" " + target + b" " + version]
    for _ in range(draw(st.integers(0, 8))):
        name = draw(
            st.one_of(st.sampled_from([*_NAMES[:11], "Accept", "X-Custom_Name"]), st.text("aZ-_!~", min_size=1))
        )
        value = draw(
            st.one_of(
                st.sampled_from(_VALUES[:16]),
                st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12),
            )
        )
        lines.append(name.encode() + draw(st.sampled_from([b": ", b":", b":\t"])) + value.encode())
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    if draw(st.integers(0, 5)) == 0:
        at = draw(st.integers(0, len(head) - 1))
        head = head[:at] + bytes([draw(st.integers(0, 255))]) + head[at + 1 :]
    return head


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    heads=st.lists(st.one_of(_plain_heads(), _heads()), min_size=1, max_size=3),
    cuts=st.lists(st.integers(0, 2000), max_size=3),
)
def test_the_fast_path_queues_what_httptools_queues(heads: list[bytes], cuts: list[int]) -> None:
    data = b"".join(heads)
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    assert _read(chunks, fast=True) == _read(chunks, fast=False)


def test_pipelined_browser_heads_are_read_by_the_scanner_and_match_httptools() -> None:
    data = BROWSER * 3 + b"GET /last HTTP/1.0\r\nConnection: close\r\n\r\n"
    first = headscan.scan(data, 0)
    assert first is not None and first[0] == len(BROWSER)  # the scanner reads a browser's head whole
    fast, _ = _read([data], fast=True)
    assert fast == _read([data], fast=False)[0]
    assert [(q[0], q[1], q[5]) for q in fast] == [("GET", "/news/story-1.html?page=2", True)] * 3 + [
        ("GET", "/last", False)
    ]


@pytest.mark.parametrize(
    "head",
    [
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.1\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\n\n",
        b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n",  # not whole yet
    ],
)
def test_unusual_heads_are_left_to_httptools_with_the_same_result(head: bytes) -> None:
    assert headscan.scan(head, 0) is None
    assert _read([head], fast=True) == _read([head], fast=False)


# -- the origin's answers ------------------------------------------------------------------------------------------


class _Sink:
    """Notes what an origin connection tells the relay (`floodwall.edge.upstream.OriginSink`)."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def origin_head(self, conn: Any, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
        self.events.append(("head", status, list(headers)))
        return True

    def origin_done(self, conn: Any) -> None:
        self.events.append(("done", conn.body(), conn.keep_alive, conn.reusable))

    def origin_whole(self, conn: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        # What a sink hears in place of `origin_head` then `origin_done`: the same events, to compare.
        self.events.append(("head", status, list(headers)))
        self.events.append(("done", body, conn.keep_alive, conn.reusable))

    def origin_failed(self, conn: Any, error: Any) -> None:
        self.events.append(("failed", error.status))


def _answer_events(chunks: list[bytes], fast: bool) -> list[tuple[Any, ...]]:
    from floodwall.edge import upstream

    saved = upstream._scan_answer
    if not fast:
        upstream._scan_answer = None
    try:
        conn = upstream._Connection()
        conn.connection_made(MemoryTransport())  # type: ignore[arg-type]
        sink = _Sink()
        conn.send_to(b"GET / HTTP/1.1\r\n\r\n", sink, 1e18)
        for chunk in chunks:
            conn.data_received(chunk)
        return [*sink.events, ("state", conn._done, conn.keep_alive, conn._close_delimited)]
    finally:
        upstream._scan_answer = saved


_ANSWER_FIELDS = [
    b"Content-Type: text/html",
    b"Cache-Control: no-store",
    b"Connection: keep-alive",
    b"Connection: close",
    b"connection: Keep-Alive, x",
    b"Transfer-Encoding: chunked",
    b"Content-Length: 5",
    b"Content-Length: 05",
    b"Content-Length: x",
    b"Set-Cookie: a=1",
    b'ETag: "6b0826db-1d5f"',
    b"X-Odd:  spaced",
    b"X-Empty:",
    b"Bad Name: 1",
    b"X-Bin: \xe9",
]


@st.composite
def _plain_answers(draw: st.DrawFn) -> bytes:
    """Mostly answers the scanner reads whole, now and then with one byte changed."""
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    status = draw(st.sampled_from([b"200 OK", b"404 Not Found", b"503 Busy", b"200 "]))
    fields = draw(st.lists(st.sampled_from(_ANSWER_FIELDS[:4] + _ANSWER_FIELDS[9:12]), max_size=5))
    body = draw(st.binary(max_size=8))
    answer = b"\r\n".join([version + b" " + status, *fields, b"Content-Length: %d" % len(body)]) + b"\r\n\r\n" + body
    if draw(st.integers(0, 5)) == 0:
        at = draw(st.integers(0, len(answer) - 1))
        answer = answer[:at] + bytes([draw(st.integers(0, 255))]) + answer[at + 1 :]
    return answer


@st.composite
def _answers(draw: st.DrawFn) -> bytes:
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0"]))
    status = draw(st.sampled_from([b"200 OK", b"404 Not Found", b"204 No Content", b"304 Not Modified", b"100 Go"]))
    status = draw(st.one_of(st.just(status), st.sampled_from([b"200", b"200 ", b"2x0 OK", b"503 Busy"])))
    fields = draw(st.lists(st.sampled_from(_ANSWER_FIELDS), max_size=5))
    body = draw(st.binary(max_size=8))
    if draw(st.booleans()):
        fields = [f for f in fields if not f.lower().startswith(b"content-length")]
        fields.append(b"Content-Length: %d" % len(body))
    end = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
    return end.join([version + b" " + status, *fields]) + end + end + body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answer=st.one_of(_plain_answers(), _answers()), cut=st.integers(0, 400), whole=st.booleans())
def test_the_answer_scanner_tells_the_relay_what_httptools_tells_it(answer: bytes, cut: int, whole: bool) -> None:
    chunks = [answer] if whole else [answer[: cut % (len(answer) + 1)], answer[cut % (len(answer) + 1) :]]
    assert _answer_events(chunks, fast=True) == _answer_events(chunks, fast=False)


def test_a_plain_answer_is_read_by_the_scanner() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello"
    assert headscan.scan_answer(answer) == (
        len(answer) - 5,
        200,
        [(b"content-type", b"text/html"), (b"content-length", b"5")],
        5,
        True,
    )
    events = _answer_events([answer], fast=True)
    assert events == _answer_events([answer], fast=False)
    assert events[1] == ("done", b"hello", True, True)


# -- rendering heads ------------------------------------------------------------------------------------------------

_FIELD = st.tuples(st.sampled_from([b"host", b"connection", b"x-a", b"cookie", b""]), st.binary(max_size=6))


@settings(max_examples=200, deadline=None)
@given(
    first=st.binary(max_size=8),
    headers=st.lists(_FIELD, max_size=6),
    drop=st.frozensets(st.sampled_from([b"host", b"connection", b"x-b"])),
    tail=st.binary(max_size=8),
    body=st.binary(max_size=8),
)
def test_the_c_renderer_makes_the_bytes_the_python_one_makes(
    first: bytes, headers: list[tuple[bytes, bytes]], drop: frozenset[bytes], tail: bytes, body: bytes
) -> None:
    from floodwall.edge.http import render_message_py

    assert headscan.render(first, headers, drop, tail, body) == render_message_py(first, headers, drop, tail, body)


@settings(max_examples=200, deadline=None)
@given(
    head=_plain_heads(),
    trusted=st.booleans(),
    extra=st.lists(
        st.sampled_from(
            [
                (b"x-forwarded-for", b"198.51.100.1"),
                (b"x-forwarded-proto", b"https"),
                (b"x-forwarded-host", b"cdn.example"),
                (b"connection", b"keep-alive, x-private"),
                (b"x-private", b"1"),
                (b"keep-alive", b"5"),
            ]
        ),
        max_size=3,
    ),
    body=st.binary(max_size=4),
    method=st.sampled_from(["GET", "POST", "DELETE"]),
)
def test_a_relayed_request_is_sent_as_the_origin_fields_rendered(
    head: bytes, trusted: bool, extra: list[tuple[bytes, bytes]], body: bytes, method: str
) -> None:
    from floodwall.edge.forward import origin_headers, origin_request
    from floodwall.edge.upstream import Origin, OriginPool

    scanned = headscan.scan(head, 0)
    if scanned is None:
        return
    base = Request.scanned(scanned, True, "192.0.2.1", 0.0)
    request = Request(method, base.target, base.headers + extra, body, version=base.version, peer="192.0.2.1")
    pool = OriginPool(Origin("127.0.0.1", 8080, False), concurrency=1, timeout_s=1.0)
    expected = pool.request_bytes(method, request.target, origin_headers(request, trusted, "o:8080"), body)
    assert origin_request(request, trusted, "o:8080") == expected
