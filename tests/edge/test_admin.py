"""The admin listener, over real HTTP on loopback: health, metrics, decisions, revoke, the under-attack switch,
the bearer token, and what it does when the store is gone."""

from __future__ import annotations

import http.client
import json
import re
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floodwall.edge.admin import AdminServer, AdminThread, parse_listen
from floodwall.edge.metrics import HIT, MetricsBoard
from floodwall.edge.settings import AdminSettings
from floodwall.errors import ConfigError
from floodwall.model import Action
from floodwall.store import DecisionCache, MemoryStore, RedisStore
from floodwall.testing import make_decision
from floodwall.types import Store

TOKEN = "s3cret-admin-token-0123456789"
BASE = "/.well-known/floodwall/"


class Admin:
    def __init__(
        self,
        store: Store,
        token_file: Path | None = None,
        listen: str = "127.0.0.1:0",
        live: Callable[[], dict[str, object]] | None = None,
    ) -> None:
        self.store = store
        self.cache = DecisionCache()
        if isinstance(store, MemoryStore):  # what a CacheSync would load from a reachable store
            self.cache.replace(store.active())
        self.board = MetricsBoard(2)
        settings = AdminSettings(listen=listen, token_file=str(token_file) if token_file else None)
        self.server = AdminServer(
            settings, store=store, cache=self.cache, board=self.board, workers=lambda: 2, live=live
        )
        self.thread = AdminThread(self.server)
        self.thread.start()

    def call(
        self, method: str, path: str, body: str | None = None, token: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        connection.request(method, BASE + path, body=body, headers=headers)
        response = connection.getresponse()
        result = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        connection.close()
        return result

    def close(self) -> None:
        self.thread.stop()
        self.board.close()


@pytest.fixture
def admin() -> Iterator[Admin]:
    store = MemoryStore()
    now = datetime.now(UTC)
    store.put([make_decision("203.0.113.7", now), make_decision("198.51.100.0/24", now, action=Action.CHALLENGE)])
    running = Admin(store)
    yield running
    running.close()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "admin.token"
    path.write_text(TOKEN + "\n")
    return path


def test_health_reports_workers_store_decisions_and_the_switch(admin: Admin) -> None:
    status, headers, body = admin.call("GET", "health")
    assert status == 200 and headers["content-type"] == "application/json"
    health = json.loads(body)
    assert health == {
        "status": "ok",
        "workers": 2,
        "store_reachable": True,
        "decisions_active": 2,
        "bans_active": 1,
        "under_attack": False,
        "live": None,
    }


def test_metrics_are_the_boards_totals(admin: Admin) -> None:
    admin.board.slot(0).request(HIT, 0.001)
    admin.board.slot(1).request(HIT, 0.002)
    status, headers, body = admin.call("GET", "metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'floodwall_requests_total{outcome="hit"} 2\n' in body.decode()


def test_decisions_listed_and_revoked_by_the_operator(admin: Admin) -> None:
    status, headers, body = admin.call("GET", "decisions")
    assert status == 200 and headers["x-floodwall-source"] == "store"
    listed = json.loads(body)
    assert {(d["target"], d["action"]) for d in listed} == {("203.0.113.7", "ban"), ("198.51.100.0/24", "challenge")}
    assert all(d["reasons"] and d["expires"].endswith("Z") for d in listed)

    status, _, body = admin.call("DELETE", "decisions/198.51.100.0%2F24")
    assert status == 200 and json.loads(body)["revoked"]["target"] == "198.51.100.0/24"
    status, _, _ = admin.call("DELETE", "decisions/203.0.113.7")
    assert status == 200
    assert admin.store.active() == []
    record = admin.store.history("203.0.113.7")[-1]
    assert record.revoked_reason == "operator" and record.revoked_by == "admin-api"

    assert admin.call("DELETE", "decisions/203.0.113.7")[0] == 404  # nothing left to revoke
    status, _, body = admin.call("DELETE", "decisions/not-an-address")
    assert status == 400 and "not-an-address" in json.loads(body)["error"]


def test_under_attack_switch_reaches_the_shared_board(admin: Admin) -> None:
    assert admin.call("POST", "under-attack", "on")[2] == b'{"under_attack": true}'
    assert admin.board.under_attack
    assert json.loads(admin.call("GET", "health")[2])["under_attack"] is True
    assert admin.call("POST", "under-attack", '{"under_attack": false}')[0] == 200
    assert not admin.board.under_attack
    assert admin.call("POST", "under-attack?state=on")[0] == 200 and admin.board.under_attack
    assert admin.call("POST", "under-attack", "maybe")[0] == 400 and admin.board.under_attack


def test_wrong_paths_and_methods(admin: Admin) -> None:
    assert admin.call("GET", "nothing-here")[0] == 404
    status, headers, _ = admin.call("POST", "health")
    assert status == 405 and headers["allow"] == "GET"
    assert admin.call("GET", "under-attack")[0] == 405


def test_with_a_token_every_request_needs_it(token_file: Path) -> None:
    running = Admin(MemoryStore(), token_file=token_file)
    try:
        status, headers, _ = running.call("GET", "health")
        assert status == 401 and headers["www-authenticate"] == "Bearer"
        assert running.call("GET", "metrics", token="wrong-token-wrong-token")[0] == 401
        assert running.call("POST", "under-attack", "on", token=TOKEN[:-1])[0] == 401
        assert not running.board.under_attack
        assert running.call("GET", "health", token=TOKEN)[0] == 200
        assert running.call("POST", "under-attack", "on", token=TOKEN)[0] == 200 and running.board.under_attack
    finally:
        running.close()


def test_off_loopback_it_refuses_to_start_without_a_token(token_file: Path) -> None:
    board = MetricsBoard(1)
    try:
        with pytest.raises(ConfigError, match=re.escape("edge.admin.listen = '0.0.0.0:9180' is off loopback")):
            AdminServer(AdminSettings(listen="0.0.0.0:9180"), store=MemoryStore(), cache=DecisionCache(), board=board)
        with pytest.raises(ConfigError, match="token_file"):
            AdminServer(
                AdminSettings(listen="0.0.0.0:9180", token_file=str(token_file.parent / "missing")),
                store=MemoryStore(),
                cache=DecisionCache(),
                board=board,
            )
        # With a token it is allowed (built, not started: the test binds nothing off loopback).
        AdminServer(
            AdminSettings(listen="0.0.0.0:9180", token_file=str(token_file)),
            store=MemoryStore(),
            cache=DecisionCache(),
            board=board,
        )
    finally:
        board.close()


def test_listen_values() -> None:
    assert parse_listen("[::1]:9180") == ("::1", 9180)
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    for bad in ("9180", "localhost", "127.0.0.1:http", "[::1]:70000"):
        with pytest.raises(ConfigError, match=re.escape("edge.admin.listen")):
            parse_listen(bad)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens there once the probe is closed


def test_without_the_store_health_degrades_listing_falls_back_to_the_cache_and_revoke_fails_closed() -> None:
    store = RedisStore(f"redis://127.0.0.1:{_closed_port()}/0", prefix="admin-test")
    running = Admin(store)
    try:
        running.cache.apply([make_decision("203.0.113.9", datetime.now(UTC))])
        health = json.loads(running.call("GET", "health")[2])
        assert health["status"] == "degraded" and health["store_reachable"] is False
        assert health["decisions_active"] == 1
        status, headers, body = running.call("GET", "decisions")
        assert status == 200 and headers["x-floodwall-source"] == "cache"
        assert [d["target"] for d in json.loads(body)] == ["203.0.113.9"]
        status, _, body = running.call("DELETE", "decisions/203.0.113.9")
        assert status == 503 and "nothing revoked" in json.loads(body)["error"]
        assert running.cache.lookup("203.0.113.9") is Action.BAN  # still enforced
    finally:
        running.close()
        store.close()


def test_hostile_requests_get_an_answer_and_do_not_stop_the_listener(admin: Admin) -> None:
    for raw in (
        b"GARBAGE\r\n\r\n",
        b"GET " + BASE.encode() + b"health HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n",
        b"POST " + BASE.encode() + b"under-attack HTTP/1.1\r\nContent-Length: 999999\r\n\r\n",
        b"GET " + BASE.encode() + b"health HTTP/1.1\r\nbad header line\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", admin.server.port), timeout=10) as connection:
            connection.sendall(raw)
            answer = connection.recv(200)
            assert answer.startswith(b"HTTP/1.1 4"), answer
    assert admin.call("GET", "health")[0] == 200


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda method, path, tail: f"{method} {BASE}{path} HTTP/1.1\r\n".encode() + tail,
            st.sampled_from(["GET", "POST", "DELETE", "PUT", "get", ""]),
            st.text(max_size=40),
            st.binary(max_size=120),
        ),
    )
)
def test_random_bytes_never_stop_the_listener_nor_change_anything(admin: Admin, raw: bytes) -> None:
    with socket.create_connection(("127.0.0.1", admin.server.port), timeout=10) as connection:
        connection.sendall(raw)
        connection.shutdown(socket.SHUT_WR)
        answer = connection.recv(64)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 ")
    assert len(admin.store.active()) == 2  # no revoke slipped through
    assert admin.call("GET", "health")[0] == 200


def test_live_detection_that_stopped_stepping_degrades_health() -> None:
    status: dict[str, object] = {"steps": 40, "last_step_s_ago": 0.4}
    running = Admin(MemoryStore(), live=lambda: dict(status))
    try:
        health = json.loads(running.call("GET", "health")[2])
        assert health["status"] == "ok" and health["live"]["steps"] == 40
        status["last_step_s_ago"] = 31.5  # the detector's thread is stuck or dead
        health = json.loads(running.call("GET", "health")[2])
        assert health["status"] == "degraded" and health["store_reachable"] is True
    finally:
        running.close()
