"""The defences in order, as clients meet them: bans, challenges, limits, the allowlist, signatures, failing open.

The edge trusts 127.0.0.0/8 as a proxy here, so each test speaks for any reader it likes through X-Forwarded-For.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from edge_run import EdgeUnderTest, Origin, edge_settings

from floodwall.detect.settings import DetectSettings
from floodwall.edge.cache import CachedResponse, CacheStatus, EdgeCache
from floodwall.edge.challenge import Challenger
from floodwall.edge.clientaddr import ClientAddress
from floodwall.edge.forward import Forwarder
from floodwall.edge.guard import InlineGuard
from floodwall.edge.http import Request
from floodwall.edge.metrics import Metrics
from floodwall.edge.pipeline import Pipeline, default_parts
from floodwall.edge.settings import ChallengeSettings
from floodwall.edge.upstream import OriginPool, parse_origin
from floodwall.model import Action
from floodwall.store.cache import DecisionCache
from floodwall.testing import make_decision

CONTACT = b"help@example-news.org"
SECRET = b"s" * 32
AGENT = "Mozilla/5.0 (reader)"


def _as(address: str, **more: str) -> dict[str, str]:
    return {"X-Forwarded-For": address, "User-Agent": AGENT, **more}


def _decisions(*targets: tuple[str, Action]) -> DecisionCache:
    cache = DecisionCache()
    now = datetime.now(UTC)
    cache.apply([make_decision(target, now, ttl_s=600, action=action) for target, action in targets])
    return cache


def test_a_banned_client_gets_403_with_the_contact_line_and_others_are_served(origin: Origin) -> None:
    decisions = _decisions(("203.0.113.7", Action.BAN), ("198.51.100.0/24", Action.BAN))
    settings = edge_settings(origin.url, trusted_proxies=["127.0.0.0/8"])
    with EdgeUnderTest(settings, decisions=decisions) as edge:
        banned = edge.get("/article", headers=_as("203.0.113.7"))
        in_prefix = edge.get("/article", headers=_as("198.51.100.99"))
        reader = edge.get("/article", headers=_as("192.0.2.10"))
    assert banned[0] == 403 and CONTACT in banned[2]
    assert in_prefix[0] == 403
    assert reader[0] == 200 and reader[2] == b"origin saw /article"
    assert origin.hits["/article"] == 1  # the banned never reached the origin


def test_a_ban_applied_while_running_takes_effect_at_once(origin: Origin) -> None:
    decisions = DecisionCache()
    settings = edge_settings(origin.url, trusted_proxies=["127.0.0.0/8"])
    with EdgeUnderTest(settings, decisions=decisions) as edge:
        assert edge.get("/", headers=_as("203.0.113.8"))[0] == 200
        decisions.apply([make_decision("203.0.113.8", datetime.now(UTC))])
        assert edge.get("/", headers=_as("203.0.113.8"))[0] == 403
        decisions.revoke(["203.0.113.8"])
        assert edge.get("/", headers=_as("203.0.113.8"))[0] == 200


def test_a_challenged_client_gets_the_page_and_passes_with_a_solved_cookie(origin: Origin) -> None:
    decisions = _decisions(("203.0.113.9", Action.CHALLENGE))
    settings = edge_settings(origin.url, trusted_proxies=["127.0.0.0/8"])
    cookie = Challenger(ChallengeSettings(), "x", SECRET).cookie_value("203.0.113.9", AGENT)
    with EdgeUnderTest(settings, decisions=decisions, challenge_secret=SECRET) as edge:
        page = edge.get("/article", headers=_as("203.0.113.9"))
        passed = edge.get("/article", headers=_as("203.0.113.9", Cookie=f"floodwall_pass={cookie}"))
        forged = edge.get("/article", headers=_as("203.0.113.9", Cookie="floodwall_pass=1.AAAA"))
        wrong_verify = edge.get("/.well-known/floodwall/challenge/verify?c=bogus&n=1", headers=_as("203.0.113.9"))
    assert page[0] == 429
    assert page[1]["content-type"].startswith("text/html")
    assert CONTACT in page[2]
    assert passed[0] == 200 and passed[2] == b"origin saw /article"
    assert forged[0] == 429
    assert wrong_verify[0] == 429  # a fresh challenge, never the origin
    assert origin.hits["/article"] == 1


def test_under_attack_every_unverified_client_is_challenged(origin: Origin) -> None:
    settings = edge_settings(origin.url, trusted_proxies=["127.0.0.0/8"], under_attack=True)
    with EdgeUnderTest(settings, decisions=DecisionCache(), challenge_secret=SECRET) as edge:
        status, _, body = edge.get("/", headers=_as("192.0.2.44"))
    assert status == 429 and CONTACT in body


def test_limits_answer_429_with_retry_after_per_client(origin: Origin) -> None:
    settings = edge_settings(origin.url, trusted_proxies=["127.0.0.0/8"], limits={"client_rps": 0.1, "client_burst": 3})
    with EdgeUnderTest(settings, decisions=DecisionCache()) as edge:
        answers = [edge.get("/page", headers=_as("203.0.113.20")) for _ in range(5)]
        other = edge.get("/page", headers=_as("203.0.113.21"))
    assert [a[0] for a in answers] == [200, 200, 200, 429, 429]
    assert int(answers[3][1]["retry-after"]) >= 1
    assert CONTACT in answers[3][2]
    assert other[0] == 200


def test_the_outlets_own_network_is_never_banned_or_limited(origin: Origin) -> None:
    decisions = _decisions(("10.1.2.3", Action.BAN))
    settings = edge_settings(
        origin.url,
        site={"own_networks": ["10.0.0.0/8"]},
        trusted_proxies=["127.0.0.0/8"],
        limits={"client_rps": 0.1, "client_burst": 1},
    )
    with EdgeUnderTest(settings, decisions=decisions) as edge:
        statuses = [edge.get("/", headers=_as("10.1.2.3"))[0] for _ in range(3)]
    assert statuses == [200, 200, 200]


def test_inline_signatures_refuse_an_injection_before_the_origin(origin: Origin) -> None:
    guard = InlineGuard.from_settings(DetectSettings())
    with EdgeUnderTest(edge_settings(origin.url), guard=guard) as edge:
        attack = edge.get("/search?q=1%27%20union%20select%20password%20from%20users--")
        reader = edge.get("/search?q=elections")
    assert attack[0] == 403 and CONTACT in attack[2]
    assert reader[0] == 200
    assert origin.hits["/search"] == 1


class _BrokenPart:
    """A part with a bug: the pipeline must let the request through (fails open) and count the failure."""

    name = "broken"
    fails = "open"

    def __call__(self, request: Request) -> None:
        raise RuntimeError("a bug in a part")


def test_a_failing_part_fails_open_and_is_counted() -> None:
    parts, before_origin = default_parts(
        contact="c", resolver=ClientAddress([]), allowlist=None, decisions=DecisionCache(), limiter=None
    )
    pool = OriginPool(parse_origin("http://127.0.0.1:9"), concurrency=1, timeout_s=1)
    pipeline = Pipeline([*parts, _BrokenPart()], Forwarder(pool, None, contact="c"), "c", before_origin)
    request = Request("GET", "/", [(b"host", b"a")], b"", peer="192.0.2.1")
    assert pipeline.answer_now(request) is None  # nothing stopped it: on to the origin
    assert pipeline.answer_now(request) is None
    assert pipeline.failures == {"broken": 2}


def test_parts_are_listed_in_the_documented_order() -> None:
    parts, before_origin = default_parts(
        contact="c",
        resolver=ClientAddress([]),
        allowlist=None,
        decisions=DecisionCache(),
        limiter=None,
        challenger=Challenger(ChallengeSettings(), "c", SECRET),
        guard=InlineGuard.from_settings(DetectSettings()),
    )
    assert [p.name for p in parts] == ["client address", "challenge route", "decision"]
    assert [p.name for p in before_origin] == ["signatures"]


def test_outcomes_are_counted_for_prometheus(origin: Origin) -> None:
    metrics = Metrics()
    decisions = _decisions(("203.0.113.66", Action.BAN))
    settings = edge_settings(origin.url, trusted_proxies=["127.0.0.0/8"])
    with EdgeUnderTest(settings, decisions=decisions, metrics=metrics) as edge:
        edge.get("/cached/a", headers=_as("192.0.2.1"))
        edge.get("/cached/a", headers=_as("192.0.2.1"))
        edge.get("/plain", headers=_as("192.0.2.1", Cookie="s=1"))
        edge.get("/", headers=_as("203.0.113.66"))
    text = metrics.render().decode()
    for outcome, count in (("miss", 1), ("hit", 1), ("served", 1), ("banned", 1)):
        assert f'floodwall_requests_total{{outcome="{outcome}"}} {count}' in text
    assert "floodwall_origin_inflight 0" in text


def test_a_verified_crawler_passes_a_ban_on_its_network_but_an_impostor_does_not(origin: Origin) -> None:
    decisions = _decisions(("66.249.64.0/19", Action.BAN), ("203.0.113.80", Action.BAN))
    settings = edge_settings(origin.url, trusted_proxies=["127.0.0.0/8"])
    googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    with EdgeUnderTest(settings, decisions=decisions) as edge:
        crawler = edge.get("/", headers={"X-Forwarded-For": "66.249.66.1", "User-Agent": googlebot})
        impostor = edge.get("/", headers={"X-Forwarded-For": "203.0.113.80", "User-Agent": googlebot})
    assert crawler[0] == 200
    assert impostor[0] == 403


class _BrokenCache(EdgeCache):
    """A cache with a bug in its serving policy: the request must still reach the origin (the cache fails open)."""

    async def serve(self, *args: object, **kwargs: object) -> tuple[CachedResponse, CacheStatus]:
        raise RuntimeError("a bug in the cache")


def test_a_failing_cache_fails_open_to_the_origin(origin: Origin, caplog: pytest.LogCaptureFixture) -> None:
    settings = edge_settings(origin.url)
    with EdgeUnderTest(settings) as edge:
        assert edge.worker is not None
        forwarder = edge.worker.server.pipeline.forwarder
        forwarder.cache = _BrokenCache(settings.edge.cache)
        first = edge.get("/cached/broken")
        second = edge.get("/cached/broken")
    assert first[0] == second[0] == 200
    assert origin.hits["/cached/broken"] == 2
    assert forwarder.cache_failures == 2
    assert [r.name for r in caplog.records if r.levelname == "ERROR"] == ["floodwall.edge.forward"]  # logged once
