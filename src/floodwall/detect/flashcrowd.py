"""The flash-crowd guard: readers of a breaking story are never convicted.

A false positive on readers is the worst failure Floodwall can have (DESIGN.md), so the guard has the last word over
client and fleet scores for flood judgement (signature hits, which are a request's own content, are not its business).
A client is protected when it behaves like a reader: a browser the site sees every day, no cache-busting, a rate a
person can reach, and a reader's habits (assets fetched with the pages, or arriving from social networks and search,
or following the site's own links); so is an address shared by many readers (a carrier's NAT), whose rate is many
readers' but whose habits are a reader's. A surge is a flash crowd when such clients carry most of its extra traffic.
"""

from __future__ import annotations

import polars as pl

from floodwall.detect.profile import Profile

__all__ = ["PROTECTED_REASON", "flash_crowd_share", "protect_readers"]

PROTECTED_REASON = (
    "behaves like a reader (known browser, reader habits, human rate): protected by the flash-crowd guard"
)


def protect_readers(clients: pl.DataFrame, profile: Profile) -> pl.DataFrame:
    """`clients` (client features) with a boolean `protected` column."""
    human_rps = max(3 * profile.quiet_window_rps, 2.0)
    asset_habit = (pl.col("assets") > 0) & (pl.col("asset_share") >= 0.1)
    arrives_like_reader = (pl.col("social_share") > 0) | (pl.col("no_referer_share") <= 0.5)
    habits = asset_habit | arrives_like_reader if profile.asset_share >= 0.15 else arrives_like_reader | asset_habit
    reader = (
        (pl.col("novel_ua_share") < 0.2)
        & (pl.col("agents") <= 2)
        & (pl.col("cache_bust_share") < 0.2)
        & (pl.col("peak_window_rps") <= human_rps)
        & (pl.col("posts") < 10)
        & habits
    )
    # Many readers behind one address (a carrier's NAT, an office): a reader's habits at a rate no reader reaches alone.
    shared = (
        (pl.col("novel_ua_share") < 0.2)
        & (pl.col("cache_bust_share") < 0.2)
        & (pl.col("posts") < 10)
        & (pl.col("asset_share") >= 0.3)
        & arrives_like_reader
        & (pl.col("error_share") < 0.2)
    )
    return clients.with_columns((reader | shared).fill_null(False).alias("protected"))


def flash_crowd_share(clients: pl.DataFrame) -> float:
    """Share of the interval's requests sent by protected clients (1.0 for a pure breaking-news crowd)."""
    total = float(clients.get_column("requests").sum() or 0.0)
    if total == 0:
        return 0.0
    protected = float(clients.filter(pl.col("protected")).get_column("requests").sum() or 0.0)
    return protected / total
