"""NftablesEnforcer inside a network namespace the test creates: elements added with timeouts, replaced, revoked,
expired by the kernel; table, sets and chain created once."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from floodwall.enforce import NftablesEnforcer, enforcer_from_target
from floodwall.errors import ServiceError
from floodwall.model import Action, Decision
from floodwall.testing import make_decision
from netns import namespace_nft


def ban(target: str, ttl_s: float = 3600, action: Action = Action.BAN) -> Decision:
    return make_decision(target, datetime.now(UTC), ttl_s=ttl_s, action=action)


@pytest.fixture
def nft() -> Iterator[tuple[str, ...]]:
    with namespace_nft() as command:
        yield command


def elements(nft: tuple[str, ...], name: str) -> dict[str, int]:
    """Element -> timeout in seconds, from `nft -j list set inet floodwall NAME`."""
    done = subprocess.run([*nft, "-j", "list", "set", "inet", "floodwall", name], capture_output=True, check=True)
    found: dict[str, int] = {}
    for item in json.loads(done.stdout)["nftables"]:
        for element in item.get("set", {}).get("elem", []):
            value = element["elem"]["val"]
            if isinstance(value, dict):
                value = f"{value['prefix']['addr']}/{value['prefix']['len']}"
            found[value] = element["elem"]["timeout"]
    return found


def test_add_replace_and_revoke(nft: tuple[str, ...]) -> None:
    enforcer = NftablesEnforcer("inet/floodwall/banned", nft_command=nft)
    enforcer.apply([ban("203.0.113.7"), ban("203.0.113.0/24", 600), ban("2001:db8::1", 120), ban("2001:db8:1::/48")])
    assert elements(nft, "banned") == {"203.0.113.7": 3600}
    assert elements(nft, "banned_net") == {"203.0.113.0/24": 600}
    assert elements(nft, "banned6") == {"2001:db8::1": 120}
    assert elements(nft, "banned6_net") == {"2001:db8:1::/48": 3600}
    enforcer.apply([ban("203.0.113.7", 60)])  # a new decision replaces the timeout
    assert elements(nft, "banned") == {"203.0.113.7": 60}
    enforcer.apply([ban("2001:db8::1", action=Action.CHALLENGE)])  # not a ban any more: withdrawn
    assert elements(nft, "banned6") == {}
    enforcer.revoke(["203.0.113.7", "198.51.100.1"])  # one absent: no error
    assert elements(nft, "banned") == {}
    listing = subprocess.run(
        [*nft, "list", "chain", "inet", "floodwall", "banned_input"], capture_output=True, check=True
    )
    assert listing.stdout.decode().count("drop") == 4


def test_a_second_enforcer_on_the_same_table_keeps_one_set_of_rules(nft: tuple[str, ...]) -> None:
    enforcer_from_target("nftables:inet/floodwall/banned", nft_command=nft).apply([ban("203.0.113.7")])
    NftablesEnforcer("inet/floodwall/banned", nft_command=nft).apply([ban("203.0.113.8")])
    assert set(elements(nft, "banned")) == {"203.0.113.7", "203.0.113.8"}
    listing = subprocess.run(
        [*nft, "list", "chain", "inet", "floodwall", "banned_input"], capture_output=True, check=True
    )
    assert listing.stdout.decode().count("drop") == 4


def test_the_kernel_expires_elements(nft: tuple[str, ...]) -> None:
    enforcer = NftablesEnforcer("inet/floodwall/banned", nft_command=nft)
    enforcer.apply([ban("203.0.113.7", 1), ban("203.0.113.8")])
    time.sleep(1.6)
    assert set(elements(nft, "banned")) == {"203.0.113.8"}


def test_many_addresses_in_one_transaction(nft: tuple[str, ...]) -> None:
    enforcer = NftablesEnforcer("inet/floodwall/banned", nft_command=nft)
    enforcer.apply([ban(f"10.{k // 65536}.{k // 256 % 256}.{k % 256}") for k in range(5000)])
    assert len(elements(nft, "banned")) == 5000
    assert enforcer.updates == 1


def test_nft_errors_say_what_nft_said(nft: tuple[str, ...]) -> None:
    enforcer = NftablesEnforcer("inet/floodwall/banned", nft_command=(*nft[:-1], "false"))
    with pytest.raises(ServiceError, match="failed"):
        enforcer.apply([ban("203.0.113.7")])


def test_a_restart_replaces_what_the_kernel_kept_and_later_bans_are_added(nft: tuple[str, ...]) -> None:
    before = NftablesEnforcer("inet/floodwall/banned", nft_command=nft)
    before.apply([ban("203.0.113.7", 3600)])
    after = NftablesEnforcer("inet/floodwall/banned", nft_command=nft)  # a restarted watcher restores its decision
    after.apply([ban("203.0.113.7", 600)])  # shortened by an operator while the watcher was down
    assert elements(nft, "banned") == {"203.0.113.7": 600}
    after.apply([ban("203.0.113.8", 300)])  # a new address: one add
    after.apply([ban("203.0.113.7", 60)])  # one it added before: replaced
    assert elements(nft, "banned") == {"203.0.113.7": 60, "203.0.113.8": 300}
    after.revoke(["203.0.113.8"])
    after.apply([ban("203.0.113.8", 120)])  # withdrawn, then banned again
    assert elements(nft, "banned") == {"203.0.113.7": 60, "203.0.113.8": 120}
