"""Floodwall's exceptions. The library raises them; only `floodwall.cli` turns them into messages and exit codes.

    FloodwallError            anything Floodwall reports on purpose
    ├── InputError            bad input a user can fix: exit status 2
    │   ├── ConfigError       a configuration file or value (names the file and key)
    │   ├── LogFormatError    an access log that cannot be read at all (names the file and, where known, line)
    │   ├── ScenarioError     a simulator scenario (names the file and key)
    │   └── BundleError       a bundle or report handed to `correlate` (names the file and field)
    └── ServiceError          a service Floodwall talks to is unreachable or refuses (store, nginx, nftables):
                              exit status 1

Messages are one line and say what is at fault, where, and, when it helps, what would fix it.
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "ConfigError",
    "FloodwallError",
    "InputError",
    "LogFormatError",
    "ScenarioError",
    "ServiceError",
]


class FloodwallError(Exception):
    """Base of every error Floodwall raises on purpose."""


class InputError(FloodwallError):
    """Input a user can fix: a file, an option, a value. The CLI exits with status 2."""


class ConfigError(InputError):
    """A configuration file or value is wrong; the message names the file and the key."""


class LogFormatError(InputError):
    """An access log cannot be read at all (missing, unreadable, no line of any known format)."""


class ScenarioError(InputError):
    """A simulator scenario is wrong; the message names the file and the key."""


class BundleError(InputError):
    """A bundle or report given to `correlate` is wrong; the message names the file and the field."""


class ServiceError(FloodwallError):
    """A service Floodwall depends on (store, nginx, nftables) failed or is unreachable."""
