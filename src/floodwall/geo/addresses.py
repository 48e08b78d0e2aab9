"""Addresses as numbers: text to 128-bit integers (two uint64 halves), special-purpose ranges, prefixes to text.

IPv4 addresses are held as IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``, RFC 4291 section 2.5.5.2), the way
libloc stores them in its tree; a mapped address written as IPv6 text is therefore treated as the IPv4 client it is.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

__all__ = [
    "V4_MAPPED_HI",
    "V4_MAPPED_LO",
    "ParsedAddresses",
    "format_prefixes",
    "is_reserved",
    "network_halves",
    "parse_addresses",
    "reserved_mask",
]

U64 = npt.NDArray[np.uint64]
BOOL = npt.NDArray[np.bool_]

#: ``::ffff:0:0/96``: the high and low halves of an IPv4-mapped address before the IPv4 part is added.
V4_MAPPED_HI = 0
V4_MAPPED_LO = 0xFFFF_0000_0000

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}$"

# Special-purpose ranges (IANA IPv4 and IPv6 Special-Purpose Address Registries, RFC 6890 and its updates) that no
# public network holds; a database may still file some of them under the block around them (libloc puts
# 2001:db8::/32 inside APNIC's 2001:c00::/23), so they are answered here, before the database is asked.
_RESERVED = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/127",
    "64:ff9b:1::/48",
    "100::/64",
    "2001:db8::/32",
    "3fff::/20",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)


@dataclass(frozen=True)
class ParsedAddresses:
    """Addresses as numbers; `valid` is false where the text was not an address (its halves are then zero)."""

    hi: U64
    lo: U64
    valid: BOOL

    @property
    def is_v4(self) -> BOOL:
        mapped: BOOL = self.valid & (self.hi == V4_MAPPED_HI) & ((self.lo >> np.uint64(32)) == np.uint64(0xFFFF))
        return mapped


def _v6_halves(texts: list[str]) -> tuple[U64, U64, BOOL]:
    packed = bytearray()
    valid = np.ones(len(texts), dtype=np.bool_)
    zero = bytes(16)
    for position, text in enumerate(texts):
        try:
            packed += socket.inet_pton(socket.AF_INET6, text)
        except (OSError, ValueError):
            packed += zero
            valid[position] = False
    halves = np.frombuffer(bytes(packed), dtype=">u8").astype(np.uint64).reshape(-1, 2)
    return halves[:, 0].copy(), halves[:, 1].copy(), valid


def parse_addresses(texts: pl.Series) -> ParsedAddresses:
    """Parses address text, IPv4 in bulk with Polars, IPv6 one by one through the C library's `inet_pton`."""
    frame = pl.DataFrame({"text": texts.cast(pl.String)}).with_columns(
        v4=pl.col("text").str.contains(_IPV4).fill_null(False),
        v6=pl.col("text").str.contains(":").fill_null(False),
    )
    size = frame.height
    hi = np.zeros(size, dtype=np.uint64)
    lo = np.zeros(size, dtype=np.uint64)
    valid = np.zeros(size, dtype=np.bool_)

    v4 = frame["v4"].to_numpy()
    if v4.any():
        octets = (
            frame.filter(pl.col("v4"))
            .select(pl.col("text").str.split_exact(".", 3).struct.unnest())
            .select(pl.all().cast(pl.UInt64))
            .to_numpy()
        )
        value = (octets[:, 0] << 24) | (octets[:, 1] << 16) | (octets[:, 2] << 8) | octets[:, 3]
        hi[v4] = V4_MAPPED_HI
        lo[v4] = np.uint64(V4_MAPPED_LO) | value.astype(np.uint64)
        valid[v4] = True

    v6 = frame["v6"].to_numpy() & ~v4
    if v6.any():
        v6_hi, v6_lo, v6_valid = _v6_halves(frame.filter(pl.Series(v6))["text"].to_list())
        hi[v6], lo[v6], valid[v6] = v6_hi, v6_lo, v6_valid
    return ParsedAddresses(hi=hi, lo=lo, valid=valid)


def network_halves(cidr: str) -> tuple[int, int, int]:
    """A CIDR as (high half, low half, prefix length) in the IPv6 space; IPv4 networks are mapped."""
    text, _, length_text = cidr.partition("/")
    if ":" in text:
        packed, length = socket.inet_pton(socket.AF_INET6, text), int(length_text)
    else:
        packed = bytes(10) + b"\xff\xff" + socket.inet_pton(socket.AF_INET, text)
        length = int(length_text) + 96
    high, low = struct.unpack(">QQ", packed)
    return high, low, length


def _mask_halves(length: int) -> tuple[int, int]:
    full = (1 << 128) - 1
    mask = (full << (128 - length)) & full
    return mask >> 64, mask & 0xFFFF_FFFF_FFFF_FFFF


_RESERVED_HALVES = [(*network_halves(cidr)[:2], *_mask_halves(network_halves(cidr)[2])) for cidr in _RESERVED]


def is_reserved(address: str) -> bool:
    """True when one address (text) lies in a special-purpose range; the scalar twin of `reserved_mask`."""
    high, low, _ = network_halves(address + ("/128" if ":" in address else "/32"))
    return any(
        (high & mask_hi) == net_hi and (low & mask_lo) == net_lo
        for net_hi, net_lo, mask_hi, mask_lo in _RESERVED_HALVES
    )


def reserved_mask(addresses: ParsedAddresses) -> BOOL:
    """True where a valid address lies in a special-purpose range."""
    found = np.zeros(addresses.hi.shape, dtype=np.bool_)
    for net_hi, net_lo, mask_hi, mask_lo in _RESERVED_HALVES:
        found |= ((addresses.hi & np.uint64(mask_hi)) == np.uint64(net_hi)) & (
            (addresses.lo & np.uint64(mask_lo)) == np.uint64(net_lo)
        )
    return found & addresses.valid


def format_prefixes(hi: U64, lo: U64, length: npt.NDArray[np.int16]) -> pl.Series:
    """CIDR text of the network of `length` bits around each address (IPv6 space); null where `length` < 0.

    IPv4-mapped networks of at least 96 bits are written as IPv4 (`8.8.8.0/24`); IPv4 text is built in bulk, IPv6
    text once per distinct network through `inet_ntop`.
    """
    size = hi.shape[0]
    found = length >= 0
    bits = np.where(found, length, 0).astype(np.uint64)
    shift_hi = np.minimum(bits, 64)
    shift_lo = np.maximum(bits.astype(np.int64) - 64, 0).astype(np.uint64)
    ones = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
    # A shift by 64 is undefined in C and NumPy, so full and empty masks are chosen explicitly.
    mask_hi = np.where(shift_hi == 0, np.uint64(0), ones << (np.uint64(64) - np.maximum(shift_hi, 1)))
    mask_lo = np.where(shift_lo == 0, np.uint64(0), ones << (np.uint64(64) - np.maximum(shift_lo, 1)))
    net_hi, net_lo = hi & mask_hi, lo & mask_lo
    v4 = found & (bits >= 96) & (net_hi == 0) & ((net_lo >> np.uint64(32)) == np.uint64(0xFFFF))

    text = np.full(size, None, dtype=object)
    if v4.any():
        value = (net_lo[v4] & np.uint64(0xFFFF_FFFF)).astype(np.int64)
        text[v4] = (
            pl.DataFrame({"v": value, "n": bits[v4].astype(np.int64) - 96})
            .select(
                pl.concat_str(
                    [
                        (pl.col("v") // 16_777_216).cast(pl.String),
                        (pl.col("v") // 65_536 % 256).cast(pl.String),
                        (pl.col("v") // 256 % 256).cast(pl.String),
                        (pl.col("v") % 256).cast(pl.String),
                    ],
                    separator=".",
                )
                + "/"
                + pl.col("n").cast(pl.String)
            )
            .to_series()
            .to_numpy()
        )
    v6 = found & ~v4
    if v6.any():
        keys = np.stack([net_hi[v6], net_lo[v6], bits[v6]], axis=1)
        distinct, inverse = np.unique(keys, axis=0, return_inverse=True)
        names = np.array(
            [
                f"{socket.inet_ntop(socket.AF_INET6, struct.pack('>QQ', int(h), int(low)))}/{int(n)}"
                for h, low, n in distinct
            ],
            dtype=object,
        )
        text[v6] = names[inverse.reshape(-1)]
    return pl.Series("prefix", text.tolist(), dtype=pl.String)
