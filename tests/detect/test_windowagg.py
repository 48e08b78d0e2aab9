"""The C window counter gives the reference's frame: the same windows, counts, gaps and first rows, in the same
order, on synthetic sites and on arbitrary rows."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from floodwall.detect import windowagg
from floodwall.detect.windows import WINDOW_SCHEMA, _aggregate, tokens
from floodwall.testing import REQUEST_DEFAULTS, requests_frame

pytestmark = pytest.mark.skipif(not windowagg.available(), reason="the C window counter is not built")

START = REQUEST_DEFAULTS["ts"]


def assert_same(toks: pl.DataFrame, window_s: int) -> pl.DataFrame:
    fast = _aggregate(toks, window_s)
    reference = _aggregate(toks, window_s, fast=False)
    # Gaps are summed in another order than Polars' mean and deviation: equal to the last few bits.
    assert_frame_equal(fast, reference, check_exact=False, rel_tol=1e-12, abs_tol=1e-12)
    assert fast.schema == pl.Schema(WINDOW_SCHEMA)
    return fast


@pytest.mark.parametrize("kind", ["flood", "fleet", "flash-crowd", "quiet"])
def test_synthetic_sites(site_factory, kind):  # type: ignore[no-untyped-def]
    frame = site_factory(kind, seed=5, minutes=100).frame
    toks = tokens(frame)
    for window_s in (10, 60):
        out = assert_same(toks, window_s)
        assert int(out.get_column("requests").sum()) == toks.height


rows = st.lists(
    st.fixed_dictionaries(
        {
            "gap_ms": st.sampled_from([0, 0, 1, 250, 999, 1000, 7000, 61_000]),
            "client": st.sampled_from(["192.0.2.1", "192.0.2.2", "198.51.100.7", "2001:db8::1"]),
            "path": st.sampled_from(["/", "/a", "/wp-content/x.css", "/feed/", "/2024/11/04/a-story-about-it/", None]),
            "query": st.sampled_from([None, "", "a=1", "_=1699999999123", "b=2&a=1"]),
            "status": st.sampled_from([200, 301, 404, 499, 503, None]),
            "method": st.sampled_from(["GET", "POST", None]),
            "referer": st.sampled_from([None, "-", "https://t.co/x", "https://example.org/"]),
            "user_agent": st.sampled_from([None, "curl/8", "Googlebot/2.1 (+http://www.google.com/bot.html)"]),
        }
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows, st.sampled_from([1, 10, 60]))
def test_arbitrary_rows(drawn, window_s):  # type: ignore[no-untyped-def]
    at = START
    requests = []
    for row in drawn:
        at = at + timedelta(milliseconds=row.pop("gap_ms"))  # type: ignore[operator]
        requests.append({**row, "ts": at})
    assert_same(tokens(requests_frame(requests)), window_s)


def test_rows_out_of_time_order_take_the_reference():
    frame = requests_frame([{"ts": START + timedelta(seconds=s)} for s in (0, 5, 1)]).reverse()  # type: ignore[operator]
    toks = tokens(frame)
    assert not toks.get_column("ts").is_sorted()
    assert _aggregate(toks, 10).equals(_aggregate(toks, 10, fast=False))
