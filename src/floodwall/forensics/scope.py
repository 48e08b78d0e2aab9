"""Scope: how much, how fast, from how many addresses, against what, and how much a cache could have absorbed."""

from __future__ import annotations

from typing import Any

import polars as pl

from floodwall.detect import DetectionResult
from floodwall.forensics.collect import Collected
from floodwall.forensics.timeline import iso

__all__ = ["build_scope", "percentiles"]


def percentiles(values: pl.Series) -> dict[str, float] | None:
    """p50, p90, p99 and max of `values`, rounded; None when empty."""
    clean = values.drop_nulls().cast(pl.Float64)
    if clean.len() == 0:
        return None
    return {
        "p50": round(float(clean.quantile(0.5) or 0.0), 2),
        "p90": round(float(clean.quantile(0.9) or 0.0), 2),
        "p99": round(float(clean.quantile(0.99) or 0.0), 2),
        "max": round(float(clean.max() or 0.0), 2),  # type: ignore[arg-type]
        "count": clean.len(),
    }


def _phase_labels(detection: DetectionResult) -> list[tuple[Any, str]]:
    out: list[tuple[Any, str]] = []
    for incident in detection.incidents:
        labels = [p.label for p in incident.phases] or ["main"]
        out.extend((incident, label) for label in labels)
    return out


def _peak(frame: pl.DataFrame, column: str, seconds: int) -> dict[str, Any]:
    if frame.height == 0:
        return {"requests": 0, "rps": 0.0, "at": None}
    if seconds == 1:
        summed = frame.select(pl.col("ts"), pl.col(column).alias("n"))
    else:
        summed = frame.sort("ts").group_by_dynamic("ts", every=f"{seconds}s").agg(pl.col(column).sum().alias("n"))
    top = summed.sort("n", descending=True).head(1).row(0, named=True)
    return {"requests": int(top["n"] or 0), "rps": round(float(top["n"] or 0) / seconds, 1), "at": iso(top["ts"])}


def build_scope(detection: DetectionResult, collected: Collected) -> dict[str, Any]:
    """The scope section."""
    timeline = detection.timeline
    if collected.rows:
        attack_per_second = collected.attack_seconds.rename({"second": "ts"})
        attack_total = int(collected.attackers.get_column("requests").sum() or 0)
    else:
        attack_per_second = timeline.select("ts", pl.col("attack_requests").cast(pl.Int64).alias("attack"))
        attack_total = sum(i.attack_requests for i in detection.incidents)
    total = int(timeline.get_column("requests").sum() or 0) if timeline.height else detection.requests
    peaks = {
        f"{s}s": {"all": _peak(timeline, "requests", s), "attack": _peak(attack_per_second, "attack", s)}
        for s in (1, 10, 60)
    }
    attackers = collected.attackers
    per_client = attackers.group_by("client").agg(pl.col("requests").sum(), pl.col("minutes").sum())
    attacker_rate = percentiles(per_client.select(pl.col("requests") / pl.col("minutes").clip(1)).to_series())
    readers = collected.readers
    reader_rate = percentiles(readers.select(pl.col("requests") / pl.col("minutes").clip(1)).to_series())
    phases = collected.phase_clients.group_by("phase_key").agg(
        pl.len().alias("addresses"), pl.col("attack").sum().alias("attacking")
    )
    order = {f"{i.id}/{label}": n for n, (i, label) in enumerate(_phase_labels(detection))}
    phases = phases.with_columns(pl.col("phase_key").replace_strict(order, default=len(order)).alias("_order")).sort(
        "_order", "phase_key"
    )
    paths = (
        collected.paths.group_by("host", "path")
        .agg(pl.col("requests").sum())
        .sort(["requests", "host", "path"], descending=[True, False, False], nulls_last=True)
    )
    hosts = (
        collected.paths.group_by("host")
        .agg(pl.col("requests").sum())
        .sort(["requests", "host"], descending=[True, False], nulls_last=True)
    )
    plain = int(attackers.get_column("cacheable_plain").sum() or 0)
    any_query = int(attackers.get_column("cacheable_any").sum() or 0)
    minutes = collected.minutes
    hits = int(minutes.get_column("cache_hit").sum() or 0) if minutes.height else 0
    misses = int(minutes.get_column("cache_miss").sum() or 0) if minutes.height else 0
    return {
        "requests": total,
        "attack_requests": attack_total,
        "attack_share": round(attack_total / total, 4) if total else 0.0,
        "attack_bytes": int(attackers.get_column("bytes").sum() or 0),
        "peaks": peaks,
        "addresses": {
            "total": detection.clients,
            "attacking": per_client.height or len(detection.attacker_addresses),
            "per_phase": [
                {
                    "phase": r["phase_key"],
                    "addresses": int(r["addresses"]),
                    "attacking": int(r["attacking"]),
                    "others": int(r["addresses"] - r["attacking"]),
                }
                for r in phases.iter_rows(named=True)
            ],
        },
        "rate_per_address": {"attacking": attacker_rate, "others": reader_rate, "unit": "requests per active minute"},
        "urls": {
            "distinct": paths.height,
            "top": [
                {"host": r["host"], "path": r["path"], "requests": int(r["requests"])}
                for r in paths.head(15).iter_rows(named=True)
            ],
        },
        "hosts": [{"host": r["host"], "requests": int(r["requests"])} for r in hosts.head(10).iter_rows(named=True)],
        "cache": {
            "plain_share": round(plain / attack_total, 4) if attack_total else None,
            "ignoring_query_share": round(any_query / attack_total, 4) if attack_total else None,
            "observed_hit_share": round(hits / (hits + misses), 4) if hits + misses else None,
            "logged": hits + misses > 0,
        },
    }
