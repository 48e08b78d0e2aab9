"""Two edge nodes on one real redis-server: node A's live detector bans a flood, node B enforces the ban within
a second; with Redis gone, B keeps enforcing what it holds and A keeps its new decisions until Redis is back.

Each node is what the supervisor of `floodwall edge` holds: a store opened from the URL, a `DecisionCache` and
the `CacheSync` that keeps it following the store (node A also runs the `LiveDetector`). Both nodes share one
fake clock, so the decisions made on simulated time do not expire in real time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from test_live import HISTORY_S, SETTINGS, START, due, flood_second, reader_second

from floodwall.edge.decisions import LiveDetector
from floodwall.edge.live import LiveRecorder
from floodwall.edge.metrics import Metrics
from floodwall.model import Action, Decision
from floodwall.store import CacheSync, DecisionCache, store_from_url
from floodwall.testing import FakeClock, wait_until
from floodwall.types import Store
from store.conftest import RedisServer  # tests/store/conftest.py: a throwaway redis-server


class Node:
    def __init__(self, url: str, clock: FakeClock, detector: bool = False) -> None:
        self.store: Store = store_from_url(f"{url}?prefix=edge-nodes", clock=clock)
        self.cache = DecisionCache(clock)
        self.sync = CacheSync(self.store, self.cache, backoff_max_s=0.2)
        self.metrics = Metrics()
        self.detector = (
            LiveDetector(
                "example-news", self.store, settings=SETTINGS, cache=self.cache, clock=clock, metrics=self.metrics
            )
            if detector
            else None
        )

    def close(self) -> None:
        self.sync.close()
        self.store.close()


@pytest.fixture
def nodes(own_redis_server: RedisServer) -> Iterator[tuple[Node, Node, FakeClock]]:
    clock = FakeClock(START)
    a, b = Node(own_redis_server.url, clock, detector=True), Node(own_redis_server.url, clock)
    assert a.sync.wait_synced(10) and b.sync.wait_synced(10)
    yield a, b, clock
    a.close()
    b.close()


def flood_until_decided(node: Node, clock: FakeClock, stop_on_first: bool = True) -> list[Decision]:
    """Readers for HISTORY_S seconds, then a flood; node A's detector steps once per simulated second."""
    assert node.detector is not None
    rng = random.Random(11)
    recorder = LiveRecorder(capacity=5000)
    decided: list[Decision] = []
    for second in range(HISTORY_S + 15):
        reader_second(rng, recorder, second)
        if second >= HISTORY_S:
            flood_second(rng, recorder, second)
        clock.set(START + timedelta(seconds=second + 1))
        if not due(second):
            continue
        node.detector.add(recorder.take())
        decided += node.detector.step()
        if decided and stop_on_first:
            break
    return decided


def test_a_ban_decided_on_node_a_is_enforced_on_node_b_within_a_second(
    nodes: tuple[Node, Node, FakeClock], record_property: pytest.RecordProperty
) -> None:
    a, b, clock = nodes
    decided = flood_until_decided(a, clock)
    written = time.monotonic()
    bans = [d.target for d in decided if d.action is Action.BAN]
    assert bans, "node A's detector banned nobody"
    assert wait_until(lambda: all(b.cache.lookup(target) is Action.BAN for target in bans), within_s=10.0)
    delay_s = time.monotonic() - written
    record_property("ban_to_node_b_s", round(delay_s, 4))
    print(f"\n{len(bans)} bans from node A enforced on node B after {delay_s * 1000:.1f} ms")
    assert b.cache.lookup("10.0.0.1") is None  # readers untouched

    b.store.revoke(bans[0], "operator", by="admin-api")  # an operator on node B; node A follows
    assert wait_until(lambda: a.cache.lookup(bans[0]) is None, within_s=10.0)


def test_without_redis_node_b_keeps_enforcing_and_node_a_delivers_its_bans_once_redis_is_back(
    nodes: tuple[Node, Node, FakeClock], own_redis_server: RedisServer
) -> None:
    a, b, clock = nodes
    first = flood_until_decided(a, clock)
    held = [d.target for d in first if d.action is Action.BAN]
    assert held and wait_until(lambda: all(b.cache.lookup(t) is Action.BAN for t in held), within_s=10.0)

    own_redis_server.stop()
    assert wait_until(lambda: not b.sync.connected, within_s=10.0)
    assert all(b.cache.lookup(t) is Action.BAN for t in held)  # B enforces what it has

    # Node A goes on detecting: a second wave from new addresses cannot be written, and is kept.
    assert a.detector is not None
    rng = random.Random(5)
    recorder = LiveRecorder(capacity=5000)
    for second in range(HISTORY_S + 15, HISTORY_S + 30):
        reader_second(rng, recorder, second)
        for k in range(400):
            client = f"198.51.100.{rng.randrange(1, 200)}"
            recorder.record(
                START.timestamp() + second + k / 400,
                client,
                "GET",
                "/",
                f"z={rng.randrange(10**9)}",
                "HTTP/1.1",
                200,
                5120,
                None,
                "python-requests/2.31",
            )
        clock.set(START + timedelta(seconds=second + 1))
        a.detector.add(recorder.take())
        assert a.detector.step() == []
    waiting = {d.target for d in a.detector.cache.decisions()} - set(held)
    assert waiting, "node A detected nothing during the outage"
    assert "floodwall_store_errors_total 0\n" not in a.metrics.render().decode()
    assert all(b.cache.lookup(t) is Action.BAN for t in held)  # still, some seconds into the outage

    own_redis_server.start()  # empty: it kept nothing
    assert wait_until(lambda: a.sync.connected and b.sync.connected, within_s=10.0)
    assert all(b.cache.lookup(t) is Action.BAN for t in held)  # an emptied Redis does not lift B's bans
    delivered: list[Decision] = []
    deadline = time.monotonic() + 10
    while not delivered and time.monotonic() < deadline:
        delivered = a.detector.step()  # the kept decisions go out on the next step that reaches Redis
        time.sleep(0.05)
    assert {d.target for d in delivered} >= waiting
    assert wait_until(lambda: all(b.cache.lookup(t) is not None for t in waiting), within_s=10.0)
