"""Client level: what each client did over an interval, and how hostile that looks, with the reasons why.

Features follow Deflect's BotHound and Baskerville (rate, regularity of gaps, page vs asset share, status mix,
cache-busting and query diversity, path diversity, user-agent changes, depth, first seen) plus novelty against the
site's own quiet traffic (`Profile`). Scores are sums of explainable rule points, capped at 1, plus a bounded
contribution from an isolation forest (Liu, Ting & Zhou 2008) trained on the site's quiet clients; the forest alone
can never make an attacker, it only adds weight to clients the rules already doubt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl
from sklearn.ensemble import IsolationForest

from floodwall.detect.profile import Profile
from floodwall.detect.settings import DetectSettings

__all__ = ["FOREST_FEATURES", "ClientForest", "client_features", "score_clients"]

#: The numeric features the isolation forest sees, all scale-free.
FOREST_FEATURES: Final = (
    "log_rate",
    "asset_share",
    "error_share",
    "cache_bust_share",
    "query_diversity",
    "path_diversity",
    "agents_per_window",
    "no_referer_share",
    "gap_cv",
)


#: The columns of `client_features`, in their order, before first-seen and the rates are joined on.
_FEATURE_ORDER: Final = (
    "client",
    "client_net",
    "requests",
    "pages",
    "assets",
    "posts",
    "error_share",
    "server_error_share",
    "cache_bust_share",
    "with_query",
    "query_diversity",
    "path_diversity",
    "agents_per_window",
    "agents",
    "no_referer_share",
    "social_share",
    "bot_share",
    "novel_ua_share",
    "novel_query_share",
    "gap_cv",
    "peak_window_rps",
    "first_ts",
    "last_ts",
    "windows",
    "template",
    "query_keys",
    "ua_id",
    "evidence_source",
    "evidence_line",
)


def _known(windows: pl.DataFrame, quiet: pl.DataFrame, key: str, surge: bool, settings: DetectSettings) -> pl.DataFrame:
    """Per value of `key` in `windows`: known (True) unless its share of the interval's requests is `novelty_lift`
    times or more its share of quiet traffic. A lift, not mere presence: a crawler seen twice a day is known, and a
    flood's user agents are unknown even when its first probes slipped into quiet time."""
    if not surge:
        name = "known_ua" if key == "ua_id" else "known_qk"
        return pl.DataFrame({key: windows.get_column(key).unique()}).with_columns(pl.lit(True).alias(name))
    total = max(float(windows.get_column("requests").sum() or 0), 1.0)
    floor = settings.known_share
    known = (
        windows.group_by(key)
        .agg((pl.col("requests").sum() / total).alias("now"))
        .join(quiet.select(key, "share"), on=key, how="left")
        .select(key, (pl.col("now") < settings.novelty_lift * pl.col("share").fill_null(0.0).clip(floor)).alias("k"))
    )
    return known.rename({"k": "known_ua" if key == "ua_id" else "known_qk"})


def client_features(
    windows: pl.DataFrame, profile: Profile, onset: datetime | None, settings: DetectSettings
) -> pl.DataFrame:
    """One row per client of `windows` (WINDOW_SCHEMA rows of one interval) with its behaviour features."""
    known_ua = _known(windows, profile.known_agents, "ua_id", onset is not None, settings)
    known_qk = _known(windows, profile.known_query_keys, "query_keys", onset is not None, settings)
    # The unknown values as sets tested per window, not joined: a join copies every column of the windows (the
    # biggest table analyze holds), and `is_in` keeps their order (the evidence lines depend on it). Values the
    # interval has that no lookup row names count as known, as before.
    novel_ua = known_ua.filter(~pl.col("known_ua")).get_column("ua_id").implode()
    novel_qk = known_qk.filter(~pl.col("known_qk")).get_column("query_keys").implode()
    enriched = windows.with_columns(
        pl.when(~pl.col("ua_id").is_in(novel_ua).fill_null(False))
        .then(0)
        .otherwise(pl.col("requests"))
        .alias("_novel_ua"),
        pl.when(~pl.col("query_keys").is_in(novel_qk).fill_null(False) | (pl.col("query_keys") == ""))
        .then(0)
        .otherwise(pl.col("requests"))
        .alias("_novel_qk"),
        (pl.col("gap_std_s") / pl.col("gap_mean_s")).fill_nan(None).alias("_gap_cv"),
    )
    requests = pl.col("requests").cast(pl.Float64)
    features = (
        enriched.lazy()
        .group_by("client")
        .agg(
            pl.col("client_net").first(),
            pl.col("requests").sum().cast(pl.Float64).alias("requests"),
            pl.col("pages").sum().alias("pages"),
            pl.col("assets").sum().alias("assets"),
            pl.col("posts").sum().alias("posts"),
            pl.col("s4xx").sum().alias("_s4xx"),
            pl.col("s5xx").sum().alias("_s5xx"),
            pl.col("cache_bust").sum().alias("_cache_bust"),
            pl.col("with_query").sum().alias("with_query"),
            pl.col("queries").sum().alias("_queries"),
            pl.col("paths").sum().alias("_paths"),
            pl.col("user_agents").mean().alias("agents_per_window"),
            pl.col("ua_id").n_unique().alias("agents"),
            pl.col("no_referer").sum().alias("_no_referer"),
            pl.col("social_referer").sum().alias("_social"),
            pl.col("bot_requests").sum().alias("_bot"),
            pl.col("_novel_ua").sum(),
            pl.col("_novel_qk").sum(),
            pl.col("_gap_cv").mean().fill_null(1.0).alias("gap_cv"),
            pl.col("requests").max().alias("_peak"),
            pl.col("first_ts").min().alias("first_ts"),
            pl.col("last_ts").max().alias("last_ts"),
            pl.len().alias("windows"),
            # The most frequent value, the smallest of a tie (a tie's first value depends on the hash table).
            pl.col("template").mode().min().alias("template"),
            pl.col("query_keys").mode().min().alias("query_keys"),
            pl.col("ua_id").mode().min().alias("ua_id"),
            pl.col("source").head(5).alias("evidence_source"),
            pl.col("line").head(5).alias("evidence_line"),
        )
        .with_columns(
            (pl.col("_s4xx") / requests).alias("error_share"),
            (pl.col("_s5xx") / requests).alias("server_error_share"),
            (pl.col("_cache_bust") / requests).alias("cache_bust_share"),
            (pl.col("_queries") / pl.col("with_query").clip(1)).clip(0, 1).alias("query_diversity"),
            (pl.col("_paths") / requests).alias("path_diversity"),
            (pl.col("_no_referer") / requests).alias("no_referer_share"),
            (pl.col("_social") / requests).alias("social_share"),
            (pl.col("_bot") / requests).alias("bot_share"),
            (pl.col("_novel_ua") / requests).alias("novel_ua_share"),
            (pl.col("_novel_qk") / requests).alias("novel_query_share"),
            (pl.col("_peak").cast(pl.Float64) / settings.window_s).alias("peak_window_rps"),
        )
        .select(_FEATURE_ORDER)
        .join(profile.first_seen.lazy(), on="client", how="left")
        .join(profile.net_first_seen.lazy(), on="client_net", how="left")
        .with_columns(
            pl.col("first_seen").fill_null(pl.col("first_ts")),
            pl.col("net_first_seen").fill_null(pl.col("first_ts")),
            (pl.col("assets") / pl.col("requests")).alias("asset_share"),
            (
                pl.col("requests") / ((pl.col("last_ts") - pl.col("first_ts")).dt.total_seconds() + settings.window_s)
            ).alias("rate_rps"),
        )
        .with_columns(pl.col("rate_rps").log1p().alias("log_rate"))
        .collect()
    )
    if onset is not None:
        new_after = onset - timedelta(seconds=settings.new_client_s)
        features = features.with_columns(
            (pl.col("first_seen") >= new_after).alias("new_client"),
            (pl.col("net_first_seen") >= new_after).alias("new_network"),
        )
    else:
        features = features.with_columns(pl.lit(False).alias("new_client"), pl.lit(False).alias("new_network"))
    return features


@dataclass(frozen=True, slots=True)
class _Rule:
    points: float
    when: pl.Expr
    reason: pl.Expr


def _pct(column: str) -> pl.Expr:
    return (pl.col(column) * 100).round(0).cast(pl.Int64).cast(pl.String)


def _rules(profile: Profile, settings: DetectSettings) -> list[_Rule]:
    rps_limit = max(3 * profile.quiet_window_rps, 2.0)
    has_assets = profile.asset_share >= 0.15
    return [
        _Rule(
            0.5,
            (pl.col("peak_window_rps") > rps_limit) & (pl.col("requests") >= 20),
            pl.format(
                "rate {} req/s in a window, over {} (3x the busiest quiet client)",
                pl.col("peak_window_rps").round(1),
                pl.lit(round(rps_limit, 1)),
            ),
        ),
        _Rule(
            0.35,
            (pl.col("novel_ua_share") >= 0.5) & pl.lit(profile.has_quiet),
            pl.format("user agent unknown to the site's quiet traffic on {}% of requests", _pct("novel_ua_share")),
        ),
        _Rule(
            0.3,
            (pl.col("pages") >= 300) & (pl.col("assets") == 0) & (pl.col("bot_share") < 0.5),
            pl.format("{} pages without a single asset, and not a declared robot", pl.col("pages")),
        ),
        _Rule(
            0.1,
            (pl.col("agents") >= 5) & (pl.col("agents") >= 0.5 * pl.col("requests")),
            pl.format("a new user agent on most requests ({} for {})", pl.col("agents"), pl.col("requests")),
        ),
        _Rule(
            0.25,
            ((pl.col("agents") >= 8) & (pl.col("assets") == 0))
            | (pl.col("agents") >= 3)
            & ((pl.col("agents_per_window") >= 1.5) | (pl.col("agents") >= 0.5 * pl.col("requests"))),
            pl.format("changes user agent: {} different ones", pl.col("agents")),
        ),
        _Rule(
            0.35,
            (pl.col("cache_bust_share") >= 0.5) & (pl.col("requests") >= 3),
            pl.format("random query values (cache busting) on {}% of requests", _pct("cache_bust_share")),
        ),
        _Rule(
            0.2,
            (pl.col("novel_query_share") >= 0.5) & (pl.col("with_query") >= 3) & pl.lit(profile.has_quiet),
            pl.format("query keys unknown to the site's quiet traffic on {}% of requests", _pct("novel_query_share")),
        ),
        _Rule(
            0.15,
            (pl.col("pages") >= 3) & (pl.col("assets") == 0) & pl.lit(has_assets),
            pl.format("fetched {} pages and no assets", pl.col("pages")),
        ),
        _Rule(
            0.2,
            (pl.col("error_share") >= 0.5) & (pl.col("requests") >= 10),
            pl.format("{}% of requests answered 4xx", _pct("error_share")),
        ),
        _Rule(
            0.15,
            (pl.col("gap_cv") < 0.25) & (pl.col("requests") >= 10),
            pl.format("machine-regular gaps (coefficient of variation {})", pl.col("gap_cv").round(2)),
        ),
        _Rule(0.1, pl.col("new_client"), pl.lit("first seen at the onset")),
        _Rule(
            0.05,
            pl.col("new_network") & pl.col("new_client"),
            pl.format("network {} new at the onset", pl.col("client_net")),
        ),
        _Rule(
            0.1,
            (pl.col("no_referer_share") >= 0.99) & (pl.col("pages") >= 5),
            pl.lit("never sends a referer"),
        ),
        _Rule(
            0.3,
            (pl.col("posts") >= 10) & (pl.col("posts") >= 0.8 * pl.col("requests")),
            pl.format(
                "{} POST requests, {}% of its traffic",
                pl.col("posts"),
                (pl.col("posts") / pl.col("requests") * 100).round(0),
            ),
        ),
    ]


class ClientForest:
    """An isolation forest over `FOREST_FEATURES`, trained on quiet clients; absent when too few of them."""

    def __init__(self, quiet: pl.DataFrame, settings: DetectSettings, seed: int = 0) -> None:
        self.model: IsolationForest | None = None
        if quiet.height < settings.forest_min_quiet:
            return
        quiet = quiet.sort("client")  # the same clients in the same order make the same forest, run after run
        sample = quiet.sample(n=min(quiet.height, 20_000), seed=seed) if quiet.height > 20_000 else quiet
        self.model = IsolationForest(n_estimators=settings.forest_trees, random_state=seed).fit(_matrix(sample))

    def anomaly(self, features: pl.DataFrame) -> npt.NDArray[np.float64]:
        """0 for clients like the quiet ones, up to 1 for the most isolated; zeros without a model."""
        if self.model is None or features.height == 0:
            return np.zeros(features.height)
        raw = -np.asarray(self.model.decision_function(_matrix(features)), dtype=np.float64)
        return np.clip(raw * 5.0, 0.0, 1.0)


def _matrix(frame: pl.DataFrame) -> npt.NDArray[np.float64]:
    return frame.select(
        pl.col(name).cast(pl.Float64).fill_null(0.0).fill_nan(0.0) for name in FOREST_FEATURES
    ).to_numpy()


def score_clients(
    features: pl.DataFrame, profile: Profile, forest: ClientForest | None, settings: DetectSettings
) -> pl.DataFrame:
    """`features` with `rule_score`, `forest`, `score` (0..1) and `reasons` (a list of strings) added."""
    rules = _rules(profile, settings)
    points = pl.sum_horizontal([pl.when(r.when.fill_null(False)).then(r.points).otherwise(0.0) for r in rules])
    reasons = pl.concat_list(
        [pl.when(r.when.fill_null(False)).then(r.reason).otherwise(pl.lit(None, pl.String)) for r in rules]
    ).list.drop_nulls()
    scored = features.with_columns(points.clip(0, 1).alias("rule_score"), reasons.alias("reasons"))
    anomaly = forest.anomaly(features) if forest is not None else np.zeros(features.height)
    forest_points = np.where(scored.get_column("rule_score").to_numpy() >= 0.2, 0.2 * anomaly, 0.0)
    scored = scored.with_columns(pl.Series("forest", forest_points, dtype=pl.Float64))
    forest_reason = pl.when(pl.col("forest") > 0.05).then(
        pl.format("unusual for this site (isolation forest on quiet clients, {})", pl.col("forest").round(2))
    )
    return scored.with_columns(
        (pl.col("rule_score") + pl.col("forest")).clip(0, 1).alias("score"),
        pl.concat_list(pl.col("reasons"), pl.concat_list(forest_reason)).list.drop_nulls().alias("reasons"),
    )
