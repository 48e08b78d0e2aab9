"""What `correlate` reads: several sites' bundle.json files (or report.json files, or folders holding either).

Bundles made with different coalition keys are refused: their hashes would never match, and a silent "no link"
would be a false reassurance. A report.json names attackers in clear; with a key they are hashed here, in memory,
and without one only their prefixes and networks are used.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from floodwall.errors import BundleError
from floodwall.forensics.bundle import SCHEMA_VERSION, Bundle, hash_address, key_fingerprint, parse_bundle

__all__ = ["Source", "load_sources"]


@dataclass(frozen=True, slots=True)
class Source:
    """One input file and the bundle read (or made) from it."""

    path: Path
    kind: str  # "bundle" or "report"
    bundle: Bundle


def _resolve(path: Path) -> Path:
    if path.is_dir():
        for name in ("bundle.json", "report.json"):
            if (path / name).exists():
                return path / name
        raise BundleError(f"{path}: a folder without bundle.json or report.json")
    return path


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BundleError(f"{path}: cannot read: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON: {exc}") from None


def _network(entry: str) -> str | None:
    try:
        net = ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        return None
    prefix = 24 if net.version == 4 else 48
    return str(net.supernet(new_prefix=prefix)) if net.prefixlen > prefix else str(net)


def bundle_from_report(data: dict[str, Any], path: Path, key: bytes | None) -> Bundle:
    """A bundle made in memory from a report.json: addresses hashed with `key` (none without it), prefixes
    computed from the attackers, networks from `sources.asns`; no request fingerprints (the report has none)."""
    site = data.get("site")
    if not isinstance(site, str) or not site:
        raise BundleError(f"{path}: field 'site' must be a non-empty string")
    incidents = data.get("incidents")
    if not isinstance(incidents, list):
        raise BundleError(f"{path}: field 'incidents' must be a list")
    converted = []
    for i, incident in enumerate(incidents):
        if not isinstance(incident, dict):
            raise BundleError(f"{path}: field 'incidents.{i}' must be an object")
        attackers = incident.get("attackers", [])
        if not isinstance(attackers, list) or not all(isinstance(a, str) for a in attackers):
            raise BundleError(f"{path}: field 'incidents.{i}.attackers' must be a list of addresses")
        addresses = sorted({a.strip() for a in attackers if "/" not in a and _network(a) is not None})
        prefixes: dict[str, int] = {}
        for entry in attackers:
            net = _network(entry)
            if net is not None:
                prefixes[net] = prefixes.get(net, 0) + (0 if "/" in entry else 1)
        sources = incident.get("sources") if isinstance(incident.get("sources"), dict) else {}
        converted.append(
            {
                **{k: incident[k] for k in ("id", "kind", "start", "end", "vectors", "markers") if k in incident},
                "site": site,
                "peak_rps": incident.get("peak_rps", 0.0),
                "requests": incident.get("requests", 0),
                "attack_requests": incident.get("attack_requests", 0),
                "addresses": len(addresses),
                "address_hashes": sorted({hash_address(a, key) for a in addresses}) if key is not None else None,
                "prefixes": [{"prefix": p, "ips": n} for p, n in sorted(prefixes.items())],
                "asns": (sources or {}).get("asns", []),
                "fingerprint": {
                    "phases": [p.get("label", "") for p in incident.get("phases", []) if isinstance(p, dict)]
                },
            }
        )
    document = {
        "schema_version": SCHEMA_VERSION,
        "floodwall_version": str(data.get("floodwall_version", "")),
        "site": site,
        "key_fingerprint": key_fingerprint(key) if key is not None else None,
        "address_hash": "blake2b-128-keyed" if key is not None else None,
        "incidents": converted,
    }
    return parse_bundle(document, path)


def load_sources(paths: Sequence[Path], key: bytes | None = None) -> list[Source]:
    """Read every input; refuse mixed coalition keys (naming both files) and incidents listed twice."""
    sources: list[Source] = []
    for given in paths:
        path = _resolve(given)
        data = _read(path)
        is_report = path.name == "report.json" or (isinstance(data, dict) and "inputs" in data)
        if isinstance(data, dict) and "schema_version" not in data and is_report:
            sources.append(Source(path, "report", bundle_from_report(data, path, key)))
        else:
            sources.append(Source(path, "bundle", parse_bundle(data, path)))
    expected = key_fingerprint(key) if key is not None else None
    first: Source | None = None
    for source in sources:
        found = source.bundle.key_fingerprint
        if found is None:
            continue
        if expected is not None and found != expected:
            raise BundleError(
                f"{source.path}: made with a different coalition key than the one given to correlate"
                f" (key fingerprint {found}, expected {expected}); ask its outlet which key it used"
            )
        if first is not None and first.bundle.key_fingerprint != found:
            raise BundleError(
                f"{first.path} and {source.path} were made with different coalition keys (key fingerprints"
                f" {first.bundle.key_fingerprint} and {found}): their address hashes cannot be compared; re-run"
                " analyze with the coalition's shared key"
            )
        first = first or source
    seen: dict[tuple[str, str], Path] = {}
    for source in sources:
        for i, incident in enumerate(source.bundle.incidents):
            where = (incident.site, incident.id)
            if where in seen:
                raise BundleError(
                    f"{source.path}: field 'incidents.{i}.id': incident {incident.id!r} of {incident.site!r}"
                    f" is already in {seen[where]}"
                )
            seen[where] = source.path
    return sources
