"""The `correlate` job: bundles in, campaigns out (campaigns.json, campaigns.html, campaigns.stix.json)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from floodwall import __version__
from floodwall.correlate.campaigns import CampaignGroup, campaign_document, group_campaigns
from floodwall.correlate.evidence import (
    FINGERPRINT_WEIGHTS,
    LINK_THRESHOLD,
    STRONG_ADDRESSES,
    STRONG_FINGERPRINT,
    STRONG_FINGERPRINT_ONE_ADDRESS,
    STRONG_FINGERPRINT_PREFIXES,
    WEIGHTS,
    Pairwise,
    link_evidence,
    pairwise,
)
from floodwall.correlate.html import campaigns_html
from floodwall.correlate.inputs import Source, load_sources
from floodwall.correlate.stix import campaigns_stix
from floodwall.forensics.bundle import BundleIncident
from floodwall.report import write_atomic, write_json

__all__ = ["CorrelationResult", "correlate", "correlation_document"]

#: Unlinked pairs scoring at least this much are listed as near misses, to show why they were not linked.
NEAR_MISS: Final = 0.2
_NEAR_MISSES_KEPT: Final = 200


@dataclass
class CorrelationResult:
    """What `correlate` found and where it wrote it."""

    sources: list[Source]
    incidents: list[BundleIncident]
    pairs: Pairwise
    campaigns: list[CampaignGroup]
    document: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


def correlation_document(
    sources: list[Source],
    incidents: list[BundleIncident],
    p: Pairwise,
    groups: list[CampaignGroup],
    generated: datetime,
) -> dict[str, Any]:
    """campaigns.json: CONTRACT.md's `campaigns`, the links that make them with their evidence, the other linked
    pairs summarised per campaign, near misses, and the rule's parameters."""
    tree = {(min(i, j), max(i, j)) for g in groups for i, j in g.tree}
    # The links that hold each campaign together (its maximum spanning tree) carry every detail; the other linked
    # pairs (a campaign of k incidents may have k(k-1)/2) are summarised per campaign, so the file grows with the
    # incidents, not with their pairs (1,000 incidents of dense campaigns made 170,000 rows and 140 MB otherwise).
    links = [link_evidence(p, incidents, i, j) for i, j in sorted(tree)]
    links.sort(key=lambda x: -x["score"])
    member_of = {i: g.id for g in groups for i in g.members}
    near = np.triu((p.score >= NEAR_MISS) & ~p.linked, 1)
    na, nb = np.nonzero(near)
    order = np.argsort(-p.score[na, nb], kind="stable")[:_NEAR_MISSES_KEPT]
    near_misses = [link_evidence(p, incidents, int(na[k]), int(nb[k])) for k in order.tolist()]
    by_campaign: dict[str, list[dict[str, Any]]] = {}
    index = {(inc.site, inc.id): i for i, inc in enumerate(incidents)}
    for link in links:
        first = link["incidents"][0]
        by_campaign.setdefault(member_of[index[(first["site"], first["id"])]], []).append(link)
    others = _other_links(p, groups)
    return {
        "floodwall_version": __version__,
        "generated": generated.isoformat().replace("+00:00", "Z"),
        "inputs": [
            {
                "path": str(s.path),
                "kind": s.kind,
                "site": s.bundle.site,
                "schema_version": s.bundle.schema_version,
                "key_fingerprint": s.bundle.key_fingerprint,
                "incidents": len(s.bundle.incidents),
            }
            for s in sources
        ],
        "rule": {
            "weights": dict(WEIGHTS),
            "fingerprint_weights": dict(FINGERPRINT_WEIGHTS),
            "link_threshold": LINK_THRESHOLD,
            "strong_evidence": {
                "addresses": STRONG_ADDRESSES,
                "markers": "any shared",
                "fingerprint": STRONG_FINGERPRINT,
                "fingerprint_shared_prefixes": STRONG_FINGERPRINT_PREFIXES,
                "fingerprint_with_one_shared_address": STRONG_FINGERPRINT_ONE_ADDRESS,
            },
            "clustering": "connected components of links",
        },
        "campaigns": [
            campaign_document(g, p, incidents, by_campaign.get(g.id, [])) | {"other_links": others[g.id]}
            for g in groups
        ],
        "links_total": int(np.triu(p.linked, 1).sum()),
        "links": links,
        "near_misses": near_misses,
    }


def _other_links(p: Pairwise, groups: list[CampaignGroup]) -> dict[str, dict[str, Any]]:
    """Per campaign, its linked pairs beyond the spanning tree: how many, their scores, and why they link."""
    summary: dict[str, dict[str, Any]] = {}
    strong = {
        "shared-addresses": p.components["addresses"] >= STRONG_ADDRESSES,
        "shared-markers": p.components["markers"] > 0,
        "shared-address-and-fingerprint": (p.shared_addresses >= 1)
        & (p.components["fingerprint"] >= STRONG_FINGERPRINT_ONE_ADDRESS),
        "fingerprint-and-prefixes": (p.components["fingerprint"] >= STRONG_FINGERPRINT)
        & (p.shared_prefixes >= STRONG_FINGERPRINT_PREFIXES),
    }
    for g in groups:
        members = np.array(g.members)
        inside = np.triu(p.linked[np.ix_(members, members)], 1)
        position = {m: k for k, m in enumerate(g.members)}
        for i, j in g.tree:
            inside[position[i], position[j]] = inside[position[j], position[i]] = False
        ra, rb = np.nonzero(inside)
        scores = p.score[members[ra], members[rb]]
        summary[g.id] = {
            "count": int(ra.size),
            "score": {
                "min": round(float(scores.min()), 3),
                "median": round(float(np.median(scores)), 3),
                "max": round(float(scores.max()), 3),
            }
            if ra.size
            else None,
            "reasons": {k: int(v[members[ra], members[rb]].sum()) for k, v in strong.items()} if ra.size else {},
        }
    return summary


def correlate(
    inputs: Sequence[Path],
    out_dir: Path,
    *,
    key: bytes | None = None,
    generated: datetime | None = None,
) -> CorrelationResult:
    """Read `inputs` (bundle.json, report.json, or folders holding one), link their incidents into campaigns, and
    write campaigns.json, campaigns.html and campaigns.stix.json into `out_dir`."""
    generated = generated or datetime.now(UTC)
    sources = load_sources(list(inputs), key)
    incidents = [inc for s in sources for inc in s.bundle.incidents]
    p = pairwise(incidents)
    groups = group_campaigns(p, incidents)
    document = correlation_document(sources, incidents, p, groups, generated)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: out_dir / name for name in ("campaigns.json", "campaigns.html", "campaigns.stix.json")}
    write_json(files["campaigns.json"], document)
    write_atomic(files["campaigns.html"], campaigns_html(document, incidents, p, groups))
    write_json(files["campaigns.stix.json"], campaigns_stix(document, incidents))
    return CorrelationResult(sources, incidents, p, groups, document, files)
