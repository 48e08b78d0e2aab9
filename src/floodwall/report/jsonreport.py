"""report.json (CONTRACT.md's schema, restricted: it names attacking addresses) and blocklist.txt."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from floodwall.model import Action, Decision, Incident, Phase

__all__ = ["blocklist_text", "incident_document", "iso", "report_document"]


class _Inputs(Protocol):
    path: str
    sha256: str | None
    size_bytes: int
    lines: int
    parsed: int
    bad_lines: int
    format: str
    format_reason: str
    first_ts: datetime | None
    last_ts: datetime | None


class _Detection(Protocol):
    @property
    def incidents(self) -> Sequence[Incident]: ...


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`, to the second (or the microsecond when it has one)."""
    if moment is None:
        return None
    text = moment.astimezone().isoformat() if moment.tzinfo is None else moment.isoformat()
    return text.replace("+00:00", "Z")


def _phase(phase: Phase) -> dict[str, object]:
    return {
        "start": iso(phase.start),
        "end": iso(phase.end),
        "peak_rps": round(phase.peak_rps, 2),
        "label": phase.label,
    }


def incident_document(incident: Incident, sources: dict[str, Any] | None = None) -> dict[str, object]:
    """One incident as CONTRACT.md's `incidents[]` entry."""
    networks = {_network(a) for a in incident.attackers}
    return {
        "id": incident.id,
        "kind": incident.kind.value,
        "start": iso(incident.start),
        "end": iso(incident.end),
        "peak_rps": round(incident.peak_rps, 2),
        "requests": incident.requests,
        "attack_requests": incident.attack_requests,
        "vectors": [v.value for v in incident.vectors],
        "attackers": list(incident.attackers),
        "sources": sources
        or {"ips": sum(1 for a in incident.attackers if "/" not in a), "prefixes": len(networks - {None}), "asns": []},
        "markers": list(incident.markers),
        "phases": [_phase(p) for p in incident.phases],
    }


def _network(address: str) -> str | None:
    try:
        ip = ipaddress.ip_network(address, strict=False)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ip.supernet(new_prefix=prefix)) if ip.prefixlen > prefix else str(ip)


def report_document(
    *,
    site: str,
    inputs: Sequence[_Inputs],
    detection: _Detection,
    decisions: Sequence[Decision],
    version: str,
    sources: dict[str, dict[str, Any]] | None = None,
) -> dict[str, object]:
    """The whole of report.json."""
    starts = [s.first_ts for s in inputs if s.first_ts is not None]
    ends = [s.last_ts for s in inputs if s.last_ts is not None]
    return {
        "floodwall_version": version,
        "site": site,
        "inputs": [
            {
                "path": s.path,
                "sha256": s.sha256,
                "size_bytes": s.size_bytes,
                "lines": s.lines,
                "parsed": s.parsed,
                "bad_lines": s.bad_lines,
                "format": s.format,
                "format_reason": s.format_reason,
            }
            for s in inputs
        ],
        "window": {"start": iso(min(starts)) if starts else None, "end": iso(max(ends)) if ends else None},
        "incidents": [incident_document(i, (sources or {}).get(i.id)) for i in detection.incidents],
        "decisions": [
            {
                "target": d.target,
                "action": d.action.value,
                "created": iso(d.created),
                "expires": iso(d.expires),
                "reasons": list(d.reasons),
                "evidence": [{"source": s, "line": n} for s, n in d.evidence],
            }
            for d in decisions
            if d.action is not Action.OBSERVE
        ],
    }


def blocklist_text(site: str, detection: _Detection, decisions: Sequence[Decision], generated: datetime) -> str:
    """Every address or CIDR judged hostile (banned), one per line, with `#` comments naming the incidents.

    An incident's members that the policy only observed or challenged (a noisy crawler, a lone probe outside any flood)
    are counted in a comment, not listed: a list loaded into a firewall must not block anyone the policy spared.
    """
    banned = {d.target for d in decisions if d.action is Action.BAN}
    lines = [
        f"# Floodwall blocklist for {site}, generated {iso(generated)}",
        "# One address or CIDR per line. Wrap for ipset: sed 's/^/add floodwall /' | ipset restore",
    ]
    listed: set[str] = set()
    prefixes = [
        ipaddress.ip_network(d.target, strict=False) for d in decisions if d.action is Action.BAN and "/" in d.target
    ]
    for incident in detection.incidents:
        spared = [a for a in incident.attackers if a not in banned and not any(_inside(a, p) for p in prefixes)]
        members = [a for a in incident.attackers if a not in listed and a not in spared]
        if not members and not spared:
            continue
        lines.append(f"# {incident.id} ({incident.kind.value}: {', '.join(v.value for v in incident.vectors)})")
        if spared:
            lines.append(f"# {len(spared)} more observed or challenged, not banned: see report.json")
        for address in sorted(members):
            if "/" not in address and any(_inside(address, p) for p in prefixes):
                continue
            lines.append(address)
            listed.add(address)
    extra = [p for p in prefixes if str(p) not in listed]
    if extra:
        lines.append("# prefixes where most active clients were hostile")
        lines.extend(str(p) for p in extra)
    return "\n".join(lines) + "\n"


def _inside(address: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.version == network.version and ip in network
