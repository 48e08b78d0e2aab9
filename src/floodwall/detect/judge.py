"""Judging the clients of one interval: client scores, fleets, the flash-crowd guard and vectors, in that order.

Shared by batch analysis (`Engine.finish`, an interval is a surge) and live judgement (`LiveWatch`, the running
surge's recent seconds), so both convict on the same evidence and explain themselves the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import polars as pl

from floodwall.detect.clients import ClientForest, ClientTotals, client_features, features_of, score_clients
from floodwall.detect.flashcrowd import protect_readers
from floodwall.detect.fleet import FLEET_POINTS, find_fleets
from floodwall.detect.profile import Profile
from floodwall.detect.settings import DetectSettings
from floodwall.detect.vectors import attacker_vectors, incident_vectors
from floodwall.model import Finding, Vector

__all__ = [
    "ATTACKER_SCHEMA",
    "QUIET_ROWS",
    "JudgeContext",
    "judge_interval",
    "judge_totals",
    "quiet_client_features",
    "quiet_keyed",
]

#: One row per (attacker, incident).
ATTACKER_SCHEMA: Final[dict[str, pl.DataType]] = {
    "client": pl.String(),
    "incident_id": pl.String(),
    "score": pl.Float64(),
    "vectors": pl.List(pl.String()),
    "reasons": pl.List(pl.String()),
    "requests": pl.Int64(),
}
#: Quiet windows the judge learns readers from: the most recent ones (the best yardstick), at most this many.
QUIET_ROWS: Final = 2_000_000


def quiet_keyed(quiet: pl.DataFrame) -> pl.DataFrame:
    """Quiet windows keyed by client and hour: a reader's visit is one summary, not three days of them."""
    hour = pl.col("window").dt.truncate("1h").cast(pl.String)
    return quiet.with_columns(pl.concat_str([pl.col("client"), pl.lit("@"), hour]).alias("client"))


def quiet_client_features(quiet: pl.DataFrame, profile: Profile, settings: DetectSettings) -> pl.DataFrame:
    """Client features of quiet traffic, one row per client and hour, of the most recent `QUIET_ROWS` windows."""
    if quiet.height > QUIET_ROWS:
        quiet = quiet.tail(QUIET_ROWS)
    return client_features(quiet_keyed(quiet), profile, None, settings)


@dataclass(frozen=True, slots=True)
class JudgeContext:
    """What judgement compares against: the quiet profile, its clients and the forest trained on them."""

    profile: Profile
    quiet_clients: pl.DataFrame
    forest: ClientForest
    settings: DetectSettings

    @classmethod
    def build(
        cls, windows: pl.DataFrame, quiet_mask: pl.Series, profile: Profile, settings: DetectSettings
    ) -> JudgeContext:
        return cls.of_quiet(quiet_client_features(windows.filter(quiet_mask), profile, settings), profile, settings)

    @classmethod
    def of_quiet(cls, quiet: pl.DataFrame, profile: Profile, settings: DetectSettings) -> JudgeContext:
        """The context from quiet client features (`quiet_client_features`, or the same from `ClientTotals`). They are
        kept as they are, unscored: fleets read only their shapes (`fleet.find_fleets`), and scoring them (their
        reasons written for every quiet client and hour) was a tenth of `Engine.finish`."""
        return cls(profile, quiet, ClientForest(quiet, settings), settings)

    def vectors_of(self, hostile: pl.DataFrame) -> tuple[Vector, ...]:
        return incident_vectors(hostile)

    def attacker_rows(self, hostile: pl.DataFrame, incident_id: str) -> pl.DataFrame:
        return hostile.select(
            "client",
            pl.lit(incident_id).alias("incident_id"),
            pl.col("score").round(3),
            "vectors",
            "reasons",
            pl.col("requests").cast(pl.Int64),
        ).cast(ATTACKER_SCHEMA)  # type: ignore[arg-type]

    def findings(self, hostile: pl.DataFrame, start: datetime, end: datetime) -> list[Finding]:
        """One finding per attacker; a row loop over attackers (not requests)."""
        found = []
        columns = ("client", "score", "reasons", "vectors", "fleet_hostile", "evidence_source", "evidence_line")
        for client, score, reasons, vectors, fleet, sources, lines in hostile.select(columns).iter_rows():
            found.append(
                Finding(
                    target=client,
                    kind="fleet-member" if fleet else "flood-client",
                    score=round(float(score), 3),
                    window_start=start,
                    window_end=end,
                    reasons=tuple(reasons),
                    vectors=tuple(Vector(v) for v in vectors),
                    evidence=tuple(zip(sources, lines, strict=False)),
                )
            )
        return found


def judge_interval(
    context: JudgeContext,
    windows: pl.DataFrame,
    start: datetime,
    end: datetime,
    settings: DetectSettings,
    onset: datetime | None = None,
) -> pl.DataFrame:
    """Client features of [start, end] with `score`, `reasons`, fleet columns, `protected`, `attacker`, `vectors`.

    `onset` (default `start`) is when the surge began, for "new at the onset"."""
    inside = windows.filter(pl.col("window").is_between(start - timedelta(seconds=settings.window_s), end))
    return judge_totals(context, ClientTotals.of(inside), onset or start, settings)


def judge_totals(
    context: JudgeContext, totals: ClientTotals, onset: datetime, settings: DetectSettings
) -> pl.DataFrame:
    """`judge_interval` from the interval's `ClientTotals` (how batch analysis judges a long log)."""
    features = features_of(totals, context.profile, onset, settings)
    scored = score_clients(features, context.profile, context.forest, settings)
    fleets = find_fleets(scored, context.quiet_clients, context.profile, settings)
    fleet_hostile = pl.col("fleet_hostile").fill_null(False)
    with_fleet = fleets.with_columns(
        pl.when(fleet_hostile)
        .then((pl.col("score") + FLEET_POINTS).clip(0, 1))
        .otherwise(pl.col("score"))
        .alias("score"),
        pl.when(fleet_hostile)
        .then(pl.concat_list(pl.col("reasons"), pl.concat_list(pl.col("fleet_reason"))))
        .otherwise(pl.col("reasons"))
        .alias("reasons"),
        fleet_hostile.alias("fleet_hostile"),
    )
    guarded = protect_readers(with_fleet, context.profile)
    judged = guarded.with_columns(
        ((pl.col("score") >= settings.attacker_score) & ~pl.col("protected")).alias("attacker")
    )
    return attacker_vectors(judged)
