"""Fixtures for the store tests: a real redis-server on a free loopback port, and stores of every backend."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from floodwall.localservers import REDIS_SERVER, RedisServer
from floodwall.store import MemoryStore, RedisStore, SQLiteStore
from floodwall.testing import FakeClock
from floodwall.types import Clock, Store

needs_redis = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server is not installed (apt install redis-server)"
)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt install redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test only, for tests that kill it."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt install redis-server)")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


MakeStore = Callable[..., Store]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    """Opens stores of one backend; every store a test opens shares the same data (but memory's cannot)."""
    backend: str = request.param
    opened: list[Store] = []
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    server = request.getfixturevalue("redis_server") if backend == "redis" else None

    def make(clock: Clock | None = None) -> Store:
        store: Store
        if backend == "memory":
            store = MemoryStore(clock=clock)
        elif backend == "sqlite":
            store = SQLiteStore(tmp_path / "decisions.db", clock=clock, poll_interval_s=0.05)
        else:
            assert server is not None
            store = RedisStore(server.url, clock=clock, prefix=prefix)
        opened.append(store)
        return store

    make.backend = backend  # type: ignore[attr-defined]
    yield make
    for store in opened:
        store.close()
