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


def breach(target: str, hits: dict[str, int], kind: str = "breach-exploit") -> Finding:
    families = ", ".join(sorted(hits))
    return Finding(
        target=target,
        kind=kind,
        score=0.9,
        window_start=NOW - timedelta(minutes=10),
        window_end=NOW,
        reasons=(f"{sum(hits.values())} breach-attempt signature hits ({families})",),
        evidence=(("access.log", 7),),
        breach_hits=tuple(hits.items()),
    )


def test_payloadless_signature_hits_are_observed_and_few_payloads_challenged_without_a_flood() -> None:
    """A config-management client looping on a 404, a malformed user agent and a crawler that followed four broken
    template links are not banned; a payload-sending client and a login brute force are."""
    decisions = Policy().decide(
        [
            breach("192.0.2.1", {"probing": 60}),
            breach("192.0.2.2", {"scanner": 1}),
            breach("192.0.2.3", {"command-injection": 4}),
            breach("192.0.2.4", {"scanner": 10, "sqli": 15, "xss": 6}),
            breach("192.0.2.5", {"probing": 700, "scanner": 40, "sensitive-file": 17}, "breach-scan"),
            breach("192.0.2.6", {"login": 40}, "breach-bruteforce"),
            breach("192.0.2.7", {"scanner": 2}, "signature"),  # the live detector's
        ],
        NOW,
    )
    actions = {d.target: d.action for d in decisions}
    assert actions == {
        "192.0.2.1": Action.OBSERVE,
        "192.0.2.2": Action.OBSERVE,
        "192.0.2.3": Action.CHALLENGE,
        "192.0.2.4": Action.BAN,
        "192.0.2.5": Action.BAN,
        "192.0.2.6": Action.BAN,
        "192.0.2.7": Action.OBSERVE,
    }
    why = {d.target: d.reasons[-1] for d in decisions}
    assert "no breach payload" in why["192.0.2.1"] and "fewer than 5" in why["192.0.2.3"]


def test_a_flood_client_with_payloadless_hits_is_judged_on_its_flood() -> None:
    decisions = Policy().decide([finding("192.0.2.1", 0.95), breach("192.0.2.1", {"scanner": 3})], NOW)
    assert [d.action for d in decisions] == [Action.BAN]


def test_the_policy_reads_hits_per_family_not_the_reason_text() -> None:
    """Only payload hits count toward `min_payload_hits`: a scanner's user agent on every request of a crawl with
    three injection hits is still a challenge; the reason's wording (reworded, translated) changes nothing."""
    many_agent_hits = breach("192.0.2.1", {"scanner": 40, "sqli": 3})
    reworded = Finding(
        target="192.0.2.2",
        kind="breach-exploit",
        score=0.9,
        window_start=NOW - timedelta(minutes=10),
        window_end=NOW,
        reasons=("Signaturtreffer: 2 (Scanner)",),
        breach_hits=(("scanner", 2),),
    )
    decisions = {d.target: d for d in Policy().decide([many_agent_hits, reworded], NOW)}
    assert decisions["192.0.2.1"].action is Action.CHALLENGE
    assert "3 hits (sqli)" in decisions["192.0.2.1"].reasons[-1]
    assert decisions["192.0.2.2"].action is Action.OBSERVE
    assert many_agent_hits.families == frozenset({"scanner", "sqli"})
