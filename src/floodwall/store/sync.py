"""`CacheSync`: keeps a `DecisionCache` in step with a store, and keeps it serving when the store goes away.

The loop: open the store's change feed first, then read a snapshot (so no change falls between the two), then
apply changes as they come. When the store becomes unreachable the outage is logged once, the cache goes on
answering with what it holds (entries still expire on time), and the loop reconnects with exponential backoff;
once back, it reads a fresh snapshot and logs how long the outage lasted.

A store that lost its data while we were away (a Redis restarted without persistence) comes back with a new
`epoch()`. Replacing the cache with its empty snapshot would lift every ban in the middle of an attack, so the
snapshot is then merged into what the cache holds instead, and the old entries run until they expire. The cost:
a revoke made during the outage is not seen on this node until the decision expires (logged).
"""

from __future__ import annotations

import logging
import threading
import time

from floodwall.errors import ServiceError
from floodwall.store.base import Backoff
from floodwall.store.cache import DecisionCache
from floodwall.types import Store

__all__ = ["CacheSync"]

log = logging.getLogger("floodwall.store.sync")

#: How often expired decisions are dropped from the cache (lookups ignore them anyway).
PRUNE_EVERY_S = 5.0


class _Resync(Exception):
    """The feed says changes were missed."""


class CacheSync:
    """Follows `store` into `cache` on a daemon thread. `close()` stops it; the cache stays usable."""

    def __init__(self, store: Store, cache: DecisionCache, *, backoff_max_s: float = 5.0, poll_s: float = 0.2) -> None:
        self.store, self.cache = store, cache
        self.backoff = Backoff(max_s=backoff_max_s)
        self.poll_s = poll_s
        self.outages = 0  # how many times the store went away
        self.syncs = 0  # how many snapshots were loaded
        self._epoch: str | None = None
        self._outage_since: float | None = None
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"floodwall-cache-sync {store.url}", daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout_s: float) -> bool:
        """Wait until a snapshot is loaded and changes are being followed; False on timeout."""
        return self._synced.wait(timeout_s)

    def _follow_once(self) -> None:
        feed = self.store.watch()
        try:
            epoch = self.store.epoch()
            snapshot = self.store.active()
            if self._epoch is not None and epoch != self._epoch:
                log.warning(
                    "store %s lost its data (new epoch); keeping %d cached decisions until they expire, "
                    "revocations made meanwhile are not known here",
                    self.store.url,
                    len(self.cache),
                )
                self.cache.apply(snapshot)
            else:
                self.cache.replace(snapshot)
            self._epoch = epoch
            self.syncs += 1
            self._synced.set()
            self.backoff.reset()
            if self._outage_since is not None:
                elapsed_s, self._outage_since = time.monotonic() - self._outage_since, None
                log.warning("store %s reachable again after %.1f s; cache reloaded", self.store.url, elapsed_s)
            next_prune = time.monotonic() + PRUNE_EVERY_S
            while not self._stop.is_set():
                for change in feed.poll(self.poll_s):
                    if change.kind == "resync":
                        raise _Resync
                    self.cache.apply_change(change)
                if time.monotonic() >= next_prune:
                    self.cache.prune()
                    next_prune = time.monotonic() + PRUNE_EVERY_S
        finally:
            self._synced.clear()
            feed.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow_once()
            except _Resync:
                log.info("store %s: changes were missed, reloading", self.store.url)
            except ServiceError as error:
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                    self.outages += 1
                    log.warning(
                        "store unreachable, enforcing %d cached decisions and reconnecting with backoff: %s",
                        len(self.cache),
                        error,
                    )
                self._stop.wait(self.backoff.next_wait_s())
            except Exception:
                # A bug, not an outage: say so with its cause, keep serving and keep trying (never die silently).
                log.exception("cache sync from %s failed; retrying", self.store.url)
                self._stop.wait(self.backoff.next_wait_s())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
