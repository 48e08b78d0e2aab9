"""Request kinds, query schemes, hostile-looking requests and marker candidates, on hand-made frames."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from floodwall.forensics.shapes import (
    looks_hostile,
    marker_candidates,
    query_scheme,
    request_kind,
    request_kinds,
    scheme_counts,
    ua_family,
    with_query_scheme,
)
from floodwall.report.account import mask_addresses

T = datetime(2024, 11, 18, 17, 5, tzinfo=UTC)


def _frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    base = {"ts": T, "client": "203.0.113.7", "method": "GET", "path": "/", "query": None, "status": 200,
            "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0 Safari/537.36", "referer": None,
            "source": "a.log", "line": 1}  # fmt: skip
    strings: dict[str, pl.DataType | type[pl.DataType]] = {
        c: pl.String for c in ("client", "method", "path", "query", "user_agent", "referer", "source")
    }
    return pl.DataFrame(
        [base | r for r in rows], schema_overrides=strings | {"ts": pl.Datetime("us", "UTC"), "status": pl.Int16}
    )


def test_request_kinds_name_the_flood_vectors() -> None:
    frame = _frame(
        [
            {"path": "/search", "query": "q=izvestaj+vlada"},
            {"path": "/wp-login.php", "method": "POST"},
            {"path": "/xmlrpc.php", "method": "POST"},
            {"path": "/2024/11/story", "query": "oqkzar=1234567890"},
            {"path": "/qwertyuiop", "status": 404},
            {"path": "/wp-content/themes/x/style.css"},
            {"path": "/2024/11/story"},
        ]
    )
    kinds = frame.select(request_kind()).to_series().to_list()
    assert kinds == ["search", "login", "xmlrpc", "bust", "notfound", "asset", "page"]


def test_query_schemes_keep_common_keys_and_shape_the_rest() -> None:
    frame = _frame([{"query": "q=izvestaj+vlada+3485&hano=65046"}, {"query": "ver=6.4.2"}, {"query": "oqkzar=123"}])
    assert frame.select(query_scheme()).to_series().to_list() == ["q=W+W+N&[a-z]{4}=N", "ver=N.N.N", "[a-z]{6}=N"]


def test_hostile_requests_are_probes_and_payloads_not_pages() -> None:
    frame = _frame(
        [
            {"path": "/.env"},
            {"path": "/", "query": "id=1%27%20union%20select"},
            {"path": "/blog/tags/c"},
            {"path": "/files/", "query": "C=N;O=A"},
            {"path": "/../../etc/passwd"},
        ]
    )
    assert frame.select(looks_hostile()).to_series().to_list() == [True, True, False, False, True]


def test_marker_candidates_are_lower_cased_and_skip_browsers_and_site_words() -> None:
    frame = _frame(
        [
            {"user_agent": "Stop spreading lies. Hano was here", "line": 1},
            {"path": "/search", "query": "q=a&Hano=5", "line": 2},
            {"user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", "line": 3},
        ]
    )
    pairs = set(marker_candidates(frame).select("kind", "value").iter_rows())
    assert ("user-agent", "stop spreading lies. hano was here") in pairs
    assert ("query-key", "hano") in pairs
    assert not any(kind == "user-agent" and "firefox" in value for kind, value in pairs)
    assert ("path", "search") not in pairs


def test_user_agent_families() -> None:
    frame = _frame([{"user_agent": "python-requests/2.31.0"}, {"user_agent": None}, {}])
    assert frame.select(ua_family()).to_series().to_list() == ["HTTP library", "(none)", "Chrome 124"]


def test_addresses_are_masked_but_times_and_versions_are_not() -> None:
    text = "at 2024-11-18 18:05:07 CET from 198.51.100.7, 2001:db8::1 and 2001:db8:0:0:0:0:0:2 via Chrome/103.0.0.0"
    masked = mask_addresses(text)
    assert "198.51.100.7" not in masked and "2001:db8" not in masked
    assert "18:05:07" in masked and "Chrome/103.0.0.0" in masked


def test_grouping_by_hash_gives_what_grouping_by_text_gives() -> None:
    from floodwall.forensics.shapes import grouped

    combos = [(c, u, p) for c in ("203.0.113.7", "2001:db8::1") for u in ("a", None, "ü") for p in ("/", "/x", None)]
    frame = _frame([{"client": c, "user_agent": u, "path": p} for c, u, p in combos] * 3)
    by_hash = grouped(frame.lazy(), ["method"], ["client", "user_agent", "path"], [pl.len().alias("n")]).collect()
    by_text = frame.group_by("method", "client", "user_agent", "path").agg(pl.len().alias("n"))
    order = ["method", "client", "user_agent", "path"]
    assert by_hash.select(*order, "n").sort(order, nulls_last=True).equals(by_text.sort(order, nulls_last=True))
    assert by_hash.height == 2 * 3 * 3


def test_schemes_worked_out_column_wise_match_the_per_part_ones() -> None:
    """`with_query_scheme` (one-part queries shaped as a plain column) gives every query the scheme
    `query_scheme` gives it: cache busters, several parts, bare keys, empty values, odd characters."""
    queries = [
        "xk3q9z=1700000000", "ver=6.6.2", "q=izvestaj+vlada&page=2", "amp", "a1=2", "=", "", "&", "ABCDEF=x",
        "utm_source=fb&fbclid=IwAR0x", "s=%27%20or%201=1", "tok=é9", "verylongkeyname=abc123def", None,
    ]  # fmt: skip
    frame = pl.DataFrame({"query": queries, "n": range(len(queries))}, schema={"query": pl.String, "n": pl.Int64})
    expected = frame.with_columns(query_scheme().alias("scheme")).sort("n")
    got = with_query_scheme(frame.lazy()).collect().sort("n")
    assert got.equals(expected)
    assert got.get_column("scheme").to_list()[:3] == ["[…]{6}=N", "ver=N.N.N", "q=W+W&page=N"]


def test_scheme_counts_match_counting_each_querys_scheme() -> None:
    """`scheme_counts` (one-part queries grouped before their scheme is written) counts what shaping every query
    with `query_scheme` and counting per (incident, scheme, client) counts, weights included."""
    queries = [
        "xk3q9z=1700000000", "ver=6.6.2", "q=izvestaj+vlada&page=2", "amp", "a1=2", "=", "", "&", "ABCDEF=x",
        "utm_source=fb&fbclid=IwAR0x", "s=%27%20or%201=1", "tok=é9", "verylongkeyname=abc123def", None, "hano=60506",
        "oqkzar=1", "OQKZAR=22", "zz9q=", "k=v=w", "abcdef=12ab", "Ver=1",
    ]  # fmt: skip
    clients = ["203.0.113.7", "198.51.100.2", None]
    rows = [
        {"query": q, "client": c, "incident_id": i}
        for n, q in enumerate(queries)
        for c in clients
        for i in ("a", "b")[: 1 + n % 2]
    ] * 2
    frame = pl.DataFrame(rows, schema={"query": pl.String, "client": pl.String, "incident_id": pl.String})
    expected = (
        frame.filter(pl.col("query").is_not_null())
        .with_columns(query_scheme().alias("scheme"))
        .group_by("incident_id", "scheme", "client")
        .agg((pl.len() * 3).cast(pl.Int64).alias("requests"))
    )
    got = scheme_counts(frame.lazy(), ["incident_id"], 3).collect()
    order = ["incident_id", "scheme", "client"]
    assert got.columns == [*order, "requests"]
    assert got.sort(order, nulls_last=True).equals(expected.sort(order, nulls_last=True))
    assert ("a", "[a-z]{6}=N", "203.0.113.7", 12) in got.rows()  # oqkzar=1 and OQKZAR=22, twice each, weight 3


def test_query_keys_found_row_by_row_are_the_ones_found_per_distinct_query() -> None:
    """A flood's query strings never repeat, so the attack's query keys are found row by row: the same candidates,
    counts, clients, first and last times and evidence line as grouping the distinct queries first."""
    queries = [
        "hano=60506", "HANO=1", "xk3q9z=1700000000", "q=a&Hano=5", "hano=2&hano=3", "ab=1", "ver=6.4.2", "amp",
        "=", "", "&", "9abc=1", "abc", "abc=", "k=v=w&zzzz=1", "utm_source=x&hano=1", None,
    ]  # fmt: skip
    rows = [
        {"query": q, "client": f"203.0.113.{n % 3}", "line": n, "ts": T + timedelta(seconds=n // 2)}
        for n, q in enumerate(queries * 3)
    ]
    frame = _frame(rows).with_columns(pl.lit("flood-1").alias("incident_id"))
    order = ["kind", "value"]
    grouped_first = marker_candidates(frame, keys=("incident_id",), count_clients=True).sort(order)
    per_row = marker_candidates(frame, keys=("incident_id",), count_clients=True, per_row_queries=True)
    assert per_row.select(grouped_first.columns).sort(order).equals(grouped_first)
    hano = per_row.filter(pl.col("value") == "hano").row(0, named=True)
    assert (hano["requests"], hano["clients"], hano["line"]) == (3 * 6, 3, 0)


def test_request_kinds_of_a_batch_are_request_kind_of_each_row() -> None:
    """`request_kinds` (only paths that might be special go through every pattern) names every row as
    `request_kind` does, whatever mix of method, path, query and status."""
    paths = [
        "/", "/2024/11/story", "/XMLRPC.php", "/wp-login.php", "/Search", "/search/x", "/research", "/a/search",
        "/style.CSS", "/app.js?", "/font.woff2", "/x.json", "/admin/", "/account", "/login", "/qwertyuiop", None,
    ]  # fmt: skip
    combos = [
        {"path": p, "method": m, "query": q, "status": s}
        for p in paths
        for m in ("GET", "POST", "HEAD", None)
        for q in (None, "s=hano", "oqkzar=123", "a=1&q=x", "")
        for s in (200, 404)
    ]
    frame = _frame(combos)
    expected = frame.select(request_kind()).to_series()
    got = request_kinds(frame)
    assert got.name == "kind"
    assert got.to_list() == expected.to_list()
    assert set(got) == {"xmlrpc", "login", "search", "post", "asset", "notfound", "bust", "page"}
