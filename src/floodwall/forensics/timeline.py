"""The timeline: first anomaly, phases and waves with their peaks, breach attempts on the same axis, quiet gaps,
likely downtime (the origin failing: 5xx, 499, request times far above normal) and the end, in UTC and local time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import polars as pl

from floodwall.detect import DetectionResult
from floodwall.forensics.collect import Collected
from floodwall.model import Incident, IncidentKind

__all__ = ["build_timeline", "iso", "local", "minute_table", "runs"]

_PAUSE_MIN: Final = 5  # minutes without attack traffic inside an incident that make a quiet gap
_LOG_GAP_MIN: Final = 5  # minutes without any request logged that make a gap in the log
_FAIL_SHARE: Final = 0.2  # share of 5xx and 499 answers that marks a failing minute


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`, to the second."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local(moment: datetime | None, zone: ZoneInfo) -> str | None:
    """The site's wall-clock time, with the zone's abbreviation."""
    return None if moment is None else moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def runs(frame: pl.DataFrame, flag: str, at: str, merge_gap: int = 0) -> list[tuple[datetime, datetime, int]]:
    """(first, last, rows) of each run of rows where `flag` is true, in `at` order; runs closer than `merge_gap`
    rows (minutes, for a minute table) are joined."""
    if frame.height == 0:
        return []
    marked = frame.sort(at).with_columns(pl.col(flag).rle_id().alias("_run"))
    grouped = (
        marked.filter(pl.col(flag))
        .group_by("_run")
        .agg(pl.col(at).min().alias("a"), pl.col(at).max().alias("b"), pl.len().alias("n"))
        .sort("a")
    )
    out: list[tuple[datetime, datetime, int]] = []
    for a, b, n in grouped.select("a", "b", "n").iter_rows():
        if out and merge_gap and (a - out[-1][1]) <= timedelta(minutes=merge_gap + 1):
            out[-1] = (out[-1][0], b, out[-1][2] + n)
        else:
            out.append((a, b, n))
    return out


def minute_table(detection: DetectionResult, collected: Collected) -> pl.DataFrame:
    """Per minute: requests, attack requests, status classes, request times and cache answers. From the forensic
    pass when it ran, else from the engine's per-second timeline (no request times nor cache then)."""
    if collected.rows:
        return collected.minutes
    timeline = detection.timeline
    return (
        timeline.group_by(pl.col("ts").dt.truncate("1m").alias("minute"))
        .agg(
            pl.col("requests").sum().cast(pl.Int64),
            *(pl.col(c).sum().cast(pl.Int64) for c in ("s2xx", "s3xx", "s4xx", "s5xx")),
            pl.col("attack_requests").sum().cast(pl.Int64).alias("attack"),
        )
        .with_columns(
            pl.lit(0, pl.Int64).alias("s499"),
            pl.lit(0.0).alias("rt_sum"),
            pl.lit(0, pl.Int64).alias("rt_n"),
            pl.lit(None, pl.Float64).alias("rt_max"),
            pl.lit(0, pl.Int64).alias("cache_hit"),
            pl.lit(0, pl.Int64).alias("cache_miss"),
        )
        .sort("minute")
    )


def _event(at: datetime, kind: str, text: str, zone: ZoneInfo) -> dict[str, Any]:
    return {"utc": iso(at), "local": local(at, zone), "kind": kind, "text": text}


def _downtime(minutes: pl.DataFrame) -> tuple[list[dict[str, Any]], str]:
    if minutes.height == 0:
        return [], "The log holds no requests."
    has_rt = int(minutes.get_column("rt_n").sum() or 0) > 0
    flagged = minutes.with_columns(
        ((pl.col("s5xx") + pl.col("s499")) / pl.col("requests").clip(1)).alias("fail_share"),
        (pl.col("rt_sum") / pl.col("rt_n").clip(1)).alias("rt_mean"),
    )
    quiet_rt = flagged.filter((pl.col("attack") == 0) & (pl.col("rt_n") > 0)).get_column("rt_mean").median()
    baseline_rt = float(quiet_rt) if isinstance(quiet_rt, (int, float)) else 0.0
    slow = (pl.col("rt_n") > 0) & (pl.col("rt_mean") >= max(1.0, 5 * baseline_rt)) if has_rt else pl.lit(False)
    flagged = flagged.with_columns(
        ((pl.col("requests") >= 5) & ((pl.col("fail_share") >= _FAIL_SHARE) | slow)).alias("failing")
    )
    found = []
    for start, end, n in runs(flagged, "failing", "minute", merge_gap=2):
        part = flagged.filter(pl.col("minute").is_between(start, end))
        fail = int(part.get_column("s5xx").sum() or 0) + int(part.get_column("s499").sum() or 0)
        requests = int(part.get_column("requests").sum() or 0)
        rt = part.filter(pl.col("rt_n") > 0).get_column("rt_mean").max()
        evidence = f"{fail:,} of {requests:,} requests answered 5xx or 499 ({fail / max(requests, 1):.0%})"
        if isinstance(rt, (int, float)):
            evidence += f"; mean request time up to {rt:.1f} s (normally {baseline_rt:.2f} s)"
        found.append(
            {"start": start, "end": end + timedelta(minutes=1), "minutes": n, "evidence": evidence, "failed": fail}
        )
    if found:
        note = "Minutes where the origin failed to answer most requests in time are listed as likely downtime."
    elif has_rt:
        note = "No minute shows the origin failing: 5xx and 499 answers and request times stayed near normal."
    else:
        note = (
            "No minute shows a surge of 5xx or 499 answers. The log records no request times, so slow answers "
            "that did not end in an error cannot be seen."
        )
    return found, note


def build_timeline(
    detection: DetectionResult, collected: Collected, minutes: pl.DataFrame, zone: ZoneInfo
) -> dict[str, Any]:
    """The timeline section (see the module docstring)."""
    events: list[dict[str, Any]] = []
    phases: list[dict[str, Any]] = []
    gaps: list[dict[str, Any]] = []
    seconds = (
        collected.attack_seconds
        if collected.rows
        else detection.timeline.select(
            pl.col("ts").alias("second"), pl.col("attack_requests").cast(pl.Int64).alias("attack")
        )
    )
    phase_clients = collected.attackers.group_by("incident_id", "phase").agg(
        pl.col("client").n_unique().alias("addresses"), pl.col("requests").sum().alias("attack_requests")
    )
    floods = [i for i in detection.incidents if i.kind is IncidentKind.FLOOD]
    for incident in detection.incidents:
        if incident.kind is not IncidentKind.FLOOD:
            events.append(
                _event(
                    incident.start,
                    "breach",
                    f"{incident.kind.value} from {len(incident.attackers)} address(es): "
                    f"{', '.join(v.value for v in incident.vectors)} ({incident.id})",
                    zone,
                )
            )
            continue
        events.append(_event(incident.start, "onset", f"flood begins ({incident.id})", zone))
        events.append(_event(incident.end, "end", f"flood ends ({incident.id})", zone))
        for phase in incident.phases:
            window = seconds.filter(pl.col("second").is_between(phase.start, phase.end))
            peak_row = window.sort("attack", descending=True).head(1)
            peak_at = peak_row.get_column("second").item() if peak_row.height else phase.start
            stats = phase_clients.filter((pl.col("incident_id") == incident.id) & (pl.col("phase") == phase.label))
            addresses = int(stats.get_column("addresses").sum() or 0) if stats.height else None
            attack = int(stats.get_column("attack_requests").sum() or 0) if stats.height else None
            phases.append(
                {
                    "incident_id": incident.id,
                    "label": phase.label,
                    "start": iso(phase.start),
                    "end": iso(phase.end),
                    "start_local": local(phase.start, zone),
                    "end_local": local(phase.end, zone),
                    "minutes": round((phase.end - phase.start).total_seconds() / 60, 1),
                    "peak_rps": round(phase.peak_rps, 1),
                    "peak_at": iso(peak_at),
                    "attack_requests": attack,
                    "addresses": addresses,
                }
            )
            events.append(
                _event(
                    phase.start,
                    "phase",
                    f"{phase.label} begins: peak {phase.peak_rps:,.1f} req/s at {local(peak_at, zone)}",
                    zone,
                )
            )
        attack_min = minutes.filter(pl.col("minute").is_between(incident.start, incident.end)).with_columns(
            (pl.col("attack") == 0).alias("idle")
        )
        for a, b, n in runs(attack_min, "idle", "minute"):
            if n >= _PAUSE_MIN:
                gaps.append({"start": iso(a), "end": iso(b + timedelta(minutes=1)), "minutes": n, "kind": "pause"})
                events.append(_event(a, "gap", f"attack pauses for {n} minutes", zone))
    if minutes.height:
        first, last = minutes.get_column("minute").min(), minutes.get_column("minute").max()
        assert isinstance(first, datetime) and isinstance(last, datetime)
        full = pl.datetime_range(first, last, "1m", eager=True)
        present = pl.DataFrame({"minute": full}).join(minutes.select("minute", "requests"), on="minute", how="left")
        present = present.with_columns(pl.col("requests").is_null().alias("empty"))
        for a, b, n in runs(present, "empty", "minute"):
            if n >= _LOG_GAP_MIN:
                gaps.append({"start": iso(a), "end": iso(b + timedelta(minutes=1)), "minutes": n, "kind": "no-log"})
                events.append(_event(a, "gap", f"no request logged for {n} minutes", zone))
    downtime, downtime_note = _downtime(minutes)
    for part in downtime:
        events.append(_event(part["start"], "downtime", f"likely downtime: {part['evidence']}", zone))
        part["start_local"], part["end_local"] = local(part["start"], zone), local(part["end"], zone)
        part["start"], part["end"] = iso(part["start"]), iso(part["end"])
    for surge in detection.surges:
        if surge.verdict == "flash-crowd":
            text = f"surge of readers (a flash crowd, not an attack): peak {surge.peak_rps:,.1f} req/s"
            events.append(_event(surge.start, "flash-crowd", text, zone))
    events.sort(key=lambda e: (e["utc"] or "", e["kind"] != "onset"))
    return {
        "first_anomaly": iso(min((i.start for i in detection.incidents), default=None)),
        "first_anomaly_local": local(min((i.start for i in detection.incidents), default=None), zone),
        "end": iso(max((i.end for i in floods), default=None)),
        "end_local": local(max((i.end for i in floods), default=None), zone),
        "events": events,
        "phases": phases,
        "gaps": gaps,
        "downtime": downtime,
        "downtime_note": downtime_note,
    }


def incident_header(incident: Incident, zone: ZoneInfo) -> dict[str, Any]:
    """The fields every section of the account starts an incident with: id, kind, times (UTC and local), vectors,
    addresses."""
    return {
        "id": incident.id,
        "kind": incident.kind.value,
        "start": iso(incident.start),
        "end": iso(incident.end),
        "start_local": local(incident.start, zone),
        "end_local": local(incident.end, zone),
        "vectors": [v.value for v in incident.vectors],
        "addresses": len(incident.attackers),
        "attackers": list(incident.attackers),
    }
