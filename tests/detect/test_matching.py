"""Batch analysis matches several batches' suspects in one call (`detect.matching.BatchMatcher.defer`): each batch's
aggregated hits must be what matching it alone gives, or a breach incident's hits, evidence lines and rule ids would
depend on where the reader cut the log into batches."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from floodwall.detect import matching
from floodwall.detect.breach import BREACH_SCHEMA
from floodwall.detect.matching import BatchMatcher
from floodwall.detect.signatures import load_engine
from floodwall.detect.windows import request_tokens
from floodwall.testing import requests_frame

T0 = datetime(2024, 11, 12, 1, 0, tzinfo=UTC)
BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
REQUESTS = [
    {"path": "/2024/11/12/a-story/", "user_agent": BROWSER},  # a reader: never matched
    {"path": "/index.php", "query": "id=1' OR '1'='1", "user_agent": "sqlmap/1.7.2#stable (https://sqlmap.org)"},
    {"path": "/search", "query": "q=<script>alert(1)</script>", "user_agent": BROWSER},
    {"path": "/../../etc/passwd", "user_agent": "curl/8.4.0"},
    {"path": "/.env", "user_agent": "Go-http-client/1.1"},
    {"path": "/wp-login.php", "method": "POST", "user_agent": BROWSER},
    {"path": "/xmlrpc.php", "method": "POST", "user_agent": "python-requests/2.31.0"},
    {"path": "/", "query": "cmd=;cat /etc/passwd", "user_agent": "Mozilla/5.0 zgrab/0.x"},
    {"path": "/news/", "user_agent": "Nikto/2.5.0"},  # a plain request matched for its agent alone
]


@pytest.fixture(scope="module")
def matcher() -> matching.SignatureMatcher:
    return load_engine().match


def _log(rows: int, seed: int) -> pl.DataFrame:
    """`rows` requests of a few clients, each a random one of REQUESTS, a second apart."""
    pick = random.Random(seed)
    clients = [f"198.51.100.{n}" for n in range(1, 6)]
    return requests_frame(
        [
            {**pick.choice(REQUESTS), "client": pick.choice(clients), "ts": T0 + timedelta(seconds=n), "status": 404}
            for n in range(rows)
        ]
    )


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("client", "family", "vector", "bucket", "first_ts", "last_ts", "hits")


def test_batches_matched_together_get_the_hits_each_gets_alone(matcher, monkeypatch):
    monkeypatch.setattr(matching, "_DEFER_BATCHES", 4)  # two calls of four batches, then a flush of the rest
    log = _log(400, seed=5)
    batches = [log.slice(start, 40) for start in range(0, log.height, 40)]
    alone = BatchMatcher(matcher)
    expected = [alone.match(batch, request_tokens(batch)[1]) for batch in batches]
    together = BatchMatcher(matcher)
    got: list[pl.DataFrame] = []
    returned = []
    for batch in batches:
        done = together.defer(batch, request_tokens(batch)[1])
        returned.append(len(done))
        got.extend(done)
    assert returned == [0, 0, 0, 4, 0, 0, 0, 4, 0, 0]
    got.extend(together.flush())
    assert together.flush() == []
    assert len(got) == len(expected) == 10
    assert all(frame.height for frame in expected), "every batch has hits"
    for mine, reference in zip(got, expected, strict=True):
        assert_frame_equal(_sorted(mine), _sorted(reference))
    families = set(pl.concat(expected).get_column("family").to_list())
    assert {"sqli", "xss", "login", "xmlrpc", "scanner"} <= families, families


def test_a_batch_of_readers_alone_keeps_nothing(matcher):
    readers = requests_frame([{"path": "/", "user_agent": BROWSER, "ts": T0 + timedelta(seconds=n)} for n in range(5)])
    batches = BatchMatcher(matcher)
    assert batches.defer(readers, request_tokens(readers)[1]) == []
    assert batches.flush() == []
    assert batches.match(readers, request_tokens(readers)[1]).schema == pl.Schema(BREACH_SCHEMA)
