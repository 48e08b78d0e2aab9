"""`DecisionCache`: the decisions an enforcer holds in memory, answering "what do we do with this address?".

The edge asks once per request, so `lookup` is a dict lookup for exact addresses plus, when prefix decisions
exist, one dict lookup per distinct prefix length in use (typically two or three: /24, /16, /48). Each length has
its own table keyed by the address' top bits, the "hash per prefix length" form of longest-prefix matching
(Waldvogel et al., "Scalable high speed IP routing lookups", SIGCOMM 1997). In Python that beats walking a radix
tree node by node, and costs nothing for addresses when no prefix is decided.

Where several decisions cover an address (a /24 challenged, one of its addresses banned) the most severe action
wins: a ban inside a challenged prefix must stay a ban. Expired decisions are never answered, whether or not
`prune` has removed them yet.

The cache never talks to a store: `floodwall.store.sync.CacheSync` keeps it in step. When the store is
unreachable the cache goes on answering with what it has (entries still expire on time): it fails *static*.
A cache that never synced answers None for every address, that is, it fails *open*: a newsroom would rather
serve a flood than block its readers.

Addresses are looked up as text in canonical form, as sockets and `normalise_target` give them (`2001:db8::1`,
not `2001:DB8:0::1`).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Final

from floodwall.model import Action, Decision
from floodwall.store.base import checked
from floodwall.store.codec import normalise_target
from floodwall.types import Change, Clock, SystemClock

__all__ = ["DecisionCache"]

_SEVERITY: Final = {Action.OBSERVE: 0, Action.CHALLENGE: 1, Action.BAN: 2}
_BITS: Final = {4: 32, 6: 128}


def _parse_network(target: str) -> tuple[int, int, int] | None:
    """(family, prefix length, top bits) of a CIDR target, or None for a single address."""
    if "/" not in target:
        return None
    address, _, length_text = target.partition("/")
    family = 6 if ":" in address else 4
    packed = socket.inet_pton(socket.AF_INET6 if family == 6 else socket.AF_INET, address)
    length = int(length_text)
    return family, length, int.from_bytes(packed, "big") >> (_BITS[family] - length)


class DecisionCache:
    """Current decisions by target, with `lookup(address)` for the request path. Implements `Enforcer`.

    Writers (the sync thread, an admin call) take a lock; `lookup` takes none: it reads dicts whose single
    operations are atomic, and the tuples of prefix lengths are replaced whole.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._lock = threading.Lock()
        self._decisions: dict[str, Decision] = {}  # every target, canonical
        self._exact: dict[str, Decision] = {}  # single addresses
        self._tables: dict[tuple[int, int], dict[int, Decision]] = {}  # (family, length) -> top bits -> decision
        self._lengths: dict[int, tuple[int, ...]] = {4: (), 6: ()}  # family -> prefix lengths in use
        self._has_prefixes = False

    # -- the request path ------------------------------------------------------------------------------------

    def lookup(self, address: str) -> Action | None:
        """The most severe unexpired action covering `address`, or None. Never raises for a bad address."""
        if not self._has_prefixes:  # the common case: one dict lookup, and the clock only on a hit
            decision = self._exact.get(address)
            if decision is None or decision.expires <= self.clock():
                return None
            return decision.action
        best = self.match(address)
        return best.action if best is not None else None

    def match(self, address: str) -> Decision | None:
        """The decision behind `lookup(address)`: to explain a 403, or to log why."""
        now = self.clock()
        best = self._exact.get(address)
        if best is not None and best.expires <= now:
            best = None
        family = 6 if ":" in address else 4
        lengths = self._lengths[family]
        if lengths:
            try:
                packed = socket.inet_pton(socket.AF_INET6 if family == 6 else socket.AF_INET, address)
            except OSError:
                return best  # not an address: nothing but an exact entry can match it
            value, bits = int.from_bytes(packed, "big"), _BITS[family]
            for length in lengths:
                table = self._tables.get((family, length))
                found = table.get(value >> (bits - length)) if table is not None else None
                if (
                    found is not None
                    and found.expires > now
                    and (best is None or _SEVERITY[found.action] > _SEVERITY[best.action])
                ):
                    best = found
        return best

    # -- keeping it current ----------------------------------------------------------------------------------

    def _add(self, decision: Decision) -> None:
        self._remove(decision.target)
        self._decisions[decision.target] = decision
        network = _parse_network(decision.target)
        if network is None:
            self._exact[decision.target] = decision
            return
        family, length, top = network
        table = self._tables.setdefault((family, length), {})
        table[top] = decision
        if length not in self._lengths[family]:
            self._lengths[family] = tuple(sorted((*self._lengths[family], length)))
            self._has_prefixes = True

    def _remove(self, target: str) -> None:
        if self._decisions.pop(target, None) is None:
            return
        network = _parse_network(target)
        if network is None:
            self._exact.pop(target, None)
            return
        family, length, top = network
        table = self._tables.get((family, length), {})
        table.pop(top, None)
        if not table:
            self._lengths[family] = tuple(n for n in self._lengths[family] if n != length)
            self._tables.pop((family, length), None)
            self._has_prefixes = bool(self._lengths[4] or self._lengths[6])

    def apply(self, decisions: Iterable[Decision]) -> None:
        """Add or replace decisions by target (the `Enforcer` side)."""
        stored = checked(decisions)
        with self._lock:
            for decision in stored:
                self._add(decision)

    def revoke(self, targets: Iterable[str]) -> None:
        """Withdraw whatever holds for `targets` (the `Enforcer` side)."""
        canonical = [normalise_target(target) for target in targets]
        with self._lock:
            for target in canonical:
                self._remove(target)

    def apply_change(self, change: Change) -> None:
        """Follow one change from a store's feed; a `resync` is the sync's business and is ignored here."""
        if change.kind == "put" and change.decision is not None:
            self.apply([change.decision])
        elif change.kind == "revoke":
            self.revoke([change.target])

    def replace(self, decisions: Iterable[Decision]) -> None:
        """Hold exactly `decisions` from now on (a fresh snapshot from the store)."""
        stored = checked(decisions)
        fresh = DecisionCache(self.clock)
        for decision in stored:
            fresh._add(decision)
        with self._lock:
            self._decisions, self._exact, self._tables = fresh._decisions, fresh._exact, fresh._tables
            self._lengths, self._has_prefixes = fresh._lengths, fresh._has_prefixes

    def prune(self, now: datetime | None = None) -> int:
        """Drop decisions expired at `now` (default: the clock); returns how many went."""
        now = now if now is not None else self.clock()
        with self._lock:
            expired = [target for target, decision in self._decisions.items() if decision.expires <= now]
            for target in expired:
                self._remove(target)
        return len(expired)

    def decisions(self) -> list[Decision]:
        """Every decision held, expired or not (until pruned)."""
        with self._lock:
            return list(self._decisions.values())

    def __len__(self) -> int:
        return len(self._decisions)

    def __contains__(self, target: object) -> bool:
        return isinstance(target, str) and target in self._decisions
