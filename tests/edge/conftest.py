"""Fixtures for the edge tests (helpers in `edge_run.py`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from edge_run import Origin

from store.conftest import own_redis_server  # noqa: F401  (the throwaway redis-server fixture, shared)


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
