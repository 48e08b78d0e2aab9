"""The edge as a reader (and an attacker) sees it: a real server on a loopback port in front of a real origin."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import polars as pl
from edge_run import EdgeUnderTest, Origin, edge_settings

from floodwall.analyze import analyze
from floodwall.config import Settings
from floodwall.edge.job import bind_listener
from floodwall.edge.live import RECORDED_FIELDS, LiveRecorder
from floodwall.logs import LogReader
from floodwall.testing import wait_until


def _read_responses(sock: socket.socket, count: int) -> list[bytes]:
    """Read `count` whole responses with Content-Length bodies from a raw socket."""
    data = b""
    out: list[bytes] = []
    while len(out) < count:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(out)} responses"
        data += chunk
        while b"\r\n\r\n" in data and len(out) < count:
            head, _, rest = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                break
            out.append(head + b"\r\n\r\n" + rest[:length])
            data = rest[length:]
    return out


def test_pass_through_relays_status_headers_and_body(origin: Origin) -> None:
    with EdgeUnderTest(edge_settings(origin.url)) as edge:
        status, headers, body = edge.get("/article/1?x=2", headers={"User-Agent": "reader"})
    assert status == 200
    assert body == b"origin saw /article/1?x=2"
    assert headers["content-type"] == "text/plain"
    assert headers["x-floodwall-cache"] == "MISS"


def test_origin_sees_host_and_forwarded_fields(origin: Origin) -> None:
    with EdgeUnderTest(edge_settings(origin.url)) as edge:
        status, _, body = edge.get(
            "/echo", headers={"Host": "www.example-news.org", "X-Forwarded-For": "6.6.6.6", "Connection": "keep-alive"}
        )
    received = json.loads(body)["headers"]
    assert status == 200
    assert received["host"] == "www.example-news.org"
    # The client is not a trusted proxy: what it claims is replaced by its own address.
    assert received["x-forwarded-for"] == "127.0.0.1"
    assert received["x-forwarded-proto"] == "http"
    assert received["x-forwarded-host"] == "www.example-news.org"


def test_trusted_proxy_forwarded_for_is_extended(origin: Origin) -> None:
    with EdgeUnderTest(edge_settings(origin.url, trusted_proxies=["127.0.0.0/8"])) as edge:
        _, _, body = edge.get("/echo", headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
    received = json.loads(body)["headers"]
    assert received["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert received["x-forwarded-proto"] == "https"


def test_keep_alive_connections_are_reused_both_ways(origin: Origin) -> None:
    with EdgeUnderTest(edge_settings(origin.url)) as edge:
        conn = edge.connection()
        for k in range(5):
            conn.request("GET", f"/page/{k}")
            response = conn.getresponse()
            assert response.read() == f"origin saw /page/{k}".encode()
        conn.close()
    # Five requests, one client connection, one origin connection.
    assert origin.connections == 1


def test_pipelined_requests_are_answered_in_order(origin: Origin) -> None:
    with (
        EdgeUnderTest(edge_settings(origin.url)) as edge,
        socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock,
    ):
        # The first is slow at the origin; the others would be ready sooner.
        sock.sendall(
            b"GET /slow?s=0.3 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /third HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        responses = _read_responses(sock, 3)
    assert responses[0].endswith(b"slow answer")
    assert responses[1].endswith(b"origin saw /second")
    assert responses[2].endswith(b"origin saw /third")


def test_chunked_request_body_reaches_the_origin_whole(origin: Origin) -> None:
    with EdgeUnderTest(edge_settings(origin.url)) as edge:
        reply = edge.raw(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    echoed = json.loads(body)
    assert echoed["method"] == "POST"
    assert echoed["body"] == "hello world"
    assert echoed["headers"]["content-length"] == "11"
    assert "transfer-encoding" not in echoed["headers"]


def test_chunked_response_is_relayed_chunked(origin: Origin) -> None:
    with EdgeUnderTest(edge_settings(origin.url)) as edge:
        # A reader with a session is never served from the cache: the answer streams through as it comes.
        status, headers, body = edge.get("/chunked", headers={"Cookie": "session=1"})
        reply = edge.raw(b"GET /chunked HTTP/1.0\r\nCookie: session=1\r\n\r\n")
    assert status == 200
    assert headers.get("transfer-encoding") == "chunked"
    assert body == b"first,second,third"
    # An HTTP/1.0 client cannot read chunks: the body ends with the connection.
    head, _, raw_body = reply.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert raw_body == b"first,second,third"


def test_head_gets_the_head_alone(origin: Origin) -> None:
    with EdgeUnderTest(edge_settings(origin.url)) as edge:
        conn = edge.connection()
        conn.request("HEAD", "/article")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("content-length") == str(len(b"origin saw /article"))
        assert response.read() == b""
        # The connection still works after a bodiless answer.
        conn.request("GET", "/after")
        assert conn.getresponse().read() == b"origin saw /after"
        conn.close()


def test_cache_hit_and_miss_header(origin: Origin) -> None:
    with EdgeUnderTest(edge_settings(origin.url)) as edge:
        first = edge.get("/cached/front")
        second = edge.get("/cached/front")
        head = edge.get("/cached/front", method="HEAD")
    assert first[1]["x-floodwall-cache"] == "MISS"
    assert second[1]["x-floodwall-cache"] == "HIT"
    assert first[2] == second[2] == b"<p>/cached/front fetched 1 times</p>"
    assert head[0] == 200 and head[2] == b"" and head[1]["x-floodwall-cache"] == "HIT"
    assert origin.hits["/cached/front"] == 1


def test_a_response_with_a_cookie_is_never_shared(origin: Origin) -> None:
    with EdgeUnderTest(edge_settings(origin.url)) as edge:
        edge.get("/cookie")
        edge.get("/cookie")
    assert origin.hits["/cookie"] == 2


def test_malformed_request_gets_400_and_the_worker_keeps_serving(origin: Origin) -> None:
    with EdgeUnderTest(edge_settings(origin.url)) as edge:
        reply = edge.raw(b"GARBAGE\x00\x01 nonsense\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400 ")
        assert b"help@example-news.org" in reply
        assert edge.get("/still-here")[2] == b"origin saw /still-here"


def test_oversized_headers_get_431_and_body_413(origin: Origin) -> None:
    with EdgeUnderTest(edge_settings(origin.url, limits={"max_header_bytes": 2048, "max_body_bytes": 100})) as edge:
        big_header = edge.raw(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
        big_body = edge.raw(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"b" * 1000)
        assert edge.get("/fine")[0] == 200
    assert big_header.startswith(b"HTTP/1.1 431 ")
    assert big_body.startswith(b"HTTP/1.1 413 ")
    assert "/echo" not in origin.hits


def test_slowloris_client_is_closed(origin: Origin) -> None:
    with EdgeUnderTest(edge_settings(origin.url, limits={"header_timeout_s": 1.0})) as edge:
        with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
            started = time.monotonic()
            closed = False
            while time.monotonic() - started < 8:
                try:
                    sock.sendall(b"X-a: b\r\n")  # one header now and then, never the end
                    sock.settimeout(0.5)
                    if sock.recv(1024) == b"":
                        closed = True
                        break
                except TimeoutError:
                    continue
                except OSError:
                    closed = True
                    break
        assert closed
        assert edge.get("/after")[0] == 200


def test_idle_keep_alive_is_closed(origin: Origin) -> None:
    with (
        EdgeUnderTest(edge_settings(origin.url, limits={"keepalive_timeout_s": 1.0})) as edge,
        socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock,
    ):
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        assert _read_responses(sock, 1)[0].endswith(b"origin saw /x")
        sock.settimeout(8)
        assert sock.recv(1024) == b""  # closed by the edge, not by our timeout


def test_origin_down_gives_502_with_contact() -> None:
    unused = bind_listener("127.0.0.1", 0, listen=False)  # a port nobody listens on
    port = unused.getsockname()[1]
    with EdgeUnderTest(edge_settings(f"http://127.0.0.1:{port}")) as edge:
        status, headers, body = edge.get("/")
    unused.close()
    assert status == 502
    assert b"help@example-news.org" in body
    assert "x-floodwall-cache" not in headers


def test_origin_down_serves_stale_from_cache(origin: Origin) -> None:
    settings = edge_settings(origin.url, cache={"stale_while_revalidate_s": 0})
    with EdgeUnderTest(settings) as edge:
        assert edge.get("/cached/page")[1]["x-floodwall-cache"] == "MISS"
        assert edge.worker is not None
        cache = edge.worker.server.pipeline.forwarder.cache
        assert cache is not None and len(cache) == 1
        for entry in cache._entries.values():
            entry.fresh_until = entry.revalidate_until = 0.0  # as if a minute had passed
        origin.broken = True
        status, headers, body = edge.get("/cached/page")
    assert status == 200
    assert headers["x-floodwall-cache"] == "STALE"
    assert body == b"<p>/cached/page fetched 1 times</p>"


def test_origin_timeout_gives_504(origin: Origin) -> None:
    with EdgeUnderTest(edge_settings(origin.url, limits={"origin_timeout_s": 0.5})) as edge:
        status, _, body = edge.get("/slow?s=3")
    assert status == 504
    assert b"help@example-news.org" in body


def test_access_log_is_read_by_floodwall_analyze(origin: Origin, tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "edge.access.log"
    settings = edge_settings(origin.url, trusted_proxies=["127.0.0.0/8"])
    with EdgeUnderTest(settings, access_log=log_path) as edge:
        edge.get("/cached/home", headers={"Host": "www.example-news.org", "X-Forwarded-For": "203.0.113.5"})
        edge.get("/cached/home", headers={"Host": "www.example-news.org", "User-Agent": 'say "hi" caf\xe9'})
        edge.raw(b"BROKEN\r\n\r\n")
        # Flushed at least once a second, without waiting for the edge to stop.
        assert wait_until(lambda: log_path.exists() and len(log_path.read_text().splitlines()) == 3, within_s=5)
    result = analyze([log_path], site="edge-test", out_dir=tmp_path / "out", settings=Settings())
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["inputs"][0]["lines"] == 3
    assert report["inputs"][0]["bad_lines"] == 0
    assert result is not None
    rows = pl.concat(list(LogReader([str(log_path)], site="edge-test")))
    first, second, broken = rows.to_dicts()
    assert first["client"] == "203.0.113.5"  # the reader behind the trusted proxy, not the proxy
    assert (first["cache_status"], first["upstream_status"], first["host"]) == ("MISS", 200, "www.example-news.org")
    assert (second["cache_status"], second["upstream_status"]) == ("HIT", None)
    assert second["user_agent"] == "say \\x22hi\\x22 caf\\xE9"  # escaped as nginx does: no forged fields
    assert broken["status"] == 400 and broken["method"] is None


def test_expect_100_continue_is_answered_before_the_body(origin: Origin) -> None:
    with (
        EdgeUnderTest(edge_settings(origin.url)) as edge,
        socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock,
    ):
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        reply = _read_responses(sock, 1)[0]
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["body"] == "hello"


def test_slow_post_body_is_closed(origin: Origin) -> None:
    with (
        EdgeUnderTest(edge_settings(origin.url, limits={"body_timeout_s": 1.0})) as edge,
        socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock,
    ):
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 8:
            try:
                sock.sendall(b"x")  # a byte now and then, never the whole body
                sock.settimeout(0.5)
                if sock.recv(1024) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
    assert closed
    assert "/echo" not in origin.hits


def test_head_of_a_private_page_is_relayed_as_head(origin: Origin) -> None:
    with EdgeUnderTest(edge_settings(origin.url)) as edge:
        conn = edge.connection()
        conn.request("HEAD", "/private", headers={"Cookie": "session=1"})
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b""
        assert response.getheader("content-length") == str(len(b"origin saw /private"))
        conn.request("GET", "/private", headers={"Cookie": "session=1"})
        assert conn.getresponse().read() == b"origin saw /private"
        conn.close()
    assert [seen[0] for seen in origin.seen] == ["HEAD", "GET"]


def test_every_answer_is_recorded_for_the_live_detector(origin: Origin) -> None:
    recorder = LiveRecorder(capacity=100)
    settings = edge_settings(origin.url, trusted_proxies=["127.0.0.0/8"])
    with EdgeUnderTest(settings, recorder=recorder) as edge:
        edge.get("/cached/r?x=1", headers={"X-Forwarded-For": "203.0.113.31", "User-Agent": "reader"})
        edge.get("/cached/r?x=1", headers={"X-Forwarded-For": "203.0.113.31", "Referer": "https://t.co/"})
        edge.raw(b"NOT HTTP\r\n\r\n")
        assert wait_until(lambda: len(recorder) == 3)  # recorded just after the answer is written
        batch = recorder.take()
    rows = [dict(zip(RECORDED_FIELDS, values, strict=True)) for values in zip(*batch.columns, strict=True)]
    assert len(rows) == 3
    miss, hit, broken = rows
    assert (miss["client"], miss["method"], miss["path"], miss["query"]) == ("203.0.113.31", "GET", "/cached/r", "x=1")
    assert (miss["status"], miss["cache_status"], miss["upstream_status"], miss["user_agent"]) == (
        200,
        "MISS",
        200,
        "reader",
    )
    assert (hit["cache_status"], hit["upstream_status"], hit["referer"]) == ("HIT", None, "https://t.co/")
    assert (broken["status"], broken["method"], broken["client"]) == (400, None, "127.0.0.1")


def test_a_client_that_never_reads_is_dropped_without_piling_up_answers(origin: Origin) -> None:
    settings = edge_settings(origin.url, limits={"body_timeout_s": 1.0})
    with EdgeUnderTest(settings) as edge:
        assert len(edge.get("/big")[2]) == 1_000_000  # now cached: answers are written without waiting
        server = edge.worker.server if edge.worker is not None else None
        assert server is not None
        with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n" * 200)  # and never read
            assert wait_until(lambda: not server.connections, within_s=10)
        assert edge.get("/cached/after")[0] == 200
