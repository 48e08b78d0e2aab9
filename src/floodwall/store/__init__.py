"""Where decisions live: one interface (`floodwall.types.Store`), three backends, chosen by URL.

    memory://                       this process only (tests, one-shot tools)
    sqlite:///path/to/file.db       one machine, several processes: the default (`?poll_interval=0.5` seconds)
    sqlite:////absolute/path.db
    redis://host:6379/0             several edge nodes (`?prefix=floodwall` to share one Redis between sites)

Enforcers hold a `DecisionCache` kept current by a `CacheSync`; they never ask the store per request.
Storage is chosen apart from policy, as in alisaifee/limits' `storage_from_string`.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit, urlunsplit

from floodwall.errors import ConfigError
from floodwall.store.cache import DecisionCache
from floodwall.store.codec import (
    FORMAT_VERSION,
    decision_from_dict,
    decision_from_json,
    decision_to_dict,
    decision_to_json,
    normalise_target,
)
from floodwall.store.memory import MemoryStore
from floodwall.store.redis_store import RedisStore
from floodwall.store.sqlite import SQLiteStore
from floodwall.store.sync import CacheSync
from floodwall.types import Clock, Store

__all__ = [
    "FORMAT_VERSION",
    "CacheSync",
    "DecisionCache",
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "decision_from_dict",
    "decision_from_json",
    "decision_to_dict",
    "decision_to_json",
    "normalise_target",
    "store_from_url",
]

SCHEMES = ("memory", "sqlite", "redis", "rediss")


def _one(options: dict[str, list[str]], name: str) -> str | None:
    values = options.pop(name, None)
    return values[-1] if values else None


def store_from_url(url: str, clock: Clock | None = None) -> Store:
    """The store `url` names. Raises `ConfigError` naming the URL for an unknown scheme or option.

    Opening does not contact Redis (the first call does); it creates or opens a SQLite file.
    """
    parts = urlsplit(url)
    options = parse_qs(parts.query, keep_blank_values=True)
    if parts.scheme not in SCHEMES:
        raise ConfigError(f"store URL {url!r}: unknown scheme {parts.scheme!r} (one of {', '.join(SCHEMES)})")
    if parts.scheme in ("redis", "rediss"):
        prefix = _one(options, "prefix") or "floodwall"
        # The rest are redis-py's own options (socket_keepalive, ...), checked by it.
        query = "&".join(f"{name}={value}" for name, values in options.items() for value in values)
        redis_url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
        return RedisStore(redis_url, clock=clock, prefix=prefix)
    interval = _one(options, "poll_interval") if parts.scheme == "sqlite" else None
    if options:
        raise ConfigError(f"store URL {url!r}: unknown option(s) {', '.join(sorted(options))}")
    if parts.scheme == "memory":
        return MemoryStore(clock=clock, url=url)
    path = url.split("?", 1)[0].removeprefix("sqlite:///")
    if not url.startswith("sqlite:///") or not path:
        raise ConfigError(f"store URL {url!r}: expected sqlite:///relative/path.db or sqlite:////absolute/path.db")
    try:
        interval_s = float(interval) if interval is not None else 0.5
    except ValueError:
        raise ConfigError(f"store URL {url!r}: poll_interval={interval!r} is not a number of seconds") from None
    if not 0.001 <= interval_s <= 60:
        raise ConfigError(f"store URL {url!r}: poll_interval={interval_s} must be between 0.001 and 60 seconds")
    return SQLiteStore(path, clock=clock, poll_interval_s=interval_s)
