"""Fleet level: clients that act as one during an incident are judged together.

A rented residential proxy pool sends no more per address than a reader does, so no single address stands out.
What stands out is the pool: many clients sharing one request shape (path template, query scheme, method), the same
habits (no assets, forged or rotating user agents, cache-busting), newly active at the onset, and a shape whose
share of traffic jumped far beyond the site's overall surge. Readers of a breaking story share a shape too, but it is
the site's everyday shape (an article template, known browsers, assets fetched), so its lift stays near the surge's.
"""

from __future__ import annotations

import polars as pl

from floodwall.detect.profile import Profile
from floodwall.detect.settings import DetectSettings

__all__ = ["FLEET_POINTS", "find_fleets"]

#: Points a member of a hostile fleet gets on top of its own.
FLEET_POINTS = 0.4


def _signature(frame: pl.DataFrame) -> pl.DataFrame:
    """The fleet key of each client: shape and habits, coarse enough that a pool's members agree."""
    return frame.with_columns(
        pl.concat_str(
            [
                pl.col("template"),
                pl.lit("?"),
                pl.when(pl.col("cache_bust_share") >= 0.5).then(pl.lit("<random>")).otherwise(pl.col("query_keys")),
                pl.lit("|ua:"),
                pl.when(pl.col("novel_ua_share") >= 0.5).then(pl.lit("unknown")).otherwise(pl.lit("known")),
                pl.lit("|assets:"),
                (pl.col("assets") > 0).cast(pl.String),
                pl.lit("|post:"),
                (pl.col("posts") > 0.5 * pl.col("requests")).cast(pl.String),
            ]
        ).alias("fleet_key")
    )


def find_fleets(
    incident: pl.DataFrame, quiet: pl.DataFrame, profile: Profile, settings: DetectSettings
) -> pl.DataFrame:
    """Add `fleet_key`, `fleet_size`, `fleet_hostile` and `fleet_reason` to `incident` (scored client features).

    `quiet` holds client features of quiet traffic (same columns), for the shapes' quiet shares.
    """
    incident = _signature(incident)
    if incident.height == 0:
        return incident.with_columns(
            pl.lit(0, pl.UInt32).alias("fleet_size"),
            pl.lit(False).alias("fleet_hostile"),
            pl.lit(None, pl.String).alias("fleet_reason"),
        )
    total = float(incident.get_column("requests").sum())
    quiet_shares = pl.DataFrame(schema={"fleet_key": pl.String, "quiet_share": pl.Float64})
    if quiet.height:
        quiet = _signature(quiet)
        quiet_total = float(quiet.get_column("requests").sum())
        quiet_shares = quiet.group_by("fleet_key").agg((pl.col("requests").sum() / quiet_total).alias("quiet_share"))
    fleets = (
        incident.group_by("fleet_key")
        .agg(
            pl.len().cast(pl.UInt32).alias("fleet_size"),
            (pl.col("requests").sum() / total).alias("incident_share"),
            pl.col("new_client").mean().alias("new_share"),
            pl.col("rule_score").median().alias("median_score"),
            pl.col("first_ts").min().alias("fleet_first"),
        )
        .join(quiet_shares, on="fleet_key", how="left")
        .with_columns(pl.col("quiet_share").fill_null(0.0))
        .with_columns(
            # Shares are of each period's own traffic, so the site's overall surge cancels out; the floor of one
            # request in 100k keeps a shape never seen in quiet traffic finite.
            (pl.col("incident_share") / pl.col("quiet_share").clip(1e-5)).alias("lift")
        )
    )
    telltale = (
        pl.col("fleet_key").str.contains(r"\|ua:unknown")
        | pl.col("fleet_key").str.contains(r"\?<random>")
        | pl.col("fleet_key").str.contains(r"\|post:true")
        | (pl.col("fleet_key").str.contains(r"\|assets:false") & pl.lit(profile.asset_share >= 0.15))
    )
    hostile = (
        (pl.col("fleet_size") >= settings.min_fleet)
        & (pl.col("lift") >= settings.fleet_lift)
        & (pl.col("new_share") >= 0.5)
        & telltale
        & (pl.col("median_score") >= 0.15)
    )
    fleets = fleets.with_columns(
        hostile.alias("fleet_hostile"),
        pl.format(
            "one of a fleet of {} clients sharing the shape {}, {}x its quiet share, {}% new at the onset",
            pl.col("fleet_size"),
            pl.col("fleet_key"),
            pl.col("lift").round(0).cast(pl.Int64),
            (pl.col("new_share") * 100).round(0).cast(pl.Int64),
        ).alias("fleet_reason"),
    )
    return incident.join(
        fleets.select("fleet_key", "fleet_size", "fleet_hostile", "fleet_reason"), on="fleet_key", how="left"
    )
