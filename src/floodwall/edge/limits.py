"""Rate limits per client and per prefix, and the cap on requests in flight toward the origin.

Token buckets (what nginx's `limit_req` with `burst nodelay` amounts to): a bucket holds up to `burst` tokens,
refills at `rate` per second, and each request takes one. Over any interval of t seconds a key is allowed at most
`burst + rate * t` requests.

Memory stays bounded: a bucket that has refilled to full says nothing a fresh bucket would not, so it is forgotten
in a sweep that runs when the table has doubled since the last one (amortised O(1) per request). A hard cap on
entries (`max_keys`) evicts the oldest buckets when a flood from more addresses than that keeps them all busy:
those addresses start again with a full bucket, so the cap fails open, never closed on readers.

Every part here is in-process and in-memory: nothing reaches the store, so nothing fails when the store does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from floodwall.edge.settings import LimitSettings

__all__ = ["LimitVerdict", "Limiter", "OriginGate", "TokenBuckets", "prefix_of", "retry_after_header"]

LimitName = Literal["client", "prefix"]
#: Addresses whose prefix is remembered before the memory is cleared.
_REMEMBERED_PREFIXES = 65_536


@lru_cache(maxsize=65_536)
def _prefix_v6(address: str) -> str:
    return str(ipaddress.ip_network(f"{address}/48", strict=False))


def prefix_of(address: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) holding a canonical address, as a CIDR (the Request frame's `client_net`)."""
    if ":" in address:
        try:
            return _prefix_v6(address)
        except ValueError:
            return address
    head, dot, _ = address.rpartition(".")
    return f"{head}.0/24" if dot else address


class TokenBuckets:
    """Token buckets by key, sharing one rate and burst. `rate` may be changed at any time (the under-attack switch);
    tokens already in a bucket are kept, and refill goes on at the new rate."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic, max_keys: int = 1_000_000
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, not {rate} and {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, time of last update]
        self._sweep_at = 1024

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, cost: float = 1.0, now: float | None = None) -> float:
        """Take `cost` tokens from `key`'s bucket: 0.0 when taken, else the seconds until they would be there.
        `now` is the clock's time when the caller has it already."""
        if now is None:
            now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._sweep_at:
                self._sweep(now)
            tokens = self.burst
            bucket = self._buckets[key] = [tokens, now]
        else:
            # min/max spelled out: two builtin calls were a tenth of a cache hit's limit check.
            elapsed = now - bucket[1]
            tokens = bucket[0] + elapsed * self.rate if elapsed > 0.0 else bucket[0]
            if tokens > self.burst:  # noqa: PLR1730 (a builtin call costs more here)
                tokens = self.burst
        if tokens >= cost:
            bucket[0] = tokens - cost
            bucket[1] = now
            return 0.0
        bucket[0] = tokens
        bucket[1] = now
        return (cost - tokens) / self.rate

    def give_back(self, key: str, cost: float = 1.0) -> None:
        """Return tokens taken for a request that another limit then refused."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket[0] = min(self.burst, bucket[0] + cost)

    def _sweep(self, now: float) -> None:
        rate, burst = self.rate, self.burst
        full = [key for key, (tokens, last) in self._buckets.items() if tokens + (now - last) * rate >= burst]
        for key in full:
            del self._buckets[key]
        excess = len(self._buckets) - self._max_keys + 1
        if excess > 0:  # dicts keep insertion order: the oldest buckets go first
            for key in list(self._buckets)[:excess]:
                del self._buckets[key]
        self._sweep_at = max(1024, 2 * len(self._buckets))


@dataclass(frozen=True, slots=True)
class LimitVerdict:
    """Whether a request may go on; when not, which limit it hit and when to retry (for `Retry-After`)."""

    allowed: bool
    limit: LimitName | None = None
    retry_after_s: float = 0.0


_ALLOWED = LimitVerdict(True)


class Limiter:
    """Per-client and per-prefix token buckets. `under_attack = True` multiplies both rates by the settings'
    `under_attack_factor` (bursts stay: a reader opening a page still fetches its assets at once)."""

    def __init__(self, settings: LimitSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self.clients = TokenBuckets(settings.client_rps, settings.client_burst, clock)
        self.prefixes = TokenBuckets(settings.prefix_rps, settings.prefix_burst, clock)
        self._prefix_of: dict[str, str] = {}  # address -> its prefix, remembered (readers come back)
        self._under_attack = False

    @property
    def under_attack(self) -> bool:
        return self._under_attack

    @under_attack.setter
    def under_attack(self, value: bool) -> None:
        factor = self.settings.under_attack_factor if value else 1.0
        self.clients.rate = self.settings.client_rps * factor
        self.prefixes.rate = self.settings.prefix_rps * factor
        self._under_attack = value

    def check(self, address: str) -> LimitVerdict:
        """Count one request from `address` (canonical form) against its own bucket and its prefix's."""
        now = self._clock()
        wait = self.clients.take(address, 1.0, now)
        if wait > 0:
            return LimitVerdict(False, "client", wait)
        prefix = self._prefix_of.get(address)
        if prefix is None:
            if len(self._prefix_of) >= _REMEMBERED_PREFIXES:
                self._prefix_of.clear()
            prefix = self._prefix_of[address] = prefix_of(address)
        wait = self.prefixes.take(prefix, 1.0, now)
        if wait > 0:
            self.clients.give_back(address)
            return LimitVerdict(False, "prefix", wait)
        return _ALLOWED


def retry_after_header(verdict: LimitVerdict) -> bytes:
    """`Retry-After` in whole seconds (RFC 9110 section 10.2.3), at least 1."""
    return str(max(1, math.ceil(verdict.retry_after_s))).encode()


class OriginGate:
    """At most `concurrency` requests in flight toward the origin, and at most `max_queue` waiting for a slot.

    A request that finds the queue full, or waits longer than its timeout, is refused at once (the caller answers
    503 or serves stale): an origin that can serve 500 requests a second is better kept at its pace than buried.
    Waiters are served first come, first served.
    """

    def __init__(self, concurrency: int, max_queue: int = 1024) -> None:
        if concurrency < 1 or max_queue < 0:
            raise ValueError(f"an origin gate needs concurrency >= 1, max_queue >= 0, not {concurrency}, {max_queue}")
        self.concurrency = concurrency
        self.max_queue = max_queue
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @classmethod
    def from_settings(cls, settings: LimitSettings) -> OriginGate:
        return cls(settings.origin_concurrency, settings.origin_queue)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody waits; never waits."""
        if self._in_flight < self.concurrency and not self._waiters:
            self._in_flight += 1
            return True
        return False

    async def acquire(self, timeout_s: float | None = None) -> bool:
        """Take a slot, waiting up to `timeout_s` in the queue; False when refused (queue full or timed out)."""
        if self._in_flight < self.concurrency and not self._waiters:
            self._in_flight += 1
            return True
        if len(self._waiters) >= self.max_queue:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we gave up: pass it on
            else:
                waiter.cancel()
                self._remove(waiter)
            if isinstance(exc, TimeoutError):
                return False
            raise
        return True

    def _remove(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def release(self) -> None:
        """Give a slot back; the first waiter, if any, takes it over (so `in_flight` never drops below the cap while
        someone waits)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._in_flight -= 1
