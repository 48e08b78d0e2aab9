"""One cached response and the HTTP rules that decide whether and how long it may be kept (RFC 9111, RFC 5861).

`floodwall.edge.cache` holds the entries, makes keys and coalesces fetches; this module only answers, for one
response, "may a shared cache store it, for how long, and how long may it serve it stale?", and serialises the
head once so that a hit is a byte copy.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Final

from floodwall.edge.http import HOP_BY_HOP, Answer
from floodwall.edge.settings import CacheSettings

__all__ = [
    "HEURISTIC_STATUSES",
    "CacheStatus",
    "CachedResponse",
    "Freshness",
    "RawHeaders",
    "build_entry",
    "unstored_entry",
]

RawHeaders = list[tuple[bytes, bytes]]


class Freshness(enum.Enum):
    FRESH = "fresh"
    STALE_REVALIDATE = "stale-while-revalidate"  # serve it, and refresh in the background
    STALE_IF_ERROR = "stale-if-error"  # serve it only if the origin fails
    EXPIRED = "expired"


class CacheStatus(enum.Enum):
    """What `X-Floodwall-Cache` says (CONTRACT.md): HIT, MISS or STALE."""

    HIT = b"HIT"
    MISS = b"MISS"
    STALE = b"STALE"


#: RFC 9111 section 4.2.2 (heuristically cacheable, from RFC 9110 section 15.1), less 206: we store no ranges.
HEURISTIC_STATUSES: Final = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
#: Never stored whatever the origin says: partial, not modified, and informational answers.
_NEVER: Final = frozenset({206, 304})
#: Hop-by-hop headers (RFC 9110 section 7.6.1) and the ones rewritten when the entry is served.
_DROP: Final = HOP_BY_HOP | {b"content-length", b"age", b"x-floodwall-cache"}
_DIRECTIVE: Final = re.compile(r'\s*([A-Za-z-]+)\s*(?:=\s*"?([^",]*)"?)?\s*(?:,|$)')
_ENTRY_OVERHEAD: Final = 200  # bytes per entry besides body and head, roughly (objects, key)


@dataclass(slots=True, eq=False)
class CachedResponse:
    """One stored response, with its head serialised once so a hit is a byte copy.

    `head` is the status line and the stored headers, `Content-Length` included, without the final blank line: the
    server appends `Age`, `X-Floodwall-Cache` and its connection headers, then `\\r\\n` and the body (`wire` does
    it all).
    """

    status: int
    headers: RawHeaders
    body: bytes
    head: bytes
    stored_at: float  # clock time when stored
    initial_age_s: float  # the origin's Age header (RFC 9111 section 4.2.3)
    fresh_until: float
    revalidate_until: float
    error_until: float
    size: int = field(default=0)
    #: A fresh hit's per-answer head lines, made once per second of age rather than once per hit (`hit_head`).
    hit_age: int = field(default=-1)
    hit_lines: bytes = field(default=b"")
    hit_keepalive_head: bytes = field(default=b"")
    #: The edge's whole answer for a fresh hit, made with `hit_lines` (the forwarder's, reused while they hold).
    hit_answer: Answer | None = field(default=None)

    def state(self, now: float) -> Freshness:
        if now < self.fresh_until:
            return Freshness.FRESH
        if now < self.revalidate_until:
            return Freshness.STALE_REVALIDATE
        if now < self.error_until:
            return Freshness.STALE_IF_ERROR
        return Freshness.EXPIRED

    def age_s(self, now: float) -> int:
        return int(self.initial_age_s + max(0.0, now - self.stored_at))

    def hit_head(self, now: float) -> tuple[bytes, bytes]:
        """A HIT's `Age` and `X-Floodwall-Cache` lines, and the whole head of a kept-alive HTTP/1.1 answer (`head`,
        those lines, the blank line); remade when the age in whole seconds changes, so under a flood on one page
        a hit formats nothing."""
        age = int(self.initial_age_s + max(0.0, now - self.stored_at))
        if age != self.hit_age:
            lines = b"age: %d\r\nx-floodwall-cache: HIT\r\n" % age
            self.hit_lines = lines
            self.hit_keepalive_head = self.head + lines + b"\r\n"
            self.hit_age = age
        return self.hit_lines, self.hit_keepalive_head

    def wire(self, now: float, cache_status: CacheStatus, *, include_body: bool = True, extra: bytes = b"") -> bytes:
        """The whole response as bytes; `extra` is more header lines, each ending in CRLF."""
        tail = b"Age: %d\r\nX-Floodwall-Cache: %s\r\n%s\r\n" % (self.age_s(now), cache_status.value, extra)
        return self.head + tail + self.body if include_body else self.head + tail

    def not_modified(self, request_headers: Iterable[tuple[bytes, bytes]]) -> bool:
        """True when the request's own conditions say its copy is this one, so a 304 will do (RFC 9110 section
        13.2.2: `If-None-Match`, compared weakly, wins over `If-Modified-Since`)."""
        none_match = modified_since = None
        for name, value in request_headers:
            lower = name.lower()
            if lower == b"if-none-match":
                none_match = value if none_match is None else none_match + b"," + value
            elif lower == b"if-modified-since":
                modified_since = value
        if none_match is None and modified_since is None:
            return False
        fields = {name.lower(): value for name, value in self.headers}
        if none_match is not None:
            etag = fields.get(b"etag")
            if etag is None:
                return False
            wanted = {tag.strip().removeprefix(b"W/") for tag in none_match.split(b",")}
            return b"*" in wanted or etag.strip().removeprefix(b"W/") in wanted
        since, modified = _http_date(modified_since), _http_date(fields.get(b"last-modified"))
        return since is not None and modified is not None and modified <= since

    def wire_not_modified(self, now: float, cache_status: CacheStatus, extra: bytes = b"") -> bytes:
        """A 304 for this entry: the validators and caching fields only (RFC 9110 section 15.4.5), no body."""
        kept = [(n, v) for n, v in self.headers if n.lower() in _NOT_MODIFIED_FIELDS]
        lines = [b"HTTP/1.1 304 Not Modified", *(n + b": " + v for n, v in kept)]
        return b"\r\n".join(lines) + b"\r\nAge: %d\r\nX-Floodwall-Cache: %s\r\n%s\r\n" % (
            self.age_s(now),
            cache_status.value,
            extra,
        )


#: What a 304 carries from the stored answer (RFC 9110 section 15.4.5).
_NOT_MODIFIED_FIELDS: Final = frozenset(
    {b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary", b"last-modified"}
)


def _directives(values: Iterable[bytes]) -> dict[str, str | None]:
    """Cache-Control directives (RFC 9111 section 5.2), names lower-cased; the first occurrence wins."""
    found: dict[str, str | None] = {}
    for raw in values:
        for match in _DIRECTIVE.finditer(raw.decode("latin-1")):
            name = match.group(1).lower()
            if name and name not in found:
                found[name] = match.group(2)
    return found


def _seconds(value: str | None) -> float | None:
    """A delta-seconds value; None when absent or invalid (an invalid max-age makes the response stale, which for
    us means not stored: RFC 9111 section 4.2.1)."""
    text = value.strip() if value is not None else ""
    # ASCII digits only: `isdigit` is also true of superscripts ("¹" in a latin-1 field), which float() refuses.
    if not text.isascii() or not text.isdigit():
        return None
    return float(text)


def _http_date(value: bytes | None) -> float | None:
    if value is None:
        return None
    try:
        return parsedate_to_datetime(value.decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _status_line(status: int) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    return f"HTTP/1.1 {status} {reason}".encode("latin-1")


def build_entry(
    settings: CacheSettings,
    now: float,
    wall_now: Callable[[], float],
    status: int,
    headers: RawHeaders,
    body: bytes,
    request_headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    request_method: str = "GET",
) -> CachedResponse | None:
    """The entry to store for this response at clock time `now`, or None when it may not be stored (RFC 9111
    section 3). `wall_now` gives the date, for an `Expires` without `Date`."""
    if not settings.enabled or request_method != "GET" or status in _NEVER or status < 200:
        return None
    if len(body) > settings.max_object_bytes:
        return None
    for name, value in request_headers:
        if name.lower() == b"cache-control" and b"no-store" in value.lower():
            return None
    control: list[bytes] = []
    kept: RawHeaders = []
    expires = date = content_type = None
    age = 0.0
    for name, value in headers:
        lower = name.lower()
        if lower == b"set-cookie":
            return None
        if lower == b"vary":
            fields = {v.strip().lower() for v in value.split(b",") if v.strip()}
            if fields - {b"accept-encoding"}:
                return None
        elif lower == b"cache-control":
            control.append(value)
        elif lower == b"expires":
            expires = value
        elif lower == b"date":
            date = value
        elif lower == b"content-type":
            content_type = value
        elif lower == b"age":
            age = _seconds(value.decode("latin-1")) or 0.0
        if lower not in _DROP:
            kept.append((name, value))
    directives = _directives(control)
    if "no-store" in directives or "private" in directives or "no-cache" in directives:
        return None
    lifetime = _lifetime(settings, status, directives, expires, date, content_type, wall_now)
    if lifetime is None:
        return None
    lifetime -= age
    must_revalidate = "must-revalidate" in directives or "proxy-revalidate" in directives
    revalidate = _seconds(directives.get("stale-while-revalidate", ""))
    if_error = _seconds(directives.get("stale-if-error", ""))
    if revalidate is None:
        revalidate = settings.stale_while_revalidate_s
    if if_error is None:
        if_error = settings.stale_if_error_s
    if must_revalidate:
        revalidate = if_error = 0.0
    if lifetime <= 0 and revalidate <= 0 and if_error <= 0:
        return None
    fresh_until = now + lifetime
    head = b"\r\n".join([_status_line(status), *(n + b": " + v for n, v in kept), b"Content-Length: %d" % len(body)])
    return CachedResponse(
        status=status,
        headers=kept,
        body=body,
        head=head + b"\r\n",
        stored_at=now,
        initial_age_s=age,
        fresh_until=fresh_until,
        revalidate_until=fresh_until + revalidate,
        error_until=fresh_until + max(revalidate, if_error),
        size=len(body) + len(head) + _ENTRY_OVERHEAD,
    )


def _lifetime(
    settings: CacheSettings,
    status: int,
    directives: dict[str, str | None],
    expires: bytes | None,
    date: bytes | None,
    content_type: bytes | None,
    wall_now: Callable[[], float],
) -> float | None:
    """The freshness lifetime in seconds (RFC 9111 section 4.2.1), or None when the response is not stored."""
    for name in ("s-maxage", "max-age"):
        if name in directives:
            return _seconds(directives[name])
    if expires is not None:
        expiry = _http_date(expires)
        if expiry is None:
            return None  # an invalid Expires means "already expired" (RFC 9111 section 5.3)
        origin_now = _http_date(date) or wall_now()
        return expiry - origin_now
    if status in HEURISTIC_STATUSES and content_type is not None and b"text/html" in content_type.lower():
        return settings.html_ttl_s if settings.html_ttl_s > 0 else None
    return None


def unstored_entry(status: int, headers: RawHeaders, body: bytes, now: float) -> CachedResponse:
    """A response that was not stored, in the same shape, for the one request that fetched it."""
    kept = [(n, v) for n, v in headers if n.lower() not in _DROP]
    head = b"\r\n".join([_status_line(status), *(n + b": " + v for n, v in kept), b"Content-Length: %d" % len(body)])
    return CachedResponse(status, kept, body, head + b"\r\n", now, 0.0, now, now, now, 0)
