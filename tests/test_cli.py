"""The command's promises from CONTRACT.md: help, version, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from floodwall import __version__


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "floodwall", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_version_prints_the_package_version() -> None:
    result = run("version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"floodwall {__version__}"


def test_help_lists_commands_and_exits_zero() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "version" in result.stdout


def test_unknown_command_is_bad_usage() -> None:
    result = run("no-such-command")
    assert result.returncode == 2
    assert "No such command" in result.stderr


def test_the_signature_cache_follows_xdg_cache_home_unless_the_config_names_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from floodwall.cli import _settings

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _settings(None).detect.signatures_cache == str(tmp_path / "xdg" / "floodwall")
    config = tmp_path / "floodwall.toml"
    config.write_text(f'[detect]\nsignatures_cache = "{tmp_path / "mine"}"\n')
    assert _settings(config).detect.signatures_cache == str(tmp_path / "mine")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert _settings(None).detect.signatures_cache is None  # the library's default, ~/.cache/floodwall
