"""Bans as nftables set elements with per-element timeouts: the kernel drops the packets and forgets on time.

    enforcer = NftablesEnforcer("inet/floodwall/banned")
    enforcer.apply(decisions)         # one `nft -f -` transaction, whatever the number of decisions

`FAMILY/TABLE/SET` names the table and the sets' stem. Four sets are kept, so that an address and a prefix holding
it never meet in one interval set (nftables refuses overlapping intervals): `SET` and `SET6` hold IPv4 and IPv6
addresses, `SET_net` and `SET6_net` (flag `interval`) hold prefixes; every element carries `timeout`, the time
left of its decision. The family `ip` keeps only the IPv4 sets, `ip6` only the IPv6 ones, `inet` both. The table,
sets and a chain `SET_input` (hook input, priority -10, dropping sources found in the sets) are created in the
first transaction if missing; the chain's rules are rewritten there, so running twice never duplicates them.

Only bans are enforced here (the kernel cannot challenge); a decision that is not a ban withdraws the target.
Replacing an element's timeout, and withdrawing one that may be absent, both use `add` then `delete` (then `add`)
within one transaction: `add` of an existing element is a no-op, and `delete` of an absent one an error. That is
three operations per element, so it is kept for elements that may be there: those this enforcer added before, and
every element of its first `apply` (a restart's restore, whose elements the kernel may still hold with an older
timeout). A later ban on a target it never added is one `add` (a third of the work when a flood's addresses
arrive; 100,000 bans measured in benchmarks/bench_watch.py). The cost: an element another writer put in the same
set keeps that writer's timeout.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterable, Sequence
from datetime import datetime

from floodwall.errors import ConfigError, ServiceError
from floodwall.model import Action, Decision
from floodwall.store.codec import normalise_target
from floodwall.types import Clock, SystemClock

__all__ = ["NftablesEnforcer"]

FAMILIES = ("inet", "ip", "ip6")
_PER_LINE = 2000  # elements per `add element` line: keeps each netlink message well under its limits
_COMMAND_TIMEOUT_S = 120.0


class NftablesEnforcer:
    """Keeps nftables sets in step with bans; see the module docstring.

    `nft_command` is the argument list that runs nft (tests prefix it with `ip netns exec NAME`); `-f -` is
    appended. Failures raise `ServiceError` with what nft said.
    """

    def __init__(
        self,
        spec: str = "inet/floodwall/banned",
        *,
        nft_command: Sequence[str] = ("nft",),
        hook: str = "input",
        priority: int = -10,
        clock: Clock | None = None,
    ) -> None:
        parts = spec.split("/")
        if len(parts) != 3 or parts[0] not in FAMILIES or not all(p.isidentifier() for p in parts[1:]):
            raise ConfigError(
                f"nftables target {spec!r}: expected FAMILY/TABLE/SET with FAMILY one of {', '.join(FAMILIES)}"
            )
        self.family, self.table, self.set = parts
        self.nft_command = tuple(nft_command)
        self.hook, self.priority = hook, priority
        self.clock: Clock = clock or SystemClock()
        self.updates = 0
        self._ready = False
        self._applied = False  # the first apply replaces every element, whatever the kernel holds
        self._added: set[str] = set()  # targets this enforcer added and has not withdrawn

    def __repr__(self) -> str:
        return f"NftablesEnforcer({self.family}/{self.table}/{self.set})"

    # -- names ---------------------------------------------------------------------------------------------------

    @property
    def chain(self) -> str:
        return f"{self.set}_input"

    def sets(self) -> dict[str, tuple[str, bool]]:
        """Set name -> (element type, is an interval set), for this family."""
        names: dict[str, tuple[str, bool]] = {}
        if self.family in ("inet", "ip"):
            names[self.set] = ("ipv4_addr", False)
            names[f"{self.set}_net"] = ("ipv4_addr", True)
        if self.family in ("inet", "ip6"):
            names[f"{self.set}6"] = ("ipv6_addr", False)
            names[f"{self.set}6_net"] = ("ipv6_addr", True)
        return names

    def set_for(self, target: str) -> str | None:
        """The set that holds `target`, or None when this family cannot (an IPv6 target in an `ip` table)."""
        network = ipaddress.ip_network(target)
        name = self.set if network.version == 4 else f"{self.set}6"
        if network.prefixlen != network.max_prefixlen:
            name += "_net"
        return name if name in self.sets() else None

    # -- the Enforcer protocol -----------------------------------------------------------------------------------

    def apply(self, decisions: Iterable[Decision]) -> None:
        now = self.clock()
        bans: dict[str, int] = {}
        withdrawn: list[str] = []
        for decision in decisions:
            target = normalise_target(decision.target)
            seconds = _seconds_left(decision, now)
            if decision.action is Action.BAN and seconds > 0:
                bans[target] = seconds
                withdrawn = [t for t in withdrawn if t != target]
            else:
                bans.pop(target, None)
                withdrawn.append(target)
        known = {t: s for t, s in bans.items() if not self._applied or t in self._added}
        lines = self._element_lines("add", [(t, s) for t, s in known.items()])
        lines += self._element_lines("delete", [(t, None) for t in known])
        lines += self._element_lines("add", [(t, s) for t, s in bans.items()])
        lines += self._withdraw_lines(withdrawn)
        self._transaction(lines)
        self._applied = True
        self._added.update(bans)
        self._added.difference_update(withdrawn)

    def revoke(self, targets: Iterable[str]) -> None:
        canonical = [normalise_target(t) for t in targets]
        self._transaction(self._withdraw_lines(canonical))
        self._added.difference_update(canonical)

    def ensure(self) -> None:
        """Create the table, sets and chain now (apply and revoke do it on first use)."""
        self._transaction([])

    # -- inside --------------------------------------------------------------------------------------------------

    def _withdraw_lines(self, targets: list[str]) -> list[str]:
        # `add` with a one-second timeout first, so that `delete` finds the element whether or not it was there.
        return self._element_lines("add", [(t, 1) for t in targets]) + self._element_lines(
            "delete", [(t, None) for t in targets]
        )

    def _element_lines(self, verb: str, elements: list[tuple[str, int | None]]) -> list[str]:
        by_set: dict[str, list[str]] = {}
        for target, seconds in elements:
            name = self.set_for(target)
            if name is not None:
                by_set.setdefault(name, []).append(target if seconds is None else f"{target} timeout {seconds}s")
        lines = []
        for name, items in by_set.items():
            for start in range(0, len(items), _PER_LINE):
                chunk = ", ".join(items[start : start + _PER_LINE])
                lines.append(f"{verb} element {self.family} {self.table} {name} {{ {chunk} }}\n")
        return lines

    def _setup_lines(self) -> list[str]:
        lines = [f"add table {self.family} {self.table}\n"]
        for name, (kind, interval) in self.sets().items():
            flags = "interval, timeout" if interval else "timeout"
            lines.append(f"add set {self.family} {self.table} {name} {{ type {kind}; flags {flags}; }}\n")
        base = f"{self.family} {self.table} {self.chain}"
        lines.append(f"add chain {base} {{ type filter hook {self.hook} priority {self.priority}; policy accept; }}\n")
        lines.append(f"flush chain {base}\n")
        for name, (kind, _) in self.sets().items():
            match = "ip saddr" if kind == "ipv4_addr" else "ip6 saddr"
            lines.append(f"add rule {base} {match} @{name} drop\n")
        return lines

    def _transaction(self, lines: list[str]) -> None:
        if not self._ready:
            lines = self._setup_lines() + lines
        if not lines:
            return
        command = [*self.nft_command, "-f", "-"]
        try:
            done = subprocess.run(
                command,
                input="".join(lines),
                capture_output=True,
                text=True,
                timeout=_COMMAND_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServiceError(f"{self!r}: {' '.join(command)} could not run: {exc}") from None
        if done.returncode != 0:
            said = " ".join(done.stderr.split())[:800]
            raise ServiceError(f"{self!r}: {' '.join(command)} failed (exit {done.returncode}): {said}")
        self._ready = True
        self.updates += 1


def _seconds_left(decision: Decision, now: datetime) -> int:
    """Whole seconds until the decision expires, rounded up (nft timeouts are in seconds; 0 when expired)."""
    left = (decision.expires - now).total_seconds()
    return 0 if left <= 0 else max(1, int(-(-left // 1)))
