"""The ground truth of a simulation, as the document `truth.json` holds (schema in docs/truth.md).

Everything in it was observed while generating, not planned: an incident's `attackers` are the addresses that sent
at least one of its requests, its `markers` those that went out at least once, a crowd's `clients` those that came.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from floodwall import __version__
from floodwall.simulate.scenario import Scenario

if TYPE_CHECKING:
    from floodwall.simulate.attacks import CampaignPlan, IncidentPlan
    from floodwall.simulate.engine import SitePlan

__all__ = ["iso", "truth_document"]

TRUTH_FORMAT = 1


def iso(epoch_s: float) -> str:
    """ISO 8601 in UTC with a `Z`, to the second."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _chosen(addresses: pl.Series, mask: np.ndarray) -> list[str]:
    return sorted(addresses.filter(pl.Series(mask)).to_list())


def _incident(inc: IncidentPlan) -> dict[str, Any]:
    # Observed bounds: from the second of its first request to the second after its last. A slow brute force planned
    # from 21:00 whose first try went out at 21:00:53 began at 21:00:53; nothing in any log could say otherwise.
    start_s, end_s = math.floor(inc.first_s), math.ceil(inc.last_s)
    phases = [(p, max(p.start_s, start_s), min(p.end_s, end_s)) for p in inc.phases]
    return {
        "id": inc.id,
        "kind": str(inc.spec.kind),
        "campaign": inc.campaign,
        "start": iso(start_s),
        "end": iso(end_s),
        "vectors": [str(v) for v in inc.spec.vectors],
        "peak_rps": round(float(inc.rps_per_minute.max(initial=0.0)), 3),
        "requests": inc.requests,
        "markers": sorted(m.lower() for m in inc.planted),
        "phases": [
            {"label": p.label, "start": iso(lo_s), "end": iso(hi_s), "peak_rps": round(p.peak_rps, 3)}
            for p, lo_s, hi_s in phases
            if lo_s < hi_s
        ],
        "attackers": _chosen(inc.addresses, inc.seen),
    }


def _site(plan: SitePlan, log: Path, lines: int) -> dict[str, Any]:
    spec = plan.spec
    content = plan.content
    crowds = []
    for c_i, (crowd, _) in enumerate(plan.crowds):
        start_s = crowd.start.timestamp()
        clients = set(_chosen(plan.readers.addresses, plan.crowd_seen_readers[c_i]))
        clients.update(_chosen(plan.crowd.addresses, plan.crowd_seen_new[c_i]))
        crowds.append(
            {
                "id": f"{spec.name}-crowd-{datetime.fromtimestamp(start_s, tz=UTC):%Y%m%dT%H%M}",
                "start": iso(start_s),
                "end": iso(start_s + crowd.duration_minutes * 60),
                "multiplier": crowd.multiplier,
                "urls": [content.base_url + content.pages[p] for p in content.breaking[c_i]],
                "clients": sorted(clients),
            }
        )
    robots = [
        {"address": a, "kind": r.agent.kind, "name": r.agent.name, "user_agent": r.agent.user_agent}
        for r in plan.robots
        for a, seen in zip(r.addresses, r.seen.tolist(), strict=True)
        if seen
    ]
    readers = set(_chosen(plan.readers.addresses, plan.readers.seen))
    readers.update(_chosen(plan.crowd.addresses, plan.crowd.seen))
    return {
        "name": spec.name,
        "host": spec.host,
        "log": log.name,
        "lines": lines,
        "timezone": spec.timezone,
        "url_scheme": spec.url_scheme,
        "window": {"start": iso(plan.start_s), "end": iso(plan.start_s + plan.minutes * 60)},
        # An incident too small to send anything at this scale did not happen.
        "incidents": [_incident(i) for i in sorted(plan.incidents, key=lambda i: (i.start_s, i.id)) if i.requests],
        "flash_crowds": crowds,
        "automation": sorted(robots, key=lambda r: (r["kind"], r["name"], r["address"])),
        "readers": sorted(readers),
    }


def truth_document(
    scenario: Scenario,
    seed: int,
    scale: float,
    sites: list[SitePlan],
    campaigns: list[CampaignPlan],
    logs: list[tuple[str, Path, int]],
) -> dict[str, Any]:
    """The whole `truth.json` document."""
    by_site = {name: (path, lines) for name, path, lines in logs}
    markers: set[str] = set()
    for c in campaigns:
        for inc in c.incidents:
            markers.update(m.lower() for m in inc.planted)
    return {
        "format": TRUTH_FORMAT,
        "floodwall_version": __version__,
        "scenario": scenario.name,
        "description": scenario.description,
        "seed": seed,
        "scale": scale,
        "sites": [_site(p, *by_site[p.spec.name]) for p in sites],
        "campaigns": [
            {
                "id": c.id,
                "actor": c.spec.actor,
                "pool": c.spec.pool,
                "pool_size": c.pool_size,
                "markers": sorted({m.lower() for inc in c.incidents for m in inc.planted}),
                "incidents": [{"site": inc.spec.site, "id": inc.id} for inc in c.incidents if inc.requests],
            }
            for c in campaigns
            if any(inc.requests for inc in c.incidents)
        ],
        "markers": sorted(markers),
    }
