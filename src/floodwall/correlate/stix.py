"""campaigns.stix.json: the campaigns as a STIX 2.1 bundle.

Per campaign: a `campaign` (first and last seen, confidence 0-100), the outlets it `targets` (`identity`,
organisations), its incidents (`incident`, `related-to` the campaign), and the `infrastructure` it `uses`, which
`consists-of` its networks (`autonomous-system`) and most used prefixes (`ipv4-addr`/`ipv6-addr` CIDRs). No
address-level data: hashes are not observables. Identifiers are derived from stable names, so the same input gives
the same objects.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Final

import stix2

from floodwall import __version__
from floodwall.forensics.bundle import BundleIncident

__all__ = ["campaigns_stix"]

_NAMESPACE: Final = uuid.UUID("6f7c2f0e-3d4b-5a1e-9c55-0f1d0d5a7e21")


def _id(kind: str, name: str) -> str:
    """A stable identifier in UUIDv4 form (STIX 2.1 wants version 4 for domain objects): the bytes of a UUIDv5 of
    the name, with the version and variant bits of version 4."""
    return f"{kind}--{uuid.UUID(bytes=uuid.uuid5(_NAMESPACE, f'{kind}:{name}').bytes, version=4)}"


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def campaigns_stix(document: dict[str, Any], incidents: list[BundleIncident]) -> dict[str, Any]:
    """The STIX 2.1 bundle for campaigns.json's `document`."""
    created = _time(document["generated"])
    common = {"created": created, "modified": created, "allow_custom": False}
    by_key = {(i.site, i.id): i for i in incidents}
    objects: list[Any] = []
    identities: dict[str, str] = {}
    for site in sorted({i.site for i in incidents}):
        identity = stix2.Identity(
            id=_id("identity", site), name=site, identity_class="organization", sectors=["communications"], **common
        )
        identities[site] = identity.id
        objects.append(identity)
    seen_scos: set[str] = set()
    for campaign in document["campaigns"]:
        members = [by_key[(m["site"], m["id"])] for m in campaign["incidents"]]
        name = "+".join(sorted(f"{m.site}/{m.id}" for m in members))
        infra = campaign["infrastructure"]
        description = (
            f"{len(members)} incident(s) on {len(campaign['sites'])} outlet(s); vectors: "
            f"{', '.join(infra['vectors']) or 'none'}; markers: {', '.join(infra['markers']) or 'none'}."
            f" Linked by Floodwall {__version__} correlate."
        )
        stix_campaign = stix2.Campaign(
            id=_id("campaign", name),
            name=campaign["id"],
            description=description,
            first_seen=_time(campaign["first_seen"]),
            last_seen=_time(campaign["last_seen"]),
            confidence=round(100 * campaign["confidence"]),
            **common,
        )
        objects.append(stix_campaign)
        for site in campaign["sites"]:
            objects.append(_relationship(stix_campaign.id, "targets", identities[site], common))
        for member in members:
            incident = stix2.Incident(
                id=_id("incident", f"{member.site}/{member.id}"),
                name=member.id,
                description=f"{member.kind} on {member.site} from {member.start:%Y-%m-%dT%H:%M:%SZ} to "
                f"{member.end:%Y-%m-%dT%H:%M:%SZ}; vectors: {', '.join(member.vectors) or 'none'}",
                **common,
            )
            objects.append(incident)
            objects.append(_relationship(incident.id, "related-to", stix_campaign.id, common))
        parts = []
        for asn in infra["asns"]:
            sco = (
                stix2.AutonomousSystem(number=asn["asn"], name=asn["name"])
                if asn["name"]
                else stix2.AutonomousSystem(number=asn["asn"])
            )
            parts.append(sco)
        for prefix in infra["top_prefixes"]:
            cls = stix2.IPv6Address if ":" in prefix["prefix"] else stix2.IPv4Address
            parts.append(cls(value=prefix["prefix"]))
        if not parts:
            continue
        infrastructure = stix2.Infrastructure(
            id=_id("infrastructure", name),
            name=f"{campaign['id']} infrastructure",
            infrastructure_types=["botnet"],
            description=f"Networks and prefixes the attackers of {campaign['id']} sent from.",
            **common,
        )
        objects.append(infrastructure)
        objects.append(_relationship(stix_campaign.id, "uses", infrastructure.id, common))
        for sco in parts:
            if sco.id not in seen_scos:
                seen_scos.add(sco.id)
                objects.append(sco)
            objects.append(_relationship(infrastructure.id, "consists-of", sco.id, common))
    bundle = stix2.Bundle(objects=objects, id=_id("bundle", document["generated"]), allow_custom=False)
    result: dict[str, Any] = json.loads(bundle.serialize())
    return result


def _relationship(source: str, kind: str, target: str, common: dict[str, Any]) -> Any:
    return stix2.Relationship(
        id=_id("relationship", f"{source}|{kind}|{target}"),
        source_ref=source,
        relationship_type=kind,
        target_ref=target,
        **common,
    )
