"""Several nodes on one Redis: a ban decided on one is enforced on the other within a second, and a node that
loses Redis keeps enforcing what it has, then catches up once Redis is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from floodwall.model import Action
from floodwall.store import CacheSync, DecisionCache, RedisStore, SQLiteStore
from floodwall.testing import make_decision, wait_until

RedisServer = Any  # conftest.RedisServer: .url, .start(), .stop()


@pytest.fixture
def nodes(redis_server: RedisServer) -> Iterator[list[tuple[RedisStore, DecisionCache, CacheSync]]]:
    prefix = f"nodes-{time.monotonic_ns()}"
    result = []
    for _ in range(2):
        store, cache = RedisStore(redis_server.url, prefix=prefix), DecisionCache()
        result.append((store, cache, CacheSync(store, cache)))
    yield result
    for store, _, sync in result:
        sync.close()
        store.close()


def test_a_ban_on_one_node_is_enforced_on_the_other_within_a_second(
    nodes: list[tuple[RedisStore, DecisionCache, CacheSync]],
) -> None:
    (store_a, cache_a, sync_a), (_, cache_b, sync_b) = nodes
    assert sync_a.wait_synced(5) and sync_b.wait_synced(5)
    started = time.monotonic()
    store_a.put([make_decision("203.0.113.7", datetime.now(UTC))])
    assert wait_until(lambda: cache_b.lookup("203.0.113.7") is Action.BAN, within_s=1.0)
    assert time.monotonic() - started < 1.0
    store_a.revoke("203.0.113.7", "mistake")
    assert wait_until(lambda: cache_b.lookup("203.0.113.7") is None, within_s=1.0)
    assert wait_until(lambda: cache_a.lookup("203.0.113.7") is None, within_s=1.0)


def test_a_node_keeps_enforcing_without_redis_and_resyncs_after_restart(own_redis_server: RedisServer) -> None:
    writer = RedisStore(own_redis_server.url)
    node_store, cache = RedisStore(own_redis_server.url), DecisionCache()
    sync = CacheSync(node_store, cache, backoff_max_s=0.2)
    try:
        assert sync.wait_synced(5)
        writer.put(
            [make_decision("203.0.113.7", datetime.now(UTC)), make_decision("198.51.100.0/24", datetime.now(UTC))]
        )
        assert wait_until(lambda: cache.lookup("198.51.100.9") is Action.BAN, within_s=1.0)

        own_redis_server.stop()
        assert wait_until(lambda: not sync.connected, within_s=5.0)
        assert sync.outages == 1
        assert cache.lookup("203.0.113.7") is Action.BAN  # still enforcing what it had
        assert cache.lookup("198.51.100.9") is Action.BAN
        time.sleep(0.5)  # several failed reconnection attempts: still one outage, still enforcing
        assert sync.outages == 1 and cache.lookup("203.0.113.7") is Action.BAN

        own_redis_server.start()  # empty: this Redis keeps nothing across restarts
        assert wait_until(lambda: sync.connected, within_s=5.0)
        assert cache.lookup("203.0.113.7") is Action.BAN  # a Redis that lost its data does not lift bans
        writer.put([make_decision("192.0.2.44", datetime.now(UTC), action=Action.CHALLENGE)])
        assert wait_until(lambda: cache.lookup("192.0.2.44") is Action.CHALLENGE, within_s=1.0)
        writer.put([make_decision("203.0.113.7", datetime.now(UTC))])
        writer.revoke("203.0.113.7", "forgiven")
        assert wait_until(lambda: cache.lookup("203.0.113.7") is None, within_s=1.0)
    finally:
        sync.close()
        node_store.close()
        writer.close()


def test_two_sqlite_caches_on_one_file(tmp_path: Path) -> None:
    path = f"{tmp_path}/decisions.db"
    store_a, store_b = SQLiteStore(path, poll_interval_s=0.05), SQLiteStore(path, poll_interval_s=0.05)
    cache_b = DecisionCache()
    sync_b = CacheSync(store_b, cache_b)
    try:
        assert sync_b.wait_synced(5)
        store_a.put([make_decision("203.0.113.7", datetime.now(UTC))])
        assert wait_until(lambda: cache_b.lookup("203.0.113.7") is Action.BAN, within_s=1.0)
    finally:
        sync_b.close()
        store_a.close()
        store_b.close()
