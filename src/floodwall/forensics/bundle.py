"""bundle.json: the shareable, pseudonymised summary of one site's incidents that `floodwall correlate` reads.

No reader's address is ever in it. Attackers' addresses are there only as keyed hashes (blake2b, 16 bytes, keyed
with the coalition key every member outlet holds), and only when a key was given; prefixes (/24, /48) and networks
(ASN, name, country) are in clear. A `key_fingerprint` (a keyed hash of a fixed text) tells whether two bundles
were made with the same key, so bundles hashed with different keys are refused instead of silently not matching.

The schema is versioned (`schema_version`, "MAJOR.MINOR"): readers accept any minor version of their major one and
ignore fields they do not know. docs/bundle.md describes every field.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import polars as pl
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from floodwall.detect import DetectionResult
from floodwall.errors import BundleError, FloodwallError, InputError
from floodwall.forensics.fingerprints import Fingerprint, FingerprintAccumulator
from floodwall.geo import GeoLookup, open_geo
from floodwall.logs.frame import client_networks
from floodwall.model import Incident

__all__ = [
    "SCHEMA_VERSION",
    "Bundle",
    "BundleIncident",
    "build_bundle",
    "coalition_key",
    "hash_address",
    "key_fingerprint",
    "parse_bundle",
    "read_bundle",
    "shareable_bundle",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION: Final = "1.0"
ADDRESS_HASH: Final = "blake2b-128-keyed"
_KEY_CHECK: Final = b"floodwall coalition key check v1"
_MAX_KEY_BYTES: Final = 64  # blake2b's key limit; longer keys are hashed down to it

Kind = Literal["flood", "scan", "bruteforce", "exploit"]
VectorName = Literal[
    "get-flood",
    "cache-bust",
    "random-path",
    "search-flood",
    "heavy-page",
    "post-flood",
    "login-bruteforce",
    "xmlrpc-abuse",
    "scan",
    "sqli",
    "xss",
    "path-traversal",
    "rce",
    "slow-request",
]
Share = Annotated[float, Field(ge=0.0, le=1.0)]
HexHash = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class PrefixCount(_Model):
    prefix: str
    ips: int = Field(ge=0)


class AsnCount(_Model):
    asn: int = Field(ge=0)
    name: str | None = None
    country: str | None = None
    ips: int = Field(ge=0)


class FingerprintModel(_Model):
    user_agents: dict[str, Share] = {}
    ua_families: dict[str, Share] = {}
    path_shapes: dict[str, Share] = {}
    query_shapes: dict[str, Share] = {}
    rate_quantiles_rps: dict[str, Annotated[float, Field(ge=0.0)]] = {}
    hour_profile: list[Share] = Field(default=[], max_length=24)
    wave_period_minutes: float | None = None
    phases: list[str] = []


class BundleIncident(_Model):
    id: str = Field(min_length=1)
    site: str = Field(min_length=1)
    kind: Kind
    start: AwareDatetime
    end: AwareDatetime
    peak_rps: float = Field(ge=0.0)
    requests: int = Field(ge=0, default=0)
    attack_requests: int = Field(ge=0, default=0)
    vectors: list[VectorName] = []
    markers: list[str] = []
    addresses: int = Field(ge=0, default=0)
    address_hashes: list[HexHash] | None = None
    prefixes: list[PrefixCount] = []
    asns: list[AsnCount] = []
    fingerprint: FingerprintModel = FingerprintModel()

    @model_validator(mode="after")
    def _ordered(self) -> BundleIncident:
        if self.end < self.start:
            raise ValueError("end is before start")
        return self


class Window(_Model):
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None


class Bundle(_Model):
    schema_version: Annotated[str, Field(pattern=r"^1\.[0-9]+$")]
    floodwall_version: str = ""
    site: str = Field(min_length=1)
    generated: AwareDatetime | None = None
    key_fingerprint: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = None
    address_hash: Literal["blake2b-128-keyed"] | None = None
    window: Window = Window()
    incidents: list[BundleIncident] = []

    @model_validator(mode="after")
    def _consistent(self) -> Bundle:
        for i, incident in enumerate(self.incidents):
            if incident.site != self.site:
                raise ValueError(f"incidents.{i}.site is {incident.site!r}, not the bundle's site {self.site!r}")
            if incident.address_hashes is not None and self.key_fingerprint is None:
                raise ValueError(f"incidents.{i}.address_hashes given but no key_fingerprint")
        return self


def coalition_key(raw: bytes, source: str) -> bytes:
    """The coalition key from the bytes of a key file or variable (`source` names it in errors): surrounding
    whitespace is ignored; keys longer than blake2b's 64 bytes are hashed down to 64."""
    key = raw.strip()
    if len(key) < 16:
        raise InputError(f"{source}: the coalition key must be at least 16 bytes, got {len(key)}")
    return key if len(key) <= _MAX_KEY_BYTES else hashlib.blake2b(key, digest_size=_MAX_KEY_BYTES).digest()


def key_fingerprint(key: bytes) -> str:
    """A keyed hash of a fixed text: equal for equal keys, and says nothing about the key."""
    return hashlib.blake2b(_KEY_CHECK, key=key, digest_size=8).hexdigest()


def hash_address(address: str, key: bytes) -> str:
    """The keyed hash of an address in canonical form (so `2001:DB8::1` and `2001:db8::1` hash alike)."""
    canonical = ipaddress.ip_address(address.strip()).compressed
    return hashlib.blake2b(canonical.encode("ascii"), key=key, digest_size=16, person=b"floodwall-addr").hexdigest()


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _networks(addresses: list[str], geo: GeoLookup | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    series = pl.Series("address", addresses, dtype=pl.String)
    prefixes = (
        client_networks(series)
        .drop_nulls()
        .value_counts(name="ips")
        .sort(["ips", "client_net"], descending=[True, False])
    )
    prefix_rows = [{"prefix": p, "ips": int(n)} for p, n in prefixes.iter_rows()]
    if geo is None or not addresses:
        return prefix_rows, []
    asns = (
        geo.lookup(series)
        .filter(pl.col("asn").is_not_null())
        .group_by("asn")
        .agg(pl.col("as_name").first().alias("name"), pl.col("country").mode().first(), pl.len().alias("ips"))
        .sort(["ips", "asn"], descending=[True, False])
    )
    asn_rows = [
        {"asn": int(r["asn"]), "name": r["name"], "country": r["country"], "ips": int(r["ips"])}
        for r in asns.iter_rows(named=True)
    ]
    return prefix_rows, asn_rows


def _incident(incident: Incident, fingerprint: Fingerprint | None, key: bytes | None, geo: GeoLookup | None) -> Any:
    addresses = sorted({a.strip() for a in incident.attackers if _is_address(a.strip())})
    cidrs = sorted({a.strip() for a in incident.attackers if "/" in a})
    prefixes, asns = _networks(addresses, geo)
    known = {p["prefix"] for p in prefixes}
    prefixes += [{"prefix": c, "ips": 0} for c in cidrs if c not in known]  # ranges the engine banned whole
    fp = fingerprint or Fingerprint()
    return {
        "id": incident.id,
        "site": incident.site,
        "kind": incident.kind.value,
        "start": _iso(incident.start),
        "end": _iso(incident.end),
        "peak_rps": round(float(incident.peak_rps), 3),
        "requests": incident.requests,
        "attack_requests": incident.attack_requests,
        "vectors": [v.value for v in incident.vectors],
        "markers": [m.lower() for m in incident.markers],
        "addresses": len(addresses),
        "address_hashes": sorted({hash_address(a, key) for a in addresses}) if key is not None else None,
        "prefixes": prefixes,
        "asns": asns,
        "fingerprint": {
            "user_agents": dict(fp.user_agents),
            "ua_families": dict(fp.ua_families),
            "path_shapes": dict(fp.path_shapes),
            "query_shapes": dict(fp.query_shapes),
            "rate_quantiles_rps": dict(fp.rate_quantiles_rps),
            "hour_profile": list(fp.hour_profile),
            "wave_period_minutes": fp.wave_period_minutes,
            "phases": [p.label for p in incident.phases],
        },
    }


def build_bundle(
    site: str,
    detection: DetectionResult,
    fingerprints: Mapping[str, Fingerprint] | FingerprintAccumulator | None,
    key: bytes | None,
    geo: GeoLookup | None,
    *,
    version: str = "",
    generated: datetime | None = None,
) -> dict[str, Any]:
    """bundle.json's document for one site. Without `key`, no address-level data at all (no hashes); `geo` adds
    ASNs (None: prefixes only). The document is validated against the schema before it is returned."""
    if isinstance(fingerprints, FingerprintAccumulator):
        fingerprints = fingerprints.finish(detection)
    found = fingerprints or {}
    document = {
        "schema_version": SCHEMA_VERSION,
        "floodwall_version": version,
        "site": site,
        "generated": _iso(generated or datetime.now(UTC)),
        "key_fingerprint": key_fingerprint(key) if key is not None else None,
        "address_hash": ADDRESS_HASH if key is not None else None,
        "window": {"start": _iso(detection.window_start), "end": _iso(detection.window_end)},
        "incidents": [_incident(i, found.get(i.id), key, geo) for i in detection.incidents],
    }
    Bundle.model_validate(document)
    return document


def shareable_bundle(
    site: str,
    detection: DetectionResult,
    fingerprints: Mapping[str, Fingerprint] | FingerprintAccumulator | None,
    key: bytes | None,
    *,
    version: str = "",
    generated: datetime | None = None,
    geo: GeoLookup | None = None,
) -> dict[str, Any]:
    """`build_bundle` with the offline network database when one is installed (prefixes only when none is); `geo`,
    when given, is an open database used (and left open) instead of opening it again."""
    if geo is not None:
        return build_bundle(site, detection, fingerprints, key, geo, version=version, generated=generated)
    try:
        geo = open_geo()
    except FloodwallError as exc:
        log.warning("no network data for the bundle: %s", exc)
        return build_bundle(site, detection, fingerprints, key, None, version=version, generated=generated)
    with geo:
        return build_bundle(site, detection, fingerprints, key, geo, version=version, generated=generated)


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def parse_bundle(data: object, path: Path | str) -> Bundle:
    """Validate a bundle document read from `path`; errors name the file and the field."""
    if not isinstance(data, dict):
        raise BundleError(f"{path}: a bundle must be a JSON object")
    version = data.get("schema_version")
    if not isinstance(version, str):
        raise BundleError(f"{path}: field 'schema_version' is missing; is this a Floodwall bundle.json?")
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise BundleError(
            f"{path}: field 'schema_version' is {version!r}; this Floodwall reads {SCHEMA_VERSION.split('.')[0]}.x"
        )
    try:
        return Bundle.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise BundleError(f"{path}: field '{_field(first['loc'])}': {first['msg']}{more}") from None


def read_bundle(path: Path) -> Bundle:
    """Read and validate one bundle.json."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BundleError(f"{path}: cannot read the bundle: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON: {exc}") from None
    return parse_bundle(data, path)
