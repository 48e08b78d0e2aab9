"""Scenarios: the built-ins load, and bad scenario files are ScenarioErrors naming the file and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from floodwall.errors import ScenarioError
from floodwall.simulate import BUILTIN, load_scenario, simulate

GOOD = """
name = "drill"
seed = 7

[[sites]]
name = "our-site"
host = "example-outlet.hu"
url_scheme = "wordpress"
language = "hu"
timezone = "Europe/Budapest"
start = 2024-11-04T00:00:00Z
end = 2024-11-04T06:00:00Z

[[campaigns]]
id = "drill-actor"
marker = "drillmark"

[[campaigns.incidents]]
site = "our-site"
start = 2024-11-04T02:00:00Z
duration_minutes = 30
vectors = ["get-flood"]
peak_rps = 40
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_builtin_scenario_loads(name: str) -> None:
    scenario = load_scenario(name)
    assert scenario.name == name
    assert scenario.sites


def test_the_issue_s_scenarios_have_their_shape() -> None:
    hano = load_scenario("hano-like")
    assert len(hano.sites) == 3 and len(hano.campaigns) == 1
    first = hano.campaigns[0].incidents[0]
    assert first.duration_minutes >= 3 * 1440
    assert {i.kind for i in hano.campaigns[0].incidents} >= {"flood", "scan", "bruteforce", "exploit"}
    coalition = load_scenario("coalition")
    assert len(coalition.sites) == 4 and len(coalition.campaigns) == 2
    assert not load_scenario("flash-crowd").campaigns


def test_a_scenario_file_loads_and_runs(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, GOOD))
    summary = simulate(scenario, tmp_path / "out", scale=0.05)
    assert summary.seed == 7
    assert summary.lines > 0
    assert (tmp_path / "out" / "our-site.access.log").exists()


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("peak_rps = 40", 'peak_rps = 40\ncolour = "red"'), "campaigns.0.incidents.0.colour"),
        (('vectors = ["get-flood"]', 'vectors = ["ddos"]'), "campaigns.0.incidents.0.vectors.0"),
        (('site = "our-site"\nstart', 'site = "their-site"\nstart'), "campaigns.0.incidents.0.site"),
        (('timezone = "Europe/Budapest"', 'timezone = "Mars/Olympus"'), "sites.0.timezone"),
        (("start = 2024-11-04T02:00:00Z", "start = 2024-11-05T02:00:00Z"), "campaigns.0.incidents.0.start"),
        (('name = "drill"', 'name = "drill"\nspeed = 3'), "speed"),
        (("duration_minutes = 30\n", ""), "campaigns.0.incidents.0.duration_minutes"),
    ],
)
def test_bad_scenario_files_name_the_file_and_key(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    assert change[0] in GOOD
    path = write(tmp_path, GOOD.replace(change[0], change[1], 1))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(path) in str(caught.value)
    assert f"'{key}'" in str(caught.value)


def test_broken_toml_and_missing_files_are_scenario_errors(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('name = "drill"', "name = "))
    with pytest.raises(ScenarioError, match=str(path)):
        load_scenario(path)
    with pytest.raises(ScenarioError, match="no such scenario"):
        load_scenario(tmp_path / "absent.toml")


def test_the_command_exits_2_with_one_line_naming_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("peak_rps = 40", "peak_rps = -1"))
    result = subprocess.run(
        [sys.executable, "-m", "floodwall", "simulate", "--scenario", str(path), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "campaigns.0.incidents.0.peak_rps" in result.stderr


def test_time_stamps_follow_the_site_s_clock_across_a_dst_change(tmp_path: Path) -> None:
    # Central European Summer Time ended at 01:00 UTC on 27 October 2024.
    text = GOOD.replace("start = 2024-11-04T00:00:00Z", "start = 2024-10-26T22:00:00Z")
    text = text.replace("end = 2024-11-04T06:00:00Z", "end = 2024-10-27T04:00:00Z")
    text = text.replace("start = 2024-11-04T02:00:00Z", "start = 2024-10-27T00:30:00Z")
    simulate(load_scenario(write(tmp_path, text)), tmp_path / "out", scale=0.2)
    offsets = {}
    for line in (tmp_path / "out" / "our-site.access.log").read_text().splitlines():
        stamp = line.split("[", 1)[1].split("]", 1)[0]
        offsets.setdefault(stamp[-5:], []).append(stamp)
    assert set(offsets) == {"+0200", "+0100"}
    assert offsets["+0200"][-1].startswith("27/Oct/2024:02:")  # 00:59 UTC
    assert offsets["+0100"][0].startswith("27/Oct/2024:02:")  # 01:00 UTC: the hour from 2 to 3 comes twice
