"""What the attackers' requests look like, per incident: user agents, path and query shapes, rates, timing.

The detection result names the attackers but keeps no per-client request content, so the analyze job feeds the
forensic pass's Request frames to a `FingerprintAccumulator` told the attackers (any client's frames work too)::

    detection = engine.finish()
    fingerprints = FingerprintAccumulator(clients=detection.attacker_addresses)
    for frame in spool.frames():
        fingerprints.feed(frame)
    per_incident = fingerprints.finish(detection)     # incident id -> Fingerprint

State is columnar and compacted: one row per (client, feature kind, value) with a count, where values are
normalised shapes (`/{n}/{n}/{slug}`, `s={w}&_={n}`) and user-agent hashes, so memory grows with the number of
distinct clients and shapes, not with requests. Values are kept per client over the whole log (not per incident):
an attacker's reader traffic, if any, is negligible beside its flood.

User agents leave as hashes (`blake2b`, 8 bytes, unkeyed: the attackers chose them, and unkeyed hashes still match
across coalitions) and as normalised families (`chrome/windows`), which survive a changed user-agent list.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import numpy as np
import polars as pl

from floodwall.detect import DetectionResult
from floodwall.forensics.shapes import grouped, with_shaped_query
from floodwall.logs.frame import compacted

__all__ = ["Fingerprint", "FingerprintAccumulator", "path_shape", "query_shape", "ua_family", "ua_hash"]

#: Values kept per incident and feature (the most frequent ones); shares are of the attackers' requests.
TOP_VALUES: Final = 25
_QUERY_SHAPE_CHARS: Final = 120  # a query's shape is cut to this many characters
_STATE_SCHEMA: Final = {"client": pl.String, "feature": pl.String, "value": pl.String, "count": pl.UInt64}
_COMPACT_ROWS: Final = 1_000_000
#: Requests with a query string per batch whose query shape is worked out; more are sampled evenly.
QUERY_SAMPLE: Final = 10_000
#: Requests per batch whose path shape is worked out (when the caller says how many rows there are); more are sampled.
PATH_SAMPLE: Final = 20_000

#: Browser or tool, first match wins (Edge and Opera also say Chrome; Chrome also says Safari).
_BROWSERS: Final = (
    ("bot", r"(?i)bot|spider|crawler"),
    ("headless", r"(?i)headless|phantomjs"),
    ("edge", r"Edg(e|A|iOS)?/"),
    ("opera", r"OPR/|Opera"),
    ("yandex", r"YaBrowser/"),
    ("firefox", r"Firefox/|FxiOS/"),
    ("chrome", r"Chrome/|CriOS/"),
    ("safari", r"Safari/"),
    ("curl", r"(?i)^curl/"),
    ("wget", r"(?i)^wget/"),
    ("python", r"(?i)python"),
    ("go", r"(?i)^go-http-client"),
    ("java", r"(?i)^java/|okhttp|apache-httpclient"),
)
_SYSTEMS: Final = r"(?i)(windows|android|iphone|ipad|mac os x|cros|linux)"


def path_shape(path: pl.Expr) -> pl.Expr:
    """A path with its variable parts replaced: long hex runs `{h}`, numbers `{n}`, hyphenated slugs `{slug}`,
    long random-looking words `{w}`, letters mixed with digits `{r}`; lower-cased, at most 80 characters."""
    return (
        path.str.to_lowercase()
        .str.replace_all(r"[0-9a-f]{12,}", "{h}")
        .str.replace_all(r"[0-9]+", "{n}")
        .str.replace_all(r"/[a-z]+\{n\}[a-z{}]*|/\{n\}[a-z]+[a-z{}]*", "/{r}")
        .str.replace_all(r"[a-z0-9{}_]+(?:-[a-z0-9{}_]+){2,}", "{slug}")
        .str.replace_all(r"/[a-z]{10,}", "/{w}")
        .str.slice(0, 80)
    )


def _query_part_shape(name: pl.Expr, value: pl.Expr) -> pl.Expr:
    """One `name=value` part of a query string, shaped (see `query_shape`)."""
    value = value.fill_null("")
    name = name.fill_null("").str.to_lowercase()
    shaped_value = (
        pl.when(value == "")
        .then(pl.lit(""))
        .when(value.str.contains(r"^[0-9]+$"))
        .then(pl.lit("{n}"))
        .when(value.str.contains(r"^[0-9a-fA-F]{8,}$"))
        .then(pl.lit("{h}"))
        .when(value.str.contains(r"^[A-Za-z]+$"))
        .then(pl.lit("{w}"))
        .when(value.str.contains("%|\\+"))
        .then(pl.lit("{u}"))
        .otherwise(pl.lit("{r}"))
    )
    shaped_name = pl.when(name.str.contains(r"^[a-z_\-\[\]]{1,16}$")).then(name).otherwise(pl.lit("{r}"))
    return pl.concat_str(shaped_name, pl.lit("="), shaped_value)


def query_shape(query: pl.Expr) -> pl.Expr:
    """A query string as its sorted parameter names with value shapes (`_={n}&s={w}`); random-looking names
    (digits, or longer than 16) become `{r}`. Null when there was no query."""
    halves = pl.element().str.splitn("=", 2)  # a plain split: cheaper than two regular expressions, same halves
    part = _query_part_shape(halves.struct.field("field_0"), halves.struct.field("field_1"))
    return (
        query.str.split("&").list.eval(part).list.unique().list.sort().list.join("&").str.slice(0, _QUERY_SHAPE_CHARS)
    )


def ua_family(user_agent: pl.Expr) -> pl.Expr:
    """A user agent's browser or tool and its system, without versions: `chrome/windows`, `curl/-`."""
    browser: pl.Expr = pl.lit("other")
    for name, pattern in reversed(_BROWSERS):
        browser = pl.when(user_agent.str.contains(pattern)).then(pl.lit(name)).otherwise(browser)
    system = user_agent.str.extract(_SYSTEMS, 1).str.to_lowercase().str.replace(" ", "-").fill_null("-")
    return pl.when(user_agent.is_null()).then(pl.lit("none/-")).otherwise(pl.concat_str(browser, pl.lit("/"), system))


def ua_hash(user_agent: str) -> str:
    """The unkeyed 8-byte blake2b hash of a user agent, as hex (the same in every coalition)."""
    return hashlib.blake2b(user_agent.encode("utf-8", "replace"), digest_size=8, person=b"floodwall-ua").hexdigest()


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """How one incident's attackers behaved. Shares are of the attackers' requests; each mapping keeps the
    `TOP_VALUES` most frequent values."""

    user_agents: Mapping[str, float] = field(default_factory=dict)  # ua_hash -> share
    ua_families: Mapping[str, float] = field(default_factory=dict)
    path_shapes: Mapping[str, float] = field(default_factory=dict)
    query_shapes: Mapping[str, float] = field(default_factory=dict)
    rate_quantiles_rps: Mapping[str, float] = field(default_factory=dict)  # p10, p50, p90, max per address
    hour_profile: tuple[float, ...] = ()  # 24 shares of the attack requests by UTC hour of day
    wave_period_minutes: float | None = None


class FingerprintAccumulator:
    """Feeds on Request frames (any batch size), keeps per-client counts of shapes, and at `finish` gives each
    incident the fingerprint of its attackers. See the module docstring."""

    def __init__(self, clients: Collection[str] | None = None) -> None:
        # Only these clients' requests are counted when given: `finish` reads no other client's counts, so
        # feeding the forensic pass with the attackers known gives the same fingerprints for a fraction of the work.
        self._clients = pl.Series("client", sorted(clients), dtype=pl.String) if clients is not None else None
        self._parts: list[pl.DataFrame] = []
        self._rows = 0
        self._compacted_rows = 0

    def feed(self, frame: pl.DataFrame) -> None:
        """Count one batch's shapes per client."""
        if self._clients is not None:
            frame = frame.filter(pl.col("client").is_in(self._clients.implode()))
        if frame.height == 0:
            return
        self.take(pl.collect_all(self.plan(frame.lazy(), int(frame.get_column("query").count())), engine="in-memory"))

    def plan(
        self, rows: pl.LazyFrame, query_rows: int, agents: pl.LazyFrame | None = None, row_count: int | None = None
    ) -> list[pl.LazyFrame]:
        """The lazy counts of one batch of attackers' `rows` (client, user_agent, path, query), which `take` keeps:
        for a caller that runs them with its own aggregates of the same rows (`forensics.collect`). `query_rows` is
        how many rows have a query string, `row_count` how many rows there are (None: count them all, unsampled);
        `agents`, when the caller counts them anyway, is (client, user_agent, count) or a finer split of it."""
        # Counted per distinct (client, value) first, then shaped: a flood repeats its user agents and paths, so the
        # regular expressions run on distinct values, not on every request (the same counts come out).
        source = rows if agents is None else agents
        weight = pl.len() if agents is None else pl.col("count").sum()
        agents = grouped(source, [], ["client", "user_agent"], [weight.cast(pl.UInt64).alias("count")])
        return [
            agents.select(
                "client", pl.lit("ua").alias("feature"), pl.col("user_agent").fill_null("").alias("value"), "count"
            ),
            _distinct_shapes(agents, "user_agent", "family", ua_family(pl.col("user_agent"))),
            _distinct_shapes(self._paths(rows, row_count), "path", "path", path_shape(pl.col("path"))),
            with_shaped_query(
                self._queries(rows, query_rows),
                "value",
                _query_part_shape,
                query_shape(pl.col("query")),
                _QUERY_SHAPE_CHARS,
            )
            .group_by("client", "value")
            .agg(pl.col("count").sum())
            .select("client", pl.lit("query").alias("feature"), "value", "count"),
        ]

    def take(self, counted: list[pl.DataFrame]) -> None:
        """Keep the results of `plan`, run."""
        state = pl.concat(counted).drop_nulls("value").cast(_STATE_SCHEMA)  # type: ignore[arg-type]
        self._parts.append(compacted(state))  # kept past its batch: let go of the batch's buffers
        self._rows += state.height
        if self._rows > max(_COMPACT_ROWS, 2 * self._compacted_rows):
            self._compact()

    @staticmethod
    def _paths(rows: pl.LazyFrame, row_count: int | None) -> pl.LazyFrame:
        """(client, path, count) of the batch. A random-path flood makes every path unique, and each unique path is
        shaped by five regular expressions: past `PATH_SAMPLE` rows a batch is sampled evenly and the counts scaled,
        as for queries (the shares come out the same to within a few thousandths)."""
        step = max(1, (row_count or 0) // PATH_SAMPLE)
        counts = [(pl.len() * step).cast(pl.UInt64).alias("count")]
        return grouped(rows.gather_every(step), [], ["client", "path"], counts)

    @staticmethod
    def _queries(rows: pl.LazyFrame, query_rows: int) -> pl.LazyFrame:
        """(client, query, count) of the batch's requests with a query string. Cache-busting floods make every query
        unique, so nothing repeats to share the shaping work: past `QUERY_SAMPLE` such requests a batch is sampled
        evenly and the counts scaled (shares, which is all a fingerprint keeps, come out the same to within a few
        thousandths)."""
        step = max(1, query_rows // QUERY_SAMPLE)
        counts = [(pl.len() * step).cast(pl.UInt64).alias("count")]
        return grouped(rows.filter(pl.col("query").is_not_null()).gather_every(step), [], ["client", "query"], counts)

    def _compact(self) -> pl.DataFrame:
        state = (
            pl.concat(self._parts).group_by("client", "feature", "value").agg(pl.col("count").sum())
            if self._parts
            else pl.DataFrame(schema=_STATE_SCHEMA)
        )
        self._parts = [compacted(state)]
        self._rows = self._compacted_rows = state.height
        return state

    def finish(self, detection: DetectionResult) -> dict[str, Fingerprint]:
        """The fingerprint of every incident of `detection`, by incident id."""
        state = self._compact()
        attackers = detection.attackers.select("client", "incident_id", "requests")
        counts = state.join(attackers.select("client", "incident_id"), on="client", how="inner")
        tops = (
            counts.group_by("incident_id", "feature", "value")
            .agg(pl.col("count").sum())
            .with_columns((pl.col("count") / pl.col("count").sum().over("incident_id", "feature")).alias("share"))
            .sort(["incident_id", "feature", "share", "value"], descending=[False, False, True, False])
            .group_by("incident_id", "feature", maintain_order=True)
            .head(TOP_VALUES)
        )
        by_incident: dict[str, dict[str, dict[str, float]]] = {}
        for incident_id, feature, value, share in tops.select("incident_id", "feature", "value", "share").iter_rows():
            key = ua_hash(value) if feature == "ua" else value
            by_incident.setdefault(incident_id, {}).setdefault(feature, {})[key] = round(float(share), 4)
        result: dict[str, Fingerprint] = {}
        for incident in detection.incidents:
            parts = by_incident.get(incident.id, {})
            duration_s = max((incident.end - incident.start).total_seconds(), 1.0)
            rates = attackers.filter(pl.col("incident_id") == incident.id).get_column("requests").to_numpy()
            hours, period = timing_of(detection.timeline, incident.start, incident.end)
            result[incident.id] = Fingerprint(
                user_agents=parts.get("ua", {}),
                ua_families=parts.get("family", {}),
                path_shapes=parts.get("path", {}),
                query_shapes=parts.get("query", {}),
                rate_quantiles_rps=rate_quantiles(rates / duration_s),
                hour_profile=hours,
                wave_period_minutes=period,
            )
        return result


def _distinct_shapes(counts: pl.LazyFrame, column: str, feature: str, shape: pl.Expr) -> pl.LazyFrame:
    """`counts` (client, `column`, count) as `feature` state rows, each distinct value shaped once (attackers share
    their targets and their user-agent lists: fewer distinct values than (client, value) pairs)."""
    shapes = counts.select(pl.col(column).unique()).with_columns(shape.alias("value"))
    return (
        counts.join(shapes, on=column, how="left", nulls_equal=True)
        .group_by("client", "value")
        .agg(pl.col("count").sum())
        .select("client", pl.lit(feature).alias("feature"), "value", "count")
    )


def rate_quantiles(rates_rps: np.ndarray) -> dict[str, float]:
    """p10, p50, p90 and max of the per-address rates (requests per second over the incident)."""
    if rates_rps.size == 0:
        return {}
    p10, p50, p90 = np.quantile(rates_rps, [0.1, 0.5, 0.9])
    return {k: round(float(v), 5) for k, v in (("p10", p10), ("p50", p50), ("p90", p90), ("max", rates_rps.max()))}


def timing_of(timeline: pl.DataFrame, start: datetime, end: datetime) -> tuple[tuple[float, ...], float | None]:
    """The incident's hour-of-day profile (24 shares of its attack requests, UTC) and its wave period in minutes:
    the strongest autocorrelation peak of its per-minute attack rate between 10 minutes and a third of its span,
    when that peak is clear (correlation at least 0.3); None otherwise."""
    span = timeline.filter(pl.col("ts").is_between(start, end)).select("ts", "attack_requests")
    if span.height == 0:
        return tuple([0.0] * 24), None
    by_hour = span.group_by(pl.col("ts").dt.hour().alias("hour")).agg(pl.col("attack_requests").sum())
    hours = np.zeros(24)
    for hour, count in by_hour.iter_rows():
        hours[int(hour)] = float(count)
    total = hours.sum()
    profile = tuple(round(float(h / total), 4) for h in hours) if total else tuple([0.0] * 24)
    minutes = (
        span.group_by_dynamic("ts", every="1m")
        .agg(pl.col("attack_requests").sum())
        .upsample("ts", every="1m")
        .get_column("attack_requests")
        .fill_null(0)
        .to_numpy()
        .astype(float)
    )
    return profile, _period(minutes)


def _period(series: np.ndarray) -> float | None:
    n = series.size
    if n < 40:
        return None
    centred = series - series.mean()
    power = float(np.dot(centred, centred))
    if power == 0:
        return None
    spectrum = np.fft.rfft(centred, 2 * n)
    correlation = np.fft.irfft(spectrum * np.conj(spectrum))[: n // 3] / power
    if correlation.size <= 10:
        return None
    lag = int(np.argmax(correlation[10:])) + 10
    value = float(correlation[lag])
    return float(lag) if value >= 0.3 and not math.isnan(value) else None
