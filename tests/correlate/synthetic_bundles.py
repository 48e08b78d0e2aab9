"""Synthetic bundles for correlate's tests and benchmark: actors with address pools, user agents and habits."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from floodwall.forensics.bundle import SCHEMA_VERSION, hash_address, key_fingerprint
from floodwall.forensics.fingerprints import ua_hash

KEY = b"synthetic coalition key, 32 byte"
START = datetime(2024, 11, 1, tzinfo=UTC)
FAMILIES = ("chrome/windows", "chrome/android", "safari/iphone", "firefox/windows", "chrome/mac-os x", "edge/windows")
VECTOR_SETS = (
    ("get-flood", "cache-bust"),
    ("get-flood", "random-path"),
    ("search-flood", "get-flood"),
    ("heavy-page", "cache-bust"),
    ("post-flood",),
    ("login-bruteforce",),
)


@dataclass
class Actor:
    """One attacker: a pool of addresses in a few networks, its user agents, its query habit, its vectors."""

    name: str
    pool: list[str]
    asns: list[tuple[int, str, str]]
    agents: list[str]
    query_shape: str
    vectors: tuple[str, ...]
    marker: str | None = None


def make_actor(rng: np.random.Generator, name: str, pool_size: int, asns: list[tuple[int, str, str]]) -> Actor:
    base = int(rng.integers(0x0B000000, 0xDF000000))  # public-ish IPv4 space
    prefixes = [base + (int(rng.integers(0, 1 << 16)) << 8) for _ in range(max(4, pool_size // 10))]
    pool = sorted(
        {
            str(ipaddress.IPv4Address(prefixes[int(rng.integers(len(prefixes)))] + int(rng.integers(1, 255))))
            for _ in range(pool_size * 2)
        }
    )[:pool_size]
    agents = [f"Mozilla/5.0 ({name}; rv:{int(rng.integers(60, 130))}.{k}) Gecko Firefox/{k}" for k in range(12)]
    return Actor(
        name=name,
        pool=pool,
        asns=asns,
        agents=agents,
        query_shape=f"{name[:4]}={{n}}",
        vectors=VECTOR_SETS[int(rng.integers(len(VECTOR_SETS)))],
    )


def incident(
    rng: np.random.Generator,
    actor: Actor,
    site: str,
    number: int,
    *,
    addresses: list[str],
    start: datetime,
    key: bytes | None = KEY,
    agents: list[str] | None = None,
    hours: float = 3.0,
) -> dict[str, Any]:
    """One bundle incident of `actor` on `site`, using `addresses` (from the actor's pool or fresh ones)."""
    agents = agents if agents is not None else actor.agents
    ua_shares = rng.dirichlet(np.ones(len(agents)))
    family_shares = rng.dirichlet(np.ones(3) * 4)
    families = [FAMILIES[int(i)] for i in rng.choice(len(FAMILIES), 3, replace=False)]
    prefix_counts: dict[str, int] = {}
    for address in addresses:
        net = str(ipaddress.ip_network(f"{address}/24", strict=False))
        prefix_counts[net] = prefix_counts.get(net, 0) + 1
    per_asn = np.bincount(rng.integers(0, len(actor.asns), len(addresses)), minlength=len(actor.asns))
    hour = (start.hour + np.arange(int(hours) + 1)) % 24
    profile = [0.0] * 24
    for h in hour:
        profile[int(h)] = round(1 / len(hour), 4)
    return {
        "id": f"{site}-{start:%Y%m%dT%H%M}-{number}",
        "site": site,
        "kind": "bruteforce" if actor.vectors == ("login-bruteforce",) else "flood",
        "start": start.isoformat().replace("+00:00", "Z"),
        "end": (start + timedelta(hours=hours)).isoformat().replace("+00:00", "Z"),
        "peak_rps": float(rng.uniform(5, 50)),
        "requests": 1000,
        "attack_requests": 900,
        "vectors": list(actor.vectors),
        "markers": [actor.marker] if actor.marker else [],
        "addresses": len(addresses),
        "address_hashes": sorted(hash_address(a, key) for a in addresses) if key is not None else None,
        "prefixes": [{"prefix": p, "ips": n} for p, n in sorted(prefix_counts.items())],
        "asns": [
            {"asn": asn, "name": name, "country": country, "ips": int(n)}
            for (asn, name, country), n in zip(actor.asns, per_asn, strict=True)
            if n
        ],
        "fingerprint": {
            "user_agents": {ua_hash(a): round(float(s), 4) for a, s in zip(agents, ua_shares, strict=True)},
            "ua_families": {f: round(float(s), 4) for f, s in zip(families, family_shares, strict=True)},
            "path_shapes": {"/": 0.5, "/{n}/{n}/{slug}/": 0.5},
            "query_shapes": {actor.query_shape: 1.0},
            "rate_quantiles_rps": {"p50": float(rng.uniform(0.05, 2.0))},
            "hour_profile": profile,
        },
    }


def bundle(site: str, incidents: list[dict[str, Any]], key: bytes | None = KEY) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "floodwall_version": "test",
        "site": site,
        "generated": "2024-12-01T00:00:00Z",
        "key_fingerprint": key_fingerprint(key) if key is not None else None,
        "address_hash": "blake2b-128-keyed" if key is not None else None,
        "incidents": incidents,
    }


def fresh_addresses(rng: np.random.Generator, count: int) -> list[str]:
    """Addresses from nobody's pool (scattered over the whole space)."""
    values = rng.integers(0x0B000000, 0xDF000000, count)
    return sorted({str(ipaddress.IPv4Address(int(v))) for v in values})
