"""The forensic account tells the story of the simulator's truth: phases, markers, networks, breach attempts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from floodwall.detect import Engine
from floodwall.errors import FloodwallError
from floodwall.forensics import FrameSpool, account_from_frames
from floodwall.geo import open_geo
from floodwall.logs import LogReader

SITES = ("istina-danas", "delta-press")


def _site(truth: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in truth["sites"] if s["name"] == name)


@pytest.mark.parametrize("name", SITES)
def test_every_flood_is_told_with_its_phases(hano: tuple[Path, dict[str, Any]], name: str) -> None:
    root, truth = hano
    markdown = (root / "out" / name / "report.md").read_text()
    report = json.loads((root / "out" / name / "report.json").read_text())
    for incident in (i for i in _site(truth, name)["incidents"] if i["kind"] == "flood"):
        assert incident["start"][:13] in json.dumps(report["incidents"])  # found within the hour it began
        assert "## Timeline" in markdown and "flood begins" in markdown
        assert "wave-1" in markdown
    assert "test-flood" in "".join((root / "out" / s / "report.md").read_text() for s in SITES)


@pytest.mark.parametrize("name", SITES)
def test_markers_are_found_verbatim(hano: tuple[Path, dict[str, Any]], name: str) -> None:
    root, truth = hano
    planted = {m for i in _site(truth, name)["incidents"] for m in i["markers"]}
    assert planted, "the scenario plants markers on every flood"
    report = json.loads((root / "out" / name / "report.json").read_text())
    found = {m["marker"] for m in report["account"]["markers"]}
    assert planted <= found
    flood_markers = {m for i in report["incidents"] if i["kind"] == "flood" for m in i["markers"]}
    assert planted <= flood_markers
    for public in ("report.public.md", "report.public.html", "report.md"):
        text = (root / "out" / name / public).read_text()
        assert all(marker in text for marker in planted), public


@pytest.mark.parametrize("name", SITES)
def test_the_attacking_networks_are_named(hano: tuple[Path, dict[str, Any]], name: str) -> None:
    root, truth = hano
    try:
        geo = open_geo()
    except FloodwallError:
        pytest.skip("no offline network database (Debian package libloc-database)")
    attackers = [a for i in _site(truth, name)["incidents"] if i["kind"] == "flood" for a in i["attackers"]]
    with geo:
        facts = geo.lookup(pl.Series(attackers)).drop_nulls("as_name")
    biggest = facts.group_by("as_name").len().sort("len", descending=True).get_column("as_name")[0]
    for file in ("report.md", "report.public.md", "report.public.html"):
        assert biggest in (root / "out" / name / file).read_text(), file


def test_breach_attempts_have_families_targets_and_2xx_verdicts(hano: tuple[Path, dict[str, Any]]) -> None:
    root, _ = hano
    report = json.loads((root / "out" / "delta-press" / "report.json").read_text())
    breaches = [i for i in report["incidents"] if i["kind"] != "flood"]
    assert breaches, "the scenario's exploit attempt on delta-press is found"
    markdown = (root / "out" / "delta-press" / "report.md").read_text()
    section = markdown.split("## Breach attempts")[1].split("## Evidence")[0]
    for breach in breaches:
        assert breach["id"] in section
    assert "rule families" in section and "| target |" in section
    assert ("POSSIBLE SUCCESS" in section) == report["account"]["possible_breach_success"]


def test_scope_figures_add_up(hano: tuple[Path, dict[str, Any]]) -> None:
    root, truth = hano
    report = json.loads((root / "out" / "istina-danas" / "report.json").read_text())
    lines = _site(truth, "istina-danas")["lines"]
    account = report["account"]
    assert 0 < account["attack_requests"] < lines
    peaks = account["peaks"]
    assert peaks["1s"]["all"]["rps"] >= peaks["10s"]["all"]["rps"] >= peaks["60s"]["all"]["rps"] > 0
    truth_requests = sum(i["requests"] for i in _site(truth, "istina-danas")["incidents"])
    assert account["attack_requests"] == pytest.approx(truth_requests, rel=0.3)


def test_batch_size_does_not_change_the_account(hano: tuple[Path, dict[str, Any]]) -> None:
    """The forensic pass merges per-batch aggregates: many small batches give the account one big batch gives."""
    root, truth = hano
    site = next(s for s in truth["sites"] if s["name"] == "istina-danas")
    log = root / "sim" / site["log"]
    engine = Engine("istina-danas", live=False)
    for frame in LogReader([log], site="istina-danas"):
        engine.feed(frame)
    detection = engine.finish()
    accounts = [
        account_from_frames("istina-danas", detection, LogReader([log], site="istina-danas", batch_rows=rows))
        for rows in (1_000, 1_000_000)
    ]
    small, big = (a.to_dict() for a in accounts)
    assert small["scope"]["attack_requests"] == big["scope"]["attack_requests"] > 0
    assert small["mode"]["markers"] == big["mode"]["markers"]
    assert small["scope"]["peaks"] == big["scope"]["peaks"]
    assert [len(v["samples"]) for v in small["mode"]["vectors"]] == [len(v["samples"]) for v in big["mode"]["vectors"]]


def test_a_spooled_pass_gives_the_account_a_second_read_gives(hano: tuple[Path, dict[str, Any]]) -> None:
    root, truth = hano
    site = next(s for s in truth["sites"] if s["name"] == "delta-press")
    log = root / "sim" / site["log"]
    engine = Engine("delta-press", live=False)
    with FrameSpool() as spool:
        for frame in LogReader([log], site="delta-press", batch_rows=5_000):
            engine.feed(frame)
            spool.add(frame)
        detection = engine.finish()
        spooled = account_from_frames("delta-press", detection, spool.frames()).to_dict()
        assert spool.rows == site["lines"] and spool.bytes > 0
        folder = spool.directory
    assert not folder.exists()
    reread = account_from_frames("delta-press", detection, LogReader([log], site="delta-press")).to_dict()
    for section in ("scope", "mode", "breaches", "timeline"):
        assert spooled[section] == reread[section], section
