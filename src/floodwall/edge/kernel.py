"""Bans the edge holds, mirrored into the kernel: a banned flood's packets are dropped before any worker sees them.

The accept-time gate (`floodwall.edge.gate`) makes a banned connection cheap, but each one still costs a worker an
accept, a write and a close, at whatever rate the bots reconnect. With `[edge] enforce = ["nftables:FAMILY/TABLE/SET"]`
the supervisor copies its bans into nftables sets (`floodwall.enforce.NftablesEnforcer`: per-element timeouts, so
the kernel forgets on time even if the edge is gone), and a banned address's SYNs are dropped at the input hook.

`KernelDrop` runs in the supervisor on a thread of its own: every `interval_s` it compares the bans in the
supervisor's `DecisionCache` (the store's decisions and the live detector's) with what it handed the kernel, and
sends the difference in one transaction (new or extended bans `apply`, lifted or expired ones `revoke`). Never
handed to the kernel, whatever the decision says:

- the outlet's own and monitors' networks, verified crawlers' published ranges (the request's user agent decides
  there, which the kernel cannot see) and trusted proxies (a CDN's address speaks for its readers): these stay for
  the per-request parts to judge;
- with `enforce_networks` set, any target outside those networks (a benchmark keeps the kernel's hands off every
  address but its flood's).

It fails open (STYLE.md item 7): an nft failure is logged with its cause at most every 10 s and retried at the next
round; the edge's own parts keep enforcing in the meantime.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime

from floodwall.config import Settings
from floodwall.decide.allowlist import Allowlist
from floodwall.enforce import enforcer_from_target
from floodwall.model import Action, Decision
from floodwall.store.cache import DecisionCache
from floodwall.types import Clock, Enforcer, SystemClock

__all__ = ["KernelDrop", "kernel_drop"]

log = logging.getLogger("floodwall.edge.kernel")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)


class KernelDrop:
    """Keeps `enforcers` holding the bans of `cache`; see the module docstring."""

    def __init__(
        self,
        cache: DecisionCache,
        enforcers: Sequence[Enforcer],
        *,
        spared: Iterable[str] = (),
        only: Iterable[str] = (),
        interval_s: float = 0.5,
        clock: Clock | None = None,
    ) -> None:
        self.cache = cache
        self.enforcers = list(enforcers)
        self.spared = _networks(spared)
        self.only = _networks(only)
        self.interval_s = interval_s
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._handed: dict[str, datetime] = {}  # target -> the expiry the kernel was given
        self.rounds = 0
        self.failures = 0
        self._reported = -1e9
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="floodwall-kernel-drop", daemon=True)

    @property
    def handed(self) -> int:
        """How many targets the kernel holds from us."""
        return len(self._handed)

    def eligible(self, target: str) -> bool:
        """Whether a ban on `target` may go to the kernel (not spared, inside `only` when that is set)."""
        try:
            network = ipaddress.ip_network(target, strict=False)
        except ValueError:
            return False
        if any(network.version == s.version and network.overlaps(s) for s in self.spared):
            return False
        return not self.only or any(network.version == o.version and network.subnet_of(o) for o in self.only)  # type: ignore[arg-type]

    def sync_once(self) -> None:
        """Send the kernel what changed since the last round (at most one apply and one revoke per enforcer)."""
        now = self.clock()
        bans: dict[str, Decision] = {}
        for decision in self.cache.decisions():
            if decision.action is Action.BAN and decision.expires > now and self.eligible(decision.target):
                held = bans.get(decision.target)
                if held is None or decision.expires > held.expires:
                    bans[decision.target] = decision
        new = [d for target, d in bans.items() if self._handed.get(target) != d.expires]
        gone = [target for target in self._handed if target not in bans]
        for enforcer in self.enforcers:
            if new:
                enforcer.apply(new)
            if gone:
                enforcer.revoke(gone)
        for decision in new:
            self._handed[decision.target] = decision.expires
        for target in gone:
            del self._handed[target]
        self.rounds += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sync_once()
            except Exception:  # nft refused or is missing: the edge's parts still enforce; retried next round
                self.failures += 1
                now = time.monotonic()
                if now - self._reported >= 10.0:
                    self._reported = now
                    log.exception("kernel drop failed (%d failures so far); the edge keeps enforcing", self.failures)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop following. What the kernel holds stays until its timeouts (a restart finds the bans in place)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)


def kernel_drop(settings: Settings, cache: DecisionCache, clock: Clock | None = None) -> KernelDrop:
    """The supervisor's `KernelDrop` for `[edge] enforce`, sparing what the per-request parts must judge."""
    edge = settings.edge
    allowlist = Allowlist(own_networks=tuple(settings.site.own_networks))
    spared = [
        *allowlist.own_networks,
        *allowlist.monitor_networks,
        *(cidr for _, ranges in allowlist.crawler_ranges.values() for cidr in ranges),
        *edge.trusted_proxies,
    ]
    enforcers = [enforcer_from_target(target, clock=clock) for target in edge.enforce]
    return KernelDrop(cache, enforcers, spared=spared, only=edge.enforce_networks, clock=clock)
