"""The edge's one-request path (plain Python) against the columnar engine, on the CRS regression requests."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from floodwall.detect.signatures import load_engine, match_request
from floodwall.detect.signatures.regression import cases_frame, load_cases

SUITE = Path(__file__).resolve().parents[3] / "shared/data/crs-3.3.4-regression/tests/regression/tests"
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/117.0.0.0 Safari/537.36"


def _columnar(frame: pl.DataFrame, paranoia: int) -> list[set[tuple[str, str, str]]]:
    hits = load_engine(paranoia=paranoia).match(frame)
    per_row: list[set[tuple[str, str, str]]] = [set() for _ in range(frame.height)]
    for row, rule_id, variable, matched in hits.select("row", "rule_id", "variable", "matched").iter_rows():
        per_row[row].add((rule_id, variable, matched))
    return per_row


@pytest.mark.parametrize("paranoia", [1, 4])
def test_one_request_path_finds_what_the_columnar_engine_finds(paranoia: int) -> None:
    if not SUITE.is_dir():
        pytest.skip(f"CRS regression suite not found at {SUITE}")
    cases, _ = load_cases(SUITE)
    frame = cases_frame(cases)
    expected = _columnar(frame, paranoia)
    engine = load_engine(paranoia=paranoia)
    fired = 0
    for row, request in enumerate(frame.iter_rows(named=True)):
        hits = match_request(
            request["method"],
            request["path"],
            request["query"],
            protocol=request["protocol"],
            user_agent=request["user_agent"],
            referer=request["referer"],
            host=request["host"],
            engine=engine,
        )
        assert {(hit.rule_id, hit.variable, hit.matched) for hit in hits} == expected[row], cases[row].title
        fired += bool(hits)
    assert fired > 250


def test_headers_cookies_and_form_bodies_agree_with_the_columnar_engine() -> None:
    headers = {"Cookie": "session=1%27%20or%20%271%27=%271; __utma=1%27%20or%20%271%27=%271", "X-Test": "a;id"}
    body = "text=%3Cscript%3Ealert(1)%3C/script%3E&name=x"
    frame = pl.DataFrame(
        {
            "method": ["POST"],
            "path": ["/comment"],
            "query": ["page=../../etc/passwd"],
            "protocol": ["HTTP/1.1"],
            "user_agent": [UA],
            "referer": [None],
            "host": ["news.example"],
            "body": [body],
            "headers": [[{"name": k, "value": v} for k, v in headers.items()]],
        },
        schema_overrides={"referer": pl.String},
    )
    (expected,) = _columnar(frame, 4)
    hits = match_request(
        "POST",
        "/comment",
        "page=../../etc/passwd",
        user_agent=UA,
        host="news.example",
        headers=headers,
        body=body,
        paranoia=4,
    )
    assert {(hit.rule_id, hit.variable, hit.matched) for hit in hits} == expected
    assert len(expected) > 3
