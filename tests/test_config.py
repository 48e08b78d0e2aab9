"""One TOML file, validated at load: every unknown key and bad value reported together, naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from floodwall.config import Settings, load_settings
from floodwall.errors import ConfigError


def test_defaults_without_a_file() -> None:
    settings = load_settings(None)
    assert settings == Settings()
    assert settings.logs.format == "auto"
    assert settings.detect.window_s >= 1


def test_a_full_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "floodwall.toml"
    path.write_text(
        '[logs]\nformat = "combined"\ntz = "Europe/Budapest"\n'
        '[site]\nname = "example-news"\nown_networks = ["198.51.100.0/24"]\n'
        "[detect]\nwindow_s = 20\n"
    )
    settings = load_settings(path)
    assert settings.logs.format == "combined"
    assert settings.site.own_networks == ["198.51.100.0/24"]
    assert settings.detect.window_s == 20


def test_all_problems_are_named_together(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[logs]\nformat = "xml"\nbatch_rows = 5\n[detect]\nbogus = 1\n[nope]\n')
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    message = str(error.value)
    assert message.startswith(f"{path}:")
    for fragment in (
        "'logs.format' = 'xml'",
        "'logs.batch_rows' = 5",
        "unknown key 'detect.bogus'",
        "unknown key 'nope'",
    ):
        assert fragment in message


def test_toml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[logs]\nformat = \n")
    with pytest.raises(ConfigError, match=r"broken.toml: .*line 2"):
        load_settings(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.toml")
