"""What the engine hands to reports and policy: incidents, findings, attackers, the per-second timeline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

import polars as pl

from floodwall.detect.judge import ATTACKER_SCHEMA
from floodwall.detect.onset import Surge
from floodwall.model import Finding, Incident

__all__ = [
    "ATTACKER_SCHEMA",
    "TIMELINE_SCHEMA",
    "DetectionResult",
    "SurgeVerdict",
    "attack_pairs",
    "attack_windows",
    "timeline_from",
    "timeline_of",
]

#: One row per second with requests: totals, the attackers' share, and the status classes.
TIMELINE_SCHEMA: Final[dict[str, pl.DataType]] = {
    "ts": pl.Datetime("us", "UTC"),
    "requests": pl.UInt32(),
    "attack_requests": pl.UInt32(),
    "s2xx": pl.UInt32(),
    "s3xx": pl.UInt32(),
    "s4xx": pl.UInt32(),
    "s5xx": pl.UInt32(),
}


@dataclass(frozen=True, slots=True)
class SurgeVerdict:
    """A surge of the site's rate and what it was judged to be: "flood", "flash-crowd" or "unexplained"."""

    start: datetime
    end: datetime
    peak_rps: float
    requests: int
    expected_rps: float
    verdict: str
    clients: int
    protected_share: float  # share of its requests sent by clients the flash-crowd guard protects

    @classmethod
    def of(cls, surge: Surge, judged: pl.DataFrame, is_flood: bool) -> SurgeVerdict:
        total = float(judged.get_column("requests").sum() or 0.0)
        protected = float(judged.filter(pl.col("protected")).get_column("requests").sum() or 0.0)
        share = protected / total if total else 0.0
        verdict = "flood" if is_flood else ("flash-crowd" if share >= 0.5 else "unexplained")
        return cls(
            surge.start, surge.end, surge.peak_rps, surge.requests, surge.expected_rps, verdict, judged.height, share
        )


@dataclass(frozen=True, slots=True)
class DetectionResult:
    """Everything `Engine.finish` concluded about one site."""

    site: str
    incidents: tuple[Incident, ...]  # floods and breach attempts, by start
    findings: tuple[Finding, ...]  # one per (attacker, incident), with reasons and (source, line) evidence
    attackers: pl.DataFrame  # ATTACKER_SCHEMA: client, incident_id, score, vectors, reasons, requests
    timeline: pl.DataFrame  # TIMELINE_SCHEMA: ts, requests, attack_requests, s2xx, s3xx, s4xx, s5xx
    surges: tuple[SurgeVerdict, ...]  # every surge of the rate, flood or not (flash crowds are listed here)
    baseline_method: str  # "hour-of-week", "hour-of-day", "rolling" or "none"
    requests: int
    clients: int
    analysed_at: datetime
    window_start: datetime | None = None  # the first and last request seen
    window_end: datetime | None = None
    user_agents: dict[int, str] = field(default_factory=dict)  # the windows' ua_id -> user agent

    @classmethod
    def empty(cls, site: str, now: datetime) -> DetectionResult:
        return cls(
            site=site,
            incidents=(),
            findings=(),
            attackers=pl.DataFrame(schema=ATTACKER_SCHEMA),
            timeline=pl.DataFrame(schema=TIMELINE_SCHEMA),
            surges=(),
            baseline_method="none",
            requests=0,
            clients=0,
            analysed_at=now,
        )

    @property
    def attacker_addresses(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.attackers.get_column("client").to_list())))


def timeline_of(
    seconds: pl.DataFrame,
    windows: pl.DataFrame,
    attackers: pl.DataFrame,
    incidents: list[Incident],
    window_s: int,
) -> pl.DataFrame:
    """The per-second timeline. Attack requests are exact per client window and spread over its seconds in
    proportion to the site's traffic (windows are `window_s` long, so the spread is at most that coarse)."""
    everything = windows.lazy().group_by("window").agg(pl.col("requests").cast(pl.Int64).sum()).collect()
    attack = attack_windows(windows, attack_pairs(attackers, incidents, window_s))
    return timeline_from(seconds, everything, attack, window_s)


def attack_pairs(attackers: pl.DataFrame, incidents: Sequence[Incident], window_s: int) -> pl.DataFrame:
    """(client, incident_id, start, end): each attacker with the span of windows its incident covers."""
    spans = pl.DataFrame(
        {
            "incident_id": [i.id for i in incidents],
            "start": [i.start - timedelta(seconds=window_s) for i in incidents],
            "end": [i.end for i in incidents],
        },
        schema={"incident_id": pl.String, "start": pl.Datetime("us", "UTC"), "end": pl.Datetime("us", "UTC")},
    )
    return attackers.select("client", "incident_id").unique().join(spans, on="incident_id", how="inner")


def attack_windows(windows: pl.DataFrame, pairs: pl.DataFrame) -> pl.DataFrame:
    """(window, attack): the attackers' requests per window of `windows`, each (client, window) counted once. Parts
    of a log give parts of the sums (a client's window is in one part only)."""
    clients = pairs.get_column("client")
    attackers = clients.unique().implode()
    inside = (
        windows.select("client", "window", "requests")
        .filter(pl.col("client").is_in(attackers))  # a few attackers among many readers: filter before joining
        .join(pairs, on="client", how="inner")
        .filter(pl.col("window").is_between(pl.col("start"), pl.col("end")))
    )
    # A window can meet two pairs only when its client attacked in two incidents; most logs have none such, and
    # the dedup was two thirds of this function's time at 5M lines.
    if clients.is_duplicated().any():
        inside = inside.unique(subset=["client", "window"])
    return inside.group_by("window").agg(pl.col("requests").cast(pl.Int64).sum().alias("attack"))


def timeline_from(seconds: pl.DataFrame, everything: pl.DataFrame, attack: pl.DataFrame, window_s: int) -> pl.DataFrame:
    """The timeline from the per-second counts, every client's requests per window (window, requests) and the
    attackers' (window, attack)."""
    if seconds.height == 0:
        return pl.DataFrame(schema=TIMELINE_SCHEMA)
    share = (
        everything.rename({"requests": "all"})
        .join(attack, on="window", how="left")
        .with_columns((pl.col("attack").fill_null(0) / pl.col("all")).clip(0, 1).alias("share"))
    )
    return (
        seconds.with_columns(pl.col("ts").dt.truncate(f"{window_s}s").alias("window"))
        .join(share.select("window", "share"), on="window", how="left")
        .with_columns((pl.col("requests") * pl.col("share").fill_null(0.0)).round(0).alias("attack_requests"))
        .cast(TIMELINE_SCHEMA)  # type: ignore[arg-type]
        .select(list(TIMELINE_SCHEMA))
        .sort("ts")
    )
