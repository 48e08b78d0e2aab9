"""The edge's access log on its own: a rotated file is followed, and what is buffered is written on flush."""

from __future__ import annotations

from pathlib import Path

from floodwall.edge.accesslog import AccessLog, escape
from floodwall.edge.http import Request


def _request(path: str) -> Request:
    request = Request("GET", path, [(b"host", b"www.example-news.org"), (b"user-agent", b"reader")], b"")
    request.client = "192.0.2.7"
    request.cache_status = "HIT"
    return request


def test_a_log_moved_away_by_logrotate_is_reopened(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(path)
    log.record(_request("/before"), 200, 10, 0.001)
    log.flush()
    path.rename(tmp_path / "access.log.1")  # what logrotate does (no copytruncate)
    log.record(_request("/after"), 200, 10, 0.001)
    log.flush()
    log.close()
    assert "/before" in (tmp_path / "access.log.1").read_text()
    rotated_away = (tmp_path / "access.log.1").read_text()
    assert "/after" not in rotated_away
    assert "/after" in path.read_text()


def test_nothing_reaches_the_file_before_a_flush_and_everything_after(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(path)
    for k in range(3):
        log.record(_request(f"/p{k}"), 200, 10, 0.001)
    assert path.read_text() == ""
    log.flush()
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("192.0.2.7 - - [")
    assert (
        '"GET /p0 HTTP/1.1" 200 10 "-" "reader" rt=0.001 urt="-" us="-" ucs="HIT" host="www.example-news.org"'
        in lines[0]
    )
    log.close()


def test_escaping_follows_nginx() -> None:
    assert escape('a"b\\c\x01\xe9') == "a\\x22b\\x5Cc\\x01\\xE9"


def test_repeated_requests_keep_their_own_client_times_and_origin_fields(tmp_path: Path) -> None:
    # The text between the fields that change is remembered per request shape: a repeat must still log its own
    # client, durations, origin status, cache status and escaping, and a changed field must show.
    path = tmp_path / "access.log"
    log = AccessLog(path)
    first = _request('/a"b')
    log.record(first, 200, 10, 0.001)
    again = _request('/a"b')
    again.client, again.upstream_s, again.upstream_status, again.cache_status = "192.0.2.8", 0.25, 503, "STALE"
    log.record(again, 200, 10, 0.5)
    agent = _request('/a"b')
    agent.headers.append((b"referer", b"x"))
    agent.referer, agent.user_agent = b"https://news.example/", b"other\x01"
    log.record(agent, 404, 11, 0.002)
    log.close()
    lines = path.read_text().splitlines()
    tails = [line.split("] ", 1)[1] for line in lines]
    assert lines[0].startswith("192.0.2.7 - - [") and lines[1].startswith("192.0.2.8 - - [")
    assert tails == [
        '"GET /a\\x22b HTTP/1.1" 200 10 "-" "reader" rt=0.001 urt="-" us="-" ucs="HIT" '
        'host="www.example-news.org" xff="-"',
        '"GET /a\\x22b HTTP/1.1" 200 10 "-" "reader" rt=0.500 urt="0.250" us="503" ucs="STALE" '
        'host="www.example-news.org" xff="-"',
        '"GET /a\\x22b HTTP/1.1" 404 11 "https://news.example/" "other\\x01" rt=0.002 urt="-" us="-" ucs="HIT" '
        'host="www.example-news.org" xff="-"',
    ]
