"""`redis://host:port/db`: decisions shared by several edge nodes through Redis.

Keys, all under a prefix (`?prefix=NAME`, default `floodwall`):

    PREFIX:epoch              random id written once; a Redis that lost its data gets a new one
    PREFIX:seq                the change sequence (INCR)
    PREFIX:cur:TARGET         the target's current decision, expiring with it (PX = time left by our clock)
    PREFIX:active             sorted set, target -> expiry (seconds since the epoch), to list current decisions
    PREFIX:history            hash, seq -> record (the decision, and who revoked it, when and why)
    PREFIX:by-target:TARGET   sorted set, seq -> creation time, to count repeat offences
    PREFIX:timeline           sorted set, seq -> creation time, to list the history
    PREFIX:changes            pub/sub channel: every put and revoke, as JSON

Changes are pushed by pub/sub (https://redis.io/docs/latest/develop/interact/pubsub/), which delivers at most
once: a subscriber that loses its connection may miss changes, so the feed raises `ServiceError` and its reader
reloads `active()` once reconnected. Redis' own reconnect-and-resubscribe is switched off on the feed's client for
that reason: it would hide the gap.

Failures: every method raises `ServiceError` when Redis is unreachable (after one quick retry); none fails open
silently. Nodes keep enforcing from their `DecisionCache`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Final, cast

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from floodwall.errors import ServiceError
from floodwall.model import Action, Decision
from floodwall.store.base import FeedSubscription, checked, matches_history_filter
from floodwall.store.codec import (
    decision_from_dict,
    decision_to_dict,
    format_time,
    normalise_target,
    parse_time,
)
from floodwall.types import Change, ChangeKind, Clock, DecisionRecord, SystemClock

__all__ = ["RedisStore"]

SOCKET_TIMEOUT_S: Final = 2.0
_CHUNK: Final = 1000


def _client(url: str, retries: int) -> redis.Redis:
    retry = Retry(ExponentialBackoff(cap=0.2, base=0.02), retries) if retries else Retry(NoBackoff(), 0)
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=SOCKET_TIMEOUT_S,
        retry=retry,
    )


def _record_to_json(record: DecisionRecord) -> str:
    return json.dumps(
        {
            "seq": record.seq,
            "decision": decision_to_dict(record.decision),
            "revoked_at": format_time(record.revoked_at) if record.revoked_at else None,
            "revoked_reason": record.revoked_reason,
            "revoked_by": record.revoked_by,
        },
        separators=(",", ":"),
    )


def _record_from_json(text: str) -> DecisionRecord:
    data = json.loads(text)
    revoked_at = data.get("revoked_at")
    return DecisionRecord(
        seq=int(data["seq"]),
        decision=decision_from_dict(data["decision"]),
        revoked_at=parse_time(revoked_at, "revoked_at") if revoked_at is not None else None,
        revoked_reason=data.get("revoked_reason"),
        revoked_by=data.get("revoked_by"),
    )


def _change_from_json(text: str) -> Change:
    data = json.loads(text)
    decision = decision_from_dict(data["decision"]) if data.get("decision") is not None else None
    kind: ChangeKind = "put" if data["kind"] == "put" else "revoke"
    return Change(kind=kind, target=data["target"], decision=decision, reason=data.get("reason"), seq=int(data["seq"]))


def _change_to_json(change: Change) -> str:
    decision = decision_to_dict(change.decision) if change.decision is not None else None
    return json.dumps(
        {
            "kind": change.kind,
            "target": change.target,
            "seq": change.seq,
            "reason": change.reason,
            "decision": decision,
        },
        separators=(",", ":"),
    )


class _PubSubFeed:
    def __init__(self, url: str, channel: str) -> None:
        self._url = url
        self._client = _client(url, retries=0)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            self._pubsub.subscribe(channel)
            # Wait for the subscription to be confirmed, so nothing published after watch() returns is missed.
            deadline = time.monotonic() + SOCKET_TIMEOUT_S
            while not self._pubsub.subscribed and time.monotonic() < deadline:
                self._pubsub.get_message(timeout=0.05)
            if not self._pubsub.subscribed:
                raise ServiceError(f"store {url}: subscription to {channel} not confirmed")
        except redis.RedisError as error:
            self.close()
            raise ServiceError(f"store {url}: {error}") from None

    def poll(self, timeout_s: float) -> list[Change]:
        changes: list[Change] = []
        try:
            message = self._pubsub.get_message(timeout=timeout_s)
            while message is not None:
                if message.get("type") == "message":
                    changes.append(_change_from_json(message["data"]))
                message = self._pubsub.get_message(timeout=0.0)
        except (redis.RedisError, OSError) as error:
            raise ServiceError(f"store {self._url}: change feed lost ({error})") from None
        return changes

    def close(self) -> None:
        try:
            self._pubsub.close()
            self._client.close()
        except (redis.RedisError, OSError):
            pass  # closing a dead connection: nothing left to release


class RedisStore:
    """A `floodwall.types.Store` in Redis, shared by several nodes."""

    def __init__(self, url: str, clock: Clock | None = None, prefix: str = "floodwall") -> None:
        self.url = url
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.prefix = prefix
        self.channel = f"{prefix}:changes"
        self._redis = _client(url, retries=1)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (redis.RedisError, OSError) as error:
            raise ServiceError(f"store {self.url}: {error}") from None

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def put(self, decisions: Iterable[Decision]) -> list[Decision]:
        """Store `decisions`, each replacing its target's current one, and publish them. Raises `ServiceError`."""
        stored = checked(decisions)
        if not stored:
            return stored
        now = self.clock()
        with self._errors():
            last = int(self._redis.incrby(self._key("seq"), len(stored)))
            pipe = self._redis.pipeline(transaction=True)
            for seq, decision in enumerate(stored, start=last - len(stored) + 1):
                ttl_ms = int((decision.expires - now).total_seconds() * 1000)
                created_ts, current = decision.created.timestamp(), self._key("cur", decision.target)
                record = DecisionRecord(seq=seq, decision=decision)
                if ttl_ms > 0:
                    pipe.set(current, _record_to_json(record), px=ttl_ms)
                    pipe.zadd(self._key("active"), {decision.target: decision.expires.timestamp()})
                else:
                    pipe.delete(current)
                    pipe.zrem(self._key("active"), decision.target)
                pipe.hset(self._key("history"), str(seq), _record_to_json(record))
                pipe.zadd(self._key("by-target", decision.target), {str(seq): created_ts})
                pipe.zadd(self._key("timeline"), {str(seq): created_ts})
                pipe.publish(self.channel, _change_to_json(Change("put", decision.target, decision, seq=seq)))
            pipe.zremrangebyscore(self._key("active"), "-inf", now.timestamp())
            pipe.execute()
        return stored

    def revoke(self, target: str, reason: str, by: str = "operator") -> Decision | None:
        """Withdraw `target`'s current unexpired decision; returns it, or None. Raises `ServiceError`."""
        target = normalise_target(target)
        current = self._key("cur", target)
        now = self.clock()
        with self._errors(), self._redis.pipeline(transaction=True) as pipe:
            for _attempt in range(10):
                try:
                    pipe.watch(current)  # type: ignore[no-untyped-call]
                    raw = cast(str | None, pipe.get(current))
                    record = _record_from_json(raw) if raw is not None else None
                    if record is None or record.decision.expires <= now:
                        pipe.unwatch()
                        return None
                    revoked = DecisionRecord(record.seq, record.decision, now, reason, by)
                    pipe.multi()
                    pipe.delete(current)
                    pipe.zrem(self._key("active"), target)
                    pipe.hset(self._key("history"), str(record.seq), _record_to_json(revoked))
                    pipe.incr(self._key("seq"))
                    seq = int(pipe.execute()[-1])
                    break
                except redis.WatchError:
                    continue  # a put for the same target came between; look again
            else:
                raise ServiceError(f"store {self.url}: revoke of {target} kept colliding with writes")
            change = Change("revoke", target, record.decision, reason=reason, seq=seq)
            self._redis.publish(self.channel, _change_to_json(change))
        return record.decision

    def get(self, target: str) -> Decision | None:
        """`target`'s current unexpired decision, else None. Raises `ServiceError`."""
        with self._errors():
            raw = cast(str | None, self._redis.get(self._key("cur", normalise_target(target))))
        if raw is None:
            return None
        decision = _record_from_json(raw).decision
        return decision if decision.expires > self.clock() else None

    def active(self, now: datetime | None = None) -> list[Decision]:
        """Every current decision unexpired at `now` (default: the store's clock). Raises `ServiceError`."""
        now = now if now is not None else self.clock()
        decisions: list[Decision] = []
        with self._errors():
            targets = cast(list[str], self._redis.zrangebyscore(self._key("active"), f"({now.timestamp()}", "+inf"))
            for start in range(0, len(targets), _CHUNK):
                keys = [self._key("cur", target) for target in targets[start : start + _CHUNK]]
                for raw in cast(list[str | None], self._redis.mget(keys)):
                    if raw is not None:
                        decision = _record_from_json(raw).decision
                        if decision.expires > now:
                            decisions.append(decision)
        return decisions

    def _records(self, seqs: list[str]) -> list[DecisionRecord]:
        records: list[DecisionRecord] = []
        for start in range(0, len(seqs), _CHUNK):
            raws = cast(list[str | None], self._redis.hmget(self._key("history"), seqs[start : start + _CHUNK]))
            records.extend(_record_from_json(raw) for raw in raws if raw is not None)
        return records

    def history(
        self, target: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[DecisionRecord]:
        """Every decision put (optionally for one target, created at or after `since`), newest first."""
        key = self._key("by-target", normalise_target(target)) if target is not None else self._key("timeline")
        low = since.timestamp() if since is not None else "-inf"
        with self._errors():
            if limit is not None:
                seqs = self._redis.zrevrangebyscore(key, "+inf", low, start=0, num=limit)
            else:
                seqs = self._redis.zrevrangebyscore(key, "+inf", low)
            records = self._records(cast(list[str], seqs))
        return sorted(records, key=lambda record: record.seq, reverse=True)

    def times_decided(self, target: str, since: datetime | None = None, action: Action | None = None) -> int:
        """How many decisions were ever put for `target` (created at or after `since`, of `action` if given)."""
        key = self._key("by-target", normalise_target(target))
        low = since.timestamp() if since is not None else "-inf"
        with self._errors():
            if action is None:
                return int(self._redis.zcount(key, low, "+inf"))
            records = self._records(cast(list[str], self._redis.zrangebyscore(key, low, "+inf")))
        return sum(1 for record in records if matches_history_filter(record.decision, since, action))

    def epoch(self) -> str:
        """This Redis' data set id; a new one after Redis lost its data (restart without persistence)."""
        with self._errors():
            self._redis.set(self._key("epoch"), uuid.uuid4().hex, nx=True)
            return cast(str, self._redis.get(self._key("epoch")))

    def watch(self) -> _PubSubFeed:
        """A feed of changes published from now on, by any node. Raises `ServiceError`."""
        return _PubSubFeed(self.url, self.channel)

    def subscribe(self, callback: Callable[[Change], None]) -> FeedSubscription:
        """Calls `callback` with each change, from a pub/sub listener thread."""
        return FeedSubscription(self.watch, callback, name="redis")

    def close(self) -> None:
        with self._errors():
            self._redis.close()
