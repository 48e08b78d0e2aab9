"""Windows and per-second counts: correct tokens, and batch boundaries that change nothing."""

from __future__ import annotations

import itertools
from datetime import timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from floodwall.detect.windows import ClientWindows, SecondCounter, per_second, tokens
from floodwall.testing import REQUEST_DEFAULTS, requests_frame

START = REQUEST_DEFAULTS["ts"]


def _traffic() -> pl.DataFrame:
    rows = []
    for k in range(300):
        rows.append(
            {
                "ts": START + timedelta(seconds=k * 0.37),  # type: ignore[operator]
                "client": f"192.0.2.{k % 7}",
                "path": ["/", "/2024/11/04/some-long-story-title/", "/wp-content/themes/a/style.css"][k % 3],
                "query": None if k % 4 else f"v{k}={k * 7919}abc",
                "status": [200, 404, 503][k % 3],
            }
        )
    return requests_frame(rows)


def test_tokens_classify_requests():
    frame = requests_frame(
        [
            {"path": "/2024/11/04/a-story-about-things/"},
            {"path": "/wp-content/uploads/photo.jpg"},
            {"path": "/", "query": "s=election&x=1"},
            {"path": "/", "query": "_=1699999999123"},
            {"path": "/feed/"},
        ]
    )
    toks = tokens(frame)
    assert toks.get_column("kind").to_list() == ["page", "asset", "page", "page", "feed"]
    assert toks.get_column("template").to_list()[0] == "/0/0/0/{slug}/"
    assert toks.get_column("query_keys").to_list()[2] == "s,x"
    assert toks.get_column("cache_bust").to_list() == [False, False, False, True, False]


def _windows(frame: pl.DataFrame, cuts: list[int]) -> tuple[pl.DataFrame, pl.DataFrame]:
    windows, counter = ClientWindows(10), SecondCounter()
    parts, edges = [], [0, *sorted(set(cuts)), frame.height]
    for a, b in itertools.pairwise(edges):
        toks = tokens(frame.slice(a, b - a))
        if toks.height:
            parts.append(windows.add(toks))
            counter.add(toks)
    parts.append(windows.flush())
    closed = pl.concat(parts).sort("client", "window")
    return closed, counter.frame()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=299), max_size=12))
def test_batch_boundaries_do_not_change_aggregates(cuts):
    frame = _traffic()
    whole, whole_seconds = _windows(frame, [])
    cut, cut_seconds = _windows(frame, cuts)
    assert whole.equals(cut)
    assert whole_seconds.equals(cut_seconds)
    assert int(whole.get_column("requests").sum()) == frame.height


def test_window_aggregates():
    windows = ClientWindows(10)
    closed = pl.concat([windows.add(tokens(_traffic())), windows.flush()])
    one = closed.filter(pl.col("client") == "192.0.2.0").sort("window").row(0, named=True)
    assert one["requests"] >= 1 and one["first_ts"] <= one["last_ts"]
    assert closed.get_column("s5xx").sum() == 100


def test_query_keys_are_the_sorted_distinct_parameter_names():
    queries = ["utm_source=x", "b=2&a=1&a=3", "&&x", "=x", "k=v&=z&m", "q", "", None, "p=" + "1" * 60, "k" * 50 + "=1"]
    frame = requests_frame([{"query": q, "ts": START + timedelta(seconds=k)} for k, q in enumerate(queries)])
    got = tokens(frame).get_column("query_keys").to_list()
    assert got == ["utm_source", "a,b", "x", "", "k,m", "q", "", "", "p", "k" * 40]


def test_windows_of_one_two_and_three_requests():
    """Most windows of a proxy-pool flood hold one or two requests; their counts, gaps and bounds are those of any
    window (they are read off their rows, not grouped)."""
    at = [0.0, 1.0, 4.0, 0.5, 2.5, 6.5]
    clients = ["198.51.100.1", "198.51.100.2", "198.51.100.2", "198.51.100.3", "198.51.100.3", "198.51.100.3"]
    paths = ["/", "/wp-content/a.css", "/2024/11/04/a-story-about-things/", "/a", "/a", "/b"]
    statuses = [200, 200, 404, 200, 200, 200]
    rows = [
        {"ts": START + timedelta(seconds=t), "client": c, "path": p, "status": s}  # type: ignore[operator]
        for t, c, p, s in zip(at, clients, paths, statuses, strict=True)
    ]
    windows = ClientWindows(10)
    closed = pl.concat([windows.add(tokens(requests_frame(rows))), windows.flush()]).sort("client")
    one, two, three = closed.iter_rows(named=True)
    assert (one["requests"], one["paths"], one["gap_mean_s"], one["gap_std_s"]) == (1, 1, None, None)
    assert one["first_ts"] == one["last_ts"] == rows[0]["ts"]
    assert (two["requests"], two["pages"], two["assets"], two["s4xx"], two["paths"]) == (2, 1, 1, 1, 2)
    assert (two["gap_mean_s"], two["gap_std_s"]) == (3.0, None)
    assert (two["first_ts"], two["last_ts"]) == (rows[1]["ts"], rows[2]["ts"])
    assert two["template"] == "/0/0/0/{slug}/"  # the first page's, not the stylesheet's
    assert (three["requests"], three["paths"], three["gap_mean_s"]) == (3, 2, 3.0)
    assert abs(three["gap_std_s"] - 2**0.5) < 1e-9


def test_per_second_of_sorted_rows_is_the_group_by():
    """Time-ordered rows are counted as runs of equal seconds; rows out of order take the group-by; both agree."""
    seconds = [0.0, 0.2, 0.9, 1.0, 1.0, 3.5, 3.6, 7.0]
    statuses = [200, None, 301, 404, 503, 499, 200, 302]
    frame = requests_frame(
        [{"ts": START + timedelta(seconds=t), "status": s} for t, s in zip(seconds, statuses, strict=True)]  # type: ignore[operator]
    )
    toks = tokens(frame)
    fast = per_second(toks)
    reference = per_second(toks.reverse())  # not sorted: the group-by
    assert fast.equals(reference)
    assert fast.get_column("requests").to_list() == [3, 2, 2, 1]
    classes = fast.select("s2xx", "s3xx", "s4xx", "s5xx").rows()
    assert classes == [(2, 1, 0, 0), (0, 0, 1, 1), (1, 0, 1, 0), (0, 1, 0, 0)]
