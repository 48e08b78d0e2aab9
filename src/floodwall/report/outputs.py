"""The account's files: report.html, report.md and indicators.stix.json (restricted), and with `public` their
aggregate-only twins report.public.html and report.public.md."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from floodwall.model import Incident
from floodwall.report.account import Account
from floodwall.report.html import write_html, write_markdown
from floodwall.report.stix import write_stix

__all__ = ["account_files", "apply_account", "write_account"]


def account_files(out_dir: Path, *, public: bool = False) -> dict[str, Path]:
    """Names and paths of the files `write_account` writes."""
    names = ["report.html", "report.md", "indicators.stix.json"]
    if public:
        names += ["report.public.html", "report.public.md"]
    return {name: out_dir / name for name in names}


def write_account(
    out_dir: Path,
    account: Account,
    incidents: tuple[Incident, ...] | list[Incident],
    attackers: pl.DataFrame,
    *,
    public: bool = False,
    created: datetime | None = None,
) -> dict[str, Path]:
    """Write the account's files into `out_dir`; `attackers` is the detection's attacker frame (client,
    incident_id, requests) for the sightings' counts."""
    files = account_files(out_dir, public=public)
    write_html(files["report.html"], account)
    write_markdown(files["report.md"], account)
    counts = {
        (str(i), str(c)): int(n or 0) for i, c, n in attackers.select("incident_id", "client", "requests").iter_rows()
    }
    write_stix(files["indicators.stix.json"], account.site, list(incidents), counts, created)
    if public:
        shared = account.for_public()
        write_html(files["report.public.html"], shared)
        write_markdown(files["report.public.md"], shared)
    return files


def apply_account(document: dict[str, Any], account: Account) -> None:
    """Give report.json what the account found: each incident's markers, and the account's headline figures."""
    markers = {i["id"]: i["markers"] for i in account.incidents}
    for incident in document.get("incidents", []):
        if isinstance(incident, dict) and incident.get("id") in markers:
            incident["markers"] = sorted(set(incident.get("markers") or []) | set(markers[incident["id"]]))
    document["account"] = {
        "summary": account.summary["lines"],
        "first_anomaly": account.timeline["first_anomaly"],
        "markers": account.mode["markers"],
        "peaks": account.scope["peaks"],
        "attack_requests": account.scope["attack_requests"],
        "possible_breach_success": account.summary["possible_breach_success"],
    }
