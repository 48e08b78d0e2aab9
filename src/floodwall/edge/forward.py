"""The last two parts of the pipeline: the cache and the origin.

A request with a cache key (anonymous GET or HEAD, `floodwall.edge.cache`) is served by `EdgeCache.serve`: fresh
entries at once, stale ones while one background fetch refreshes them, misses coalesced into one origin request,
and stale pages within `stale-if-error` when the origin fails. A cacheable HEAD is fetched as GET (like nginx's
`proxy_cache_convert_head`) and answered with the head alone. An answer too large to be cached is not buffered: the
request that fetched it streams it, and requests that waited on it fetch their own.

Everything else (POST, a logged-in reader's request) is relayed as a byte copy: the origin's answer streams to the
client piece by piece, with the client's reading speed pausing the origin connection.

Fields toward the origin (RFC 9110 section 7.6.1, and the de-facto X-Forwarded-* fields): hop-by-hop fields and
those named in `Connection` are dropped; `X-Forwarded-For` gets the peer appended when the peer is a trusted proxy
and is replaced by the peer otherwise; `X-Forwarded-Proto` and `X-Forwarded-Host` are kept from trusted proxies and
set by us otherwise. `Host` is the client's (a virtual-host origin needs it), or the origin's when absent.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Final

from floodwall.edge import metrics as outcomes
from floodwall.edge.cache import CachedResponse, CacheStatus, EdgeCache
from floodwall.edge.http import HOP_BY_HOP, Answer, Headers, Request, render_message
from floodwall.edge.upstream import WHOLE_ANSWER_BYTES, OriginConnection, OriginError, OriginPool, OriginResponse

if TYPE_CHECKING:
    from floodwall.edge.clientaddr import ClientAddress
    from floodwall.edge.connection import EdgeConnection

__all__ = ["Forwarder", "origin_headers", "origin_request"]

log = logging.getLogger("floodwall.edge.forward")

_FORWARDED: Final = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"content-length", b"expect", b"host"}
)
#: Seconds a key whose answer could not be stored is passed straight to the origin, and how many keys are kept.
PASS_S: Final = 5.0
_MAX_PASS_KEYS: Final = 10_000
_DROP: Final = _FORWARDED | HOP_BY_HOP
_CONDITIONAL: Final = frozenset(
    {b"if-none-match", b"if-modified-since", b"if-match", b"if-unmodified-since", b"if-range"}
)
#: X-Floodwall-Cache's value and the metrics outcome of an answer from the cache.
_SERVED_AS: Final = {
    CacheStatus.HIT: ("HIT", outcomes.HIT),
    CacheStatus.STALE: ("STALE", outcomes.STALE),
    CacheStatus.MISS: ("MISS", outcomes.MISS),
}
#: The largest answer a callback relay waits for whole before one write (larger ones stream as they come); the
#: answers the origin connection reads whole at once (`origin_whole`) are never larger.
_WHOLE_BYTES: Final = WHOLE_ANSWER_BYTES
#: Fields of the origin's answer not relayed as they are: hop-by-hop ones, and the length, which is set anew.
_RELAY_DROP: Final = HOP_BY_HOP | {b"content-length"}
_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_ORIGIN_FAILED: Final = {
    502: "The site's server did not answer properly. Please try again in a moment.",
    503: "The site is very busy right now. Please try again in a moment.",
    504: "The site's server took too long to answer. Please try again in a moment.",
}


def _dropped(request: Request) -> frozenset[bytes]:
    """The client's fields not relayed: ours to set, hop-by-hop ones, and those its Connection field names."""
    connection = request.connection
    if connection is None or (b"," not in connection and connection.lower() in (b"keep-alive", b"close")):
        return _DROP  # the common case: names only itself
    return _DROP | {token.strip().lower() for token in connection.split(b",")}


def origin_headers(request: Request, trusted_peer: bool, origin_host: str) -> Headers:
    """The fields sent to the origin for `request` (see the module docstring)."""
    drop = _dropped(request)
    fields: Headers = [(name, value) for name, value in request.headers if name not in drop]
    host = request.host.encode("latin-1") if request.host else origin_host.encode("ascii")
    fields.append((b"host", host))
    peer = request.peer.encode("ascii")
    forwarded_for = request.header(b"x-forwarded-for") if trusted_peer else None
    fields.append((b"x-forwarded-for", forwarded_for + b", " + peer if forwarded_for else peer))
    proto = request.header(b"x-forwarded-proto") if trusted_peer else None
    fields.append((b"x-forwarded-proto", proto or b"http"))
    forwarded_host = request.header(b"x-forwarded-host") if trusted_peer else None
    fields.append((b"x-forwarded-host", forwarded_host or host))
    return fields


def origin_request(request: Request, trusted_peer: bool, origin_host: str) -> bytes:
    """The request as sent to the origin: `OriginPool.request_bytes` of `origin_headers`, the same bytes, made in
    one pass (a pass-through's request side was a third of its CPU in the worker)."""
    host = request.host.encode("latin-1") if request.host else origin_host.encode("ascii")
    peer = request.peer.encode("ascii")
    if trusted_peer:
        forwarded_for = request.header(b"x-forwarded-for")
        forwarded = forwarded_for + b", " + peer if forwarded_for else peer
        proto = request.header(b"x-forwarded-proto") or b"http"
        forwarded_host = request.header(b"x-forwarded-host") or host
    else:
        forwarded, proto, forwarded_host = peer, b"http", host
    tail = b"host: %b\r\nx-forwarded-for: %b\r\nx-forwarded-proto: %b\r\nx-forwarded-host: %b\r\n" % (
        host,
        forwarded,
        proto,
        forwarded_host,
    )
    method, body = request.method, request.body
    if body or method in ("POST", "PUT", "PATCH"):
        tail += b"content-length: %d\r\n" % len(body)
    first = f"{method} {request.target} HTTP/1.1\r\n".encode("latin-1")
    return render_message(first, request.headers, _dropped(request), tail + b"\r\n", body)


class _TooLarge(Exception):
    """An answer beyond the cache's object size: handed, unread past `head`, to the request that fetched it."""

    def __init__(self, response: OriginResponse, first: list[bytes]) -> None:
        super().__init__("too large to cache")
        self.response = response
        self.first = first


class _Claim:
    """What one request's fetch started, so a streamed answer is used or released exactly once."""

    __slots__ = ("abandoned", "streaming")

    def __init__(self) -> None:
        self.streaming: _TooLarge | None = None
        self.abandoned = False


class _Relay:
    """One pass-through request relayed by callbacks (`Forwarder.start_now`): the origin's answer, once whole, is
    written to the client in one piece; a large or unframed one is handed to `Forwarder._stream`, as `_relay`
    would have; a failure is answered as `_relay` would (a stale kept-alive connection is retried once)."""

    __slots__ = ("client", "forwarder", "headers", "request", "started", "status")

    def __init__(self, forwarder: Forwarder, request: Request, client: EdgeConnection) -> None:
        self.forwarder = forwarder
        self.request = request
        self.client = client
        self.started = time.monotonic()
        self.status = 0
        self.headers: Headers = []

    def origin_head(self, conn: OriginConnection, status: int, headers: Headers) -> bool:
        request = self.request
        request.upstream_status = status
        request.upstream_s = time.monotonic() - self.started
        length: int | None = None
        for name, value in headers:
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
                break
        if length is not None and length <= _WHOLE_BYTES:
            self.status, self.headers = status, headers
            return True  # small: wait for the rest, then one write
        pool = self.forwarder.pool
        response = pool.response(conn, status, headers)
        self.client.continue_with(request, self.forwarder._stream(request, response, self.client, []))
        return False

    def origin_whole(self, conn: OriginConnection, status: int, headers: Headers, body: bytes) -> None:
        request = self.request
        request.upstream_status = status
        request.upstream_s = time.monotonic() - self.started
        self.status, self.headers = status, headers
        self._done(conn, body)

    def origin_done(self, conn: OriginConnection) -> None:
        self._done(conn, conn.body())

    def _done(self, conn: OriginConnection, body: bytes) -> None:
        request, client = self.request, self.client
        try:
            self.forwarder.pool.finished(conn)
            request.cache_status = "MISS"
            request.outcome = outcomes.SERVED
            status = self.status
            if status in (204, 304):  # no length to give for these: the general way
                headers = [(n, v) for n, v in self.headers if n not in _RELAY_DROP]
                client.start(request, status, headers, len(body), first=body)
                client.finish(request)
            else:
                client.send_relayed(request, status, self.headers, _RELAY_DROP, body)
        except Exception:
            client.failed(request)
            return
        client.answered(request)

    def origin_failed(self, conn: OriginConnection, error: OriginError) -> None:
        request, client, forwarder = self.request, self.client, self.forwarder
        try:
            forwarder.pool.finished(conn)
            stale = error.status == 502 and conn.reused and not conn.got_bytes  # closed while idle, not slow
            if stale and request.method in _IDEMPOTENT:
                client.continue_with(request, forwarder._relay(request, client))  # once more, on a new connection
                return
            request.upstream_s = time.monotonic() - self.started
            forwarder._failed(request, error, client)
        except Exception:
            client.failed(request)
            return
        client.answered(request)


class Forwarder:
    """Cache, then origin. `answer_now` serves fresh hits without a task; `answer_later` does the rest."""

    def __init__(
        self,
        pool: OriginPool,
        cache: EdgeCache | None,
        *,
        contact: str,
        resolver: ClientAddress | None = None,
    ) -> None:
        self.pool = pool
        self.cache = cache
        self.contact = contact
        self._trusted = resolver.trusts_peer if resolver is not None and resolver.trusts_proxies else None
        self.origin_host = pool.origin.host_header
        self._clock = time.monotonic
        self._pass_until: dict[str, float] = {}  # hit-for-pass: keys whose last answer could not be stored
        self.cache_failures = 0
        self._cache_reported = -1e9

    def _trusted_peer(self, request: Request) -> bool:
        return self._trusted is not None and self._trusted(request.peer)

    # -- cache -----------------------------------------------------------------------------------------------

    def answer_now(self, request: Request) -> Answer | None:
        """A fresh cache hit, or None to go on asynchronously."""
        cache = self.cache
        if cache is None:
            return None
        key = cache.key_of(
            request.method, request.host, request.target, request.accept_encoding, request.cookie, request.no_store
        )
        request.cache_key = key
        if key is None:
            return None
        now = self._clock()
        entry = cache.fresh(key, now)
        if entry is None:
            return None
        cache.stats["hits"] += 1
        if entry.status in (204, 304):
            return self._from_cache(entry, CacheStatus.HIT)
        lines, keepalive_head = entry.hit_head(now)
        answer = entry.hit_answer
        if answer is None or answer.extra_head is not lines:  # made once per second of age (the connection
            answer = entry.hit_answer = Answer(  # only reads an answer)
                entry.status,
                entry.headers,
                entry.body,
                outcome=outcomes.HIT,
                cache="HIT",
                head=entry.head,
                extra_head=lines,
                keepalive_head=keepalive_head,
            )
        return answer

    def _from_cache(self, entry: CachedResponse, status: CacheStatus) -> Answer:
        age = entry.age_s(self._clock())
        name, outcome = _SERVED_AS[status]
        if entry.status in (204, 304):  # no Content-Length for these: the fields are rendered per answer
            fields = [*entry.headers, (b"age", b"%d" % age)]
            return Answer(entry.status, fields, entry.body, outcome=outcome, cache=name)
        # The entry's head was rendered when stored: a hit adds two lines and copies bytes.
        return Answer(
            entry.status,
            entry.headers,
            entry.body,
            outcome=outcome,
            cache=name,
            head=entry.head,
            extra_head=b"age: %d\r\nx-floodwall-cache: %b\r\n" % (age, status.value),
        )

    def start_now(self, request: Request, conn: EdgeConnection) -> bool:
        """Start relaying a request that goes to the origin uncached (a POST, a logged-in reader's page, a key
        the origin said not to share) by callbacks, without a task (`OriginPool.start`); True when started, and
        the connection is then told `answered(request)` when done. False: use `answer_later`."""
        key = request.cache_key
        if key is not None:
            if not self._pass_until or self._pass_until.get(key, 0.0) <= self._clock():
                return False  # the cache's business: coalescing, stale pages
            request.cache_key = None
        relay = _Relay(self, request, conn)
        data = origin_request(request, self._trusted_peer(request), self.origin_host)
        return self.pool.start(request.method, data, relay)

    async def answer_later(self, request: Request, conn: EdgeConnection) -> None:
        key = request.cache_key
        if key is not None and self._pass_until and self._pass_until.get(key, 0.0) > self._clock():
            request.cache_key = key = None
        if key is not None and self.cache is not None:
            await self._cached(request, key, self.cache, conn)
        else:
            await self._relay(request, conn)

    async def _cached(self, request: Request, key: str, cache: EdgeCache, conn: EdgeConnection) -> None:
        claim = _Claim()
        started = time.monotonic()

        async def fetch() -> tuple[int, Headers, bytes]:
            # Conditions are the client's business, not the shared entry's: the cache wants the full answer.
            headers = [(n, v) for n, v in self._headers(request) if n not in _CONDITIONAL]
            response = await self.pool.request("GET", request.target, headers, b"")
            try:
                request.upstream_status = response.status
                limit = cache.settings.max_object_bytes
                length = response.content_length()
                parts: list[bytes] = []
                size = 0
                if length is None or length <= limit:
                    while chunk := await response.read():
                        parts.append(chunk)
                        size += len(chunk)
                        if size > limit:
                            break
                    else:
                        response.release()
                        return response.status, response.headers, b"".join(parts)
                if claim.abandoned:
                    raise OriginError(502, "the request that fetched a large answer went away")
                claim.streaming = _TooLarge(response, parts)
            except BaseException:
                response.release()
                raise
            raise claim.streaming

        try:
            entry, status = await cache.serve(key, fetch, request.headers)
        except _TooLarge as big:
            if claim.streaming is big:
                claim.streaming = None
                request.upstream_s = time.monotonic() - started
                await self._stream(request, big.response, conn, big.first)
            else:
                await self._relay(request, conn)  # we waited on someone else's large answer: fetch our own
            return
        except OriginError as error:
            request.upstream_s = time.monotonic() - started
            self._failed(request, error, conn)
            return
        except Exception:  # a bug in the cache: it fails open, the request goes to the origin uncached
            self._cache_failed()
            request.cache_key = None
            await self._relay(request, conn)
            return
        finally:
            claim.abandoned = True
            if claim.streaming is not None:  # fetched by us but the cache served something else (stale)
                claim.streaming.response.release()
                claim.streaming = None
        if status is CacheStatus.MISS:
            request.upstream_s = time.monotonic() - started
            if entry.status < 500 and cache.get(key) is None:
                self._remember_pass(key)
        conn.send_answer(request, self._from_cache(entry, status))

    def _cache_failed(self) -> None:
        self.cache_failures += 1
        now = time.monotonic()
        if now - self._cache_reported >= 10.0:  # its cause once every 10 s at most, never once per request
            self._cache_reported = now
            log.exception("the edge cache failed (fails open: to the origin; %d failures so far)", self.cache_failures)

    def _remember_pass(self, key: str) -> None:
        """The origin said this answer may not be shared (no-store, private, a cookie): for `PASS_S` seconds,
        requests for the key stream straight through instead of queueing behind one another to learn it again
        (Varnish's "hit-for-pass"). Server errors are not remembered: under a flood, coalescing must stay on."""
        if len(self._pass_until) >= _MAX_PASS_KEYS:
            self._pass_until.clear()
        self._pass_until[key] = self._clock() + PASS_S

    # -- origin ----------------------------------------------------------------------------------------------

    def _headers(self, request: Request) -> Headers:
        return origin_headers(request, self._trusted_peer(request), self.origin_host)

    async def _relay(self, request: Request, conn: EdgeConnection) -> None:
        started = time.monotonic()
        try:
            response = await self.pool.request(request.method, request.target, self._headers(request), request.body)
        except OriginError as error:
            request.upstream_s = time.monotonic() - started
            self._failed(request, error, conn)
            return
        request.upstream_status = response.status
        request.upstream_s = time.monotonic() - started
        await self._stream(request, response, conn, [])

    async def _stream(
        self, request: Request, response: OriginResponse, conn: EdgeConnection, first: list[bytes]
    ) -> None:
        """Relay `response` (with `first`, already read) to the client as it comes."""
        started = False
        try:
            request.cache_status = "MISS"
            request.outcome = outcomes.MISS if request.cache_key is not None else outcomes.SERVED
            length = response.content_length()
            headers = [(n, v) for n, v in response.headers if n != b"content-length"]
            # The head goes out with the first piece of the body: one write for most answers.
            pending = b"" if request.method == "HEAD" else (b"".join(first) if first else await response.read())
            conn.start(request, response.status, headers, length, first=pending)
            started = True
            while pending:
                pending = await response.read()
                conn.write(pending)
                await conn.flush()
        except OriginError as error:
            if started:
                conn.abort()  # the head is out: the only way left to say the answer is incomplete
            else:
                self._failed(request, error, conn)
            return
        finally:
            response.release()
        conn.finish(request)

    def _failed(self, request: Request, error: OriginError, conn: EdgeConnection) -> None:
        request.upstream_status = error.status if error.status != 503 else None
        message = _ORIGIN_FAILED.get(error.status, _ORIGIN_FAILED[502])
        conn.send_answer(request, Answer.text(error.status, message, self.contact, outcome=outcomes.ERROR))
