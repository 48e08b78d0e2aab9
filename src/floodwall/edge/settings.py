"""The `[edge]` section of the config file and its parts, validated once at load like every other section.

Each part of the edge owns one sub-section: `[edge.cache]`, `[edge.limits]`, `[edge.challenge]`, `[edge.admin]`.
Defaults are safe for a small outlet: nothing here blocks a reader on its own.
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["AdminSettings", "CacheSettings", "ChallengeSettings", "EdgeSettings", "LimitSettings", "LiveSettings"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CacheSettings(_Section):
    """The cache for anonymous GET and HEAD."""

    enabled: bool = True
    #: Most bytes of response bodies held in memory per worker.
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    #: Largest single response body kept.
    max_object_bytes: int = Field(default=8 * 1024 * 1024, ge=0)
    #: Seconds an HTML page without Cache-Control is served from cache (the micro-cache); 0 turns it off.
    html_ttl_s: float = Field(default=5.0, ge=0)
    #: Seconds a stale page is served while one request refreshes it (RFC 5861 stale-while-revalidate).
    stale_while_revalidate_s: float = Field(default=30.0, ge=0)
    #: Seconds a stale page is served when the origin fails or times out (RFC 5861 stale-if-error).
    stale_if_error_s: float = Field(default=86_400.0, ge=0)
    #: Query parameters the site uses; every other parameter is dropped from the cache key (the cure for
    #: cache-busting floods). Empty means: keep every parameter.
    query_keep: list[str] = Field(default_factory=list)
    #: Query parameters dropped from the cache key even when `query_keep` is empty: tracking and cache-busting
    #: parameters the site never reads (`utm_*` drops every name starting with `utm_`). Empty by default.
    query_drop: list[str] = Field(default_factory=list)


class LimitSettings(_Section):
    """Token buckets, concurrency caps and size and time limits."""

    #: Requests per second and burst allowed to one client address.
    client_rps: float = Field(default=20.0, gt=0)
    client_burst: float = Field(default=60.0, ge=1)
    #: Requests per second and burst allowed to one prefix (/24 for IPv4, /48 for IPv6).
    prefix_rps: float = Field(default=200.0, gt=0)
    prefix_burst: float = Field(default=600.0, ge=1)
    #: Most requests in flight to the origin at once, per worker.
    origin_concurrency: int = Field(default=64, ge=1)
    #: Most requests waiting for one of those slots, per worker; more are answered 503 (or stale) at once.
    origin_queue: int = Field(default=1024, ge=0)
    #: Most bytes of request line plus headers, and of a request body.
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=0)
    #: Seconds a client may take to send its headers, and its body (slowloris and slow POST are closed).
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=30.0, gt=0)
    #: Seconds an idle keep-alive connection stays open.
    keepalive_timeout_s: float = Field(default=30.0, gt=0)
    #: Seconds to wait for the origin's answer.
    origin_timeout_s: float = Field(default=30.0, gt=0)
    #: Under attack every rate above is multiplied by this factor (and unknown clients are challenged).
    under_attack_factor: float = Field(default=0.25, gt=0, le=1)
    #: While a worker is behind, requests from addresses first seen less than `known_after_s` ago wait
    #: `new_client_wait_s` so that known readers go first (`floodwall.edge.priority`); 0 turns this off.
    new_client_wait_s: float = Field(default=0.2, ge=0, le=5)
    known_after_s: float = Field(default=30.0, ge=0)


class ChallengeSettings(_Section):
    """The proof-of-work challenge and its signed cookie."""

    #: Leading zero bits the browser must find (about 2**difficulty hashes); 16 takes well under a second.
    difficulty_bits: int = Field(default=16, ge=0, le=28)
    #: Leading zero bits asked while the edge is "under attack" (each bit doubles the work: 18 is four times 16).
    under_attack_difficulty_bits: int = Field(default=18, ge=0, le=28)
    #: Seconds a solved challenge's cookie stays valid.
    cookie_ttl_s: int = Field(default=3600, ge=60)
    cookie_name: str = "floodwall_pass"
    #: Mark the cookie `Secure` (sent over HTTPS only): set it when readers reach the site over HTTPS, as they
    #: should; the edge behind a TLS-terminating proxy cannot tell on its own.
    cookie_secure: bool = False
    #: File holding the secret that signs cookies (created with 32 random bytes when missing); without it, a random
    #: secret per start, which logs every reader out on restart.
    secret_file: str | None = None
    #: Seconds a challenge page's puzzle stays solvable (it is signed and carries its expiry: no server state).
    puzzle_ttl_s: int = Field(default=300, ge=10)
    #: Without JavaScript, the reader waits this many seconds on the page instead of solving the puzzle.
    noscript_wait_s: float = Field(default=5.0, ge=0, le=60)
    #: Offer the no-JavaScript way at all (a bot that reads HTML can wait too; turn off during a determined attack).
    noscript: bool = True


class AdminSettings(_Section):
    """The admin listener: health, metrics, decisions."""

    listen: str = "127.0.0.1:9180"
    #: File holding the bearer token required off loopback; the admin listener refuses to start off loopback without.
    token_file: str | None = None


class LiveSettings(_Section):
    """Live detection at the edge: per-worker recording, batches to the one detector, decisions to the store."""

    enabled: bool = True
    #: Most requests one worker records per second for the detector; beyond it rows are dropped and counted (a
    #: sample of a flood is still a flood, and the memory a flood can take stays bounded).
    max_rows_per_s: int = Field(default=50_000, ge=100)
    #: Most one-second batches waiting for the detector, all workers together; beyond it the oldest are dropped
    #: and counted (the detector is behind: a flood bigger than it can judge each second).
    queue_batches: int = Field(default=64, ge=1)
    #: Seconds of the newest rows held back a step, so a worker's late batch is still fed in time order.
    hold_back_s: float = Field(default=1.0, ge=0, le=10)


class EdgeSettings(_Section):
    """`floodwall edge`: the reverse proxy. `--origin`, `--listen` and `--admin` override the keys here."""

    origin: str | None = None
    listen: str = "127.0.0.1:8080"
    #: Worker processes sharing the listening port (SO_REUSEPORT); 0 means one per core.
    workers: int = Field(default=0, ge=0, le=256)
    #: Proxies (a CDN's ranges, a load balancer) whose X-Forwarded-For is believed.
    trusted_proxies: list[str] = Field(default_factory=list)
    #: Where decisions live: memory://, sqlite:///path (the default beside the access log), redis://host.
    store: str | None = None
    #: The edge's own access log (nginx combined plus extras, which `floodwall analyze` reads).
    access_log: str | None = None
    #: Start in "under attack" mode (tighter limits, unknown clients challenged); also switchable at the admin API.
    under_attack: bool = False
    #: Where bans also go so the kernel drops the packets (`floodwall.edge.kernel`): `nftables:FAMILY/TABLE/SET`.
    enforce: list[str] = Field(default_factory=list)
    #: When set, only bans inside these networks go to `enforce` (e.g. a benchmark's flood sources).
    enforce_networks: list[str] = Field(default_factory=list)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    challenge: ChallengeSettings = Field(default_factory=ChallengeSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)

    @field_validator("enforce")
    @classmethod
    def _kernel_targets(cls, targets: list[str]) -> list[str]:
        for target in targets:
            kind, _, spec = target.partition(":")
            if kind != "nftables" or spec.count("/") != 2:
                raise ValueError(f"{target!r}: the edge enforces in the kernel only, as nftables:FAMILY/TABLE/SET")
        return targets

    @field_validator("enforce_networks")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{value!r}: not an address or CIDR") from None
        return values
