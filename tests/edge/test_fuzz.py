"""Hostile bytes never kill a worker: random, garbled and truncated requests, and clients that vanish mid-answer.

One edge (and one origin) serve every example; each example is sent on its own connection, half-closed, and read
until the edge closes. After each, nothing may have escaped to the event loop's exception handler, nothing may have
been logged as a failure of ours, and the edge must still answer a plain request.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator

import pytest
from edge_run import EdgeUnderTest, Origin, edge_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_FRAGMENTS = [
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"CONNECT ",
    b"OPTIONS * ",
    b"/",
    b"/echo",
    b"/cached/x",
    b"/chunked",
    b"?a=1&b=%zz",
    b" HTTP/1.1\r\n",
    b" HTTP/1.0\r\n",
    b" HTTP/9.9\r\n",
    b"Host: a\r\n",
    b"Host: \xff\xfe\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: -1\r\n",
    b"Content-Length: 99999999999999999999999\r\n",
    b"Content-Length: 3\r\nContent-Length: 4\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Expect: 100-continue\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive, x-private\r\n",
    b"Upgrade: websocket\r\nConnection: upgrade\r\n",
    b"X-Forwarded-For: 1.2.3.4, garbage, [::1]:80\r\n",
    b"Cookie: floodwall_pass=1.x\r\n",
    b"\r\n",
    b"hello",
    b"5\r\nhello\r\n",
    b"zz\r\n",
    b"0\r\n\r\n",
    b"ffffffffffffffff\r\n",
    b"\x00",
    b"\xff",
    b" ",
    b":",
    b"\n",
    b"\r",
    b"\t",
]

_VALID = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /cached/y HTTP/1.1\r\nHost: a\r\n\r\nGET /chunked HTTP/1.1\r\nHost: a\r\n\r\n",
]

garbled = st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=30).map(b"".join)
truncated = st.tuples(st.sampled_from(_VALID), st.integers(min_value=0, max_value=200)).map(
    lambda pair: pair[0][: pair[1] % (len(pair[0]) + 1)]
)
hostile = st.one_of(st.binary(max_size=600), garbled, truncated)


@pytest.fixture(scope="module")
def module_origin() -> Iterator[Origin]:
    server = Origin()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def edge(module_origin: Origin) -> Iterator[EdgeUnderTest]:
    settings_ = edge_settings(
        module_origin.url,
        # Every request here comes from 127.0.0.1: the rate limits are raised out of the way (a fast machine sends the
        # fuzz examples faster than the default bucket refills), so only hostile input is under test.
        limits={
            "header_timeout_s": 2.0,
            "body_timeout_s": 2.0,
            "keepalive_timeout_s": 2.0,
            "max_header_bytes": 4096,
            "client_rps": 100_000.0,
            "client_burst": 100_000.0,
            "prefix_rps": 100_000.0,
            "prefix_burst": 100_000.0,
        },
    )
    with EdgeUnderTest(settings_) as running:
        yield running


def _exchange(port: int, data: bytes, *, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return b""  # the edge closed first (it may, after a 400): fine
        if not read:
            return b""
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def _still_serving(edge: EdgeUnderTest) -> None:
    reply = _exchange(edge.port, b"GET /alive HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"origin saw /alive"), reply[:200]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=hostile)
def test_hostile_bytes_never_escape_and_the_edge_keeps_answering(
    edge: EdgeUnderTest, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="floodwall")
    reply = _exchange(edge.port, data)
    # Whatever came back is HTTP: a status line (or nothing, when nothing complete was sent).
    assert reply == b"" or reply.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), reply[:100]
    assert edge.loop_errors == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("floodwall")] == []
    _still_serving(edge)


def test_clients_that_vanish_mid_answer_leave_the_edge_serving(edge: EdgeUnderTest) -> None:
    for _ in range(20):
        _exchange(edge.port, b"GET /chunked HTTP/1.1\r\nHost: a\r\nCookie: s=1\r\n\r\n", read=False)
        _exchange(edge.port, b"GET /slow?s=0.2 HTTP/1.1\r\nHost: a\r\n\r\n", read=False)
        with socket.create_connection(("127.0.0.1", edge.port), timeout=5) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhal")  # then a reset
    _still_serving(edge)
    assert edge.loop_errors == []
