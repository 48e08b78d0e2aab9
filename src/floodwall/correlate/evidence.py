"""Pairwise evidence between incidents, and the rule that turns it into links.

Every pair of incidents (of different sites or of the same one) gets six scores in [0, 1], computed for all pairs
at once (joins on shared keys, matrix products; no loop over pairs):

- `addresses` (weight 0.40): from the shared hashed addresses `c`, `1 - exp(-c/3)`, or, when `c >= 2`, the share
  of the smaller incident's addresses that recur in the other, whichever is larger;
- `markers` (0.30): 1 when they share a marker (a string the attackers left), else 0;
- `fingerprint` (0.25): the weighted mean of the fingerprint similarities both incidents have data for
  (`FINGERPRINT_WEIGHTS`: user-agent hashes and families, query and path shapes, vectors, hours, rates); between
  incidents of different kinds (a flood and a brute force) only the user-agent parts (`TOOL_PARTS`), as the others
  differ by the kind of attack whoever the actor;
- `prefixes` (0.10): from the shared /24 or /48 prefixes `c`, `1 - exp(-c/4)`;
- `asns` (0.05): the cosine of the two incidents' networks, weighted by the addresses in each;
- `timing` (0.05): 1 when they overlap, decaying with the gap between them, `exp(-gap / 1 week)`.

The score is the weighted sum, capped at 1. A pair is **linked** when its score reaches `LINK_THRESHOLD` (0.35)
*and* it has strong evidence of one of four kinds: shared addresses (`addresses >= 0.45`: at least two shared
addresses, or most of a small incident's), a shared marker, one shared address with similar fingerprints
(`>= 0.6`: a two-address brute force by a flood's actor), or near-identical fingerprints (`>= 0.75`) from shared
prefixes (two or more). Networks, timing and prefixes alone never link: a hosting network shared by two unrelated
attacks weighs 0.05, and a hosting provider's /24 is shared by strangers too. With 5% of 150 addresses reused
(7 shared) `addresses` is 0.90; a changed user-agent list lowers only part of `fingerprint`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import polars as pl

from floodwall.forensics.bundle import BundleIncident

__all__ = [
    "FINGERPRINT_WEIGHTS",
    "LINK_THRESHOLD",
    "STRONG_FINGERPRINT_ONE_ADDRESS",
    "TOOL_PARTS",
    "WEIGHTS",
    "Pairwise",
    "link_evidence",
    "pairwise",
]

WEIGHTS: Final = {
    "addresses": 0.40,
    "markers": 0.30,
    "fingerprint": 0.25,
    "prefixes": 0.10,
    "asns": 0.05,
    "timing": 0.05,
}
FINGERPRINT_WEIGHTS: Final = {
    "user_agents": 1.0,  # cosine of exact user-agent hashes
    "ua_families": 0.75,  # cosine of browser/system families (survives a changed user-agent list)
    "query_shapes": 1.0,  # cosine of query-string shapes (cache-busting parameters)
    "path_shapes": 0.5,  # cosine of path shapes (sites' URL schemes differ, so less)
    "vectors": 1.0,  # Jaccard of the vectors
    "hours": 0.5,  # cosine of the UTC hour-of-day profiles
    "rates": 0.5,  # exp(-|ln ratio|) of the median per-address rates
}
#: The fingerprint parts that describe the actor's tool rather than the kind of attack: all that compares incidents
#: of different kinds.
TOOL_PARTS: Final = frozenset({"user_agents", "ua_families"})
LINK_THRESHOLD: Final = 0.35
STRONG_ADDRESSES: Final = 0.45
STRONG_FINGERPRINT: Final = 0.75
STRONG_FINGERPRINT_ONE_ADDRESS: Final = 0.6
STRONG_FINGERPRINT_PREFIXES: Final = 2
_TIMING_SCALE_H: Final = 168.0
_DENSE_CELLS: Final = 30_000_000  # above n x vocabulary cells, similarities go through a join instead


def _long(rows: list[tuple[int, str, float]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"i": pl.Int32, "key": pl.String, "w": pl.Float64}, orient="row")


def _shared_counts(long: pl.DataFrame, n: int) -> np.ndarray:
    """n x n matrix of how many keys each pair shares (a self-join on the key, pairs i < j)."""
    matrix = np.zeros((n, n), dtype=np.float32)
    if long.height == 0:
        return matrix
    keys = long.select("i", "key").unique()
    pairs = (
        keys.join(keys, on="key", suffix="_b")
        .filter(pl.col("i") < pl.col("i_b"))
        .group_by("i", "i_b")
        .agg(pl.len().alias("c"))
    )
    a, b, c = (pairs[name].to_numpy() for name in ("i", "i_b", "c"))
    matrix[a, b] = c
    matrix[b, a] = c
    return matrix


def _cosine(long: pl.DataFrame, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n x n cosine similarities of weighted key sets, and which incidents have any weight."""
    has = np.zeros(n, dtype=bool)
    if long.height == 0:
        return np.zeros((n, n), dtype=np.float32), has
    coded = (
        long.group_by("i", "key")
        .agg(pl.col("w").sum())
        .with_columns(pl.col("key").rank("dense").cast(pl.Int64).sub(1).alias("k"))
    )
    norms = coded.group_by("i").agg((pl.col("w") ** 2).sum().sqrt().alias("norm"))
    coded = coded.join(norms, on="i").with_columns((pl.col("w") / pl.col("norm")).alias("u"))
    has[norms.filter(pl.col("norm") > 0)["i"].to_numpy()] = True
    vocabulary = int(coded["k"].to_numpy().max()) + 1
    if n * vocabulary <= _DENSE_CELLS:
        x = np.zeros((n, vocabulary), dtype=np.float32)
        x[coded["i"].to_numpy(), coded["k"].to_numpy()] = coded["u"].to_numpy()
        return np.clip(x @ x.T, 0.0, 1.0), has
    part = coded.select("i", "k", "u")
    pairs = (
        part.join(part, on="k", suffix="_b")
        .filter(pl.col("i") < pl.col("i_b"))
        .group_by("i", "i_b")
        .agg((pl.col("u") * pl.col("u_b")).sum().alias("s"))
    )
    matrix = np.zeros((n, n), dtype=np.float32)
    a, b, s = (pairs[name].to_numpy() for name in ("i", "i_b", "s"))
    matrix[a, b] = s
    matrix[b, a] = s
    np.fill_diagonal(matrix, has.astype(np.float32))
    return np.clip(matrix, 0.0, 1.0), has


@dataclass
class Pairwise:
    """All pairs' evidence: n x n matrices (symmetric; the diagonal is meaningless)."""

    components: dict[str, np.ndarray]
    fingerprint_parts: dict[str, np.ndarray]
    fingerprint_available: dict[str, np.ndarray]
    shared_addresses: np.ndarray
    shared_prefixes: np.ndarray
    score: np.ndarray
    linked: np.ndarray
    gap_hours: np.ndarray


def _fingerprint_sets(incidents: list[BundleIncident]) -> dict[str, pl.DataFrame]:
    sets: dict[str, list[tuple[int, str, float]]] = {name: [] for name in FINGERPRINT_WEIGHTS}
    for i, incident in enumerate(incidents):
        fp = incident.fingerprint
        for name, values in (
            ("user_agents", fp.user_agents),
            ("ua_families", fp.ua_families),
            ("query_shapes", fp.query_shapes),
            ("path_shapes", fp.path_shapes),
        ):
            sets[name].extend((i, key, share) for key, share in values.items())
        sets["hours"].extend((i, str(h), share) for h, share in enumerate(fp.hour_profile) if share > 0)
    return {name: _long(rows) for name, rows in sets.items() if name not in ("vectors", "rates")}


def pairwise(incidents: list[BundleIncident]) -> Pairwise:
    """Every pair's evidence and whether it links (the module docstring gives the rule)."""
    n = len(incidents)
    addresses = _long([(i, h, 1.0) for i, inc in enumerate(incidents) for h in inc.address_hashes or ()])
    shared = _shared_counts(addresses, n)
    sizes = np.array([len(inc.address_hashes or ()) for inc in incidents], dtype=np.float32)
    smaller = np.maximum(np.minimum.outer(sizes, sizes), 1.0)
    address = np.maximum(1.0 - np.exp(-shared / 3.0), np.where(shared >= 2, shared / smaller, 0.0))
    prefixes = _shared_counts(_long([(i, p.prefix, 1.0) for i, inc in enumerate(incidents) for p in inc.prefixes]), n)
    markers = _shared_counts(_long([(i, m, 1.0) for i, inc in enumerate(incidents) for m in set(inc.markers)]), n)
    asns, _ = _cosine(
        _long([(i, str(a.asn), float(max(a.ips, 1))) for i, inc in enumerate(incidents) for a in inc.asns]), n
    )

    parts: dict[str, np.ndarray] = {}
    available: dict[str, np.ndarray] = {}
    for name, long in _fingerprint_sets(incidents).items():
        parts[name], has = _cosine(long, n)
        available[name] = np.logical_and.outer(has, has)
    vectors = _shared_counts(_long([(i, v, 1.0) for i, inc in enumerate(incidents) for v in set(inc.vectors)]), n)
    counts = np.array([len(set(inc.vectors)) for inc in incidents], dtype=np.float32)
    union = np.add.outer(counts, counts) - vectors
    parts["vectors"] = np.where(union > 0, vectors / np.maximum(union, 1.0), 0.0)
    available["vectors"] = np.logical_and.outer(counts > 0, counts > 0)
    medians = np.array([inc.fingerprint.rate_quantiles_rps.get("p50", 0.0) for inc in incidents], dtype=np.float64)
    logs = np.log(np.where(medians > 0, medians, 1.0))
    parts["rates"] = np.exp(-np.abs(np.subtract.outer(logs, logs)))
    available["rates"] = np.logical_and.outer(medians > 0, medians > 0)
    # Incidents of different kinds (a flood and the brute force that follows it) differ in vectors, paths, queries
    # and rates by their nature, not by their actor: only the tool's identity (its user agents) compares them.
    kinds = np.array([inc.kind for inc in incidents], dtype=object)
    same_kind = np.equal.outer(kinds, kinds)
    for k in FINGERPRINT_WEIGHTS:
        if k not in TOOL_PARTS:
            available[k] = available[k] & same_kind
    weight_sum = sum(FINGERPRINT_WEIGHTS[k] * available[k] for k in FINGERPRINT_WEIGHTS)
    weighted = sum(FINGERPRINT_WEIGHTS[k] * available[k] * parts[k] for k in FINGERPRINT_WEIGHTS)
    fingerprint = np.where(weight_sum > 0, weighted / np.maximum(weight_sum, 1e-9), 0.0)

    starts = np.array([inc.start.timestamp() for inc in incidents]) / 3600.0
    ends = np.array([inc.end.timestamp() for inc in incidents]) / 3600.0
    gap = np.maximum(0.0, np.maximum(np.subtract.outer(starts, ends), np.subtract.outer(starts, ends).T))
    components = {
        "addresses": address,
        "markers": (markers > 0).astype(np.float64),
        "fingerprint": fingerprint,
        "prefixes": 1.0 - np.exp(-prefixes / 4.0),
        "asns": asns.astype(np.float64),
        "timing": np.exp(-gap / _TIMING_SCALE_H),
    }
    score = np.minimum(1.0, sum(WEIGHTS[k] * components[k] for k in WEIGHTS))
    strong = (
        (components["addresses"] >= STRONG_ADDRESSES)
        | (markers > 0)
        | ((shared >= 1) & (fingerprint >= STRONG_FINGERPRINT_ONE_ADDRESS))
        | ((fingerprint >= STRONG_FINGERPRINT) & (prefixes >= STRONG_FINGERPRINT_PREFIXES))
    )
    linked = (score >= LINK_THRESHOLD) & strong
    np.fill_diagonal(linked, False)
    return Pairwise(components, parts, available, shared, prefixes, score, linked, gap)


def _top_shared(a: dict[str, float], b: dict[str, float], limit: int = 5) -> list[str]:
    both = sorted(set(a) & set(b), key=lambda k: -(a[k] * b[k]))
    return both[:limit]


def link_evidence(p: Pairwise, incidents: list[BundleIncident], i: int, j: int) -> dict[str, Any]:
    """What made (or would make) the link between incidents `i` and `j`, for campaigns.json and the page."""
    a, b = incidents[i], incidents[j]
    hashes_a, hashes_b = set(a.address_hashes or ()), set(b.address_hashes or ())
    shared = len(hashes_a & hashes_b)
    union = len(hashes_a | hashes_b)
    prefixes = sorted({x.prefix for x in a.prefixes} & {x.prefix for x in b.prefixes})
    asns_a = {x.asn: x for x in a.asns}
    asns = [{"asn": x.asn, "name": x.name, "country": x.country} for x in b.asns if x.asn in asns_a]
    reasons = []
    if p.components["addresses"][i, j] >= STRONG_ADDRESSES:
        reasons.append("shared-addresses")
    if p.components["markers"][i, j] > 0:
        reasons.append("shared-markers")
    fingerprint = float(p.components["fingerprint"][i, j])
    if shared and fingerprint >= STRONG_FINGERPRINT_ONE_ADDRESS and not reasons:
        reasons.append("shared-address-and-fingerprint")
    if fingerprint >= STRONG_FINGERPRINT and p.shared_prefixes[i, j] >= STRONG_FINGERPRINT_PREFIXES:
        reasons.append("fingerprint-and-prefixes")
    return {
        "incidents": [{"site": a.site, "id": a.id}, {"site": b.site, "id": b.id}],
        "score": round(float(p.score[i, j]), 3),
        "linked": bool(p.linked[i, j]),
        "reasons": reasons,
        "components": {k: round(float(v[i, j]), 3) for k, v in p.components.items()},
        "shared_addresses": shared,
        "share_of_each": [
            round(shared / len(hashes_a), 3) if hashes_a else 0.0,
            round(shared / len(hashes_b), 3) if hashes_b else 0.0,
        ],
        "jaccard": round(shared / union, 3) if union else 0.0,
        "shared_prefixes": len(prefixes),
        "prefixes": prefixes[:20],
        "shared_asns": asns[:20],
        "shared_markers": sorted(set(a.markers) & set(b.markers)),
        "fingerprint_similarity": round(fingerprint, 3),
        "fingerprint": {
            k: round(float(p.fingerprint_parts[k][i, j]), 3)
            for k in FINGERPRINT_WEIGHTS
            if p.fingerprint_available[k][i, j]
        },
        "shared_user_agent_families": _top_shared(dict(a.fingerprint.ua_families), dict(b.fingerprint.ua_families)),
        "shared_query_shapes": _top_shared(dict(a.fingerprint.query_shapes), dict(b.fingerprint.query_shapes)),
        "shared_vectors": sorted(set(a.vectors) & set(b.vectors)),
        "gap_hours": round(float(p.gap_hours[i, j]), 2),
    }
