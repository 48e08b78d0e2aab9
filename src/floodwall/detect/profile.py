"""What the site's normal traffic looks like, learned from its quiet windows: the yardstick of every judgement.

A user agent, a query scheme or a path template is *known* when quiet traffic used it for at least `known_share` of
its requests; clients and networks are *new* when first seen close to an onset. Readers of a breaking story use the
browsers, pages and query schemes of every day; a flood's forged user agents and random query keys are unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from floodwall.detect.settings import DetectSettings

__all__ = ["Profile", "build_profile"]


@dataclass(frozen=True, slots=True)
class Profile:
    """Quiet traffic in numbers; empty frames when there was no quiet traffic."""

    known_agents: pl.DataFrame  # ua_id, share
    known_query_keys: pl.DataFrame  # query_keys, share
    known_templates: pl.DataFrame  # template, share
    first_seen: pl.DataFrame  # client, first_seen (over all traffic, not only quiet)
    net_first_seen: pl.DataFrame  # client_net, net_first_seen
    quiet_requests: int
    quiet_window_rps: float  # the 99.9th percentile of one client's rate in a quiet window
    asset_share: float  # assets / requests of quiet traffic (0 where a CDN serves the assets)

    @property
    def has_quiet(self) -> bool:
        return self.quiet_requests > 0


def _shares(quiet: pl.DataFrame, key: str, total: int, settings: DetectSettings) -> pl.DataFrame:
    return (
        quiet.group_by(key)
        .agg(pl.col("requests").sum().alias("n"))
        .with_columns((pl.col("n") / max(total, 1)).alias("share"))
        .select(key, "share")
    )


def build_profile(windows: pl.DataFrame, quiet_mask: pl.Series | None, settings: DetectSettings) -> Profile:
    """The profile of `windows` (WINDOW_SCHEMA rows), learned from the rows where `quiet_mask` is true."""
    quiet = windows if quiet_mask is None else windows.filter(quiet_mask)
    total = int(quiet.get_column("requests").sum() or 0)
    rates = quiet.get_column("requests").cast(pl.Float64) / settings.window_s
    window_rps = float(rates.quantile(0.999) or 0.0) if quiet.height else 0.0
    assets = int(quiet.get_column("assets").sum() or 0)
    first = windows.group_by("client").agg(pl.col("first_ts").min().alias("first_seen"))
    net_first = windows.group_by("client_net").agg(pl.col("first_ts").min().alias("net_first_seen"))
    return Profile(
        known_agents=_shares(quiet, "ua_id", total, settings),
        known_query_keys=_shares(quiet.filter(pl.col("query_keys") != ""), "query_keys", total, settings),
        known_templates=_shares(quiet, "template", total, settings),
        first_seen=first,
        net_first_seen=net_first,
        quiet_requests=total,
        quiet_window_rps=window_rps,
        asset_share=assets / total if total else 0.0,
    )


def quiet_mask_of(windows: pl.DataFrame, busy: list[tuple[datetime, datetime]]) -> pl.Series:
    """True for windows outside every (start, end) interval of `busy`."""
    mask = pl.repeat(True, windows.height, eager=True)
    column = windows.get_column("window")
    for start, end in busy:
        mask = mask & ~column.is_between(start, end)
    return mask
