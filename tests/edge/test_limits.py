"""Token buckets per client and per prefix, the under-attack switch, and the cap toward the origin."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from floodwall.edge.limits import Limiter, OriginGate, TokenBuckets, prefix_of, retry_after_header
from floodwall.edge.settings import LimitSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.5, 50),
    burst=st.integers(1, 30),
    gaps=st.lists(st.floats(0, 0.5), min_size=1, max_size=300),
)
def test_a_bucket_never_allows_more_than_burst_plus_rate_times_the_interval(
    rate: float, burst: int, gaps: list[float]
) -> None:
    clock = Clock()
    buckets = TokenBuckets(rate, burst, clock)
    allowed: list[float] = []
    for gap in gaps:
        clock.now += gap
        if buckets.take("client") == 0.0:
            allowed.append(clock.now)
    for i in range(len(allowed)):
        for j in range(i, len(allowed)):
            assert j - i + 1 <= burst + rate * (allowed[j] - allowed[i]) + 1e-6


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(0.5, 50), burst=st.integers(1, 30), wait=st.floats(0, 10))
def test_a_refused_request_is_told_when_it_would_pass(rate: float, burst: int, wait: float) -> None:
    clock = Clock()
    buckets = TokenBuckets(rate, burst, clock)
    for _ in range(burst):
        assert buckets.take("a") == 0.0
    clock.now += wait
    retry = buckets.take("a")
    if retry > 0:
        clock.now += retry + 1e-9
        assert buckets.take("a") == 0.0


def test_full_buckets_are_forgotten_so_memory_stays_bounded() -> None:
    clock = Clock()
    buckets = TokenBuckets(10, 20, clock)
    for second in range(50):  # a new set of 1,000 addresses every second, each sending once
        for n in range(1000):
            buckets.take(f"10.{second}.{n // 256}.{n % 256}")
        clock.now += 5  # long enough for every bucket to refill
    assert len(buckets) <= 2 * 1000 + 1024


def test_the_hard_cap_evicts_the_oldest_and_fails_open() -> None:
    clock = Clock()
    buckets = TokenBuckets(1, 1, clock, max_keys=2000)
    for n in range(10_000):
        buckets.take(f"k{n}")  # every bucket empty: none can be swept as full
    assert len(buckets) <= 4000
    assert buckets.take("k0") == 0.0  # evicted, so it starts again full


def test_client_limit_trips_before_the_prefix_limit() -> None:
    clock = Clock()
    limiter = Limiter(LimitSettings(client_rps=1, client_burst=3, prefix_rps=100, prefix_burst=100), clock)
    verdicts = [limiter.check("198.51.100.7") for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[-1].limit == "client" and verdicts[-1].retry_after_s == pytest.approx(1.0)
    assert retry_after_header(verdicts[-1]) == b"1"
    assert limiter.check("198.51.100.8").allowed  # a neighbour has its own bucket


def test_many_addresses_of_one_prefix_hit_the_prefix_limit() -> None:
    clock = Clock()
    limiter = Limiter(LimitSettings(client_rps=10, client_burst=10, prefix_rps=5, prefix_burst=20), clock)
    verdicts = [limiter.check(f"203.0.113.{n}") for n in range(1, 31)]
    assert sum(v.allowed for v in verdicts) == 20
    assert {v.limit for v in verdicts if not v.allowed} == {"prefix"}
    assert limiter.check("192.0.2.1").allowed  # another /24 is untouched
    # the refused requests did not spend their clients' own tokens
    clock.now += 10
    assert all(limiter.check("203.0.113.25").allowed for _ in range(10))


def test_ipv6_prefixes_are_slash_48() -> None:
    assert prefix_of("2001:db8:1:2::1") == "2001:db8:1::/48"
    assert prefix_of("192.0.2.33") == "192.0.2.0/24"
    clock = Clock()
    limiter = Limiter(LimitSettings(client_rps=10, client_burst=10, prefix_rps=1, prefix_burst=5), clock)
    allowed = [limiter.check(f"2001:db8:1:{n:x}::1").allowed for n in range(10)]
    assert sum(allowed) == 5
    assert limiter.check("2001:db8:2::1").allowed


def test_under_attack_multiplies_the_rates_and_can_be_turned_off() -> None:
    clock = Clock()
    limiter = Limiter(LimitSettings(client_rps=4, client_burst=1, under_attack_factor=0.25), clock)

    def allowed_in(seconds: int) -> int:
        count = 0
        for _ in range(seconds * 100):
            clock.now += 0.01
            count += limiter.check("192.0.2.9").allowed
        return count

    normal = allowed_in(10)
    limiter.under_attack = True
    tight = allowed_in(10)
    limiter.under_attack = False
    again = allowed_in(10)
    assert (
        normal == pytest.approx(40, abs=2) and tight == pytest.approx(10, abs=2) and again == pytest.approx(40, abs=2)
    )


def test_the_origin_gate_caps_in_flight_and_queues_in_order() -> None:
    async def scenario() -> None:
        gate = OriginGate(concurrency=2, max_queue=3)
        order: list[int] = []
        peak = 0

        async def request(n: int) -> bool:
            nonlocal peak
            if not await gate.acquire(timeout_s=5):
                return False
            try:
                peak = max(peak, gate.in_flight)
                order.append(n)
                await asyncio.sleep(0.01)
                return True
            finally:
                gate.release()

        tasks = [asyncio.create_task(request(n)) for n in range(6)]
        await asyncio.sleep(0)
        assert gate.in_flight == 2 and gate.queued == 3
        results = await asyncio.gather(*tasks)
        assert results == [True] * 5 + [False]  # the sixth found the queue full
        assert order == [0, 1, 2, 3, 4] and peak == 2
        assert gate.in_flight == 0 and gate.queued == 0

    asyncio.run(scenario())


def test_a_waiter_that_times_out_or_is_cancelled_leaves_no_slot_behind() -> None:
    async def scenario() -> None:
        gate = OriginGate(concurrency=1, max_queue=10)
        assert await gate.acquire()
        assert not await gate.acquire(timeout_s=0.01)  # timed out
        waiter = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert gate.queued == 0
        gate.release()
        assert gate.in_flight == 0
        assert await gate.acquire(timeout_s=0.01)
        gate.release()
        assert gate.in_flight == 0

    asyncio.run(scenario())


def test_the_gate_takes_its_sizes_from_the_settings() -> None:
    gate = OriginGate.from_settings(LimitSettings(origin_concurrency=3, origin_queue=7))
    assert (gate.concurrency, gate.max_queue) == (3, 7)
