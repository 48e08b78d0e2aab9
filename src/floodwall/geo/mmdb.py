"""A MaxMind DB (`.mmdb`) reader in bulk: GeoLite2/GeoIP2 ASN, Country, City, Anonymous-IP and alike.

The search tree (MaxMind DB File Format Specification 2.0, https://maxmind.github.io/MaxMind-DB/) is decoded into
two NumPy arrays of records and walked for all addresses at once; each distinct data record is then decoded once by
the `maxminddb` package's decoder. `lookup_address` asks the official `maxminddb` reader, one address at a time.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import maxminddb
import numpy as np
import numpy.typing as npt
import polars as pl
from maxminddb.decoder import Decoder

from floodwall.errors import InputError
from floodwall.geo.addresses import U64
from floodwall.geo.database import FLAG_COLUMNS, GeoDatabase, GeoRecord
from floodwall.geo.walk import walk_records

__all__ = ["MmdbReader"]

_DATA_SEPARATOR_BYTES = 16  # the specification's 16 zero bytes between the search tree and the data section


def _records(tree: npt.NDArray[np.uint8], record_size: int) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    """Left and right records of every node, for the three record sizes the specification allows."""
    left, right = _record_values(tree.astype(np.uint32), record_size)
    return left.astype(np.uint32), right.astype(np.uint32)


def _record_values(b: npt.NDArray[np.uint32], record_size: int) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    if record_size == 24:
        return (b[:, 0] << 16) | (b[:, 1] << 8) | b[:, 2], (b[:, 3] << 16) | (b[:, 4] << 8) | b[:, 5]
    if record_size == 28:
        left = ((b[:, 3] & 0xF0) << 20) | (b[:, 0] << 16) | (b[:, 1] << 8) | b[:, 2]
        return left, ((b[:, 3] & 0x0F) << 24) | (b[:, 4] << 16) | (b[:, 5] << 8) | b[:, 6]
    if record_size == 32:
        return (b[:, 0] << 24) | (b[:, 1] << 16) | (b[:, 2] << 8) | b[:, 3], (
            (b[:, 4] << 24) | (b[:, 5] << 16) | (b[:, 6] << 8) | b[:, 7]
        )
    raise InputError(f"unsupported MaxMind DB record size {record_size}")


def _flag(mapping: Mapping[str, Any], key: str, applies: bool) -> bool | None:
    return bool(mapping.get(key, False)) if applies else None


def record_fields(record: Any) -> dict[str, Any]:
    """The lookup columns from one decoded record, whichever of the usual MaxMind layouts it follows.

    Country and City databases say anonymous proxy, satellite and anycast in `traits` (absent means false);
    Anonymous-IP databases say `is_hosting_provider` and `is_public_proxy`; GeoIP2 Enterprise says `user_type`.
    A database that does not speak of a property leaves it null.
    """
    if not isinstance(record, Mapping):
        return {}
    traits = record.get("traits") or {}
    geographic = any(key in record for key in ("country", "registered_country", "continent", "traits"))
    anonymity = any(key.startswith("is_") for key in record)
    country = (record.get("country") or record.get("registered_country") or {}).get("iso_code")
    hosting: bool | None = None
    if "user_type" in traits:
        hosting = traits["user_type"] == "hosting"
    elif anonymity:
        hosting = bool(record.get("is_hosting_provider", False))
    proxy = _flag(traits, "is_anonymous_proxy", geographic)
    if anonymity:
        proxy = bool(proxy) or bool(record.get("is_anonymous", False)) or bool(record.get("is_public_proxy", False))
    asn = record.get("autonomous_system_number", traits.get("autonomous_system_number"))
    name = record.get("autonomous_system_organization", traits.get("autonomous_system_organization"))
    return {
        "asn": int(asn) if asn is not None else None,
        "as_name": str(name) if name is not None else None,
        "country": str(country) if country is not None else None,
        "anonymous_proxy": proxy,
        "satellite": _flag(traits, "is_satellite_provider", geographic),
        "anycast": _flag(traits, "is_anycast", geographic),
        "drop": None,
        "hosting": hosting,
    }


class MmdbReader:
    """One `.mmdb` file, loaded into memory, looked up in bulk."""

    def __init__(self, path: Path) -> None:
        try:
            self._reader = maxminddb.open_database(str(path))
            data = path.read_bytes()
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as error:
            raise InputError(f"cannot read MaxMind database {path}: {error}") from error
        meta = self._reader.metadata()
        self._node_count = int(meta.node_count)
        self._tree_size = self._node_count * int(meta.record_size) // 4  # two records of record_size bits
        self._ip_version = int(meta.ip_version)
        tree = np.frombuffer(data, dtype=np.uint8, count=self._tree_size).reshape(self._node_count, -1)
        self._left, self._right = _records(tree, int(meta.record_size))
        self._decoder = Decoder(data, self._tree_size + _DATA_SEPARATOR_BYTES)
        self._v4_start, self._v4_depth = 0, 96
        if self._ip_version == 6:
            node, depth = 0, 0
            while depth < 96 and node < self._node_count:
                node, depth = int(self._left[node]), depth + 1
            self._v4_start, self._v4_depth = node, depth
        description = meta.description.get("en") or next(iter(meta.description.values()), "")
        self.database = GeoDatabase(
            kind="mmdb",
            path=path,
            vendor="MaxMind DB",
            description=str(description),
            license="see the vendor's terms for this file",
            database_type=str(meta.database_type),
            built_at=datetime.fromtimestamp(int(meta.build_epoch), tz=UTC),
            size_bytes=len(data),
        )

    def close(self) -> None:
        self._reader.close()

    def lookup_address(self, address: str) -> GeoRecord | None:
        """One address through the official `maxminddb` reader: the reference for `lookup` and the baseline."""
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.version == 6 and self._ip_version == 4:
            return None
        record, length = self._reader.get_with_prefix_len(ip)
        if record is None:
            return None
        fields = record_fields(record)
        network = ipaddress.ip_network(f"{ip}/{length}", strict=False)
        return GeoRecord(
            prefix=str(network),
            **{key: fields.get(key) for key in ("asn", "as_name", "country")},
            **{key: fields.get(key) for key in FLAG_COLUMNS},
        )

    def lookup_arrays(
        self, hi: U64, lo: U64, is_v4: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.int16], pl.DataFrame]:
        """Prefix lengths (IPv6 space, -1 where no data) and the record's columns, one row per address."""
        size = hi.shape[0]
        record = np.full(size, -1, dtype=np.int64)
        length = np.full(size, -1, dtype=np.int16)
        v4 = np.flatnonzero(is_v4)
        if v4.size:
            if self._v4_start < self._node_count:
                record[v4], length[v4] = walk_records(
                    self._left, self._right, self._node_count, hi[v4], lo[v4], self._v4_start, 96
                )
            elif self._v4_start > self._node_count:
                record[v4], length[v4] = self._v4_start, self._v4_depth
        v6 = np.flatnonzero(~is_v4)
        if v6.size and self._ip_version == 6:
            record[v6], length[v6] = walk_records(self._left, self._right, self._node_count, hi[v6], lo[v6], 0, 0)
        return length, self._columns(record)

    def _columns(self, record: npt.NDArray[np.int64]) -> pl.DataFrame:
        distinct, inverse = np.unique(record, return_inverse=True)
        rows = [
            record_fields(self._decoder.decode(int(value) - self._node_count + self._tree_size)[0])
            if value >= 0
            else {}
            for value in distinct
        ]
        schema = {
            "asn": pl.UInt32,
            "as_name": pl.String,
            "country": pl.String,
            **{name: pl.Boolean for name in FLAG_COLUMNS},
        }
        table = pl.DataFrame([{key: row.get(key) for key in schema} for row in rows], schema=schema, orient="row")
        return table[inverse.reshape(-1)]
