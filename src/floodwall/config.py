"""Settings: one TOML file, validated once at load into typed objects.

Unknown keys and bad values are errors that name the file, the key and the value, all reported together. No other
module reads the environment or globals for settings: the CLI loads a `Settings` and passes it down.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from floodwall.errors import ConfigError

__all__ = ["LogSettings", "Settings", "SiteSettings", "load_settings"]

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


class Settings(_Section):
    """Everything Floodwall can be told in its one config file."""

    logs: LogSettings = Field(default_factory=LogSettings)
    site: SiteSettings = Field(default_factory=SiteSettings)


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


def load_settings(path: Path | None) -> Settings:
    """Read and validate the TOML file at `path`; without a path, the safe defaults."""
    if path is None:
        return Settings()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the config file is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return settings_from_mapping(data, origin=str(path))
