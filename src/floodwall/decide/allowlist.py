"""Who is never challenged or banned: the outlet's own networks, its monitors, and verified crawlers.

A crawler is verified when its user agent claims a known crawler *and* its address lies in that crawler's
published ranges: a user agent alone is a claim anyone can make (fail2ban and CrowdSec users learn this the hard
way when a flood wears Googlebot's name). Offline analysis cannot do the forward-confirmed reverse DNS the search
engines recommend, so the ranges below are a snapshot of the published lists (Google's googlebot.json, Bing's
bingbot.json, Apple's applebot.json, Yandex's help pages); the config can add more.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

__all__ = ["VERIFIED_CRAWLERS", "Allowlist"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: crawler -> (user-agent pattern, published ranges). A snapshot; extend with [decide] crawler_ranges.
VERIFIED_CRAWLERS: Final[Mapping[str, tuple[str, tuple[str, ...]]]] = {
    "googlebot": (
        r"Googlebot|Google-InspectionTool|GoogleOther|AdsBot-Google|Mediapartners-Google|Storebot-Google",
        ("66.249.64.0/19", "34.100.182.96/28", "34.101.50.144/28", "2001:4860:4801::/48"),
    ),
    "bingbot": (
        r"bingbot|BingPreview|msnbot",
        (
            "157.55.39.0/24",
            "207.46.13.0/24",
            "40.77.167.0/24",
            "13.66.139.0/24",
            "13.66.144.0/24",
            "52.167.144.0/24",
            "199.30.24.0/23",
            "20.15.133.160/27",
        ),
    ),
    "applebot": (r"Applebot", ("17.0.0.0/8",)),
    "yandex": (r"YandexBot|YandexImages|YandexMobileBot", ("5.255.253.0/24", "77.88.5.0/24", "95.108.213.0/24")),
    "duckduckbot": (r"DuckDuckBot", ("20.191.45.212/32", "40.88.21.235/32", "40.76.173.151/32")),
}


def _networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


@dataclass(frozen=True)
class Allowlist:
    """Networks and crawlers exempt from challenges and bans."""

    own_networks: tuple[str, ...] = ()
    monitor_networks: tuple[str, ...] = ()
    crawler_ranges: Mapping[str, tuple[str, tuple[str, ...]]] = field(default_factory=lambda: dict(VERIFIED_CRAWLERS))

    def __post_init__(self) -> None:
        object.__setattr__(self, "_fixed", _networks((*self.own_networks, *self.monitor_networks)))
        crawlers = {name: (re.compile(rx), _networks(ranges)) for name, (rx, ranges) in self.crawler_ranges.items()}
        object.__setattr__(self, "_crawlers", crawlers)

    def exempt_network(self, target: str) -> str | None:
        """Why `target` (an address or CIDR) is exempt by network alone, or None."""
        network = _as_network(target)
        if network is None:
            return None
        for allowed in self._fixed:  # type: ignore[attr-defined]
            if network.version == allowed.version and network.subnet_of(allowed):
                return f"in the outlet's allowlisted network {allowed}"
        return None

    def verified_crawler(self, address: str, user_agent: str | None) -> str | None:
        """The crawler's name when `user_agent` claims it and `address` lies in its published ranges."""
        if not user_agent:
            return None
        network = _as_network(address)
        if network is None:
            return None
        for name, (pattern, ranges) in self._crawlers.items():  # type: ignore[attr-defined]
            if pattern.search(user_agent) and any(
                network.version == r.version and network.subnet_of(r) for r in ranges
            ):
                return str(name)
        return None


@lru_cache(maxsize=65536)
def _as_network(target: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(target, strict=False)
    except ValueError:
        return None
