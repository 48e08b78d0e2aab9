"""Policy: findings become decisions (observe, challenge, ban), each with its reasons, evidence and expiry.

- Challenge before ban: a score between `challenge_score` and `ban_score` earns a challenge (a proof of work a
  browser solves and a flood script does not), a higher one a ban.
- TTLs grow on repeat: each earlier decision against the same target multiplies the TTL by `repeat_factor`, up
  to `max_ttl_s`.
- A prefix (/24, /48) is banned as a whole only when most of its active clients are hostile and there are
  enough of them: neighbours on a shared network (a university, a mobile carrier's NAT) are readers too.
- Allowlisted networks and verified crawlers are never challenged or banned; the decision records why.
- Breach findings are weighed by what the client sent, when it took part in no flood: signature hits without a
  payload (a scanner's or malformed user agent, the `probing` of paths answered 4xx: a config-management client
  looping on a missing file looks like this) are observed; fewer than `min_payload_hits` payload hits earn a
  challenge (a crawler following a broken link whose URL holds a template's `${...}` trips CRS 932130 the way a
  shell probe does, and a challenge stops a script as surely as a ban); more payloads, or a login brute force,
  are banned as before. A client that is also part of a flood is judged on its flood findings' scores. The families
  and hit counts come from the finding's `breach_hits` (filled by the breach layer and the live detector), never
  from the wording of its reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from floodwall.decide.allowlist import Allowlist
from floodwall.model import Action, Decision, Finding

__all__ = ["PAYLOADLESS_FAMILIES", "Policy", "PolicySettings"]

#: Signature families that carry no payload: they say who the client claims to be or how it browses, not what it
#: tries to do (`floodwall.detect.signatures.families`; `probing` is the detector's many-4xx-paths behaviour).
PAYLOADLESS_FAMILIES: Final = frozenset({"scanner", "probing"})
#: Login forms and xmlrpc.php: a POST there is a try, judged by how many (a brute force is banned as any attack).
BRUTE_FAMILIES: Final = frozenset({"login", "xmlrpc"})
_FLOOD_KINDS: Final = frozenset({"flood-client", "fleet-member"})


@dataclass(frozen=True)
class PolicySettings:
    """The policy's thresholds; the defaults are safe for a newsroom (a reader is never banned on one signal)."""

    challenge_score: float = 0.6
    ban_score: float = 0.85
    challenge_ttl_s: int = 15 * 60
    ban_ttl_s: int = 60 * 60
    repeat_factor: float = 4.0
    max_ttl_s: int = 7 * 24 * 3600
    prefix_hostile_share: float = 0.75
    prefix_min_hostile: int = 8
    min_payload_hits: int = 5


@dataclass
class Policy:
    """Turns findings into decisions. `prior` tells how many decisions a target already had (from the store)."""

    settings: PolicySettings = field(default_factory=PolicySettings)
    allowlist: Allowlist = field(default_factory=Allowlist)
    prior: Callable[[str], int] = lambda _target: 0

    def _ttl(self, action: Action, target: str) -> timedelta:
        base = self.settings.ban_ttl_s if action is Action.BAN else self.settings.challenge_ttl_s
        seconds = min(base * self.settings.repeat_factor ** self.prior(target), self.settings.max_ttl_s)
        return timedelta(seconds=seconds)

    def action_for(self, score: float) -> Action:
        if score >= self.settings.ban_score:
            return Action.BAN
        if score >= self.settings.challenge_score:
            return Action.CHALLENGE
        return Action.OBSERVE

    def decide(
        self,
        findings: Iterable[Finding],
        now: datetime,
        *,
        site: str | None = None,
        user_agents: Mapping[str, str | None] | None = None,
    ) -> list[Decision]:
        """One decision per target: the strongest finding wins, reasons of all findings are kept."""
        best: dict[str, Finding] = {}
        reasons: dict[str, list[str]] = {}
        evidence: dict[str, list[tuple[str, int]]] = {}
        for finding in findings:
            if finding.target not in best or finding.score > best[finding.target].score:
                best[finding.target] = finding
            reasons.setdefault(finding.target, []).extend(
                r for r in finding.reasons if r not in reasons[finding.target]
            )
            evidence.setdefault(finding.target, []).extend(finding.evidence[:5])
        flooding = {f.target for f in best.values() if f.kind in _FLOOD_KINDS}
        decisions = []
        for target, finding in best.items():
            action = self.action_for(finding.score)
            why = list(reasons[target])
            if target not in flooding:
                action = self._weigh_breach(finding, action, why)
            exempt = self.allowlist.exempt_network(target)
            crawler = self.allowlist.verified_crawler(target, (user_agents or {}).get(target))
            if exempt or crawler:
                action = Action.OBSERVE
                why.append(f"not enforced: {exempt or f'verified crawler {crawler}'}")
            decisions.append(
                Decision(
                    target=target,
                    action=action,
                    created=now,
                    expires=now + self._ttl(action, target),
                    reasons=tuple(why),
                    site=site,
                    origin="floodwall-policy",
                    evidence=tuple(evidence[target][:20]),
                )
            )
        return decisions

    def _weigh_breach(self, finding: Finding, action: Action, why: list[str]) -> Action:
        """The action for a breach finding of a client in no flood (see the module docstring); `why` grows."""
        if not finding.kind.startswith(("breach-", "signature")) or finding.kind == "breach-bruteforce":
            return action
        families = finding.families
        if not families or families <= BRUTE_FAMILIES:
            return action
        counted = {family: hits for family, hits in finding.breach_hits if family not in PAYLOADLESS_FAMILIES}
        payloads, hits = set(counted), sum(counted.values())
        if not payloads:
            if action is not Action.OBSERVE:
                why.append(f"observed, not enforced: no breach payload ({', '.join(sorted(families))} only)")
            return Action.OBSERVE
        if hits < self.settings.min_payload_hits and action is Action.BAN:
            why.append(
                f"challenged, not banned: {hits} hits ({', '.join(sorted(payloads))}), "
                f"fewer than {self.settings.min_payload_hits}, and no flood"
            )
            return Action.CHALLENGE
        return action

    def escalate_prefixes(
        self, decisions: list[Decision], active_clients: Mapping[str, int], network_of: Mapping[str, str | None]
    ) -> list[Decision]:
        """Prefix bans where most active clients of a /24 or /48 are banned; `active_clients` counts per prefix."""
        hostile: dict[str, list[Decision]] = {}
        for decision in decisions:
            network = network_of.get(decision.target)
            if decision.action is Action.BAN and network is not None:
                hostile.setdefault(network, []).append(decision)
        added = []
        for network, members in hostile.items():
            active = active_clients.get(network, len(members))
            share = len(members) / max(active, 1)
            if len(members) < self.settings.prefix_min_hostile or share < self.settings.prefix_hostile_share:
                continue
            if self.allowlist.exempt_network(network):
                continue
            now = min(m.created for m in members)
            added.append(
                Decision(
                    target=network,
                    action=Action.BAN,
                    created=now,
                    expires=now + self._ttl(Action.BAN, network),
                    reasons=(f"{len(members)} of {active} active clients of {network} banned ({share:.0%})",),
                    site=members[0].site,
                    origin="floodwall-policy",
                    evidence=tuple(e for m in members[:4] for e in m.evidence[:2]),
                )
            )
        return decisions + added
