"""Pass-through requests relayed by callbacks (`OriginPool.start`, `Forwarder.start_now`): once the pool holds an
idle kept-alive connection, a request that goes to the origin uncached is sent and answered without a task. What a
reader sees must not change: the same answer, a timeout still answered 504, a large answer still streamed whole, a
stale connection retried once for a GET and never for a POST. And a request's fields are still held to
`max_header_bytes` now that a head read whole in one small feed skips the field-by-field count."""

from __future__ import annotations

import http.client
import json
import select
import socket

from edge_run import EdgeUnderTest, Origin, edge_settings

#: A logged-in reader's cookie: such requests are never cached, so they take the relay.
PRIVATE = {"Cookie": "session=1"}


def _post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/octet-stream"})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_pass_through_on_a_kept_alive_origin_connection_is_answered_whole_and_reuses_it(origin: Origin) -> None:
    with EdgeUnderTest(edge_settings(origin.url)) as edge:
        answers = [edge.get(f"/article/{k}", headers=PRIVATE) for k in range(20)]
        assert edge.worker is not None
        in_flight = edge.worker.server.pipeline.forwarder.pool.in_flight
        assert not edge.loop_errors
    assert [(status, body) for status, _, body in answers] == [
        (200, f"origin saw /article/{k}".encode()) for k in range(20)
    ]
    assert all(headers["x-floodwall-cache"] == "MISS" for _, headers, _ in answers)
    assert origin.connections == 1  # one origin connection served them all
    assert in_flight == 0  # every slot given back


def test_an_origin_too_slow_on_a_kept_alive_connection_gets_504(origin: Origin) -> None:
    with EdgeUnderTest(edge_settings(origin.url, limits={"origin_timeout_s": 0.5})) as edge:
        assert edge.get("/warm")[0] == 200  # leaves an idle connection: the next request takes the callback way
        status, _, body = edge.get("/slow?s=3", headers=PRIVATE)
        again = edge.get("/after", headers=PRIVATE)
        assert not edge.loop_errors
    assert status == 504
    assert b"help@example-news.org" in body
    assert again[0] == 200 and again[2] == b"origin saw /after"


def test_a_large_pass_through_answer_is_streamed_whole(origin: Origin) -> None:
    payload = bytes(range(256)) * 1024  # 256 KiB: echoed back, more than a callback relay waits for
    with EdgeUnderTest(edge_settings(origin.url, limits={"max_body_bytes": 1 << 20})) as edge:
        assert edge.get("/warm")[0] == 200
        status, body = _post(edge.port, "/echo", payload)
        assert not edge.loop_errors
    assert status == 200
    assert json.loads(body)["body"] == payload.decode("latin-1")


def test_a_stale_kept_alive_connection_is_retried_once_for_a_get_and_never_for_a_post(origin: Origin) -> None:
    with EdgeUnderTest(edge_settings(origin.url)) as edge:
        assert edge.get("/warm")[0] == 200
        assert origin.connections == 1
        origin.broken = True  # the origin now closes every connection unanswered, as one closing idle ones would
        get = edge.get("/again", headers=PRIVATE)
        after_get = origin.connections
        origin.broken = False
        assert edge.get("/warm-again")[0] == 200
        before_post = origin.connections
        origin.broken = True
        post = _post(edge.port, "/form", b"name=x")
        after_post = origin.connections
        assert not edge.loop_errors
    assert get[0] == 502
    assert after_get == 2  # the idle connection, then one new one: one retry
    assert post[0] == 502
    assert after_post == before_post  # a POST is not sent twice


def _head_in_pieces(port: int, fields: int, pieces: int) -> bytes:
    """A GET whose head holds `fields` fields of 100 bytes, sent in `pieces` writes a little apart (so that the
    edge reads them separately); the edge's answer."""
    head = b"GET /fields HTTP/1.1\r\nHost: a\r\nCookie: session=1\r\n"
    head += b"".join(b"X-Field-%03d: %s\r\n" % (k, b"v" * 86) for k in range(fields)) + b"Connection: close\r\n\r\n"
    step = -(-len(head) // pieces)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for start in range(0, len(head), step):
            sock.sendall(head[start : start + step])
            readable, _, _ = select.select([sock], [], [], 0.3)
            if readable:  # answered already (431): sending more to a closed connection would reset it
                break
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_header_fields_over_the_limit_get_431_whether_they_come_at_once_or_in_pieces(origin: Origin) -> None:
    # max_header_bytes 4096: 30 fields (3 KB) pass, 50 (5 KB) do not, in one write or in five.
    with EdgeUnderTest(edge_settings(origin.url, limits={"max_header_bytes": 4096})) as edge:
        answers = {
            (fields, pieces): _head_in_pieces(edge.port, fields, pieces) for fields in (30, 50) for pieces in (1, 5)
        }
        assert not edge.loop_errors
    assert answers[30, 1].startswith(b"HTTP/1.1 200 ") and answers[30, 5].startswith(b"HTTP/1.1 200 ")
    assert answers[50, 1].startswith(b"HTTP/1.1 431 ") and answers[50, 5].startswith(b"HTTP/1.1 431 ")
