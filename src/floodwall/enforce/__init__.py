"""Where decisions take effect outside the edge, chosen by a target string (like the store's URL):

    nginx-map:/etc/nginx/floodwall/banned.conf      an nginx `geo` include, checked with `nginx -t`, reloaded at
                                                    most once per 5 s (`NginxMapEnforcer`)
    nftables:inet/floodwall/banned                  nftables sets with per-element timeouts (`NftablesEnforcer`)

Both implement `floodwall.types.Enforcer`: `apply(decisions)` and `revoke(targets)`, batched (one reload, one
`nft -f -` transaction), raising `floodwall.errors.ServiceError` with the tool's own words when it refuses.
"""

from __future__ import annotations

from collections.abc import Sequence

from floodwall.enforce.nftables import NftablesEnforcer
from floodwall.enforce.nginx import DEFAULT_RELOAD, DEFAULT_TEST, NginxMapEnforcer
from floodwall.errors import ConfigError
from floodwall.types import Clock, Enforcer

__all__ = ["NftablesEnforcer", "NginxMapEnforcer", "close_enforcer", "enforcer_from_target"]

KINDS = ("nginx-map", "nftables")


def enforcer_from_target(
    target: str,
    *,
    reload_command: Sequence[str] | None = DEFAULT_RELOAD,
    test_command: Sequence[str] | None = DEFAULT_TEST,
    min_interval_s: float = 5.0,
    nft_command: Sequence[str] = ("nft",),
    clock: Clock | None = None,
) -> Enforcer:
    """The enforcer `target` names; `ConfigError` naming the target when it names none."""
    kind, _, rest = target.partition(":")
    if kind == "nginx-map" and rest:
        return NginxMapEnforcer(rest, reload_command, min_interval_s, test_command, clock=clock)
    if kind == "nftables" and rest:
        return NftablesEnforcer(rest, nft_command=nft_command, clock=clock)
    raise ConfigError(
        f"enforce target {target!r}: expected nginx-map:PATH or nftables:FAMILY/TABLE/SET (one of {', '.join(KINDS)})"
    )


def close_enforcer(enforcer: Enforcer) -> None:
    """Let an enforcer finish pending work (the nginx map's coalesced write), if it has any."""
    close = getattr(enforcer, "close", None)
    if callable(close):
        close()
