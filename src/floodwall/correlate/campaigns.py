"""Campaigns: the connected components of the link graph, each with a confidence and a summary of its evidence.

Links are strict (evidence.py), so components are taken as they are (single linkage): an actor's incidents are
tied together by whichever evidence each pair has, as a responder would chain them by hand. Every incident lands
in exactly one campaign; an incident with no link is a campaign of one.

Confidence: for a campaign of several incidents, the mean of the link scores along its maximum spanning tree (the
strongest links that hold it together), pulled towards the weakest of them: `(mean + min) / 2`. For a campaign of
one, how clearly it stands alone: `1 - best score with any other incident`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from floodwall.correlate.evidence import Pairwise
from floodwall.forensics.bundle import BundleIncident

__all__ = ["CampaignGroup", "campaign_document", "group_campaigns"]


@dataclass(frozen=True, slots=True)
class CampaignGroup:
    id: str
    members: tuple[int, ...]  # incident indices, by start time
    tree: tuple[tuple[int, int], ...]  # the maximum spanning tree's links
    confidence: float


class _Forest:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True


def group_campaigns(p: Pairwise, incidents: list[BundleIncident]) -> list[CampaignGroup]:
    """Campaigns from the links (Kruskal over links by descending score: components and spanning trees at once)."""
    n = len(incidents)
    a, b = np.nonzero(np.triu(p.linked, 1))
    order = np.argsort(-p.score[a, b], kind="stable")
    forest = _Forest(n)
    tree: dict[int, list[tuple[int, int]]] = {}
    for k in order.tolist():
        i, j = int(a[k]), int(b[k])
        if forest.union(i, j):
            tree.setdefault(i, []).append((i, j))
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(forest.find(i), []).append(i)
    edges: dict[int, list[tuple[int, int]]] = {}
    for edge_list in tree.values():
        for i, j in edge_list:
            edges.setdefault(forest.find(i), []).append((i, j))
    scores = p.score.copy()
    np.fill_diagonal(scores, 0.0)
    groups = []
    by_start = sorted(
        members.values(), key=lambda m: min((incidents[i].start, incidents[i].site, incidents[i].id) for i in m)
    )
    for number, group in enumerate(by_start, start=1):
        root = forest.find(group[0])
        links = edges.get(root, [])
        if links:
            values = [float(p.score[i, j]) for i, j in links]
            confidence = (float(np.mean(values)) + min(values)) / 2
        else:
            confidence = 1.0 - float(scores[group[0]].max()) if n > 1 else 1.0
        ordered = tuple(sorted(group, key=lambda i: (incidents[i].start, incidents[i].site, incidents[i].id)))
        groups.append(
            CampaignGroup(f"campaign-{number}", ordered, tuple(links), round(min(max(confidence, 0.0), 1.0), 3))
        )
    return groups


def campaign_document(
    group: CampaignGroup, p: Pairwise, incidents: list[BundleIncident], links: list[dict[str, Any]]
) -> dict[str, Any]:
    """One campaign as CONTRACT.md's `campaigns[]` entry, with its infrastructure and the links inside it."""
    members = [incidents[i] for i in group.members]
    hashes = Counter(h for inc in members for h in set(inc.address_hashes or ()))
    prefixes = Counter(x.prefix for inc in members for x in inc.prefixes)
    asns: dict[int, dict[str, Any]] = {}
    for inc in members:
        for x in inc.asns:
            entry = asns.setdefault(
                x.asn, {"asn": x.asn, "name": x.name, "country": x.country, "ips": 0, "incidents": 0}
            )
            entry["ips"] += x.ips
            entry["incidents"] += 1
    inside = [link for link in links if link["linked"]]
    return {
        "id": group.id,
        "confidence": group.confidence,
        "incidents": [{"site": inc.site, "id": inc.id} for inc in members],
        "sites": sorted({inc.site for inc in members}),
        "first_seen": min(inc.start for inc in members).isoformat().replace("+00:00", "Z"),
        "last_seen": max(inc.end for inc in members).isoformat().replace("+00:00", "Z"),
        "evidence": {
            "shared_addresses": sum(1 for c in hashes.values() if c >= 2),
            "jaccard": round(float(np.mean([x["jaccard"] for x in inside])), 3) if inside else 0.0,
            "shared_markers": sorted({m for x in inside for m in x["shared_markers"]}),
            "fingerprint_similarity": round(float(np.mean([x["fingerprint_similarity"] for x in inside])), 3)
            if inside
            else 0.0,
            "links": len(inside),
            "spanning_links": [
                [{"site": incidents[i].site, "id": incidents[i].id}, {"site": incidents[j].site, "id": incidents[j].id}]
                for i, j in group.tree
            ],
        },
        "infrastructure": {
            "addresses": len(hashes) if any(inc.address_hashes is not None for inc in members) else None,
            "addresses_in_several_incidents": sum(1 for c in hashes.values() if c >= 2),
            "prefixes": len(prefixes),
            "top_prefixes": [{"prefix": k, "incidents": v} for k, v in prefixes.most_common(10)],
            "asns": sorted(asns.values(), key=lambda x: (-x["ips"], x["asn"]))[:15],
            "vectors": sorted({v for inc in members for v in inc.vectors}),
            "markers": sorted({m for inc in members for m in inc.markers}),
        },
    }
