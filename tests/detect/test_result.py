"""The timeline's attack counts: each attacker's window counted once, inside its incident's span only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from floodwall.detect.result import attack_windows

T0 = datetime(2024, 10, 30, 12, 0, tzinfo=UTC)
PAIR_SCHEMA = {
    "client": pl.String,
    "incident_id": pl.String,
    "start": pl.Datetime("us", "UTC"),
    "end": pl.Datetime("us", "UTC"),
}


def _windows(rows: list[tuple[str, int, int]]) -> pl.DataFrame:
    """(client, window index, requests) rows as windows of 10 s from T0."""
    return pl.DataFrame(
        {
            "client": [c for c, _, _ in rows],
            "window": [T0 + timedelta(seconds=10 * w) for _, w, _ in rows],
            "requests": [n for _, _, n in rows],
        },
        schema={"client": pl.String, "window": pl.Datetime("us", "UTC"), "requests": pl.UInt32},
    )


def _attack(windows: pl.DataFrame, pairs: list[tuple[str, str, int, int]]) -> dict[datetime, int]:
    frame = pl.DataFrame(
        [(c, i, T0 + timedelta(seconds=10 * a), T0 + timedelta(seconds=10 * b)) for c, i, a, b in pairs],
        schema=PAIR_SCHEMA,
        orient="row",
    )
    return dict(attack_windows(windows, frame).iter_rows())


def test_attackers_requests_count_inside_their_incident_only():
    windows = _windows([("a", 0, 5), ("a", 1, 7), ("a", 5, 9), ("b", 1, 3), ("reader", 1, 2)])
    attack = _attack(windows, [("a", "x-1", 0, 1), ("b", "x-1", 0, 1)])
    assert attack == {T0: 5, T0 + timedelta(seconds=10): 10}


def test_an_attacker_of_two_overlapping_incidents_is_counted_once_per_window():
    windows = _windows([("a", 0, 5), ("a", 1, 7), ("a", 2, 4)])
    attack = _attack(windows, [("a", "flood-1", 0, 1), ("a", "scan-1", 1, 2)])
    assert attack == {T0: 5, T0 + timedelta(seconds=10): 7, T0 + timedelta(seconds=20): 4}
