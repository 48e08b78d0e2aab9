"""`memory://`: decisions in this process only. For tests and single-process tools; lost on exit.

Nothing here can be unreachable, so no method fails: the open/closed question does not arise.
Subscribers are called immediately, on the thread that made the change.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime

from floodwall.model import Action, Decision
from floodwall.store.base import checked, log, matches_history_filter
from floodwall.store.codec import normalise_target
from floodwall.types import Change, Clock, DecisionRecord, SystemClock

__all__ = ["MemoryStore"]


class _QueueFeed:
    def __init__(self, detach: Callable[[_QueueFeed], None]) -> None:
        self.queue: queue.SimpleQueue[Change] = queue.SimpleQueue()
        self._detach = detach

    def poll(self, timeout_s: float) -> list[Change]:
        try:
            changes = [self.queue.get(timeout=timeout_s)]
        except queue.Empty:
            return []
        while True:
            try:
                changes.append(self.queue.get_nowait())
            except queue.Empty:
                return changes

    def close(self) -> None:
        self._detach(self)


class _CallbackSubscription:
    def __init__(self, store: MemoryStore, callback: Callable[[Change], None]) -> None:
        self._store, self.callback = store, callback

    def close(self) -> None:
        self._store._unsubscribe(self)


class MemoryStore:
    """A `floodwall.types.Store` in a dict. Thread-safe."""

    def __init__(self, clock: Clock | None = None, url: str = "memory://") -> None:
        self.url = url
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._lock = threading.Lock()
        self._seq = 0
        self._current: dict[str, int] = {}  # target -> seq of its current decision
        self._records: dict[int, DecisionRecord] = {}
        self._feeds: list[_QueueFeed] = []
        self._subscriptions: list[_CallbackSubscription] = []
        self._epoch = uuid.uuid4().hex

    def _publish(self, changes: list[Change]) -> None:
        with self._lock:
            feeds, subscriptions = list(self._feeds), list(self._subscriptions)
        for change in changes:
            for feed in feeds:
                feed.queue.put(change)
            for subscription in subscriptions:
                try:
                    subscription.callback(change)
                except Exception:
                    log.exception(
                        "store subscriber %r failed on %s of %r", subscription.callback, change.kind, change.target
                    )

    def put(self, decisions: Iterable[Decision]) -> list[Decision]:
        """Store `decisions`, each replacing its target's current one; returns them with canonical targets."""
        stored = checked(decisions)
        changes: list[Change] = []
        with self._lock:
            for decision in stored:
                self._seq += 1
                self._records[self._seq] = DecisionRecord(seq=self._seq, decision=decision)
                self._current[decision.target] = self._seq
                changes.append(Change(kind="put", target=decision.target, decision=decision, seq=self._seq))
        self._publish(changes)
        return stored

    def revoke(self, target: str, reason: str, by: str = "operator") -> Decision | None:
        """Withdraw `target`'s current unexpired decision; returns it, or None when there was none."""
        target = normalise_target(target)
        now = self.clock()
        with self._lock:
            seq = self._current.pop(target, None)
            if seq is None:
                return None
            record = self._records[seq]
            if record.decision.expires <= now:
                return None
            self._records[seq] = dataclasses.replace(record, revoked_at=now, revoked_reason=reason, revoked_by=by)
            self._seq += 1
            change = Change(kind="revoke", target=target, decision=record.decision, reason=reason, seq=self._seq)
        self._publish([change])
        return record.decision

    def get(self, target: str) -> Decision | None:
        """`target`'s current decision if it has not expired, else None."""
        target = normalise_target(target)
        with self._lock:
            seq = self._current.get(target)
            decision = self._records[seq].decision if seq is not None else None
        return decision if decision is not None and decision.expires > self.clock() else None

    def active(self, now: datetime | None = None) -> list[Decision]:
        """Every current decision unexpired at `now` (default: the store's clock)."""
        now = now if now is not None else self.clock()
        with self._lock:
            decisions = [self._records[seq].decision for seq in self._current.values()]
            for decision in decisions:
                if decision.expires <= now:
                    del self._current[decision.target]
        return [decision for decision in decisions if decision.expires > now]

    def history(
        self, target: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[DecisionRecord]:
        """Every decision put (optionally for one target, created at or after `since`), newest first."""
        wanted = normalise_target(target) if target is not None else None
        with self._lock:
            records = [
                record
                for record in reversed(self._records.values())
                if (wanted is None or record.decision.target == wanted)
                and matches_history_filter(record.decision, since, None)
            ]
        return records[:limit] if limit is not None else records

    def times_decided(self, target: str, since: datetime | None = None, action: Action | None = None) -> int:
        """How many decisions were ever put for `target` (created at or after `since`, of `action` if given)."""
        wanted = normalise_target(target)
        with self._lock:
            return sum(
                1
                for record in self._records.values()
                if record.decision.target == wanted and matches_history_filter(record.decision, since, action)
            )

    def epoch(self) -> str:
        return self._epoch

    def watch(self) -> _QueueFeed:
        feed = _QueueFeed(self._detach)
        with self._lock:
            self._feeds.append(feed)
        return feed

    def _detach(self, feed: _QueueFeed) -> None:
        with self._lock:
            if feed in self._feeds:
                self._feeds.remove(feed)

    def subscribe(self, callback: Callable[[Change], None]) -> _CallbackSubscription:
        subscription = _CallbackSubscription(self, callback)
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: _CallbackSubscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def close(self) -> None:
        with self._lock:
            self._feeds.clear()
            self._subscriptions.clear()
