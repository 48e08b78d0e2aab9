"""The client's address: the peer, or behind trusted proxies the rightmost untrusted X-Forwarded-For hop."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from floodwall.edge.clientaddr import ClientAddress, canonical_address
from floodwall.errors import ConfigError

TRUSTED = ["10.0.0.0/8", "2001:db8:cd::/48"]
CDN = ClientAddress(TRUSTED)


def test_without_trusted_proxies_the_peer_is_the_client_whatever_it_forwards() -> None:
    assert ClientAddress([]).resolve("198.51.100.7", b"1.2.3.4") == "198.51.100.7"


def test_an_untrusted_peer_cannot_claim_another_address() -> None:
    assert CDN.resolve("198.51.100.7", b"1.2.3.4") == "198.51.100.7"


def test_behind_the_cdn_the_rightmost_untrusted_hop_is_the_client() -> None:
    # the client wrote 6.6.6.6 itself; the CDN appended the address it saw and its own inner hop
    assert CDN.resolve("10.0.0.1", b"6.6.6.6, 203.0.113.9, 10.2.3.4") == "203.0.113.9"
    assert CDN.resolve("10.0.0.1", "203.0.113.9") == "203.0.113.9"


def test_forms_proxies_write_are_read_and_normalised() -> None:
    assert CDN.resolve("10.0.0.1", b"[2001:DB8::0:1]:4711") == "2001:db8::1"
    assert CDN.resolve("10.0.0.1", b"203.0.113.9:51234") == "203.0.113.9"
    assert CDN.resolve("10.0.0.1", b"::ffff:203.0.113.9") == "203.0.113.9"
    assert CDN.resolve("::ffff:10.0.0.1", b'"203.0.113.9"') == "203.0.113.9"
    assert CDN.resolve("10.0.0.1", b"203.0.113.9,, 10.0.0.2 ,") == "203.0.113.9"
    assert CDN.resolve("2001:db8:cd::5", b"2001:db8:cafe::7") == "2001:db8:cafe::7"


def test_an_invalid_hop_stops_the_walk_at_the_nearest_named_hop() -> None:
    # "unknown" was written by a trusted proxy about a hop it could not name: what lies left of it is the client's
    assert CDN.resolve("10.0.0.1", b"6.6.6.6, unknown, 10.0.0.9") == "10.0.0.9"
    assert CDN.resolve("10.0.0.1", b"garbage") == "10.0.0.1"
    assert CDN.resolve("10.0.0.1", b"") == "10.0.0.1"
    assert CDN.resolve("10.0.0.1", None) == "10.0.0.1"


def test_a_chain_of_trusted_proxies_only_gives_the_leftmost() -> None:
    assert CDN.resolve("10.0.0.1", b"10.9.9.9, 10.0.0.2") == "10.9.9.9"


def test_a_bad_trusted_proxy_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"edge\.trusted_proxies.*'not-a-cidr'"):
        ClientAddress(["10.0.0.0/8", "not-a-cidr"])


def test_canonical_address() -> None:
    assert canonical_address("::FFFF:192.0.2.1") == "192.0.2.1"
    assert canonical_address("fe80::1%eth0") == "fe80::1"
    assert canonical_address("nonsense") is None


addresses = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str), st.sampled_from(["unknown", "", "x", "_hidden"])
)


def _trusted(text: str) -> bool:
    address = canonical_address(text)
    return address is not None and any(
        ipaddress.ip_address(address) in net for net in map(ipaddress.ip_network, TRUSTED)
    )


@given(peer=st.ip_addresses().map(str), hops=st.lists(addresses, max_size=6))
def test_the_answer_is_the_peer_or_a_hop_with_only_trusted_hops_to_its_right(peer: str, hops: list[str]) -> None:
    result = CDN.resolve(peer, ", ".join(hops).encode())
    ipaddress.ip_address(result)  # always an address
    named = [canonical_address(hop) for hop in hops if hop.strip()]
    if result == canonical_address(peer) and (not _trusted(peer) or not named or named[-1] is None):
        return
    assert _trusted(peer) and result in named
    right = named[len(named) - named[::-1].index(result) :]
    assert all(hop is not None and _trusted(hop) for hop in right)


@given(peer=st.text(max_size=40), forwarded=st.binary(max_size=120))
def test_hostile_forwarded_headers_never_raise(peer: str, forwarded: bytes) -> None:
    assert isinstance(CDN.resolve(peer, forwarded), str)
    assert isinstance(CDN.resolve("10.0.0.1", forwarded), str)
