"""indicators.stix.json: a STIX 2.1 bundle of the account, built with the `stix2` library (restricted: it names
attacking addresses). The outlet and the analysis as identities; per attacking address or CIDR an observable and
an indicator with a STIX pattern; an attack pattern per vector (with its CAPEC id); per incident the observed data
and a sighting of each of its indicators."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import stix2

from floodwall.model import Incident
from floodwall.report.atomic import write_atomic

__all__ = ["stix_bundle", "write_stix"]

# CAPEC entries for each vector of CONTRACT.md's vocabulary (https://capec.mitre.org/).
_CAPEC: Final[dict[str, tuple[str, str]]] = {
    "get-flood": ("CAPEC-488", "HTTP Flood"),
    "cache-bust": ("CAPEC-488", "HTTP Flood"),
    "random-path": ("CAPEC-488", "HTTP Flood"),
    "search-flood": ("CAPEC-488", "HTTP Flood"),
    "heavy-page": ("CAPEC-488", "HTTP Flood"),
    "post-flood": ("CAPEC-488", "HTTP Flood"),
    "slow-request": ("CAPEC-469", "HTTP DoS"),
    "login-bruteforce": ("CAPEC-49", "Password Brute Forcing"),
    "xmlrpc-abuse": ("CAPEC-49", "Password Brute Forcing"),
    "scan": ("CAPEC-169", "Footprinting"),
    "sqli": ("CAPEC-66", "SQL Injection"),
    "xss": ("CAPEC-63", "Cross-Site Scripting (XSS)"),
    "path-traversal": ("CAPEC-126", "Path Traversal"),
    "rce": ("CAPEC-88", "OS Command Injection"),
}
_SIGHTINGS_PER_INCIDENT: Final = 2000  # beyond this, the observed data stands for the rest
_NAMESPACE: Final = uuid.UUID("6f4d9a52-3c1f-4c57-9a52-5b0f1f6f2a10")


def _id(kind: str, *parts: object) -> str:
    """Deterministic ids, so the same analysis gives the same bundle; shaped as UUIDv4, as STIX 2.1 asks of
    domain objects (observables keep the library's UUIDv5 from their value)."""
    digest = hashlib.sha256("|".join(str(p) for p in (_NAMESPACE, kind, *parts)).encode()).digest()
    return f"{kind}--{uuid.UUID(bytes=digest[:16], version=4)}"


def _pattern(target: str) -> tuple[str, str] | None:
    """(STIX pattern, observable type) for an address or CIDR; None for anything else."""
    try:
        network = ipaddress.ip_network(target, strict=False)
    except ValueError:
        return None
    kind = "ipv4-addr" if network.version == 4 else "ipv6-addr"
    if "/" in target and network.num_addresses > 1:
        return f"[{kind}:value ISSUBSET '{network}']", kind
    return f"[{kind}:value = '{network.network_address}']", kind


def stix_bundle(
    site: str,
    incidents: Sequence[Incident],
    requests_by_address: dict[tuple[str, str], int] | None = None,
    created: datetime | None = None,
) -> dict[str, Any]:
    """The bundle, as its JSON document; `requests_by_address` maps (incident id, address) to its request count for
    sightings."""
    counts = requests_by_address or {}
    outlet = stix2.Identity(
        id=_id("identity", "outlet", site), name=site, identity_class="organization", sectors=["communications"]
    )
    analyst = stix2.Identity(
        id=_id("identity", "floodwall", site),
        name=f"Floodwall analysis for {site}",
        identity_class="system",
    )
    objects: list[Any] = [outlet, analyst]
    common = {"created_by_ref": analyst.id, "created": created, "modified": created} if created else {}
    patterns: dict[str, stix2.AttackPattern] = {}
    for incident in incidents:
        for vector in incident.vectors:
            if vector.value in patterns:
                continue
            capec, name = _CAPEC.get(vector.value, ("CAPEC-488", "HTTP Flood"))
            patterns[vector.value] = stix2.AttackPattern(
                id=_id("attack-pattern", site, vector.value),
                name=vector.value,
                description=f"{vector.value}: {name}, as Floodwall names it in its vector vocabulary.",
                external_references=[{"source_name": "capec", "external_id": capec}],
                **common,
            )
    objects.extend(patterns.values())
    indicators: dict[str, dict[str, Any]] = {}
    observables: dict[str, Any] = {}
    sightings: list[dict[str, Any]] = []
    for incident in incidents:
        refs: list[str] = []
        sighted = 0
        made = _Templates(site, incident, common)
        for target in incident.attackers:
            found = _pattern(target)
            if found is None:
                continue
            pattern, kind = found
            if target not in indicators:
                indicators[target] = made.indicator(target, pattern, kind)
            if "/" not in target:
                if target not in observables:
                    cls = stix2.IPv4Address if kind == "ipv4-addr" else stix2.IPv6Address
                    observables[target] = cls(value=target)
                refs.append(observables[target].id)
        if not refs:
            continue
        observed = stix2.ObservedData(
            id=_id("observed-data", site, incident.id),
            first_observed=incident.start,
            last_observed=incident.end,
            number_observed=max(1, min(incident.attack_requests, 999_999_999)),
            object_refs=refs,
            **common,
        )
        objects.append(observed)
        for target in incident.attackers:
            if target not in indicators or sighted >= _SIGHTINGS_PER_INCIDENT:
                continue
            sighted += 1
            count = max(1, min(counts.get((incident.id, target), 1), 999_999_999))
            sightings.append(made.sighting(target, indicators[target]["id"], observed.id, outlet.id, count))
    return {
        "type": "bundle",
        "id": f"bundle--{uuid.uuid4()}",
        "objects": [
            *(_plain(o) for o in objects),
            *sightings,
            *indicators.values(),
            *(_plain(o) for o in observables.values()),
        ],
    }


def _plain(entry: Any) -> dict[str, Any]:
    """A `stix2` object as the JSON document it serializes to."""
    return dict(json.loads(entry.serialize()))


class _Templates:
    """An incident's indicators and sightings, one per attacking address: the first of each kind is made by `stix2`
    (which checks every property, and parses the STIX pattern with its ANTLR grammar: most of the file's cost, at
    a few milliseconds per address); the others are that document with the parts that name the address replaced.
    What differs between them is the id, the address in name and pattern (written by `_pattern` from a parsed
    address, in one of three shapes), and the sighting's count."""

    def __init__(self, site: str, incident: Incident, common: dict[str, Any]) -> None:
        self.site, self.incident, self.common = site, incident, common
        self._indicators: dict[tuple[str, bool], dict[str, Any]] = {}
        self._sighting: dict[str, Any] | None = None

    def indicator(self, target: str, pattern: str, kind: str) -> dict[str, Any]:
        """The indicator of `target`, whose STIX pattern is `pattern` on observables of `kind`."""
        name = f"{target}: attacked {self.site}"
        shape = (kind, "ISSUBSET" in pattern)
        template = self._indicators.get(shape)
        if template is None:
            made = stix2.Indicator(
                id=_id("indicator", self.site, target),
                name=name,
                description=f"Took part in {self.incident.kind.value} {self.incident.id} "
                f"({', '.join(v.value for v in self.incident.vectors)}).",
                indicator_types=["malicious-activity"],
                pattern=pattern,
                pattern_type="stix",
                valid_from=self.incident.start,
                **self.common,
            )
            template = self._indicators[shape] = _plain(made)
            return template
        return template | {"id": _id("indicator", self.site, target), "name": name, "pattern": pattern}

    def sighting(self, target: str, indicator: str, observed: str, outlet: str, count: int) -> dict[str, Any]:
        """The sighting of `target`'s indicator (id `indicator`) in this incident, `count` requests."""
        sighting_id = _id("sighting", self.site, self.incident.id, target)
        if self._sighting is None:
            made = stix2.Sighting(
                id=sighting_id,
                sighting_of_ref=indicator,
                observed_data_refs=[observed],
                where_sighted_refs=[outlet],
                first_seen=self.incident.start,
                last_seen=self.incident.end,
                count=count,
                description=f"{self.incident.kind.value} {self.incident.id}",
                **self.common,
            )
            self._sighting = _plain(made)
            return self._sighting
        return self._sighting | {"id": sighting_id, "sighting_of_ref": indicator, "count": count}


def write_stix(
    target: Path,
    site: str,
    incidents: Sequence[Incident],
    requests_by_address: dict[tuple[str, str], int] | None = None,
    created: datetime | None = None,
) -> None:
    """Write indicators.stix.json atomically."""
    bundle = stix_bundle(site, incidents, requests_by_address, created)
    # stix2's own pretty printer orders keys property by property and takes seconds for a few hundred objects;
    # its compact form re-indented by the json module is the same document, readable, in milliseconds.
    write_atomic(target, json.dumps(bundle, indent=1, ensure_ascii=False) + "\n")
