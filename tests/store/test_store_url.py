"""`store_from_url`: the backend is chosen by URL, and a bad URL is refused naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from floodwall.errors import ConfigError
from floodwall.store import MemoryStore, RedisStore, SQLiteStore, store_from_url
from floodwall.testing import FakeClock


def test_each_scheme_opens_its_backend(tmp_path: Path) -> None:
    clock = FakeClock()
    memory = store_from_url("memory://", clock=clock)
    assert isinstance(memory, MemoryStore) and memory.clock is clock
    sqlite = store_from_url(f"sqlite:///{tmp_path}/d.db?poll_interval=0.1")
    assert isinstance(sqlite, SQLiteStore)
    assert sqlite.path == f"/{tmp_path}/d.db".replace("//", "/") and sqlite.poll_interval_s == 0.1
    assert (tmp_path / "d.db").exists()
    sqlite.close()
    redis = store_from_url("redis://127.0.0.1:1/2?prefix=site-a")  # opening does not connect
    assert isinstance(redis, RedisStore) and redis.prefix == "site-a" and redis.channel == "site-a:changes"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgres://db/x", "unknown scheme"),
        ("sqlite://relative.db", "sqlite:///"),
        ("sqlite:///x.db?poll_interval=fast", "poll_interval"),
        ("sqlite:///x.db?poll_interval=0&colour=blue", "colour"),
        ("sqlite:///x.db?poll_interval=0", "poll_interval"),
        ("sqlite:///x.db?colour=blue", "colour"),
        ("memory://?colour=blue", "colour"),
    ],
)
def test_bad_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        store_from_url(url)
