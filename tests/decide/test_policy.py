"""Policy: challenge before ban, TTLs that grow, prefixes only when most of their clients are hostile, allowlists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from floodwall.decide import Allowlist, Policy, PolicySettings
from floodwall.model import Action, Finding

NOW = datetime(2023, 9, 1, 8, 0, tzinfo=UTC)


def finding(target: str, score: float, reason: str = "rate 40 rps") -> Finding:
    return Finding(
        target=target,
        kind="flood-client",
        score=score,
        window_start=NOW - timedelta(minutes=1),
        window_end=NOW,
        reasons=(reason,),
        evidence=(("access.log", 12),),
    )


def test_scores_map_to_observe_challenge_ban() -> None:
    decisions = Policy().decide([finding("192.0.2.1", 0.3), finding("192.0.2.2", 0.7), finding("192.0.2.3", 0.95)], NOW)
    assert [d.action for d in decisions] == [Action.OBSERVE, Action.CHALLENGE, Action.BAN]
    assert all(d.reasons and d.evidence for d in decisions)


def test_strongest_finding_wins_and_all_reasons_are_kept() -> None:
    decisions = Policy().decide([finding("192.0.2.1", 0.7, "a"), finding("192.0.2.1", 0.9, "b")], NOW)
    assert len(decisions) == 1
    assert decisions[0].action is Action.BAN
    assert decisions[0].reasons == ("a", "b")


def test_ttl_grows_on_repeat_and_is_capped() -> None:
    settings = PolicySettings(ban_ttl_s=3600, repeat_factor=4, max_ttl_s=10 * 3600)
    first = Policy(settings).decide([finding("192.0.2.1", 0.95)], NOW)[0]
    again = Policy(settings, prior=lambda _t: 1).decide([finding("192.0.2.1", 0.95)], NOW)[0]
    often = Policy(settings, prior=lambda _t: 5).decide([finding("192.0.2.1", 0.95)], NOW)[0]
    assert first.expires - NOW == timedelta(hours=1)
    assert again.expires - NOW == timedelta(hours=4)
    assert often.expires - NOW == timedelta(hours=10)


def test_allowlisted_networks_and_verified_crawlers_are_never_enforced() -> None:
    policy = Policy(allowlist=Allowlist(own_networks=("198.51.100.0/24",)))
    decisions = policy.decide(
        [finding("198.51.100.7", 0.99), finding("66.249.66.1", 0.99), finding("203.0.113.9", 0.99)],
        NOW,
        user_agents={
            "66.249.66.1": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "203.0.113.9": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        },
    )
    actions = {d.target: d.action for d in decisions}
    assert actions == {"198.51.100.7": Action.OBSERVE, "66.249.66.1": Action.OBSERVE, "203.0.113.9": Action.BAN}
    assert "verified crawler googlebot" in decisions[1].reasons[-1]


def test_prefix_ban_only_when_most_active_clients_are_hostile() -> None:
    policy = Policy()
    hostile = [finding(f"203.0.113.{i}", 0.95) for i in range(1, 11)]
    decisions = policy.decide(hostile, NOW)
    networks = {f"203.0.113.{i}": "203.0.113.0/24" for i in range(1, 11)}
    mostly = policy.escalate_prefixes(decisions, {"203.0.113.0/24": 12}, networks)
    shared = policy.escalate_prefixes(decisions, {"203.0.113.0/24": 200}, networks)
    assert [d.target for d in mostly if d.target.endswith("/24")] == ["203.0.113.0/24"]
    assert not [d for d in shared if d.target.endswith("/24")]
