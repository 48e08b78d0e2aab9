"""Breach attempts: each scan, brute force or exploit incident with the rule families it hit, its targets, and
whether any of its requests got a 2xx answer. A 2xx to a request that on its face probes or attacks (a sensitive
file, injection characters) or a redirect after a login POST is a possible success, which the report makes stand
out; 2xx answers to ordinary pages fetched along the way are counted, not flagged."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final
from zoneinfo import ZoneInfo

import polars as pl

from floodwall.detect import DetectionResult
from floodwall.forensics.collect import Collected
from floodwall.forensics.mode import sample_of
from floodwall.forensics.shapes import looks_hostile
from floodwall.forensics.timeline import incident_header
from floodwall.model import IncidentKind

__all__ = ["build_breaches"]

_FAMILIES: Final = re.compile(r"signature hits \(([^)]*)\)")


def _families(detection: DetectionResult, incident_id: str) -> list[str]:
    rows = detection.attackers.filter(pl.col("incident_id") == incident_id).get_column("reasons")
    found: set[str] = set()
    for reasons in rows.to_list():
        for reason in reasons or []:
            for match in _FAMILIES.finditer(reason):
                found.update(f.strip() for f in match.group(1).split(",") if f.strip())
    return sorted(found)


def build_breaches(
    detection: DetectionResult, collected: Collected, hashes: Mapping[str, str | None], zone: ZoneInfo
) -> list[dict[str, Any]]:
    """One entry per breach incident, by start."""
    out = []
    for incident in detection.incidents:
        if incident.kind is IncidentKind.FLOOD:
            continue
        rows = collected.breach.filter(pl.col("incident_id") == incident.id)
        targets = (
            rows.group_by("method", "path")
            .agg(
                pl.col("requests").sum(),
                pl.col("status").unique().sort().alias("statuses"),
                pl.col("client").n_unique().alias("addresses"),
            )
            .sort(["requests", "path"], descending=[True, False])
        )
        answered = rows.filter((pl.col("status") >= 200) & (pl.col("status") < 300))
        login = (pl.col("method") == "POST") & pl.col("path").str.contains(r"(?i)wp-login\.php|/login")
        # A hostile-looking request answered 2xx, or a login POST answered with a redirect (WordPress and most
        # login forms answer a failed login 200 and a successful one 302).
        successes = rows.filter(
            (looks_hostile() & (pl.col("status") >= 200) & (pl.col("status") < 300))
            | (login & pl.col("status").is_in([301, 302, 303]))
        ).sort("first_ts")
        statuses = rows.group_by("status").agg(pl.col("requests").sum()).sort("status")
        out.append(
            incident_header(incident, zone)
            | {
                "families": _families(detection, incident.id),
                "requests": int(rows.get_column("requests").sum() or 0) or incident.requests,
                "statuses": {str(s): int(n) for s, n in statuses.iter_rows()},
                "targets": [
                    {
                        "method": r["method"],
                        "path": r["path"],
                        "requests": int(r["requests"]),
                        "statuses": [int(s) for s in r["statuses"] if s is not None],
                        "addresses": int(r["addresses"]),
                    }
                    for r in targets.head(20).iter_rows(named=True)
                ],
                "targets_total": targets.height,
                "possible_success": successes.height > 0,
                "answered_2xx": int(answered.get_column("requests").sum() or 0),
                "successes": [
                    sample_of(r, hashes) | {"requests": int(r["requests"])}
                    for r in successes.head(20).iter_rows(named=True)
                ],
                "samples": [sample_of(r, hashes) for r in rows.sort("first_ts").head(5).iter_rows(named=True)],
            }
        )
    return out
