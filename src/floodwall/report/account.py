"""The forensic account as the writers (HTML, Markdown, STIX) render it: JSON-ready sections plus chart frames.

Sections are plain dicts and lists so templates read them directly. Restricted data (attacking addresses, their
prefixes, X-Forwarded-For values, per-client rows) sits under the keys in `RESTRICTED_KEYS` only, so the public
view is the same account with those keys removed and any address-like text masked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Final

import polars as pl

__all__ = ["RESTRICTED_KEYS", "Account", "Charts", "mask_addresses"]

#: Keys whose values name addresses (or lead to them); dropped from public outputs.
RESTRICTED_KEYS: Final = frozenset({"attackers", "client", "prefix", "prefixes_list", "forwarded_for", "top_clients"})
_V4: Final = r"(?<![\w./:-])(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}(?:/\d{1,2})?(?![\w.])"
_H: Final = "[0-9a-fA-F]{1,4}"
# Eight groups, or fewer around a `::` (so clock times like 18:05:07 never match).
_V6: Final = (
    rf"(?<![\w:.])(?:(?:{_H}:){{7}}{_H}|(?:{_H}:){{0,6}}(?:{_H})?::(?:{_H}:){{0,6}}(?:{_H})?)(?:/\d{{1,3}})?(?![\w:])"
)
_ADDRESS: Final = re.compile(f"{_V4}|{_V6}")


def mask_addresses(text: str) -> str:
    """Replace IPv4 and IPv6 addresses (and CIDRs) written in free text with `[address]`."""
    return _ADDRESS.sub("[address]", text)


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in RESTRICTED_KEYS}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, str):
        return mask_addresses(value)
    return value


@dataclass(frozen=True)
class Charts:
    """Series the HTML report plots; aggregates only (no addresses), so public and restricted share them."""

    traffic: pl.DataFrame  # bucket, benign_rps, attack_rps (requests per second, averaged over the bucket)
    bucket_s: int
    vectors: pl.DataFrame  # bucket, vector, rps
    status: pl.DataFrame  # bucket, s2xx, s3xx, s4xx, s5xx, s499, cache_hit, cache_miss, rt_mean (per bucket)
    networks: pl.DataFrame  # label, country, asn, addresses, requests (attacking addresses per network)
    countries: pl.DataFrame  # country, addresses, requests
    shading: list[dict[str, Any]] = field(default_factory=list)  # phases: start, end, label


@dataclass(frozen=True)
class Account:
    """One site's forensic account (see the module docstring); `public` says whether it was scrubbed."""

    site: str
    timezone: str
    public: bool
    generated: str
    version: str
    summary: dict[str, Any]
    timeline: dict[str, Any]
    scope: dict[str, Any]
    mode: dict[str, Any]
    infrastructure: dict[str, Any]
    breaches: list[dict[str, Any]]
    incidents: list[dict[str, Any]]
    evidence: dict[str, Any]
    methods: list[str]
    charts: Charts

    def for_public(self) -> Account:
        """The same account holding aggregates only: no address, prefix or X-Forwarded-For value of anyone."""
        return replace(
            self,
            public=True,
            summary=_scrub(self.summary),
            timeline=_scrub(self.timeline),
            scope=_scrub(self.scope),
            mode=_scrub(self.mode),
            infrastructure=_scrub(self.infrastructure),
            breaches=_scrub(self.breaches),
            incidents=_scrub(self.incidents),
            evidence=_scrub(self.evidence),
            methods=[mask_addresses(m) for m in self.methods],
        )

    def to_dict(self) -> dict[str, Any]:
        """The sections as JSON-ready data (no chart frames)."""
        return {
            "site": self.site,
            "timezone": self.timezone,
            "public": self.public,
            "generated": self.generated,
            "floodwall_version": self.version,
            "summary": self.summary,
            "timeline": self.timeline,
            "scope": self.scope,
            "mode": self.mode,
            "infrastructure": self.infrastructure,
            "breaches": self.breaches,
            "incidents": self.incidents,
            "evidence": self.evidence,
            "methods": self.methods,
        }
