"""KernelDrop: the edge's bans copied into nftables sets (inside a network namespace the test creates), never the
networks the per-request parts must judge, lifted when the ban goes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from floodwall.config import Settings
from floodwall.edge.kernel import KernelDrop, kernel_drop
from floodwall.enforce import NftablesEnforcer
from floodwall.model import Action
from floodwall.store.cache import DecisionCache
from floodwall.testing import make_decision
from netns import namespace_nft


@pytest.fixture
def nft() -> Iterator[tuple[str, ...]]:
    with namespace_nft() as command:
        yield command


def _held(nft: tuple[str, ...]) -> set[str]:
    """Every element of the test table's sets."""
    done = subprocess.run([*nft, "-j", "list", "table", "inet", "fwedge"], capture_output=True, check=True)
    found: set[str] = set()
    for item in json.loads(done.stdout)["nftables"]:
        for element in item.get("set", {}).get("elem", []):
            value = element["elem"]["val"]
            if isinstance(value, dict):
                value = f"{value['prefix']['addr']}/{value['prefix']['len']}"
            found.add(value)
    return found


def test_bans_reach_the_kernel_and_leave_it_with_the_decision(nft: tuple[str, ...]) -> None:
    cache = DecisionCache()
    now = datetime.now(UTC)
    cache.apply(
        [
            make_decision("203.0.113.7", now, ttl_s=600),
            make_decision("198.51.100.0/24", now, ttl_s=600),
            make_decision("203.0.113.9", now, ttl_s=600, action=Action.CHALLENGE),  # the kernel cannot challenge
        ]
    )
    drop = KernelDrop(cache, [NftablesEnforcer("inet/fwedge/banned", nft_command=nft)])
    drop.sync_once()
    assert _held(nft) == {"203.0.113.7", "198.51.100.0/24"}
    drop.sync_once()  # nothing new: nothing sent
    cache.revoke(["203.0.113.7"])
    drop.sync_once()
    assert _held(nft) == {"198.51.100.0/24"}
    assert drop.handed == 1


def test_spared_networks_and_targets_outside_enforce_networks_stay_out(nft: tuple[str, ...]) -> None:
    settings = Settings.model_validate(
        {
            "site": {"own_networks": ["10.0.0.0/8"]},
            "edge": {
                "trusted_proxies": ["192.0.2.0/24"],
                "enforce": ["nftables:inet/fwedge/banned"],
                "enforce_networks": ["203.0.113.0/24", "66.0.0.0/8", "10.0.0.0/8", "192.0.2.0/24"],
            },
        }
    )
    cache = DecisionCache()
    now = datetime.now(UTC)
    targets = ["203.0.113.7", "10.1.2.3", "66.249.64.0/19", "66.249.66.1", "192.0.2.50", "198.51.100.7"]
    cache.apply([make_decision(target, now, ttl_s=600) for target in targets])
    drop = kernel_drop(settings, cache)
    drop.enforcers = [NftablesEnforcer("inet/fwedge/banned", nft_command=nft)]
    drop.sync_once()
    # Own network, Googlebot's range, a trusted proxy: left to the parts; 198.51.100.7: outside enforce_networks.
    assert _held(nft) == {"203.0.113.7"}


def test_settings_refuse_anything_but_nftables() -> None:
    with pytest.raises(ValueError, match="nftables:FAMILY/TABLE/SET"):
        Settings.model_validate({"edge": {"enforce": ["nginx-map:/etc/nginx/banned.conf"]}})
