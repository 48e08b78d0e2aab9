"""The edge's cache for anonymous GET and HEAD: what keeps the site readable while the origin drowns.

A shared cache in the sense of RFC 9111, deliberately small:

- **What is cached.** Only requests without `Authorization`, without cookies (the challenge cookie aside: it says
  nothing about the page) and without `Range` get a key. A response is stored when the origin allows it
  (`no-store`, `private`, `no-cache` and `Set-Cookie` keep it out; we never revalidate, so a `no-cache` page would
  be useless to us) and gives it a lifetime: `s-maxage`, else `max-age`, else `Expires` minus `Date`; without any of
  these, an HTML page of a status cacheable by default (RFC 9111 section 4.2.2) lives `html_ttl_s` (the
  micro-cache: five seconds of cache turn a flood on the front page into one origin request per five seconds).
- **The key** is host, path and query, with the query reduced to `query_keep` when that list is set (a
  cache-busting flood appends random parameters; dropped, they all hit one entry) and without the parameters named
  in `query_drop` (`utm_*`, `fbclid`: whatever the operator lists, nothing guessed), parameters sorted, and the set of
  content codings the client accepts (`br`, `gzip`, `deflate`, `zstd`: at most 16 variants, so a flood cannot
  fragment the cache through `Accept-Encoding`). That last part is what makes `Vary: Accept-Encoding` safe to store;
  any other `Vary` is not stored.
- **Stale pages.** Past its lifetime a page is still served for `stale-while-revalidate` seconds while one
  background request refreshes it, and for `stale-if-error` seconds when the origin fails, or while one request is
  already waiting on a slow origin for it (RFC 5861; the origin's own directives win over the settings, and
  `must-revalidate` turns both off). A newsroom would rather serve a page
  ten minutes old than an error.
- **Coalescing.** Concurrent misses on one key make one origin request; the others wait for its result (nginx's
  `proxy_cache_lock`). When that result may not be stored (a session cookie, `private`), each waiter fetches its
  own: a response meant for one reader is never handed to another.
- **Bounded.** At most `max_bytes` of entries per worker, least recently used first out.

HEAD shares GET's key: the caller fetches a cacheable HEAD miss with GET (as nginx's `proxy_cache_convert_head`
does) and answers with the head alone; `put` refuses what a HEAD request fetched, whose body would be empty.

The rules for one response (may it be stored, how long, how long stale) live in `cacheentry.py`.

The cache is memory in one worker: nothing here reaches the store, so an unreachable store changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from functools import lru_cache
from typing import Any, Final, TypeVar
from urllib.parse import quote, unquote_plus

from floodwall.edge.cacheentry import (
    CachedResponse,
    CacheStatus,
    Freshness,
    RawHeaders,
    build_entry,
    unstored_entry,
)
from floodwall.edge.settings import CacheSettings

__all__ = ["CacheStatus", "CachedResponse", "EdgeCache", "Freshness", "Origin", "RawHeaders"]

T = TypeVar("T")
_log = logging.getLogger(__name__)
#: What the caller's fetch gives `EdgeCache.serve`: status, headers, body.
Origin = tuple[int, RawHeaders, bytes]


_CODINGS: Final = ("br", "deflate", "gzip", "zstd")
#: Cache keys remembered per request (host, target, Accept-Encoding) before the memory is cleared.
_REMEMBERED_KEYS: Final = 4096


@lru_cache(maxsize=4096)
def _accepted_codings(value: bytes | None) -> str:
    """The content codings from `_CODINGS` that an Accept-Encoding value accepts, as one short sorted string."""
    if not value:
        return ""
    accepted = []
    text = value.decode("latin-1").lower()
    for part in text.split(","):
        coding, _, params = part.partition(";")
        coding = coding.strip()
        if coding in _CODINGS or coding == "*":
            q = params.replace(" ", "")
            if q.startswith("q=") and _zero_q(q[2:]):
                continue
            accepted += list(_CODINGS) if coding == "*" else [coding]
    return ",".join(sorted(set(accepted)))


def _zero_q(q: str) -> bool:
    try:
        return float(q) <= 0
    except ValueError:
        return False


class EdgeCache:
    """The cache of one worker. `clock` gives seconds (monotonic): lifetimes are durations, never dates."""

    def __init__(
        self,
        settings: CacheSettings,
        clock: Callable[[], float] = time.monotonic,
        *,
        challenge_cookie: str = "floodwall_pass",
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._wall_clock = wall_clock  # only for Expires and Date, which are dates
        self._challenge_cookie = challenge_cookie
        self._keep = frozenset(settings.query_keep)
        self._drop = frozenset(name for name in settings.query_drop if not name.endswith("*"))
        self._drop_prefixes = tuple(name[:-1] for name in settings.query_drop if name.endswith("*"))
        self._entries: OrderedDict[str, CachedResponse] = OrderedDict()
        self._bytes = 0
        self._fetching: dict[str, asyncio.Future[Any]] = {}
        self._keys: dict[tuple[str, str, bytes | None], str] = {}
        self._refreshing: set[asyncio.Task[Any]] = set()
        self.stats = {"hits": 0, "misses": 0, "stale": 0, "stored": 0, "evicted": 0, "fetches": 0, "refresh_errors": 0}

    # --- the key ------------------------------------------------------------------------------------------------

    def key(self, method: str, host: str, target: str, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        """The cache key of a request, or None when it must go to the origin uncached (not GET or HEAD, an
        `Authorization`, a cookie other than the challenge's, a `Range`, or `Cache-Control: no-store`)."""
        if not self.settings.enabled or method not in ("GET", "HEAD"):
            return None
        encoding: bytes | None = None
        for name, value in headers:
            lower = name.lower()
            if lower == b"accept-encoding":
                encoding = value if encoding is None else encoding + b"," + value
            elif lower in (b"authorization", b"range"):
                return None
            elif lower == b"cookie":
                if not self._only_challenge_cookie(value):
                    return None
            elif lower == b"cache-control" and b"no-store" in value.lower():
                return None
        return self._key(host, target, encoding)

    def key_of(
        self, method: str, host: str, target: str, encoding: bytes | None, cookie: bytes | None, no_store: bool
    ) -> str | None:
        """`key` from the fields already picked out of the request's headers (`floodwall.edge.http.Request`: its
        Accept-Encoding, its Cookie, and whether it had Authorization, Range or `Cache-Control: no-store`), so
        that a request's fields are walked once, not once more per cache lookup."""
        if not self.settings.enabled or no_store or method not in ("GET", "HEAD"):
            return None
        if cookie is not None and not self._only_challenge_cookie(cookie):
            return None
        return self._key(host, target, encoding)

    def _key(self, host: str, target: str, encoding: bytes | None) -> str:
        # Remembered per (host, target, Accept-Encoding): readers ask for the same pages again and again (a flood
        # of cache-busting targets only refills the memory, cleared when full).
        remembered = self._keys.get((host, target, encoding))
        if remembered is not None:
            return remembered
        if len(self._keys) >= _REMEMBERED_KEYS:
            self._keys.clear()
        key = self._keys[host, target, encoding] = self._make_key(host, target, encoding)
        return key

    def _make_key(self, host: str, target: str, encoding: bytes | None) -> str:
        path, question, query = target.partition("?")
        if question:
            query = self._reduce_query(query)
        return f"{host.lower()}\x00{path}\x00{query}\x00{_accepted_codings(encoding)}"

    def _only_challenge_cookie(self, value: bytes) -> bool:
        for pair in value.decode("latin-1").split(";"):
            name = pair.partition("=")[0].strip()
            if name and name != self._challenge_cookie:
                return False
        return True

    def _reduce_query(self, query: str) -> str:
        """Parameters kept (all, or `query_keep`; less `query_drop`), decoded and sorted, then encoded one way: two
        spellings of one query share an entry, and a parameter the site does not read cannot make a new one."""
        pairs = []
        for part in query.split("&"):
            if not part:
                continue
            name, _, value = part.partition("=")
            name = unquote_plus(name)
            if (self._keep and name not in self._keep) or name in self._drop or name.startswith(self._drop_prefixes):
                continue
            pairs.append((name, unquote_plus(value)))
        pairs.sort()
        return "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in pairs)

    # --- lookup and store -----------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def get(self, key: str) -> CachedResponse | None:
        """The entry for `key` whatever its state (the caller asks `state(now)`), or None; marks it recently used.
        An entry past every stale window is dropped here."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.state(self._clock()) is Freshness.EXPIRED:
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def fresh(self, key: str, now: float) -> CachedResponse | None:
        """The entry for `key` when it is fresh at `now` (marked recently used), else None: a hit's whole lookup,
        one dict lookup and one comparison (`get` is for the other states)."""
        entry = self._entries.get(key)
        if entry is None or now >= entry.fresh_until:
            return None
        self._entries.move_to_end(key)
        return entry

    def put(
        self,
        key: str,
        status: int,
        headers: RawHeaders,
        body: bytes,
        request_headers: Iterable[tuple[bytes, bytes]] = (),
        *,
        request_method: str = "GET",
    ) -> bool:
        """Store a response if HTTP allows it; True when stored. `request_headers` are the request's (its own
        `Cache-Control: no-store` keeps the answer out, RFC 9111 section 5.2.1.5)."""
        entry = build_entry(
            self.settings,
            self._clock(),
            self._wall_clock,
            status,
            headers,
            body,
            request_headers,
            request_method=request_method,
        )
        if entry is None:
            return False
        self._remove(key)
        if entry.size > self.settings.max_bytes:
            return False
        self._entries[key] = entry
        self._bytes += entry.size
        while self._bytes > self.settings.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            self.stats["evicted"] += 1
        self.stats["stored"] += 1
        return True

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    # --- coalescing and the serving policy --------------------------------------------------------------------

    def fetching(self, key: str) -> bool:
        """True while a coalesced fetch for `key` runs."""
        return key in self._fetching

    async def coalesce(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        """Run `fetch` once for all concurrent callers with the same key; all get its result or its exception.

        The fetch runs as its own task: a caller that goes away (its reader closed the connection) cancels only its
        own wait, and the result still reaches the others and the cache.
        """
        pending = self._fetching.get(key)
        if pending is None:
            self.stats["fetches"] += 1
            pending = asyncio.ensure_future(fetch())
            self._fetching[key] = pending
            pending.add_done_callback(lambda done: self._forget_fetch(key, done))
        result: T = await asyncio.shield(pending)
        return result

    def _forget_fetch(self, key: str, done: asyncio.Future[Any]) -> None:
        if self._fetching.get(key) is done:  # only this fetch's own entry, never a newer one's
            del self._fetching[key]

    async def serve(
        self,
        key: str,
        fetch: Callable[[], Awaitable[Origin]],
        request_headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> tuple[CachedResponse, CacheStatus]:
        """A response for `key`: fresh from cache (HIT); stale while one background fetch refreshes it (STALE);
        from one coalesced origin fetch (MISS); or, when that fetch raises, stale within `stale-if-error` (STALE).
        The fetch's exception propagates when there is nothing to fall back on.

        A response that may not be stored is still returned (as an entry that was not kept) to the request that
        fetched it; coalesced waiters then fetch their own.
        """
        request_headers = list(request_headers)
        entry = self.get(key)
        now = self._clock()
        if entry is not None:
            state = entry.state(now)
            if state is Freshness.FRESH:
                self.stats["hits"] += 1
                return entry, CacheStatus.HIT
            if state is Freshness.STALE_REVALIDATE:
                self.stats["stale"] += 1
                if not self.fetching(key):
                    task = asyncio.ensure_future(self._refresh(key, fetch, request_headers))
                    self._refreshing.add(task)
                    task.add_done_callback(self._refreshing.discard)
                return entry, CacheStatus.STALE
            if state is Freshness.STALE_IF_ERROR and self.fetching(key):
                # One request is already asking a slow origin: the others get the last good page rather than
                # queue behind it (nginx's `proxy_cache_use_stale updating`).
                self.stats["stale"] += 1
                return entry, CacheStatus.STALE
        self.stats["misses"] += 1
        leader = not self.fetching(key)
        try:
            fetched, stored = await self.coalesce(key, lambda: self._fetch_and_store(key, fetch, request_headers))
            if not stored and not leader:  # the answer was for the leader's reader alone: fetch our own
                fetched, _ = await self._fetch_and_store(key, fetch, request_headers)
        except Exception:
            if entry is not None and entry.state(self._clock()) is not Freshness.EXPIRED:
                self.stats["stale"] += 1
                return entry, CacheStatus.STALE
            raise
        return fetched, CacheStatus.MISS

    async def _fetch_and_store(
        self, key: str, fetch: Callable[[], Awaitable[Origin]], request_headers: list[tuple[bytes, bytes]]
    ) -> tuple[CachedResponse, bool]:
        status, headers, body = await fetch()
        stored = self.put(key, status, headers, body, request_headers)
        entry = self._entries.get(key) if stored else None
        if entry is None:
            entry = unstored_entry(status, headers, body, self._clock())
        return entry, stored

    async def drain(self) -> None:
        """Wait for the background refreshes under way (a graceful stop, and tests)."""
        while self._refreshing:
            await asyncio.gather(*self._refreshing, return_exceptions=True)

    async def _refresh(
        self, key: str, fetch: Callable[[], Awaitable[Origin]], request_headers: list[tuple[bytes, bytes]]
    ) -> None:
        try:
            await self.coalesce(key, lambda: self._fetch_and_store(key, fetch, request_headers))
        except Exception as exc:  # the stale entry keeps serving; a request after its window tries again
            self.stats["refresh_errors"] += 1
            _log.info("cache refresh failed: %s", type(exc).__name__)
