"""Settings: one TOML file, validated once at load into typed objects.

Unknown keys and bad values are errors that name the file, the key and the value, all reported together. No other
module reads the environment or globals for settings: the CLI loads a `Settings` and passes it down.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from floodwall.edge.settings import EdgeSettings
from floodwall.errors import ConfigError, InputError

__all__ = [
    "DetectSettings",
    "LogSettings",
    "Settings",
    "SiteSettings",
    "WatchSettings",
    "load_settings",
    "read_toml",
]

LogFormatName = Literal["auto", "combined", "common", "vhost_combined", "json"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogSettings(_Section):
    """How access logs are read."""

    format: LogFormatName = "auto"
    #: Time zone of timestamps that carry none (JSON logs with naive times); an IANA name such as "Europe/Budapest".
    tz: str | None = None
    #: Extra JSON field names, Request-frame column -> the log's field name (`{"client" = "remote_ip"}`).
    json_fields: dict[str, str] = Field(default_factory=dict)
    #: Rows per batch handed to detection; bounds memory whatever the size of the log.
    batch_rows: int = Field(default=200_000, ge=1_000, le=20_000_000)


class SiteSettings(_Section):
    """The outlet being protected."""

    name: str | None = None
    timezone: str = "UTC"
    contact: str = "If you are a reader and see this page by mistake, please contact the newsroom."
    #: The outlet's own networks (CIDRs): never challenged or banned.
    own_networks: list[str] = Field(default_factory=list)


class DetectSettings(_Section):
    """Thresholds of the four layers. Defaults were tuned on simulated seeds 1-3 and hold on unseen seeds."""

    # --- windows -------------------------------------------------------------------------------------------------
    #: Seconds per client window (the "request set" of one client over a window, in Baskerville's words).
    window_s: int = Field(default=10, ge=1, le=600)

    # --- site level: rate against the baseline -------------------------------------------------------------------
    #: A minute is anomalous when its rate exceeds both `surge_ratio` x the baseline and baseline + `surge_mads` MADs.
    surge_ratio: float = Field(default=2.0, gt=1.0)
    surge_mads: float = Field(default=6.0, gt=0)
    #: Below this many requests per second nothing is a flood, whatever the ratio (a quiet site at night).
    min_flood_rps: float = Field(default=0.5, ge=0)
    #: Anomalous stretches closer than this are one incident (a test flood, a pause, the waves).
    merge_gap_s: int = Field(default=3600, ge=0)
    #: Stretches shorter than this are ignored (a burst of a few seconds is not an incident).
    min_surge_s: int = Field(default=20, ge=1)
    #: Trailing minutes of the rolling baseline, used while the log holds under `seasonal_days` of history.
    rolling_minutes: int = Field(default=180, ge=5)
    #: Days of history needed for a baseline by hour of day (and 14 for hour of week).
    seasonal_days: int = Field(default=3, ge=2)

    # --- client level --------------------------------------------------------------------------------------------
    #: Score (0..1) from which a client is an attacker; the policy challenges from 0.6 and bans from 0.85.
    attacker_score: float = Field(default=0.6, gt=0, le=1)
    #: An isolation forest is trained only with at least this many quiet client summaries; else rules alone.
    forest_min_quiet: int = Field(default=200, ge=10)
    forest_trees: int = Field(default=100, ge=10, le=1000)
    #: During a surge, a user agent or query scheme is *unknown* when its share of the surge's requests is
    #: `novelty_lift` times its share of quiet requests or more (quiet shares below `known_share` count as that).
    novelty_lift: float = Field(default=20.0, gt=1)
    known_share: float = Field(default=1e-4, gt=0, lt=1)
    #: A client is new when first seen at most this many seconds before the onset (or later).
    new_client_s: int = Field(default=300, ge=0)

    # --- fleet level ---------------------------------------------------------------------------------------------
    #: Fewest clients sharing a request shape that can make a fleet.
    min_fleet: int = Field(default=5, ge=2)
    #: A shape is over-represented when its share during the incident is this many times its quiet share.
    fleet_lift: float = Field(default=8.0, gt=1)

    # --- streaming -----------------------------------------------------------------------------------------------
    #: Seconds of raw rows kept for live judgement of the clients of a running surge.
    live_horizon_s: int = Field(default=60, ge=5, le=600)
    #: Consecutive seconds above the live threshold before a surge is declared.
    live_confirm_s: int = Field(default=3, ge=1, le=30)
    #: A single second above its own threshold (twice the baseline and `surge_mads` deviations of one second) is
    #: enough when it holds this many requests above the baseline: a flood of thousands a second needs no three
    #: seconds to be told from noise, while a small site's page view and its assets never reach it.
    live_confirm_requests: int = Field(default=1000, ge=1)

    # --- breach attempts -----------------------------------------------------------------------------------------
    #: Run the CRS signatures (needs hyperscan and the rules); off, breach incidents are not reported.
    signatures: bool = True
    #: Folder for the compiled CRS database (compiling takes seconds, loading milliseconds). Unset: the CLI uses
    #: `$XDG_CACHE_HOME/floodwall`, else `~/.cache/floodwall` (the XDG base directory specification).
    signatures_cache: str | None = None
    #: Hits of one client closer than this belong to one breach incident.
    breach_gap_s: int = Field(default=1800, ge=1)
    #: Fewest POSTs to a login form (or xmlrpc.php) by one client that make a brute force.
    bruteforce_min: int = Field(default=6, ge=2)


class WatchSettings(_Section):
    """`floodwall watch` (sidecar mode); its command-line options override the keys here."""

    #: Where decisions live: sqlite:///PATH, redis://HOST, memory://; unset, sqlite in `--state-dir`.
    store: str | None = None
    #: Where decisions take effect: nginx-map:PATH and nftables:FAMILY/TABLE/SET targets (`--enforce` replaces them).
    enforce: list[str] = Field(default_factory=list)
    #: Fewest seconds between two nginx reloads of the nginx-map include (changes in between are coalesced).
    reload_min_interval_s: float = Field(default=5.0, ge=0, le=3600)
    #: Serve the nginx `auth_request` decision endpoint (bans, challenges and the challenge page, from memory).
    decision_endpoint: bool = False
    #: Where it listens: loopback only, beside nginx (it believes the client address nginx sends it).
    decision_endpoint_listen: str = "127.0.0.1:9181"

    @field_validator("enforce")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        for target in value:
            kind, _, rest = target.partition(":")
            if kind not in ("nginx-map", "nftables") or not rest:
                raise ValueError(f"{target!r}: expected nginx-map:PATH or nftables:FAMILY/TABLE/SET")
        return value

    @field_validator("decision_endpoint_listen")
    @classmethod
    def _loopback(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not sep or not port.isdigit() or int(port) > 65535 or not loopback:
            raise ValueError("expected a loopback HOST:PORT such as 127.0.0.1:9181 or [::1]:9181")
        return value


class Settings(_Section):
    """Everything Floodwall can be told in its one config file."""

    logs: LogSettings = Field(default_factory=LogSettings)
    site: SiteSettings = Field(default_factory=SiteSettings)
    detect: DetectSettings = Field(default_factory=DetectSettings)
    edge: EdgeSettings = Field(default_factory=EdgeSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)


def _describe(error: dict[str, object]) -> str:
    key = ".".join(str(part) for part in error.get("loc", ()))  # type: ignore[attr-defined]
    if error.get("type") == "extra_forbidden":
        return f"unknown key '{key}'"
    return f"key '{key}' = {error.get('input')!r}: {error.get('msg')}"


def settings_from_mapping(data: dict[str, object], origin: str = "config") -> Settings:
    """Validate a mapping (already parsed TOML); every problem is reported in one `ConfigError`."""
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(dict(err)) for err in exc.errors())
        raise ConfigError(f"{origin}: {problems}") from None


def read_toml(path: Path, error: type[InputError], what: str) -> dict[str, object]:
    """Parse a TOML file; a missing, unreadable or malformed file raises `error` naming the file (and line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise error(f"{path}: the {what} is not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: {exc}") from None


def load_settings(path: Path | None) -> Settings:
    """Read and validate the TOML file at `path`; without a path, the safe defaults."""
    if path is None:
        return Settings()
    return settings_from_mapping(read_toml(path, ConfigError, "config file"), origin=str(path))
