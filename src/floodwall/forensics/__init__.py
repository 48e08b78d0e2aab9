"""Incidents in depth: fingerprints of the attackers' traffic and the shareable, pseudonymised bundle."""

from floodwall.forensics.bundle import (
    SCHEMA_VERSION,
    Bundle,
    BundleIncident,
    build_bundle,
    coalition_key,
    hash_address,
    key_fingerprint,
    parse_bundle,
    read_bundle,
    shareable_bundle,
)
from floodwall.forensics.fingerprints import Fingerprint, FingerprintAccumulator

__all__ = [
    "SCHEMA_VERSION",
    "Bundle",
    "BundleIncident",
    "Fingerprint",
    "FingerprintAccumulator",
    "build_bundle",
    "coalition_key",
    "hash_address",
    "key_fingerprint",
    "parse_bundle",
    "read_bundle",
    "shareable_bundle",
]
