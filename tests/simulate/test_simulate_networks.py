"""Address pools: every address is canonical text, inside the network it was drawn from, and distinct."""

from __future__ import annotations

import ipaddress

import numpy as np

from floodwall.simulate.networks import NETWORKS, draw_addresses, networks_for


def test_addresses_are_canonical_distinct_and_inside_their_network() -> None:
    networks = list(NETWORKS)
    addresses, origin = draw_addresses(networks, 4000, np.random.default_rng(1), ipv6_share=0.4)
    assert len(addresses) == len(set(addresses)) == 4000
    for address, index in zip(addresses, origin, strict=True):
        parsed = ipaddress.ip_address(address)
        assert str(parsed) == address
        assert parsed in ipaddress.ip_network(networks[index].cidr)
        assert parsed.is_global
    assert 0.3 < sum(":" in a for a in addresses) / len(addresses) < 0.5


def test_excluded_addresses_never_come_back() -> None:
    hu = networks_for(["HU"], ("residential", "mobile"))
    first, _ = draw_addresses(hu, 500, np.random.default_rng(2))
    second, _ = draw_addresses(hu, 500, np.random.default_rng(2), exclude=set(first))
    assert not set(first) & set(second)
