"""HTTP/1.1 vocabulary the edge's parts share: a parsed request, an answer we make ourselves, header helpers.

Headers travel as lists of `(name, value)` byte pairs with the name in lower case (HTTP field names are
case-insensitive, RFC 9110 section 5.1), so a part looks one up without folding case per request, and the server
relays them without decoding. Hop-by-hop fields (RFC 9110 section 7.6.1) are never relayed: each side of the proxy
has its own connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from typing import Any, Final

__all__ = [
    "HOP_BY_HOP",
    "Answer",
    "Headers",
    "Request",
    "find_header",
    "render_head",
    "render_message",
    "render_message_py",
    "status_line",
]

Headers = list[tuple[bytes, bytes]]

#: Fields that describe one connection, not the message (RFC 9110 section 7.6.1, RFC 9112 section 6.1): dropped
#: when relaying, both ways. `Proxy-Connection` is a non-standard one old clients still send.
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

_STATUS_LINES: Final = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode("ascii") for status in HTTPStatus
}


#: The fields noted in `Request`'s one pass over its headers: what the parts, the cache key, the access log and the
#: live rows read (slot numbers, so that the pass is one dict lookup per field).
_HOST, _AGENT, _REFERER, _FORWARDED, _ENCODING, _COOKIE, _PRIVATE, _CONTROL, _CONNECTION = range(9)
_NOTED: Final = {
    b"host": _HOST,
    b"user-agent": _AGENT,
    b"referer": _REFERER,
    b"x-forwarded-for": _FORWARDED,
    b"accept-encoding": _ENCODING,
    b"cookie": _COOKIE,
    b"authorization": _PRIVATE,
    b"range": _PRIVATE,
    b"cache-control": _CONTROL,
    b"connection": _CONNECTION,
}


def status_line(status: int) -> bytes:
    """`HTTP/1.1 200 OK\\r\\n`; an unknown code gets an empty reason phrase, which RFC 9112 section 4 allows."""
    line = _STATUS_LINES.get(status)
    return line if line is not None else f"HTTP/1.1 {status} \r\n".encode("ascii")


def find_header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of field `name` (lower case), or None."""
    for key, value in headers:
        if key == name:
            return value
    return None


def render_head(status: int, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Status line and fields, ending with the blank line."""
    parts = [status_line(status)]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def render_message_py(first: bytes, headers: Headers, drop: frozenset[bytes], tail: bytes, body: bytes) -> bytes:
    """`first` (a request or status line), the fields of `headers` whose names are not in `drop`, `tail` (our own
    fields and the blank line) and `body`, as one bytes object: one write for a head and its body."""
    parts = [first]
    for name, value in headers:
        if name not in drop:
            parts += (name, b": ", value, b"\r\n")
    parts += (tail, body)
    return b"".join(parts)


#: `render_message_py`, in C when `floodwall.edge._headscan` was built (one allocation, no list of parts).
render_message: Callable[[bytes, Headers, frozenset[bytes], bytes, bytes], bytes] = render_message_py
try:
    from floodwall.edge import _headscan
except ImportError:  # pragma: no cover - depends on the build
    pass
else:
    render_message = _headscan.render


class Request:
    """One request as the client sent it, body read in full (at most `max_body_bytes`), plus what the edge learnt.

    `peer` is the TCP peer's address; `client` the reader's address once the client-address part has looked at
    trusted proxies' X-Forwarded-For (the peer itself otherwise). `started` is the loop time of the first byte.
    """

    __slots__ = (
        "accept_encoding",
        "body",
        "cache_key",
        "cache_status",
        "client",
        "connection",
        "cookie",
        "forwarded_for",
        "headers",
        "host",
        "keep_alive",
        "method",
        "no_store",
        "outcome",
        "peer",
        "referer",
        "started",
        "target",
        "upstream_s",
        "upstream_status",
        "user_agent",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: bytes,
        *,
        version: str = "1.1",
        keep_alive: bool = True,
        peer: str = "",
        started: float = 0.0,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.version = version
        self.keep_alive = keep_alive
        self.peer = peer
        self.client = peer
        self.started = started
        # Filled in on the way (for the access log and metrics): the cache key, X-Floodwall-Cache, the metrics
        # outcome slot, and the origin's status and answer time when it was asked.
        self.cache_key: str | None = None
        self.cache_status: str | None = None
        self.outcome = 0
        self.upstream_status: int | None = None
        self.upstream_s: float | None = None
        # The fields the parts, the cache key, the access log and the live rows read, found in one pass (first
        # values, like `header`, except Accept-Encoding and Cookie, whose repeated fields are joined): one walk over
        # the fields per request instead of one per reader of each.
        host = referer = agent = forwarded = encoding = cookie = connection = None
        no_store = False
        noted = _NOTED.get
        for name, value in headers:
            slot = noted(name)
            if slot is None:
                continue
            if slot == _AGENT:
                agent = value if agent is None else agent
            elif slot == _HOST:
                host = value if host is None else host
            elif slot == _ENCODING:
                encoding = value if encoding is None else encoding + b"," + value
            elif slot == _REFERER:
                referer = value if referer is None else referer
            elif slot == _FORWARDED:
                forwarded = value if forwarded is None else forwarded
            elif slot == _COOKIE:
                cookie = value if cookie is None else cookie + b";" + value
            elif slot == _CONNECTION:
                connection = value if connection is None else connection + b"," + value
            elif slot == _PRIVATE or b"no-store" in value.lower():
                no_store = True
        self.host = host.decode("latin-1") if host is not None else ""
        self.user_agent: bytes | None = agent
        self.referer: bytes | None = referer
        self.forwarded_for: bytes | None = forwarded
        #: Accept-Encoding (repeated fields joined with commas) and Cookie (joined with semicolons), for the cache
        #: key; `no_store` when the request may not share a cache entry (Authorization, Range, or its own
        #: `Cache-Control: no-store`: `floodwall.edge.cache`).
        self.accept_encoding: bytes | None = encoding
        self.cookie: bytes | None = cookie
        self.no_store = no_store
        #: The Connection field (repeated ones joined with commas): the hop-by-hop fields it names are not relayed.
        self.connection: bytes | None = connection

    @classmethod
    def scanned(
        cls,
        head: tuple[Any, ...],
        keep_alive: bool,
        peer: str,
        started: float,
    ) -> Request:
        """The request of a head read by the C fast path (`floodwall.edge._headscan.scan`): its fields were noted
        in the same pass, so none is walked again here. No body (the scanner takes none)."""
        request = cls.__new__(cls)
        (
            _,
            request.method,
            request.target,
            request.version,
            _,
            request.headers,
            host,
            request.user_agent,
            request.referer,
            request.forwarded_for,
            request.accept_encoding,
            request.cookie,
            request.connection,
            request.no_store,
        ) = head
        request.body = b""
        request.keep_alive = keep_alive
        request.peer = request.client = peer
        request.started = started
        request.host = host.decode("latin-1") if host is not None else ""
        request.cache_key = request.cache_status = request.upstream_status = request.upstream_s = None
        request.outcome = 0
        return request

    def header(self, name: bytes) -> bytes | None:
        """The first value of field `name` (lower case), or None."""
        return find_header(self.headers, name)

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def __repr__(self) -> str:
        return f"Request({self.method} {self.target!r} HTTP/{self.version})"


class Answer:
    """A response the edge makes itself (403, 429, 502, a challenge page) or serves from its cache.

    `cache` is the value of `X-Floodwall-Cache` (HIT, STALE, MISS) when the answer is the site's content, else None.
    `outcome` is the metrics slot it counts under (`floodwall.edge.metrics`).

    `head`, when set, is the answer's status line and fields already rendered (each line ending in CRLF, the
    blank line left out, `Content-Length` included): a cache entry's, made once when it was stored, so a hit is a
    byte copy. `headers` then lists the fields for whoever inspects the answer, and the connection writes `head`
    followed by `extra_head` (the per-answer `Age` and `X-Floodwall-Cache` lines) instead of rendering `headers`.
    `keepalive_head`, when set, is all of that with the blank line: the head as sent to a kept-alive HTTP/1.1 client.
    """

    __slots__ = ("body", "cache", "extra_head", "head", "headers", "keepalive_head", "outcome", "status")

    def __init__(
        self,
        status: int,
        headers: Headers,
        body: bytes,
        *,
        outcome: int,
        cache: str | None = None,
        head: bytes | None = None,
        extra_head: bytes = b"",
        keepalive_head: bytes | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.outcome = outcome
        self.cache = cache
        self.head = head
        self.extra_head = extra_head
        self.keepalive_head = keepalive_head

    @classmethod
    def text(cls, status: int, message: str, contact: str, *, outcome: int, headers: Headers | None = None) -> Answer:
        """A short human text and the outlet's contact line, as plain text that nobody caches."""
        body = f"{status} {_phrase(status)}\n\n{message}\n\n{contact}\n".encode()
        fields: Headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"cache-control", b"no-store"),
        ]
        if headers:
            fields += headers
        return cls(status, fields, body, outcome=outcome)

    def __repr__(self) -> str:
        return f"Answer({self.status}, cache={self.cache})"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
