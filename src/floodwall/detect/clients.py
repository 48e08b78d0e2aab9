"""Client level: what each client did over an interval, and how hostile that looks, with the reasons why.

Features follow Deflect's BotHound and Baskerville (rate, regularity of gaps, page vs asset share, status mix,
cache-busting and query diversity, path diversity, user-agent changes, depth, first seen) plus novelty against the
site's own quiet traffic (`Profile`). Scores are sums of explainable rule points, capped at 1, plus a bounded
contribution from an isolation forest (Liu, Ting & Zhou 2008) trained on the site's quiet clients; the forest alone
can never make an attacker, it only adds weight to clients the rules already doubt.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt
import polars as pl

if TYPE_CHECKING:
    from sklearn.ensemble import IsolationForest

from floodwall.detect.profile import Profile
from floodwall.detect.settings import DetectSettings
from floodwall.detect.windows import WINDOW_SCHEMA

__all__ = [
    "CLIENT_KEY",
    "FOREST_FEATURES",
    "ClientForest",
    "ClientTotals",
    "client_features",
    "features_of",
    "preload_forest",
    "score_clients",
]

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


_SUMS: Final = (
    ("requests", "requests"),
    ("pages", "pages"),
    ("assets", "assets"),
    ("posts", "posts"),
    ("s4xx", "_s4xx"),
    ("s5xx", "_s5xx"),
    ("cache_bust", "_cache_bust"),
    ("with_query", "with_query"),
    ("queries", "_queries"),
    ("paths", "_paths"),
    ("user_agents", "_agent_sum"),
    ("no_referer", "_no_referer"),
    ("social_referer", "_social"),
    ("bot_requests", "_bot"),
)
#: Evidence rows kept per client: its first windows' (source, line).
_EVIDENCE: Final = 5


#: The key column of every `ClientTotals` table: the 64-bit hash of the client (or of what stands for it).
CLIENT_KEY: Final = "_client"


@dataclass(frozen=True, slots=True)
class ClientTotals:
    """Running totals of clients' windows (WINDOW_SCHEMA rows), from which `client_features` follow exactly.

    Every part is a sum, a count, a minimum, a maximum or a head, so the totals of consecutive parts of a log fold
    into the totals of the whole (`fold`): a long log is judged from one row per client (and per client and user
    agent, query scheme or template) instead of one row per client and window, which grew with the log. Parts must
    be folded in time order (the evidence is each client's first windows).

    Every table is keyed by the client's 64-bit hash (`CLIENT_KEY`); only `clients` holds its text. Addresses are
    longer than the 12 bytes Polars keeps inline, and grouping by them cost a third more than by an integer (the
    query-scheme table of a cache-busting flood holds a row per one-off key: 1.3M rows at 5M lines, grouped once per
    part and again per fold). Two of a log's clients share a hash with a chance of about one in a million at ten
    million clients, as in `forensics.shapes.grouped`."""

    clients: pl.DataFrame  # per client: its text, sums, window count, gap sums, peak, first and last request, evidence
    agents: pl.DataFrame  # per (client, ua_id): windows, requests
    schemes: pl.DataFrame  # per (client, query_keys): windows, requests
    templates: pl.DataFrame  # per (client, template): windows

    @classmethod
    def of(cls, windows: pl.DataFrame, by: Sequence[str] = (), *, evidence: bool = True) -> ClientTotals:
        """The totals of `windows` per client, or per client and each value of the columns `by` (kept as they are:
        one pass over the windows can then give the totals of several intervals, or of every client and hour).
        Without `evidence` the evidence rows are left empty (null): quiet clients are never reported, and gathering
        each one's first windows was a third of their totals' cost."""
        lazy = windows.lazy().with_columns(pl.col("client").hash().alias(CLIENT_KEY))
        keys = [CLIENT_KEY, *by]
        gap_cv = (pl.col("gap_std_s") / pl.col("gap_mean_s")).fill_nan(None)
        clients = (
            lazy.group_by(keys)
            .agg(
                pl.col("client").first(),
                pl.col("client_net").first(),
                *(pl.col(name).sum().cast(pl.Int64).alias(alias) for name, alias in _SUMS),
                pl.len().cast(pl.Int64).alias("windows"),
                gap_cv.sum().alias("_gap_sum"),
                gap_cv.count().cast(pl.Int64).alias("_gap_n"),
                pl.col("requests").max().alias("_peak"),
                pl.col("first_ts").min(),
                pl.col("last_ts").max(),
                *(
                    (
                        pl.col("source").head(_EVIDENCE).alias("evidence_source"),
                        pl.col("line").head(_EVIDENCE).alias("evidence_line"),
                    )
                    if evidence
                    else (
                        pl.lit(None, pl.List(pl.String)).alias("evidence_source"),
                        pl.lit(None, pl.List(WINDOW_SCHEMA["line"])).alias("evidence_line"),
                    )
                ),
            )
            .collect()
        )
        requests = pl.col("requests").cast(pl.Int64).sum().alias("requests")
        windows_n = pl.len().cast(pl.Int64).alias("windows")
        # Lazy, each: polars 2.1's eager group_by costs 2 to 7 times more here (it carries every column of the
        # windows through the grouping), and these three were a third of `finish` at 5M lines.
        return cls(
            clients,
            lazy.group_by(*keys, "ua_id").agg(windows_n, requests).collect(),
            lazy.group_by(*keys, "query_keys").agg(windows_n, requests).collect(),
            lazy.group_by(*keys, "template").agg(windows_n).collect(),
        )

    @classmethod
    def fold(cls, parts: Sequence[ClientTotals], by: Sequence[str] = ()) -> ClientTotals:
        """The totals of the consecutive parts `parts` (oldest first) per client and `by`; key columns the parts
        carry beyond those are merged away. Within a part, rows of one client must be in time order."""
        keys = [CLIENT_KEY, *by]
        sums = [alias for _, alias in _SUMS]
        clients = (
            pl.concat([p.clients for p in parts])
            .lazy()
            .group_by(keys, maintain_order=True)
            .agg(
                pl.col("client").first(),
                pl.col("client_net").first(),
                *(pl.col(name).sum() for name in [*sums, "windows", "_gap_sum", "_gap_n"]),
                pl.col("_peak").max(),
                pl.col("first_ts").min(),
                pl.col("last_ts").max(),
                *(
                    pl.col(name).list.explode(keep_nulls=False, empty_as_null=False).head(_EVIDENCE)
                    for name in ("evidence_source", "evidence_line")
                ),
            )
            .collect()
        )

        def merged(name: str, key: str, columns: tuple[str, ...]) -> pl.DataFrame:
            frames: list[pl.DataFrame] = [getattr(p, name) for p in parts]
            return pl.concat(frames).lazy().group_by(*keys, key).agg(pl.col(c).sum() for c in columns).collect()

        return cls(
            clients,
            merged("agents", "ua_id", ("windows", "requests")),
            merged("schemes", "query_keys", ("windows", "requests")),
            merged("templates", "template", ("windows",)),
        )

    def where(self, predicate: pl.Expr) -> ClientTotals:
        """The rows of every table where `predicate` (over the key columns) holds."""
        return ClientTotals(
            self.clients.filter(predicate),
            self.agents.filter(predicate),
            self.schemes.filter(predicate),
            self.templates.filter(predicate),
        )

    def rekeyed(self, text: pl.Expr, over: Sequence[str]) -> ClientTotals:
        """Every table keyed by (client, `over`) as one new client: its key the hash of both, its text `text` (an
        expression over the clients table), for `fold` to merge by. A client's visit in each hour is a reader of its
        own (`judge.quiet_keyed`) without a string built for every row of every table."""
        key = pl.struct(CLIENT_KEY, *over).hash().alias(CLIENT_KEY)
        return ClientTotals(
            self.clients.with_columns(key, text.alias("client")),
            *(table.with_columns(key) for table in (self.agents, self.schemes, self.templates)),
        )

    @property
    def tables(self) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        return self.clients, self.agents, self.schemes, self.templates

    @classmethod
    def empty(cls, by: Sequence[str] = ()) -> ClientTotals:
        """No totals, with key columns `by` (typed as window starts)."""
        windows = pl.DataFrame(schema=WINDOW_SCHEMA).with_columns(pl.col("window").alias(name) for name in by)
        return cls.of(windows, by)

    @property
    def height(self) -> int:
        return self.clients.height


def _novel(totals: pl.DataFrame, quiet: pl.DataFrame, key: str, surge: bool, settings: DetectSettings) -> pl.Series:
    """The values of `key` (per (client, key) totals of one interval) unknown to quiet traffic: those whose share of
    the interval's requests is `novelty_lift` times or more their share of quiet traffic. A lift, not mere presence:
    a crawler seen twice a day is known, and a flood's user agents are unknown even when its first probes slipped into
    quiet time. Outside a surge nothing is novel."""
    if not surge:
        return pl.Series(key, [], dtype=totals.schema[key])
    total = max(float(totals.get_column("requests").sum() or 0), 1.0)
    floor = settings.known_share
    shares = (
        totals.lazy()
        .group_by(key)
        .agg((pl.col("requests").sum() / total).alias("now"))
        .collect()
        .join(quiet.select(key, "share"), on=key, how="left")
    )
    novel = pl.col("now") >= settings.novelty_lift * pl.col("share").fill_null(0.0).clip(floor)
    return shares.filter(novel).get_column(key)


def _novel_requests(totals: pl.DataFrame, key: str, novel: pl.Series, alias: str) -> pl.DataFrame:
    if novel.len() == 0:  # outside a surge: nothing to look for in the (client, value) table
        return pl.DataFrame(schema={CLIENT_KEY: totals.schema[CLIENT_KEY], alias: totals.schema["requests"]})
    hit = pl.col(key).is_in(novel.implode()).fill_null(False)
    if key == "query_keys":
        hit = hit & (pl.col(key) != "")
    return totals.lazy().filter(hit).group_by(CLIENT_KEY).agg(pl.col("requests").sum().alias(alias)).collect()


def _mode(totals: pl.DataFrame, key: str) -> pl.DataFrame:
    """Per client, the value of `key` in most of its windows; the smallest of a tie (a tie's first value would depend
    on the hash table)."""
    return (
        totals.lazy()
        .filter(pl.col("windows") == pl.col("windows").max().over(CLIENT_KEY))
        .group_by(CLIENT_KEY)
        .agg(pl.col(key).min())
        .collect()
    )


def client_features(
    windows: pl.DataFrame, profile: Profile, onset: datetime | None, settings: DetectSettings
) -> pl.DataFrame:
    """One row per client of `windows` (WINDOW_SCHEMA rows of one interval) with its behaviour features."""
    return features_of(ClientTotals.of(windows), profile, onset, settings)


def features_of(
    totals: ClientTotals, profile: Profile, onset: datetime | None, settings: DetectSettings
) -> pl.DataFrame:
    """One row per client of `totals` (the totals of one interval's windows) with its behaviour features."""
    surge = onset is not None
    novel_ua = _novel(totals.agents, profile.known_agents, "ua_id", surge, settings)
    novel_qk = _novel(totals.schemes, profile.known_query_keys, "query_keys", surge, settings)
    requests = pl.col("requests")
    features = (
        totals.clients.lazy()
        .join(_novel_requests(totals.agents, "ua_id", novel_ua, "_novel_ua").lazy(), on=CLIENT_KEY, how="left")
        .join(_novel_requests(totals.schemes, "query_keys", novel_qk, "_novel_qk").lazy(), on=CLIENT_KEY, how="left")
        .join(totals.agents.group_by(CLIENT_KEY).agg(pl.len().cast(pl.UInt32).alias("agents")).lazy(), on=CLIENT_KEY)
        .join(_mode(totals.templates, "template").lazy(), on=CLIENT_KEY, how="left")
        .join(_mode(totals.schemes, "query_keys").lazy(), on=CLIENT_KEY, how="left")
        .join(_mode(totals.agents, "ua_id").lazy(), on=CLIENT_KEY, how="left")
        .with_columns(
            requests.cast(pl.Float64),
            *(pl.col(name).cast(pl.UInt32) for name in ("pages", "assets", "posts", "with_query", "windows")),
            (pl.col("_agent_sum") / pl.col("windows")).alias("agents_per_window"),
            pl.col("_novel_ua").fill_null(0),
            pl.col("_novel_qk").fill_null(0),
            pl.when(pl.col("_gap_n") > 0).then(pl.col("_gap_sum") / pl.col("_gap_n")).otherwise(1.0).alias("gap_cv"),
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


_FOREST_MODULE: Final = "sklearn.ensemble"
_preloads: list[threading.Thread] = []  # the one preload thread, once started


def preload_forest() -> None:
    """Import scikit-learn's forest on a thread of its own, once per process (nothing when it is imported already).

    The import takes 0.8 s, a tenth of `analyze`'s wall time on 1M lines when it came first; a batch analysis needs
    the forest only when it judges, so it starts this while it reads, on the core the reader leaves free."""
    if not _preloads:
        thread = threading.Thread(
            target=importlib.import_module, args=(_FOREST_MODULE,), name="floodwall-preload", daemon=True
        )
        _preloads.append(thread)
        thread.start()


class ClientForest:
    """An isolation forest over `FOREST_FEATURES`, trained on quiet clients; absent when too few of them."""

    def __init__(self, quiet: pl.DataFrame, settings: DetectSettings, seed: int = 0) -> None:
        self.model: IsolationForest | None = None
        if quiet.height < settings.forest_min_quiet:
            return
        quiet = quiet.sort("client")  # the same clients in the same order make the same forest, run after run
        sample = quiet.sample(n=min(quiet.height, 20_000), seed=seed) if quiet.height > 20_000 else quiet
        # Imported here, not with the module (see `preload_forest`); a preload under way is waited for.
        forest: type[IsolationForest] = importlib.import_module(_FOREST_MODULE).IsolationForest
        self.model = forest(n_estimators=settings.forest_trees, random_state=seed).fit(_matrix(sample))

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
