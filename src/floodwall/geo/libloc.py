"""A reader of the IPFire location database (libloc, format version 1), in NumPy, without libloc itself.

Debian's `python3-location` is built for Debian's Python only, so the file is read directly. The format is
libloc's `src/libloc/format.h` (https://git.ipfire.org/?p=location/libloc.git): big-endian; a magic `LOCDBXX` and
a version byte; a header of section offsets; a binary tree of nodes (`zero`, `one`, `network`; child 0 means no
child, network 0xffffffff means no network) over the 128 address bits, IPv4 living under ::ffff:0:0/96; network
records (country, ASN, flags); AS records sorted by number; countries; and a pool of NUL-terminated strings.
A lookup returns the deepest network on the address's path, as `loc_database_lookup` does.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from floodwall.errors import InputError
from floodwall.geo.addresses import U64, V4_MAPPED_LO, network_halves
from floodwall.geo.database import GeoDatabase, GeoRecord
from floodwall.geo.walk import Walk, walk_tree

__all__ = ["DEFAULT_LIBLOC_PATHS", "LibLocReader"]

#: Where Debian's `libloc-database` puts the database (`location update` replaces the first).
DEFAULT_LIBLOC_PATHS = (Path("/var/lib/location/database.db"), Path("/usr/share/libloc-location/location.db"))

_MAGIC = b"LOCDBXX"
_HEADER = struct.Struct(">QIII10I")
_NO_NETWORK = 0xFFFF_FFFF
# Network flags, `enum loc_network_flags` in libloc's `network.h`.
_FLAG_BITS = {"anonymous_proxy": 1, "satellite": 2, "anycast": 4, "drop": 8}
_NETWORK = np.dtype([("country", "S2"), ("pad", "V2"), ("asn", ">u4"), ("flags", ">u2"), ("pad2", "V2")])
_AS = np.dtype([("number", ">u4"), ("name", ">u4")])


class LibLocReader:
    """One IPFire location database file, loaded into memory (about 55 MB) and looked up in bulk."""

    def __init__(self, path: Path) -> None:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise InputError(f"cannot read location database {path}: {error.strerror}") from error
        if data[:7] != _MAGIC or len(data) < 8 + _HEADER.size:
            raise InputError(f"{path} is not an IPFire location database (no LOCDBXX magic)")
        if data[7] != 1:
            raise InputError(f"{path} is an IPFire location database of format {data[7]}; only format 1 is read")
        created_at, vendor, description, license_, *sections = _HEADER.unpack_from(data, 8)
        (as_off, as_len, net_off, net_len, tree_off, tree_len, _countries_off, _countries_len, pool_off, pool_len) = (
            sections
        )
        if max(as_off + as_len, net_off + net_len, tree_off + tree_len, pool_off + pool_len) > len(data):
            raise InputError(f"{path} is truncated: a section ends past the end of the file")
        self._pool = data[pool_off : pool_off + pool_len]
        tree = np.frombuffer(data, dtype=">u4", count=tree_len // 4, offset=tree_off).reshape(-1, 3)
        self._zero = tree[:, 0].astype(np.uint32)
        self._one = tree[:, 1].astype(np.uint32)
        self._network = tree[:, 2].astype(np.uint32)
        self._networks = np.frombuffer(data, dtype=_NETWORK, count=net_len // _NETWORK.itemsize, offset=net_off)
        ases = np.frombuffer(data, dtype=_AS, count=as_len // _AS.itemsize, offset=as_off)
        self._as_numbers = ases["number"].astype(np.uint32)
        self._as_name_offsets = ases["name"].astype(np.uint32)
        self._as_names: dict[int, str | None] = {}
        self.database = GeoDatabase(
            kind="libloc",
            path=path,
            vendor=self._string(vendor),
            description=self._string(description).strip(),
            license=self._string(license_).strip(),
            database_type="IPFire location database v1",
            built_at=datetime.fromtimestamp(created_at, tz=UTC),
            size_bytes=len(data),
        )
        # Every IPv4 address shares the first 96 bits (::ffff:0:0/96); walk them once.
        self._v4_start = self._walk_scalar(0, V4_MAPPED_LO, stop_at=96)

    def _string(self, offset: int) -> str:
        end = self._pool.index(b"\0", offset)
        return self._pool[offset:end].decode("utf-8", "replace")

    def as_name(self, asn: int) -> str | None:
        """The AS's name from the database, or None when the database does not know it."""
        if asn not in self._as_names:
            position = int(np.searchsorted(self._as_numbers, asn))
            found = position < self._as_numbers.size and int(self._as_numbers[position]) == asn
            self._as_names[asn] = self._string(int(self._as_name_offsets[position])) or None if found else None
        return self._as_names[asn]

    def _walk_scalar(self, hi: int, lo: int, stop_at: int = 128) -> tuple[int, int, int]:
        """(node reached, deepest network index or -1, its prefix length or -1) after `stop_at` bits."""
        node, best, best_length = 0, -1, -1
        value = (hi << 64) | lo
        for depth in range(stop_at + 1):
            if int(self._network[node]) != _NO_NETWORK:
                best, best_length = int(self._network[node]), depth
            if depth == stop_at:
                return node, best, best_length
            child = int(self._one[node] if (value >> (127 - depth)) & 1 else self._zero[node])
            if child == 0:
                return -1, best, best_length
            node = child
        raise AssertionError("unreachable")

    def lookup_address(self, address: str) -> GeoRecord | None:
        """One address, walked bit by bit in Python: the reference for `lookup` and its benchmark baseline."""
        hi, lo, _ = network_halves(address + ("/128" if ":" in address else "/32"))
        _, index, length = self._walk_scalar(hi, lo)
        if index < 0:
            return None
        row = self._networks[index]
        bits = 128 - length
        start = ((hi << 64 | lo) >> bits) << bits if bits < 128 else 0
        frame = _frame_prefix(start, length)
        asn = int(row["asn"]) or None
        flags = int(row["flags"])
        return GeoRecord(
            prefix=frame,
            asn=asn,
            as_name=self.as_name(asn) if asn else None,
            country=row["country"].decode("ascii", "replace") or None,
            anonymous_proxy=bool(flags & 1),
            satellite=bool(flags & 2),
            anycast=bool(flags & 4),
            drop=bool(flags & 8),
            hosting=None,
        )

    def lookup_arrays(
        self, hi: U64, lo: U64, is_v4: npt.NDArray[np.bool_]
    ) -> tuple[npt.NDArray[np.int16], pl.DataFrame]:
        """Prefix lengths (IPv6 space, -1 where no network) and the network's columns, one row per address."""
        size = hi.shape[0]
        index = np.full(size, -1, dtype=np.int64)
        length = np.full(size, -1, dtype=np.int16)
        start_node, start_best, start_length = self._v4_start
        v4 = np.flatnonzero(is_v4)
        if v4.size:
            if start_node >= 0:
                found = walk_tree(
                    Walk(self._zero, self._one, self._network, _NO_NETWORK), hi[v4], lo[v4], start_node, 96
                )
                index[v4], length[v4] = found
            missing = v4[index[v4] < 0]
            index[missing], length[missing] = start_best, start_length
        v6 = np.flatnonzero(~is_v4)
        if v6.size:
            index[v6], length[v6] = walk_tree(
                Walk(self._zero, self._one, self._network, _NO_NETWORK), hi[v6], lo[v6], 0, 0
            )
        return length, self._columns(index)

    def _as_names_of(self, asns: npt.NDArray[np.uint32]) -> pl.DataFrame:
        """(asn, as_name) of these AS numbers, each decoded once per reader (`as_name`): the attackers of a flood
        sit in a few hundred networks, and decoding all 90,000 names up front cost about 0.07 s per run."""
        numbers = np.unique(asns[asns > 0])
        return pl.DataFrame(
            {"asn": numbers, "as_name": [self.as_name(int(number)) for number in numbers]},
            schema={"asn": pl.UInt32, "as_name": pl.String},
        )

    def _columns(self, index: npt.NDArray[np.int64]) -> pl.DataFrame:
        found = index >= 0
        rows = self._networks[np.where(found, index, 0)]
        codes = rows["country"].view(">u2").astype(np.uint16)
        countries = {int(code): int(code).to_bytes(2, "big").decode("ascii", "replace") for code in np.unique(codes)}
        frame = pl.DataFrame(
            {
                "found": found,
                "asn": rows["asn"].astype(np.uint32),
                "code": codes,
                **{name: (rows["flags"] & bit) != 0 for name, bit in _FLAG_BITS.items()},
            }
        )
        return (
            frame.with_columns(
                asn=pl.when(pl.col("found") & (pl.col("asn") > 0)).then(pl.col("asn")),
                country=pl.when(pl.col("found") & (pl.col("code") != 0)).then(
                    pl.col("code").replace_strict(countries, return_dtype=pl.String)
                ),
                **{name: pl.when(pl.col("found")).then(pl.col(name)) for name in _FLAG_BITS},
                hosting=pl.lit(None, dtype=pl.Boolean),
            )
            .join(self._as_names_of(rows["asn"][found].astype(np.uint32)), on="asn", how="left", maintain_order="left")
            .select("asn", "as_name", "country", *_FLAG_BITS, "hosting")
        )


def _frame_prefix(start: int, length: int) -> str:
    """CIDR text of a network given as a 128-bit start and a prefix length in the IPv6 space."""
    import ipaddress

    if length >= 96 and start >> 32 == 0xFFFF:
        return f"{ipaddress.IPv4Address(start & 0xFFFF_FFFF)}/{length - 96}"
    return f"{ipaddress.IPv6Address(start)}/{length}"
