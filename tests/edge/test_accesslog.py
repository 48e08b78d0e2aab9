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
