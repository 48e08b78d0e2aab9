"""`open_geo` and `GeoLookup`: addresses in, one row of network facts per address out, each distinct address once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol

import numpy as np
import numpy.typing as npt
import polars as pl

from floodwall.errors import InputError, ServiceError
from floodwall.geo.addresses import U64, format_prefixes, is_reserved, parse_addresses, reserved_mask
from floodwall.geo.database import FLAG_COLUMNS, LOOKUP_SCHEMA, GeoDatabase, GeoRecord
from floodwall.geo.libloc import DEFAULT_LIBLOC_PATHS, LibLocReader
from floodwall.geo.mmdb import MmdbReader

__all__ = ["GeoLookup", "GeoReader", "open_geo"]

_VALUE_COLUMNS = ("asn", "as_name", "country", *FLAG_COLUMNS)


class GeoReader(Protocol):
    """One database file that answers in bulk (`lookup_arrays`) and one address at a time (`lookup_address`)."""

    database: GeoDatabase

    def lookup_arrays(
        self, hi: U64, lo: U64, is_v4: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.int16], pl.DataFrame]: ...

    def lookup_address(self, address: str) -> GeoRecord | None: ...


class GeoLookup:
    """Network facts for addresses from one or more databases; the first database that knows a fact wins.

    With several files (a GeoLite2-ASN and a GeoLite2-Country, say), `prefix` is the first database's network.
    """

    def __init__(self, readers: Sequence[GeoReader]) -> None:
        if not readers:
            raise InputError("no geo database given")
        self._readers = tuple(readers)

    @property
    def databases(self) -> tuple[GeoDatabase, ...]:
        """The files that answer, in order of precedence, for the report's methods section."""
        return tuple(reader.database for reader in self._readers)

    @property
    def database(self) -> GeoDatabase:
        """The first (or only) database."""
        return self._readers[0].database

    def lookup(self, addresses: pl.Series) -> pl.DataFrame:
        """One row per input address, in input order, with `LOOKUP_SCHEMA`'s columns.

        Each distinct address is looked up once. Text that is not an IPv4 or IPv6 address, and nulls, give a row of
        nulls; special-purpose addresses (private, loopback, documentation, ...) give `reserved` true and no network.
        """
        texts = addresses.cast(pl.String).rename("address")
        distinct = texts.drop_nulls().unique()
        facts = self.lookup_unique(distinct)
        return (
            texts.to_frame()
            .join(facts, on="address", how="left", maintain_order="left", nulls_equal=False)
            .select(list(LOOKUP_SCHEMA))
        )

    def lookup_unique(self, addresses: pl.Series) -> pl.DataFrame:
        """Like `lookup`, for addresses known to be distinct and not null (no deduplication, no join)."""
        parsed = parse_addresses(addresses)
        reserved = reserved_mask(parsed)
        ask = parsed.valid & ~reserved
        rows = np.flatnonzero(ask)
        hi, lo = parsed.hi[rows], parsed.lo[rows]
        is_v4 = parsed.is_v4[rows]
        prefix: pl.Series | None = None
        merged: pl.DataFrame | None = None
        for reader in self._readers:
            length, values = reader.lookup_arrays(hi, lo, is_v4)
            if prefix is None:
                prefix = format_prefixes(hi, lo, length)
                merged = values
            else:
                assert merged is not None
                merged = merged.select(pl.coalesce(merged[name], values[name]).alias(name) for name in _VALUE_COLUMNS)
                prefix = prefix.fill_null(format_prefixes(hi, lo, length))
        assert prefix is not None and merged is not None
        asked = merged.with_columns(prefix=prefix, row=pl.Series(rows, dtype=pl.Int64))
        return (
            pl.DataFrame(
                {
                    "address": addresses.cast(pl.String).rename("address"),
                    "reserved": reserved,
                    "valid": parsed.valid,
                    "row": pl.Series(np.arange(addresses.len()), dtype=pl.Int64),
                }
            )
            .join(asked, on="row", how="left", maintain_order="left")
            .with_columns(reserved=pl.when(pl.col("valid")).then(pl.col("reserved")))
            .select(pl.col(name).cast(dtype) for name, dtype in LOOKUP_SCHEMA.items())
        )

    def lookup_address(self, address: str) -> GeoRecord | None:
        """One address, walked one bit at a time in Python: the per-address reference for tests and benchmarks."""
        try:
            if is_reserved(address):
                return None
        except (OSError, ValueError):
            return None
        records = [reader.lookup_address(address) for reader in self._readers]
        found = [record for record in records if record is not None]
        if not found:
            return None
        merged = {
            name: next((getattr(r, name) for r in found if getattr(r, name) is not None), None)
            for name in _VALUE_COLUMNS
        }
        return GeoRecord(prefix=found[0].prefix, **merged)

    def close(self) -> None:
        for reader in self._readers:
            if isinstance(reader, MmdbReader):
                reader.close()

    def __enter__(self) -> GeoLookup:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def open_geo(path: str | Path | Sequence[str | Path] | None = None) -> GeoLookup:
    """Opens the geo database(s): Debian's IPFire location database by default, else the files given.

    A file ending in `.mmdb` is read as a MaxMind DB, anything else as an IPFire location database; several files
    (a MaxMind ASN and a Country database, say) are consulted in the order given.
    """
    if path is None:
        for candidate in DEFAULT_LIBLOC_PATHS:
            if candidate.is_file():
                return GeoLookup([LibLocReader(candidate)])
        raise ServiceError(
            f"no IPFire location database at {DEFAULT_LIBLOC_PATHS[0]}: install the Debian package "
            "libloc-database (apt-get install libloc-database), or give a MaxMind .mmdb file instead"
        )
    paths = [Path(path)] if isinstance(path, str | Path) else [Path(item) for item in path]
    readers: list[GeoReader] = []
    for item in paths:
        if not item.is_file():
            raise InputError(f"geo database {item} does not exist or is not a file")
        readers.append(MmdbReader(item) if item.suffix.lower() == ".mmdb" else LibLocReader(item))
    return GeoLookup(readers)
