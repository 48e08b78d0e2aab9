"""A batch's distinct values and each row's code (`floodwall.detect.dictionary`), by the C scanner and by Polars.

Detection derives every request's tokens from these: a row given another value's code would give that request
another path's kind, another agent's robot flag or another client's user-agent id.
"""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_series_equal

from floodwall.detect import dictionary as dictionary_module
from floodwall.detect.dictionary import dictionary, dictionary_reference

needs_scanner = pytest.mark.skipif(dictionary_module._tokenscan is None, reason="the C token scanner is not built")

# Few distinct values, so rows repeat them; long ones (past a string view's 12 inline bytes and the hash's 16-byte
# blocks), empty strings, nulls and multi-byte characters.
_VALUES = st.one_of(
    st.none(),
    st.sampled_from(["", "a", "/", "/feed/", "é", "x" * 12, "x" * 13, "y" * 16, "y" * 17, "Mozilla/5.0 " * 9]),
    st.text(max_size=40),
)


def _series(chunks: list[list[str | None]]) -> pl.Series:
    parts = [pl.Series("value", chunk, dtype=pl.String) for chunk in chunks]
    return pl.concat(parts, rechunk=False) if parts else pl.Series("value", [], dtype=pl.String)


def _same(got: dictionary_module.Dictionary, want: dictionary_module.Dictionary) -> None:
    assert_series_equal(got.values, want.values)
    assert_series_equal(got.codes, want.codes, check_dtypes=False)
    assert got.codes.dtype in (pl.UInt32, pl.UInt64) and want.codes.dtype in (pl.UInt32, pl.UInt64)


@needs_scanner
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(_VALUES, max_size=30), min_size=1, max_size=4))
def test_the_scanner_gives_the_reference_codes_and_values(chunks):
    column = _series(chunks)
    _same(dictionary(column), dictionary_reference(column))


@pytest.mark.parametrize("build", [dictionary, dictionary_reference])
def test_every_row_gets_back_its_own_value(build):
    column = pl.Series("agent", ["b", None, "a", "b", "", None, "a" * 40, "a" * 40, ""], dtype=pl.String)
    found = build(column)
    assert found.values.to_list() == ["b", None, "a", "", "a" * 40]
    assert found.codes.to_list() == [0, 1, 2, 0, 3, 1, 4, 4, 3]
    assert_series_equal(found.values.gather(found.codes), column)


@needs_scanner
def test_many_distinct_values_grow_the_table_and_keep_their_order():
    # 50,000 values, each twice, the second time in reverse: past the table's first sizes, every value found again.
    values = [f"/story/{n}" for n in range(50_000)]
    column = pl.Series("path", values + values[::-1], dtype=pl.String)
    found = dictionary(column)
    assert found.values.to_list() == values
    assert found.codes.to_list() == list(range(50_000)) + list(range(49_999, -1, -1))


def test_expand_gives_each_row_its_values_derived_columns():
    column = pl.Series("path", ["/a.css", "/b", "/a.css", None], dtype=pl.String)
    found = dictionary(column)
    derived = found.values.to_frame("path").select(pl.col("path").str.ends_with(".css").alias("asset"))
    (asset,) = found.expand(derived)
    assert asset.to_list() == [True, False, True, None]


def test_an_empty_column_has_no_values():
    found = dictionary(pl.Series("path", [], dtype=pl.String))
    assert found.values.len() == 0 and found.codes.len() == 0


def test_batch_tokens_give_each_request_its_agents_browser_flag_and_the_distinct_agents():
    from floodwall.detect.breach import browser_agent
    from floodwall.detect.windows import batch_tokens
    from floodwall.testing import requests_frame

    chrome = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
    )
    agents = [chrome, "sqlmap/1.7", None, chrome, "", "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0"]
    frame = requests_frame([{"user_agent": agent} for agent in agents])
    found = batch_tokens(frame)
    assert found.browser.to_list() == frame.select(browser_agent()).to_series().to_list()
    assert found.browser.to_list() == [True, False, False, True, False, False]
    assert found.agents.get_column("user_agent").to_list() == [chrome, "sqlmap/1.7", None, "", agents[-1]]
    ids = dict(zip(found.agents.get_column("user_agent"), found.agents.get_column("ua_id"), strict=True))
    assert found.toks.get_column("ua_id").to_list() == [ids[agent] for agent in agents]
