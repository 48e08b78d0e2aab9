"""A minimal MaxMind DB writer for tests (MaxMind DB File Format Specification 2.0).

Enough of the format to write small IPv6-tree databases of non-nested networks with map, string, unsigned and
boolean data, in any of the three record sizes; the official `maxminddb` reader is the judge that it is right.
"""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path
from typing import Any

_METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"


def _control(type_number: int, size: int) -> bytes:
    if size < 29:
        head, tail = size, b""
    elif size < 285:
        head, tail = 29, bytes([size - 29])
    elif size < 65_821:
        head, tail = 30, (size - 285).to_bytes(2, "big")
    else:
        head, tail = 31, (size - 65_821).to_bytes(3, "big")
    if type_number <= 7:
        return bytes([(type_number << 5) | head]) + tail
    return bytes([head, type_number - 7]) + tail


def _unsigned(type_number: int, value: int) -> bytes:
    payload = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return _control(type_number, len(payload)) + payload


class U16(int):
    """An integer written as uint16, as the metadata's `record_size` and `ip_version` must be."""


class U64(int):
    """An integer written as uint64, as the metadata's `build_epoch` must be."""


def encode(value: Any) -> bytes:
    """One data-section value: dict → map, str → UTF-8 string, bool → boolean, int → uint32/uint64, list → array."""
    if isinstance(value, bool):
        return _control(14, int(value))
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return _control(2, len(raw)) + raw
    if isinstance(value, U16):
        return _unsigned(5, value)
    if isinstance(value, int):
        return _unsigned(9 if isinstance(value, U64) or value >= 2**32 else 6, value)
    if isinstance(value, dict):
        return _control(7, len(value)) + b"".join(encode(str(k)) + encode(v) for k, v in value.items())
    if isinstance(value, list):
        return _control(11, len(value)) + b"".join(encode(item) for item in value)
    raise TypeError(f"cannot encode {value!r}")


def _tree_position(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, int]:
    if network.version == 4:  # IPv4 lives at ::/96 in an IPv6 tree
        return int(network.network_address), network.prefixlen + 96
    return int(network.network_address), network.prefixlen


def write_mmdb(
    path: Path,
    networks: dict[str, dict[str, Any]],
    *,
    record_size: int = 28,
    database_type: str = "Test-ASN",
    build_epoch: int = 1_700_000_000,
) -> None:
    """Writes `networks` (CIDR → record), which must not nest, as an IPv6 MaxMind DB."""
    nodes: list[list[Any]] = [[None, None]]
    for index, cidr in enumerate(networks):
        value, length = _tree_position(ipaddress.ip_network(cidr))
        node = 0
        for depth in range(length):
            bit = (value >> (127 - depth)) & 1
            if depth == length - 1:
                nodes[node][bit] = ("data", index)
            else:
                if nodes[node][bit] is None:
                    nodes.append([None, None])
                    nodes[node][bit] = ("node", len(nodes) - 1)
                kind, target = nodes[node][bit]
                assert kind == "node", f"{cidr} nests inside another network"
                node = target
    data = b""
    offsets = []
    for record in networks.values():
        offsets.append(len(data))
        data += encode(record)
    count = len(nodes)

    def record_value(entry: Any) -> int:
        if entry is None:
            return count
        kind, target = entry
        return int(target) if kind == "node" else count + 16 + offsets[target]

    tree = bytearray()
    for left_entry, right_entry in nodes:
        left, right = record_value(left_entry), record_value(right_entry)
        if record_size == 24:
            tree += left.to_bytes(3, "big") + right.to_bytes(3, "big")
        elif record_size == 28:
            middle = ((left >> 24) << 4) | (right >> 24)
            tree += (left & 0xFFFFFF).to_bytes(3, "big") + bytes([middle]) + (right & 0xFFFFFF).to_bytes(3, "big")
        else:
            tree += struct.pack(">II", left, right)
    metadata = {
        "binary_format_major_version": U16(2),
        "binary_format_minor_version": U16(0),
        "build_epoch": U64(build_epoch),
        "database_type": database_type,
        "description": {"en": f"{database_type} test database"},
        "ip_version": U16(6),
        "languages": ["en"],
        "node_count": count,
        "record_size": U16(record_size),
    }
    path.write_bytes(bytes(tree) + bytes(16) + data + _METADATA_MARKER + encode(metadata))
