"""The same behaviour from every backend: memory, SQLite in tmp_path, Redis against a real redis-server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from floodwall.errors import InputError
from floodwall.model import Action
from floodwall.store import CacheSync, DecisionCache, SQLiteStore
from floodwall.testing import FakeClock, make_decision, wait_until
from floodwall.types import Change, Store

MakeStore = Callable[..., Store]  # the `make_store` fixture (conftest.py)


def test_put_then_get_and_active(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(clock)
    stored = store.put([make_decision("203.0.113.7/32", clock()), make_decision("2001:DB8:0::/48", clock())])
    assert [d.target for d in stored] == ["203.0.113.7", "2001:db8::/48"]
    got = store.get("203.0.113.7")
    assert got is not None and got.action is Action.BAN and got.reasons == ("rate 40/s over 60 s",)
    assert got.evidence == (("access.log", 12),) and got.origin == "engine"
    assert sorted(d.target for d in store.active()) == ["2001:db8::/48", "203.0.113.7"]
    assert store.get("198.51.100.1") is None


def test_decisions_expire_on_time(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(clock)
    store.put([make_decision("203.0.113.7", clock(), ttl_s=60), make_decision("203.0.113.8", clock(), ttl_s=600)])
    clock.advance(59)
    assert store.get("203.0.113.7") is not None
    clock.advance(2)
    assert store.get("203.0.113.7") is None
    assert [d.target for d in store.active()] == ["203.0.113.8"]
    assert store.active(now=clock() + timedelta(seconds=600)) == []
    assert store.revoke("203.0.113.7", "too late") is None


def test_revoke_withdraws_and_is_kept_in_history(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(clock)
    store.put([make_decision("198.51.100.0/24", clock())])
    clock.advance(10)
    revoked = store.revoke("198.51.100.0/24", "false positive: a school's NAT", by="alice")
    assert revoked is not None and revoked.target == "198.51.100.0/24"
    assert store.get("198.51.100.0/24") is None
    assert store.active() == []
    assert store.revoke("198.51.100.0/24", "again") is None
    (record,) = store.history("198.51.100.0/24")
    assert record.revoked_at == clock()
    assert (record.revoked_reason, record.revoked_by) == ("false positive: a school's NAT", "alice")
    assert record.decision.origin == "engine"


def test_a_put_replaces_and_repeat_offences_are_counted(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(clock)
    first = clock()
    store.put([make_decision("203.0.113.7", first, action=Action.CHALLENGE)])
    clock.advance(3600)
    store.put([make_decision("203.0.113.7", clock(), action=Action.BAN)])
    clock.advance(3600)
    store.put([make_decision("203.0.113.7", clock(), action=Action.BAN), make_decision("203.0.113.9", clock())])
    current = store.get("203.0.113.7")
    assert current is not None and current.action is Action.BAN and current.created == clock()
    assert len(store.active()) == 2
    assert store.times_decided("203.0.113.7") == 3
    assert store.times_decided("203.0.113.7", action=Action.BAN) == 2
    assert store.times_decided("203.0.113.7", since=first + timedelta(seconds=1)) == 2
    assert store.times_decided("192.0.2.1") == 0
    history = store.history("203.0.113.7")
    assert [r.decision.action for r in history] == [Action.BAN, Action.BAN, Action.CHALLENGE]
    assert len(store.history(limit=2)) == 2
    assert len(store.history()) == 4


def test_bad_decisions_are_refused_naming_the_field(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(clock)
    with pytest.raises(InputError, match="'target'"):
        store.put([make_decision("not-an-address", clock())])
    with pytest.raises(InputError, match="'target'"):
        store.put([make_decision("10.0.0.1/24", clock())])
    naive = make_decision("10.0.0.1", clock().replace(tzinfo=None))
    with pytest.raises(InputError, match="'created'"):
        store.put([naive])
    assert store.active() == []


def test_watch_and_subscribe_report_puts_and_revokes(make_store: MakeStore, clock: FakeClock) -> None:
    store = make_store(clock)
    feed = store.watch()
    seen: list[Change] = []
    subscription = store.subscribe(seen.append)
    try:
        store.put([make_decision("203.0.113.7", clock())])
        store.revoke("203.0.113.7", "operator said so")
        changes: list[Change] = []
        assert wait_until(lambda: len(changes) >= 2 or bool(changes.extend(feed.poll(0.05))))
        assert [(c.kind, c.target) for c in changes] == [("put", "203.0.113.7"), ("revoke", "203.0.113.7")]
        assert changes[0].decision is not None and changes[0].decision.action is Action.BAN
        assert changes[1].reason == "operator said so"
        assert changes[0].seq < changes[1].seq
        assert wait_until(lambda: len(seen) >= 2)
        assert [(c.kind, c.target) for c in seen] == [("put", "203.0.113.7"), ("revoke", "203.0.113.7")]
    finally:
        subscription.close()
        feed.close()


def test_two_store_objects_see_each_others_decisions(make_store: MakeStore, clock: FakeClock) -> None:
    if make_store.backend == "memory":  # type: ignore[attr-defined]
        pytest.skip("memory stores are private to one object by design")
    writer, reader = make_store(clock), make_store(clock)
    feed = reader.watch()
    try:
        writer.put([make_decision("203.0.113.7", clock())])
        got = reader.get("203.0.113.7")
        assert got is not None and got.action is Action.BAN
        changes: list[Change] = []
        assert wait_until(lambda: bool(changes.extend(feed.poll(0.05))) or bool(changes))
        assert changes[0].target == "203.0.113.7"
        reader.revoke("203.0.113.7", "seen by the other")
        assert writer.get("203.0.113.7") is None
        assert writer.epoch() == reader.epoch()
    finally:
        feed.close()


def test_a_cache_follows_the_store(make_store: MakeStore) -> None:
    clock = FakeClock()
    store, cache = make_store(clock), DecisionCache(clock)
    store.put([make_decision("192.0.2.1", clock())])
    sync = CacheSync(store, cache)
    try:
        assert sync.wait_synced(5)
        assert cache.lookup("192.0.2.1") is Action.BAN
        store.put([make_decision("198.51.100.0/24", clock(), action=Action.CHALLENGE)])
        assert wait_until(lambda: cache.lookup("198.51.100.77") is Action.CHALLENGE)
        store.revoke("192.0.2.1", "mistake")
        assert wait_until(lambda: cache.lookup("192.0.2.1") is None)
        clock.advance(601)
        assert cache.lookup("198.51.100.77") is None  # expired, whether or not pruned yet
    finally:
        sync.close()


_WRITER = """
import sys
from datetime import UTC, datetime
from floodwall.store import SQLiteStore
from floodwall.testing import make_decision
store = SQLiteStore(sys.argv[1])
now = datetime.now(UTC)
for n in range(150):
    store.put([make_decision(f"10.{sys.argv[2]}.{n // 250}.{n % 250}", now)])
"""


def test_sqlite_is_safe_for_several_processes_at_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    SQLiteStore(path).close()
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(n)], stderr=subprocess.PIPE) for n in range(3)
    ]
    for writer in writers:
        _, stderr = writer.communicate(timeout=60)
        assert writer.returncode == 0, stderr.decode()
    store = SQLiteStore(path)
    assert len(store.active()) == 450
    assert len(store.history()) == 450
    store.close()
