"""Breach attempts: kinds from hits, distributed brute force, candidates for the signatures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from floodwall.detect.breach import BREACH_SCHEMA, breach_groups, candidates
from floodwall.detect.settings import DetectSettings
from floodwall.model import IncidentKind
from floodwall.testing import requests_frame

T0 = datetime(2024, 11, 12, 1, 0, tzinfo=UTC)


def _hits(rows: list[tuple[str, str, str, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "client": client,
                "family": family,
                "vector": vector,
                "bucket": T0,
                "hits": hits,
                "first_ts": T0 + timedelta(minutes=minute),
                "last_ts": T0 + timedelta(minutes=minute + 10),
                "rule_ids": ["x"],
                "matched": "m",
                "evidence_source": ["a.log"],
                "evidence_line": [1],
            }
            for client, family, vector, hits, minute in rows
        ],
        schema=BREACH_SCHEMA,
    ).drop("bucket", "rule_ids", "matched")


def test_kinds_scan_exploit_and_distributed_bruteforce():
    rows = [("198.51.100.1", "scanner", "scan", 300, 0), ("198.51.100.1", "sensitive-file", "scan", 90, 0)]
    rows += [("198.51.100.2", "sqli", "sqli", 40, 300), ("198.51.100.2", "scanner", "scan", 40, 300)]
    rows += [(f"203.0.113.{k}", "login", "login-bruteforce", 3, 900) for k in range(20)]
    rows += [("192.0.2.9", "login", "login-bruteforce", 1, 1500)]  # an editor logging in, later
    groups = {g.kind: g for g in breach_groups(_hits(rows), DetectSettings())}
    assert groups[IncidentKind.SCAN].clients == ("198.51.100.1",)
    assert groups[IncidentKind.EXPLOIT].clients == ("198.51.100.2",)
    assert len(groups[IncidentKind.BRUTEFORCE].clients) == 20
    assert all("192.0.2.9" not in g.clients for g in groups.values())


def test_plain_reader_requests_skip_the_signatures():
    frame = requests_frame(
        [
            {"path": "/2024/11/04/story/"},
            {"path": "/", "query": "id=1' or '1'='1"},
            {"path": "/.env"},
            {"path": "/", "user_agent": "sqlmap/1.8.11#stable (https://sqlmap.org)"},
            {"method": "POST", "path": "/wp-login.php"},
        ]
    )
    assert candidates(frame).to_list() == [False, True, True, True, True]
