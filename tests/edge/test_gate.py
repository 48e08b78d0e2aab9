"""The accept-time gate: a banned address is refused as it connects, before its request is read; nobody else is."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from edge_run import EdgeUnderTest, Origin, edge_settings

from floodwall.decide.allowlist import Allowlist
from floodwall.edge.clientaddr import ClientAddress
from floodwall.edge.gate import AcceptGate, Spared, refused_fields
from floodwall.edge.metrics import Metrics
from floodwall.logs import LogReader
from floodwall.model import Action
from floodwall.store.cache import DecisionCache
from floodwall.testing import make_decision

CONTACT = b"help@example-news.org"


def _decisions(*targets: tuple[str, Action]) -> DecisionCache:
    cache = DecisionCache()
    now = datetime.now(UTC)
    cache.apply([make_decision(target, now, ttl_s=600, action=action) for target, action in targets])
    return cache


def _exchange(port: int, source: str, data: bytes, timeout_s: float = 10.0) -> bytes:
    """Connect from `source` (a 127.x address), send `data`, read until the edge closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s, source_address=(source, 0)) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def _gate(edge: EdgeUnderTest) -> AcceptGate:
    assert edge.worker is not None and edge.worker.server.gate is not None
    return edge.worker.server.gate


def test_a_banned_address_gets_403_and_a_close_before_its_request_is_read(origin: Origin) -> None:
    metrics = Metrics()
    decisions = _decisions(("127.9.0.1", Action.BAN))
    with EdgeUnderTest(edge_settings(origin.url), decisions=decisions, metrics=metrics) as edge:
        # Not even valid HTTP: a parsed request would get 400; the gate answers before reading it.
        refused = _exchange(edge.port, "127.9.0.1", b"\x00garbage that is no request\r\n\r\n")
        reader = _exchange(edge.port, "127.9.0.2", b"GET /article HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        refused_count = _gate(edge).refused
    head, _, body = refused.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 ")
    assert b"connection: close" in head.lower()
    assert CONTACT in body
    assert reader.startswith(b"HTTP/1.1 200 ") and reader.endswith(b"origin saw /article")
    assert origin.hits["/article"] == 1
    assert refused_count == 1
    assert 'floodwall_requests_total{outcome="banned"} 1' in metrics.render().decode()


def test_a_ban_met_on_an_open_connection_closes_it_and_the_next_connection_meets_the_gate(origin: Origin) -> None:
    decisions = DecisionCache()
    with EdgeUnderTest(edge_settings(origin.url), decisions=decisions) as edge:
        with socket.create_connection(("127.0.0.1", edge.port), timeout=10, source_address=("127.9.0.3", 0)) as sock:
            sock.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
            first = sock.recv(65536)
            decisions.apply([make_decision("127.9.0.3", datetime.now(UTC))])
            sock.sendall(b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
            chunks = []
            while chunk := sock.recv(65536):  # the edge closes after the 403
                chunks.append(chunk)
        again = _exchange(edge.port, "127.9.0.3", b"GET /three HTTP/1.1\r\nHost: x\r\n\r\n")
        refused_count = _gate(edge).refused
    assert first.startswith(b"HTTP/1.1 200 ")
    second = b"".join(chunks)
    assert second.startswith(b"HTTP/1.1 403 ") and b"connection: close" in second.lower()
    assert again.startswith(b"HTTP/1.1 403 ")
    assert refused_count == 1
    assert origin.hits["/two"] == origin.hits["/three"] == 0


def test_a_challenged_address_and_a_banned_trusted_proxy_are_not_refused_at_accept(origin: Origin) -> None:
    decisions = _decisions(("127.9.0.4", Action.CHALLENGE), ("127.9.0.5", Action.BAN))
    settings = edge_settings(origin.url, trusted_proxies=["127.9.0.5/32"])
    with EdgeUnderTest(settings, decisions=decisions) as edge:
        challenged = _exchange(edge.port, "127.9.0.4", b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        # A CDN's address speaks for its readers: the reader it forwards is served despite the proxy's own ban.
        forwarded = _exchange(
            edge.port,
            "127.9.0.5",
            b"GET /r HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 192.0.2.10\r\nConnection: close\r\n\r\n",
        )
        refused_count = _gate(edge).refused
    assert challenged.startswith(b"HTTP/1.1 429 ")
    assert forwarded.startswith(b"HTTP/1.1 200 ") and forwarded.endswith(b"origin saw /r")
    assert refused_count == 0


def test_the_gate_spares_the_outlets_networks_and_crawler_ranges() -> None:
    decisions = _decisions(("10.1.2.3", Action.BAN), ("66.249.64.0/19", Action.BAN), ("203.0.113.80", Action.BAN))
    gate = AcceptGate(decisions, Spared(ClientAddress([]), Allowlist(own_networks=("10.0.0.0/8",))), "contact")
    assert not gate.refuses("10.1.2.3")  # the outlet's own network
    assert not gate.refuses("66.249.66.1")  # Googlebot's range: only the request's user agent can tell
    assert gate.refuses("203.0.113.80")
    assert not gate.refuses("203.0.113.81")
    assert not gate.refuses("2001:db8::1")


def test_a_refused_connection_leaves_its_request_in_the_access_log_for_the_report(
    origin: Origin, tmp_path: Path
) -> None:
    log_path = tmp_path / "edge.access.log"
    decisions = _decisions(("127.9.0.9", Action.BAN))
    with EdgeUnderTest(edge_settings(origin.url), decisions=decisions, access_log=log_path) as edge:
        for k in range(3):  # a banned bot keeps coming: each refusal is evidence
            _exchange(
                edge.port,
                "127.9.0.9",
                b"GET /news/story-%d.html?r=%d HTTP/1.1\r\nHost: news.example\r\nUser-Agent: Go-http-client/1.1\r\n\r\n"
                % (k, k),
            )
        _exchange(edge.port, "127.9.0.9", b"\x00garbage that is no request\r\n\r\n")
        refused_count = _gate(edge).refused
    assert refused_count == 4
    rows = pl.concat(list(LogReader([str(log_path)], site="gate-test"))).to_dicts()
    assert len(rows) == 4
    assert all(row["client"] == "127.9.0.9" and row["status"] == 403 for row in rows)
    assert [row["path"] for row in rows[:3]] == [f"/news/story-{k}.html" for k in range(3)]
    assert rows[0]["query"] == "r=0"
    assert {row["user_agent"] for row in rows[:3]} == {"Go-http-client/1.1"}
    assert rows[0]["host"] == "news.example"
    assert rows[3]["method"] is None  # unreadable: logged, as a 400 would be, without a request line


def test_a_refused_request_is_read_from_its_first_bytes_whatever_they_hold() -> None:
    line, host, agent = refused_fields(b"POST /login HTTP/1.0\r\nuser-agent:  curl/8 \r\nhost: a\r\n\r\nx=1")
    assert (line, host, agent) == ("POST /login HTTP/1.0", "a", "curl/8")
    # No end of line yet, or a line past what is kept: logged without a request line rather than cut mid-target.
    assert refused_fields(b"GET /" + b"a" * 100_000) == ("", "", "")
    assert refused_fields(b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n")[0] == ""
    assert refused_fields(b"get / HTTP/1.1\r\nUser-Agent: \xff\x00\r\n\r\n") == ("", "", "\xff\x00")
