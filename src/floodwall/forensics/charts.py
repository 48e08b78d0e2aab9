"""The series behind the report's charts, bucketed so a chart holds at most about 1,500 points whatever the span."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import polars as pl

from floodwall.detect import DetectionResult
from floodwall.forensics.collect import Collected
from floodwall.forensics.shapes import KIND_VECTOR
from floodwall.forensics.timeline import iso
from floodwall.model import IncidentKind
from floodwall.report.account import Charts

__all__ = ["bucket_seconds", "build_charts"]

_BUCKETS: Final = (1, 10, 60, 300, 600, 1800, 3600, 4 * 3600, 86400)
_POINTS: Final = 1500


def bucket_seconds(span_s: float) -> int:
    """The smallest bucket that keeps `span_s` within the point budget."""
    return next((b for b in _BUCKETS if span_s / b <= _POINTS), _BUCKETS[-1])


def build_charts(
    detection: DetectionResult,
    collected: Collected,
    minutes: pl.DataFrame,
    networks: pl.DataFrame,
    countries: pl.DataFrame,
) -> Charts:
    """Every chart's frame (see `Charts`)."""
    timeline = detection.timeline
    span = (
        (detection.window_end - detection.window_start).total_seconds()
        if detection.window_start and detection.window_end
        else 0.0
    )
    bucket = bucket_seconds(span)
    every = f"{bucket}s"
    if collected.rows:
        attack = collected.attack_seconds.rename({"second": "ts"})
    else:
        attack = timeline.select("ts", pl.col("attack_requests").cast(pl.Int64).alias("attack"))
    all_b = timeline.group_by(pl.col("ts").dt.truncate(every).alias("bucket")).agg(
        pl.col("requests").cast(pl.Int64).sum().alias("requests")
    )
    attack_b = attack.group_by(pl.col("ts").dt.truncate(every).alias("bucket")).agg(pl.col("attack").sum())
    traffic = (
        all_b.join(attack_b, on="bucket", how="left")
        .with_columns(pl.col("attack").fill_null(0))
        .select(
            "bucket",
            ((pl.col("requests") - pl.col("attack")).clip(0) / bucket).alias("benign_rps"),
            (pl.col("attack").clip(0, None) / bucket).alias("attack_rps"),
        )
        .sort("bucket")
    )
    coarse = max(bucket, 60)
    vectors = (
        collected.attack_kinds.with_columns(
            pl.col("minute").dt.truncate(f"{coarse}s").alias("bucket"),
            pl.col("kind").replace_strict(KIND_VECTOR, default="other").alias("vector"),
        )
        .group_by("bucket", "vector")
        .agg((pl.col("attack").sum() / coarse).alias("rps"))
    )
    if vectors.height:  # zeros where a vector was silent, so the lines drop to 0 across pauses
        first, last = vectors.get_column("bucket").min(), vectors.get_column("bucket").max()
        assert isinstance(first, datetime) and isinstance(last, datetime)
        grid = pl.DataFrame({"bucket": pl.datetime_range(first, last, f"{coarse}s", eager=True)}).join(
            vectors.select("vector").unique(), how="cross"
        )
        vectors = grid.join(vectors, on=["bucket", "vector"], how="left").with_columns(pl.col("rps").fill_null(0.0))
    vectors = vectors.sort("bucket", "vector")
    counts = ["s2xx", "s3xx", "s4xx", "s5xx", "s499", "cache_hit", "cache_miss"]
    status = (
        minutes.group_by(pl.col("minute").dt.truncate(f"{coarse}s").alias("bucket"))
        .agg(
            *(pl.col(c).sum() / coarse for c in counts),
            pl.when(pl.col("rt_n").sum() > 0).then(pl.col("rt_sum").sum() / pl.col("rt_n").sum()).alias("rt_mean"),
        )
        .sort("bucket")
    )
    shading: list[dict[str, Any]] = []
    for incident in detection.incidents:
        if incident.kind is IncidentKind.FLOOD and incident.phases:
            shading.extend(
                {"start": iso(p.start), "end": iso(p.end), "label": p.label, "kind": "phase"} for p in incident.phases
            )
        else:
            shading.append(
                {
                    "start": iso(incident.start),
                    "end": iso(incident.end),
                    "label": incident.kind.value,
                    "kind": incident.kind.value,
                }
            )
    return Charts(
        traffic=traffic,
        bucket_s=bucket,
        vectors=vectors,
        status=status,
        networks=networks,
        countries=countries,
        shading=shading,
    )
