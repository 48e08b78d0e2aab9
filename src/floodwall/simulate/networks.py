"""Address pools: residential, mobile and hosting networks, and addresses drawn from them.

The prefixes are real, public, routed ranges of the kind each label names (national incumbents and cable operators
for `residential`, mobile carriers for `mobile`, cloud and VPS providers for `hosting`), chosen so the simulated logs
look like real ones and an offline geolocation database places them plausibly. The names are descriptive labels for
people reading the ground truth, not a geolocation reference: Floodwall's `geo/` package is the authority on who
holds an address.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "HOSTING",
    "NETWORKS",
    "Network",
    "NetworkKind",
    "draw_addresses",
    "known_countries",
    "networks_for",
]

NetworkKind = Literal["residential", "mobile", "hosting"]


@dataclass(frozen=True, slots=True)
class Network:
    cidr: str
    name: str
    country: str
    kind: NetworkKind


def _n(cidr: str, name: str, country: str, kind: NetworkKind) -> Network:
    return Network(cidr, name, country, kind)


NETWORKS: tuple[Network, ...] = (
    # Hungary
    _n("84.0.0.0/14", "Magyar Telekom", "HU", "residential"),
    _n("89.132.0.0/14", "Vodafone Magyarorszag (cable)", "HU", "residential"),
    _n("188.6.0.0/16", "DIGI Tavkozlesi", "HU", "residential"),
    _n("2001:4c4c::/32", "Magyar Telekom", "HU", "residential"),
    _n("2a02:ab88::/32", "Vodafone Magyarorszag (cable)", "HU", "residential"),
    _n("37.76.0.0/16", "Yettel Hungary", "HU", "mobile"),
    _n("188.143.0.0/17", "Vodafone Magyarorszag (mobile)", "HU", "mobile"),
    # Serbia
    _n("178.220.0.0/14", "Telekom Srbija", "RS", "residential"),
    _n("109.92.0.0/15", "SBB", "RS", "residential"),
    _n("2a02:8c0::/32", "Telekom Srbija", "RS", "residential"),
    _n("46.235.96.0/19", "A1 Srbija", "RS", "mobile"),
    _n("93.86.0.0/16", "Yettel Srbija", "RS", "mobile"),
    # Romania
    _n("86.120.0.0/13", "RCS & RDS (Digi)", "RO", "residential"),
    _n("5.12.0.0/14", "RCS & RDS (Digi)", "RO", "residential"),
    _n("2a02:2f0c::/32", "RCS & RDS (Digi)", "RO", "residential"),
    _n("109.166.128.0/17", "Orange Romania", "RO", "mobile"),
    # Belarus
    _n("93.84.0.0/15", "Beltelecom", "BY", "residential"),
    _n("178.120.0.0/14", "Beltelecom", "BY", "residential"),
    _n("37.214.0.0/16", "A1 Belarus", "BY", "mobile"),
    # Diaspora and proxy countries
    _n("79.192.0.0/10", "Deutsche Telekom", "DE", "residential"),
    _n("88.64.0.0/12", "Vodafone Deutschland", "DE", "residential"),
    _n("2003::/19", "Deutsche Telekom", "DE", "residential"),
    _n("176.0.0.0/13", "Telefonica Germany", "DE", "mobile"),
    _n("77.116.0.0/14", "A1 Telekom Austria", "AT", "residential"),
    _n("178.115.0.0/16", "Magenta Telekom", "AT", "mobile"),
    _n("86.128.0.0/10", "British Telecommunications", "GB", "residential"),
    _n("2a00:23c0::/27", "British Telecommunications", "GB", "residential"),
    _n("31.94.0.0/16", "EE", "GB", "mobile"),
    _n("73.0.0.0/8", "Comcast Cable", "US", "residential"),
    _n("2601::/20", "Comcast Cable", "US", "residential"),
    _n("172.56.0.0/14", "T-Mobile USA", "US", "mobile"),
    _n("2607:fb90::/32", "T-Mobile USA", "US", "mobile"),
    _n("77.160.0.0/12", "KPN", "NL", "residential"),
    _n("78.64.0.0/12", "Telia Sverige", "SE", "residential"),
    _n("177.0.0.0/14", "Claro NET", "BR", "residential"),
    _n("189.0.0.0/11", "Telefonica Brasil", "BR", "residential"),
    _n("49.36.0.0/14", "Reliance Jio", "IN", "mobile"),
    _n("122.160.0.0/13", "Bharti Airtel", "IN", "residential"),
    _n("113.160.0.0/11", "VNPT", "VN", "residential"),
    _n("27.64.0.0/12", "Viettel", "VN", "mobile"),
    _n("36.64.0.0/11", "Telkom Indonesia", "ID", "residential"),
    _n("78.160.0.0/11", "Turk Telekom", "TR", "residential"),
    _n("88.224.0.0/11", "Turk Telekom", "TR", "residential"),
    _n("95.24.0.0/13", "Beeline", "RU", "residential"),
    _n("176.36.0.0/14", "Kyivstar", "UA", "residential"),
    _n("83.0.0.0/11", "Orange Polska", "PL", "residential"),
    _n("187.128.0.0/10", "Telmex", "MX", "residential"),
    _n("112.198.0.0/16", "Smart Communications", "PH", "mobile"),
    _n("41.32.0.0/12", "TE Data", "EG", "residential"),
    # Hosting and cloud providers
    _n("95.216.0.0/15", "Hetzner Online", "FI", "hosting"),
    _n("135.181.0.0/16", "Hetzner Online", "FI", "hosting"),
    _n("2a01:4f9::/32", "Hetzner Online", "FI", "hosting"),
    _n("51.68.0.0/16", "OVH", "FR", "hosting"),
    _n("54.37.0.0/16", "OVH", "FR", "hosting"),
    _n("167.99.0.0/16", "DigitalOcean", "DE", "hosting"),
    _n("159.65.0.0/16", "DigitalOcean", "NL", "hosting"),
    _n("2a03:b0c0::/32", "DigitalOcean", "NL", "hosting"),
    _n("45.32.0.0/16", "Vultr", "US", "hosting"),
    _n("172.104.0.0/15", "Akamai Connected Cloud (Linode)", "DE", "hosting"),
    _n("207.180.192.0/18", "Contabo", "DE", "hosting"),
    _n("5.79.64.0/18", "Leaseweb", "NL", "hosting"),
    _n("47.74.0.0/15", "Alibaba Cloud", "SG", "hosting"),
    _n("43.153.0.0/16", "Tencent Cloud", "US", "hosting"),
    _n("89.187.160.0/19", "DataCamp (CDN77)", "GB", "hosting"),
    _n("77.91.64.0/18", "Aeza", "RU", "hosting"),
)

HOSTING: tuple[Network, ...] = tuple(n for n in NETWORKS if n.kind == "hosting")


def known_countries() -> frozenset[str]:
    """Countries that have residential networks in the table."""
    return frozenset(n.country for n in NETWORKS if n.kind == "residential")


def networks_for(countries: tuple[str, ...] | list[str], kinds: tuple[NetworkKind, ...]) -> list[Network]:
    """Networks of the given countries (all countries if empty) and kinds, in table order."""
    wanted = set(countries)
    return [n for n in NETWORKS if n.kind in kinds and (not wanted or n.country in wanted)]


def _v4(networks: list[Network], count: int, rng: np.random.Generator) -> list[str]:
    if count == 0:
        return []
    nets = [ipaddress.IPv4Network(n.cidr) for n in networks]
    which = rng.integers(0, len(nets), count)
    base = np.array([int(n.network_address) for n in nets], dtype=np.int64)[which]
    size = np.array([n.num_addresses for n in nets], dtype=np.int64)[which]
    # Stay off the .0 and .255 of every /24: hosts there are rare and look odd in a log.
    offset = (rng.random(count) * (size // 256)).astype(np.int64) * 256 + rng.integers(1, 255, count)
    value = base + offset
    octets = [(value >> shift) & 255 for shift in (24, 16, 8, 0)]
    return [f"{a}.{b}.{c}.{d}" for a, b, c, d in zip(*(o.tolist() for o in octets), strict=True)]


def _v6(networks: list[Network], count: int, rng: np.random.Generator) -> list[str]:
    if count == 0:
        return []
    nets = [ipaddress.IPv6Network(n.cidr) for n in networks]
    which = rng.integers(0, len(nets), count).tolist()
    # Households get a /56 or /64 inside the ISP's block and privacy (random) interface identifiers; every group is
    # drawn non-zero so the text is already in RFC 5952 canonical form without `::` compression.
    groups = rng.integers(1, 0x10000, (count, 8)).tolist()
    # Per network: its whole leading groups, and the group the prefix ends inside of (if any) with its free bits.
    shapes: list[tuple[list[str], int | None, int]] = []
    for net in nets:
        fixed = [int(x, 16) for x in net.network_address.exploded.split(":")]
        keep = net.prefixlen // 16
        partial = fixed[keep] if net.prefixlen % 16 else None
        shapes.append(([f"{x:x}" for x in fixed[:keep]], partial, (1 << (16 - net.prefixlen % 16)) - 1))
    result: list[str] = []
    for idx, g in zip(which, groups, strict=True):
        head, partial, free = shapes[idx]
        if partial is None:
            result.append(":".join(head + [f"{x:x}" for x in g[len(head) :]]))
        else:
            middle = f"{(partial | (g[len(head)] & free)) or 1:x}"
            result.append(":".join([*head, middle] + [f"{x:x}" for x in g[len(head) + 1 :]]))
    return result


def draw_addresses(
    networks: list[Network],
    count: int,
    rng: np.random.Generator,
    ipv6_share: float = 0.0,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> tuple[list[str], list[int]]:
    """`count` distinct addresses from `networks`, and the index (into `networks`) each came from.

    IPv6 addresses are drawn from the IPv6 networks only, in about `ipv6_share` of the draws; without any IPv6 network
    every address is IPv4. Addresses in `exclude` are never returned.
    """
    v4 = [i for i, n in enumerate(networks) if ":" not in n.cidr]
    v6 = [i for i, n in enumerate(networks) if ":" in n.cidr]
    if not v4 and not v6:
        raise ValueError("no networks to draw addresses from")
    want6 = round(count * ipv6_share) if v6 else 0
    if not v4:
        want6 = count
    seen: set[str] = set(exclude)
    addresses: list[str] = []
    origin: list[int] = []
    for pool, wanted, make in ((v6, want6, _v6), (v4, count - want6, _v4)):
        want = wanted
        attempts = 0
        while want > 0 and attempts < 20:
            attempts += 1
            per_network = np.bincount(rng.integers(0, len(pool), want), minlength=len(pool)).tolist()
            batch: list[str] = []
            batch_origin: list[int] = []
            for net_pos, n_here in enumerate(per_network):
                if n_here:
                    batch.extend(make([networks[pool[net_pos]]], n_here, rng))
                    batch_origin.extend([pool[net_pos]] * n_here)
            for address, net in zip(batch, batch_origin, strict=True):
                if address not in seen:
                    seen.add(address)
                    addresses.append(address)
                    origin.append(net)
                    want -= 1
    order = rng.permutation(len(addresses))
    return [addresses[i] for i in order], [origin[i] for i in order]
