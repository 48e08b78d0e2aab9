"""DecisionCache: what the edge asks per request. Exact addresses, prefixes, severity, expiry, and speed."""

from __future__ import annotations

import ipaddress
import random
import time

from floodwall.model import Action
from floodwall.store import DecisionCache
from floodwall.testing import FakeClock, make_decision


def test_exact_addresses_and_prefixes_of_both_families() -> None:
    clock = FakeClock()
    cache = DecisionCache(clock)
    cache.apply(
        [
            make_decision("203.0.113.7", clock()),
            make_decision("198.51.100.0/24", clock(), action=Action.CHALLENGE),
            make_decision("10.0.0.0/8", clock()),
            make_decision("2001:db8:abcd::/48", clock()),
            make_decision("2001:db8::5", clock(), action=Action.CHALLENGE),
        ]
    )
    assert cache.lookup("203.0.113.7") is Action.BAN
    assert cache.lookup("203.0.113.8") is None
    assert cache.lookup("198.51.100.0") is Action.CHALLENGE
    assert cache.lookup("198.51.100.255") is Action.CHALLENGE
    assert cache.lookup("198.51.101.0") is None
    assert cache.lookup("10.200.3.4") is Action.BAN
    assert cache.lookup("2001:db8:abcd:ffff::1") is Action.BAN
    assert cache.lookup("2001:db8:abce::1") is None
    assert cache.lookup("2001:db8::5") is Action.CHALLENGE
    assert cache.lookup("not an address") is None


def test_the_most_severe_covering_decision_wins() -> None:
    clock = FakeClock()
    cache = DecisionCache(clock)
    cache.apply([make_decision("198.51.100.0/24", clock(), action=Action.CHALLENGE)])
    cache.apply([make_decision("198.51.100.9", clock(), action=Action.BAN)])
    cache.apply([make_decision("198.51.0.0/16", clock(), action=Action.OBSERVE)])
    assert cache.lookup("198.51.100.9") is Action.BAN
    assert cache.lookup("198.51.100.10") is Action.CHALLENGE
    assert cache.lookup("198.51.7.1") is Action.OBSERVE
    match = cache.match("198.51.100.9")
    assert match is not None and match.target == "198.51.100.9"


def test_expired_entries_are_never_answered_and_can_be_pruned() -> None:
    clock = FakeClock()
    cache = DecisionCache(clock)
    cache.apply([make_decision("203.0.113.7", clock(), ttl_s=60), make_decision("192.0.2.0/24", clock(), ttl_s=60)])
    cache.apply([make_decision("192.0.2.128/25", clock(), ttl_s=600)])
    clock.advance(61)
    assert cache.lookup("203.0.113.7") is None
    assert cache.lookup("192.0.2.1") is None
    assert cache.lookup("192.0.2.200") is Action.BAN
    assert cache.prune() == 2
    assert len(cache) == 1


def test_revoke_and_replace() -> None:
    clock = FakeClock()
    cache = DecisionCache(clock)
    cache.apply([make_decision("203.0.113.7", clock()), make_decision("192.0.2.0/24", clock())])
    cache.revoke(["192.0.2.0/24", "203.0.113.7/32"])
    assert cache.lookup("192.0.2.1") is None and cache.lookup("203.0.113.7") is None
    cache.replace([make_decision("2001:db8::/32", clock())])
    assert cache.lookup("2001:db8:1::1") is Action.BAN
    assert len(cache) == 1


def test_lookup_is_fast_with_100k_entries() -> None:
    clock = FakeClock()
    rng = random.Random(7)
    banned = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(100_000)]
    cache = DecisionCache(clock)
    cache.apply(make_decision(address, clock()) for address in banned)
    probes = banned[:50_000] + [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(50_000)]

    started = time.perf_counter()
    hits = sum(1 for address in probes if cache.lookup(address) is not None)
    exact_s = time.perf_counter() - started
    assert hits >= 50_000
    assert exact_s < 1.0, f"100k lookups took {exact_s:.3f} s"

    cache.apply(make_decision(f"100.{n // 256}.{n % 256}.0/24", clock()) for n in range(2_000))
    cache.apply(make_decision(f"2001:db8:{n:x}::/48", clock()) for n in range(2_000))
    started = time.perf_counter()
    for address in probes:
        cache.lookup(address)
    prefixed_s = time.perf_counter() - started
    assert cache.lookup("100.3.4.5") is Action.BAN
    assert prefixed_s < 2.0, f"100k lookups with prefixes took {prefixed_s:.3f} s"
