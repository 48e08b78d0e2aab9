"""What the three backends share: checking decisions on the way in, and `subscribe` built on a change feed."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime

from floodwall.errors import InputError, ServiceError
from floodwall.model import Action, Decision
from floodwall.store.codec import normalise_target
from floodwall.types import Change, ChangeFeed

__all__ = ["Backoff", "FeedSubscription", "checked", "matches_history_filter"]

log = logging.getLogger("floodwall.store")


def _checked_one(decision: Decision) -> Decision:
    for field in ("created", "expires"):
        when: datetime = getattr(decision, field)
        if when.tzinfo is None or when.utcoffset() is None:
            raise InputError(f"decision field {field!r}: {when!r} has no time zone (use UTC)")
    if not isinstance(decision.action, Action):
        raise InputError(f"decision field 'action': {decision.action!r} is not an Action")
    target = normalise_target(decision.target)
    return decision if target == decision.target else dataclasses.replace(decision, target=target)


def checked(decisions: Iterable[Decision]) -> list[Decision]:
    """`decisions` with canonical targets; `InputError` (naming the field) for one that cannot be stored."""
    return [_checked_one(decision) for decision in decisions]


def matches_history_filter(decision: Decision, since: datetime | None, action: Action | None) -> bool:
    return (since is None or decision.created >= since) and (action is None or decision.action == action)


class Backoff:
    """Exponential waits between reconnection attempts: `first_s`, doubling, capped at `max_s`."""

    def __init__(self, first_s: float = 0.05, max_s: float = 5.0) -> None:
        self.first_s, self.max_s = first_s, max_s
        self._next_s = first_s

    def next_wait_s(self) -> float:
        wait, self._next_s = self._next_s, min(self._next_s * 2, self.max_s)
        return wait

    def reset(self) -> None:
        self._next_s = self.first_s


class FeedSubscription:
    """Calls `callback` with every change from feeds opened by `open_feed`, on a daemon thread.

    When the feed fails (the store is unreachable) the outage is logged once, the feed is reopened with backoff,
    and the callback receives a `resync` change: changes made meanwhile may have been missed. A callback that
    raises is logged with its cause and the subscription goes on (a broken consumer must not stop the others).
    """

    def __init__(self, open_feed: Callable[[], ChangeFeed], callback: Callable[[Change], None], name: str) -> None:
        self._open_feed, self._callback = open_feed, callback
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"floodwall-subscribe-{name}", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=5.0)

    def _deliver(self, change: Change) -> None:
        try:
            self._callback(change)
        except Exception:
            log.exception("store subscriber %r failed on %s of %r", self._callback, change.kind, change.target)

    def _run(self) -> None:
        backoff, outage = Backoff(), False
        while not self._stop.is_set():
            try:
                feed = self._open_feed()
            except ServiceError as error:
                if not outage:
                    log.warning("store unreachable, subscription retrying with backoff: %s", error)
                    outage = True
                self._ready.set()
                self._stop.wait(backoff.next_wait_s())
                continue
            if outage:
                log.warning("store reachable again; subscribers told to resync")
                self._deliver(Change(kind="resync", target=""))
                outage = False
            backoff.reset()
            self._ready.set()
            try:
                while not self._stop.is_set():
                    for change in feed.poll(0.2):
                        self._deliver(change)
            except ServiceError as error:
                log.warning("store unreachable, subscription retrying with backoff: %s", error)
                outage = True
            finally:
                feed.close()

    def close(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5.0)
