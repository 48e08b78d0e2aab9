"""The Protocols the parts of Floodwall share, in one place (like `starlette/types.py`).

- `Clock`: where time comes from. Every TTL, window and expiry takes one, so tests can pass
  `floodwall.testing.FakeClock` instead of waiting (fail2ban's global `MyTime` shows what happens otherwise).
- `Store`: where decisions live (`floodwall.store`: memory, SQLite, Redis), with `Change`, `DecisionRecord`,
  `ChangeFeed` and `Subscription`, the values and handles its methods speak.
- `Enforcer`: where decisions take effect outside the edge (an nginx map include, an nftables set, the edge).

Chosen here once: a clock is a callable with no arguments that returns an *aware* `datetime` in UTC. `Decision`
already holds aware datetimes, so comparing them needs no conversion; code that wants seconds calls
`.timestamp()`. Clocks are wall clocks: for measuring how long something took, use `time.monotonic()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol, runtime_checkable

from floodwall.model import Action, Decision

__all__ = [
    "Change",
    "ChangeFeed",
    "ChangeKind",
    "Clock",
    "DecisionRecord",
    "Enforcer",
    "Store",
    "Subscription",
    "SystemClock",
]


@runtime_checkable
class Clock(Protocol):
    """Returns the current time as an aware `datetime` in UTC."""

    def __call__(self) -> datetime: ...


class SystemClock:
    """The real wall clock, in UTC."""

    def __call__(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


#: `put`: `decision` became the target's current decision. `revoke`: the target's decision was withdrawn.
#: `resync`: changes may have been missed (the store was unreachable); reload `Store.active()`.
ChangeKind = Literal["put", "revoke", "resync"]


@dataclass(frozen=True, slots=True)
class Change:
    """One change to a store's current decisions, as pushed to subscribers."""

    kind: ChangeKind
    target: str  # "" for a resync
    decision: Decision | None = None  # the new decision for a put, the withdrawn one (when known) for a revoke
    reason: str | None = None  # why a revoke was made
    seq: int = 0  # the store's sequence number of this change; 0 when the store has none to give


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """A decision as the store's history keeps it: who decided (`decision.origin`), why, and whether revoked."""

    seq: int  # the store's sequence number of the put, increasing within one store
    decision: Decision
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    revoked_by: str | None = None


class Subscription(Protocol):
    """A live subscription; `close()` stops the callbacks."""

    def close(self) -> None: ...


class ChangeFeed(Protocol):
    """Changes to a store, pulled by the caller. Opened before reading a snapshot, so nothing falls between."""

    def poll(self, timeout_s: float) -> list[Change]:
        """Changes since the last poll, waiting up to `timeout_s` for one; raises `ServiceError` on an outage."""
        ...

    def close(self) -> None: ...


class Store(Protocol):
    """Where decisions live: one current decision per target, a history of all of them, and change notification.

    A put replaces the target's current decision (last writer wins; escalation is policy's business). Decisions
    are returned with their target in canonical form (`10.0.0.1`, `2001:db8::/48`). Methods that reach a
    service raise `floodwall.errors.ServiceError` when it is unreachable: the store never pretends.
    """

    url: str

    def put(self, decisions: Iterable[Decision]) -> list[Decision]: ...

    def revoke(self, target: str, reason: str, by: str = "operator") -> Decision | None: ...

    def get(self, target: str) -> Decision | None: ...

    def active(self, now: datetime | None = None) -> list[Decision]: ...

    def history(
        self, target: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[DecisionRecord]: ...

    def times_decided(self, target: str, since: datetime | None = None, action: Action | None = None) -> int: ...

    def epoch(self) -> str: ...

    def watch(self) -> ChangeFeed: ...

    def subscribe(self, callback: Callable[[Change], None]) -> Subscription: ...

    def close(self) -> None: ...


class Enforcer(Protocol):
    """Makes decisions take effect somewhere (an nginx map include, an nftables set, the edge's memory).

    `apply` adds or replaces decisions by target; `revoke` withdraws whatever holds for those targets. Both may be
    called with many items at once and should batch their work (one reload, one `nft` call).
    """

    def apply(self, decisions: Iterable[Decision]) -> None: ...

    def revoke(self, targets: Iterable[str]) -> None: ...
