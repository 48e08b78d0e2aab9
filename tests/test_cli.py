"""The command's promises from CONTRACT.md: help, version, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys

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
