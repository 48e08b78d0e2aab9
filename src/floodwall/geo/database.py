"""What a lookup answers and which database answered it: the shared vocabulary of `floodwall.geo`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import polars as pl

__all__ = ["FLAG_COLUMNS", "LOOKUP_SCHEMA", "GeoDatabase", "GeoRecord"]

#: Network properties that are true, false, or null when the database does not say.
FLAG_COLUMNS: tuple[str, ...] = ("anonymous_proxy", "satellite", "anycast", "drop", "hosting")

#: The columns of `GeoLookup.lookup`, in order. `prefix` is the database's network holding the address (CIDR text);
#: `reserved` is true for special-purpose addresses (private, loopback, documentation, ...), which get no network.
LOOKUP_SCHEMA: dict[str, pl.DataType] = {
    "address": pl.String(),
    "prefix": pl.String(),
    "asn": pl.UInt32(),
    "as_name": pl.String(),
    "country": pl.String(),
    "anonymous_proxy": pl.Boolean(),
    "satellite": pl.Boolean(),
    "anycast": pl.Boolean(),
    "drop": pl.Boolean(),
    "hosting": pl.Boolean(),
    "reserved": pl.Boolean(),
}


@dataclass(frozen=True)
class GeoDatabase:
    """One database file, described well enough for a report's methods section to cite it."""

    kind: Literal["libloc", "mmdb"]
    path: Path
    vendor: str
    description: str
    license: str
    database_type: str
    built_at: datetime
    size_bytes: int

    def describe(self) -> str:
        """One line naming the database, its date and its file, e.g. for a report's methods section."""
        built = f"{self.built_at:%Y-%m-%d %H:%M} UTC"
        return f"{self.vendor} {self.database_type} built {built} ({self.path}, {self.size_bytes} bytes)"

    def to_dict(self) -> dict[str, str | int]:
        """JSON-ready fields; `built_at` is ISO 8601 in UTC with a `Z`."""
        return {
            "kind": self.kind,
            "path": str(self.path),
            "vendor": self.vendor,
            "description": self.description,
            "license": self.license,
            "database_type": self.database_type,
            "built_at": self.built_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "size_bytes": self.size_bytes,
        }


@dataclass(frozen=True)
class GeoRecord:
    """What one database says about one address; flags are None where the database does not say."""

    prefix: str
    asn: int | None
    as_name: str | None
    country: str | None
    anonymous_proxy: bool | None
    satellite: bool | None
    anycast: bool | None
    drop: bool | None
    hosting: bool | None
