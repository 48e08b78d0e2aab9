"""The client's address: the peer of the connection, or, behind trusted proxies, the address they forwarded.

An outlet behind a CDN or a load balancer sees the proxy as the peer; the reader's address is in the
`X-Forwarded-For` list, which every hop extends on the right. Only the part written by proxies we trust can be
believed: the client writes whatever it likes on the left. So the list is walked from the right, skipping trusted
proxies, and the first address that is not one is the client (the "rightmost untrusted" rule; RFC 7239 section 5.2
describes the same chain for `Forwarded: for=`).

A value that is not an address (`unknown`, an RFC 7239 obfuscated identifier, garbage) is never taken as the
client. Walking from the right, such a value was written by a proxy we trust about a hop we cannot name, so we stop
there and keep the nearest hop we could name: trusting what lies further left would hand the choice to the client.

Addresses come out in one canonical text form (compressed IPv6, IPv4-mapped IPv6 as IPv4, no port, no zone), the
same form the limits, the ban list and the access log use.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from floodwall.errors import ConfigError

__all__ = ["ClientAddress", "canonical_address"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=65_536)
def _parse(text: str) -> Address | None:
    """An address from one hop as proxies write it: bare, `[v6]:port`, `v4:port`, quoted; None when it is none."""
    text = text.strip().strip('"')
    if not text:
        return None
    if text.startswith("["):  # [2001:db8::1]:8080 (RFC 7239 and most proxies)
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # 192.0.2.1:8080
        text = text.partition(":")[0]
    text = text.partition("%")[0]  # a zone (fe80::1%eth0) says nothing about the client
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=65_536)
def canonical_address(text: str) -> str | None:
    """`text` as one address in canonical form (`::ffff:192.0.2.1` -> `192.0.2.1`), or None when it is not one."""
    address = _parse(text)
    return None if address is None else str(address)


class ClientAddress:
    """Resolves the client's address from the peer and `X-Forwarded-For`, believing only `trusted_proxies`."""

    def __init__(self, trusted_proxies: list[str]) -> None:
        networks: list[Network] = []
        for value in trusted_proxies:
            try:
                networks.append(ipaddress.ip_network(value.strip(), strict=False))
            except ValueError:
                raise ConfigError(f"key 'edge.trusted_proxies' = {value!r}: not an address or CIDR") from None
        self._networks: tuple[Network, ...] = tuple(networks)
        self._verdicts: dict[Address, bool] = {}  # remembered: a CDN's few edge addresses come back all the time
        self._resolved: dict[tuple[str, bytes | str], str] = {}  # (peer, header) -> client: a reader's next request

    @property
    def trusts_proxies(self) -> bool:
        return bool(self._networks)

    def trusts_peer(self, peer: str) -> bool:
        """Whether the connection's peer is one of the trusted proxies (whose forwarded headers are believed)."""
        if not self._networks:
            return False
        address = _parse(peer)
        return address is not None and self._trusted(address)

    def _trusted(self, address: Address) -> bool:
        verdict = self._verdicts.get(address)
        if verdict is None:
            if len(self._verdicts) >= 65_536:
                self._verdicts.clear()
            verdict = self._verdicts[address] = any(address in network for network in self._networks)
        return verdict

    def resolve(self, peer: str, x_forwarded_for: bytes | str | None) -> str:
        """The client's canonical address. `x_forwarded_for` is the header's value (several headers joined by
        commas, as RFC 9110 section 5.3 allows); it is read only when the peer is a trusted proxy."""
        if not self._networks or not x_forwarded_for:
            return canonical_address(peer) or peer  # not an address (a Unix socket): nothing better to say
        remembered = self._resolved.get((peer, x_forwarded_for))
        if remembered is not None:
            return remembered
        result = self._resolve(peer, x_forwarded_for)
        if len(self._resolved) >= 65_536:
            self._resolved.clear()
        self._resolved[(peer, x_forwarded_for)] = result
        return result

    def _resolve(self, peer: str, x_forwarded_for: bytes | str) -> str:
        peer_address = _parse(peer)
        if peer_address is None:
            return peer
        if not self._trusted(peer_address):
            return canonical_address(peer) or peer
        text = x_forwarded_for.decode("latin-1") if isinstance(x_forwarded_for, bytes) else x_forwarded_for
        nearest = peer_address
        for hop in reversed(text.split(",")):
            if not hop.strip():
                continue  # an empty list element (RFC 9110 section 5.6.1 lets senders write them)
            address = _parse(hop.strip())
            if address is None:
                break
            nearest = address
            if not self._trusted(address):
                break
        return str(nearest)
