"""`compacted`: aggregates kept across batches are copied out of the batch's buffers, unchanged."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from floodwall.logs.frame import compacted


def test_compacted_keeps_values_and_types() -> None:
    batch = pl.DataFrame(
        {
            "client": [f"198.51.100.{i % 250}" for i in range(50_000)],
            "user_agent": [f"a long user agent string, number {i:06d}" for i in range(50_000)],
            "ts": [datetime(2023, 9, 1, 0, 0, i % 60, tzinfo=UTC) for i in range(50_000)],
        }
    )
    first = batch.group_by("client").agg(
        pl.col("user_agent").first(), pl.col("ts").min(), pl.col("user_agent").head(2).alias("two")
    )
    kept = compacted(first)
    assert kept.schema == first.schema
    assert kept.equals(first)
    assert compacted(first.clear()).height == 0
