"""Judging the clients of one interval: client scores, fleets, the flash-crowd guard and vectors, in that order.

Shared by batch analysis (`Engine.finish`, an interval is a surge) and live judgement (`LiveWatch`, the running
surge's recent seconds), so both convict on the same evidence and explain themselves the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import polars as pl

from floodwall.detect.clients import ClientForest, client_features, score_clients
from floodwall.detect.flashcrowd import protect_readers
from floodwall.detect.fleet import FLEET_POINTS, find_fleets
from floodwall.detect.profile import Profile
from floodwall.detect.settings import DetectSettings
from floodwall.detect.vectors import attacker_vectors, incident_vectors
from floodwall.model import Finding, Vector

__all__ = ["ATTACKER_SCHEMA", "JudgeContext", "judge_interval"]

#: One row per (attacker, incident).
ATTACKER_SCHEMA: Final[dict[str, pl.DataType]] = {
    "client": pl.String(),
    "incident_id": pl.String(),
    "score": pl.Float64(),
    "vectors": pl.List(pl.String()),
    "reasons": pl.List(pl.String()),
    "requests": pl.Int64(),
}
_QUIET_ROWS: Final = 2_000_000


def quiet_client_features(quiet: pl.DataFrame, profile: Profile, settings: DetectSettings) -> pl.DataFrame:
    """Client features of quiet traffic, one row per client and hour (a reader's visit, not three days of them)."""
    if quiet.height > _QUIET_ROWS:
        quiet = quiet.tail(_QUIET_ROWS)  # the most recent quiet traffic is the best yardstick
    keyed = quiet.with_columns(
        pl.concat_str([pl.col("client"), pl.lit("@"), pl.col("window").dt.truncate("1h").cast(pl.String)]).alias(
            "client"
        )
    )
    return client_features(keyed, profile, None, settings)


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
        quiet = quiet_client_features(windows.filter(quiet_mask), profile, settings)
        scored_quiet = score_clients(quiet, profile, None, settings) if quiet.height else quiet
        return cls(profile, scored_quiet, ClientForest(quiet, settings), settings)

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
    features = client_features(inside, context.profile, onset or start, settings)
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
