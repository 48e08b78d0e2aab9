"""The account's files on a simulated campaign: self-contained HTML with its charts, STIX that validates, and no
reader's address anywhere (no address at all in the public versions)."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest
from stix2validator import ValidationOptions, validate_string

SITES = ("istina-danas", "delta-press")
_TOKEN = re.compile(r"[0-9A-Fa-f:.]{7,45}")


def _addresses(text: str) -> set[str]:
    """Every IPv4 or IPv6 address written in `text`, canonical."""
    found = set()
    for token in _TOKEN.findall(text):
        try:
            found.add(str(ipaddress.ip_address(token.strip(".:"))))
        except ValueError:
            continue
    return found


def _clients(log: Path) -> set[str]:
    return {line.split(" ", 1)[0] for line in log.read_text().splitlines() if line}


def _people(hano: tuple[Path, dict[str, Any]], name: str) -> tuple[set[str], set[str]]:
    root, truth = hano
    site = next(s for s in truth["sites"] if s["name"] == name)
    attackers = {a for i in site["incidents"] for a in i["attackers"]}
    readers = _clients(root / "sim" / site["log"]) - attackers
    return readers, attackers


@pytest.mark.parametrize("name", SITES)
def test_public_outputs_name_no_address(hano: tuple[Path, dict[str, Any]], name: str) -> None:
    root, _ = hano
    readers, attackers = _people(hano, name)
    for file in ("report.public.html", "report.public.md"):
        seen = _addresses((root / "out" / name / file).read_text())
        assert not seen & readers, f"{file} names readers"
        assert not seen & attackers, f"{file} names attackers"


@pytest.mark.parametrize("name", SITES)
def test_restricted_outputs_name_no_reader(hano: tuple[Path, dict[str, Any]], name: str) -> None:
    root, _ = hano
    readers, _ = _people(hano, name)
    report = json.loads((root / "out" / name / "report.json").read_text())
    judged = {a for i in report["incidents"] for a in i["attackers"]}  # the engine's verdicts, right or wrong
    for file in ("report.html", "report.md", "indicators.stix.json"):
        seen = _addresses((root / "out" / name / file).read_text())
        assert not (seen & readers) - judged, f"{file} names readers the engine did not judge attackers"


@pytest.mark.parametrize("file", ["report.html", "report.public.html"])
def test_html_is_self_contained_with_its_charts(hano: tuple[Path, dict[str, Any]], file: str) -> None:
    root, _ = hano
    page = root / "out" / "istina-danas" / file
    html = page.read_text()
    assert not re.search(r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"<link\b|@import|url\(\s*['\"]?(?:https?:)?//", html, re.I)
    assert "<script" not in html  # the charts are SVG drawn on the server: nothing runs in the reader's browser
    for chart in ("chart-traffic", "chart-status", "chart-vectors", "chart-networks"):
        figure = html.split(f'<figure class="chart" id="{chart}">', 1)[1].split("</figure>", 1)[0]
        assert '<svg viewBox="0 0 ' in figure and 'role="img"' in figure
        assert f'<title id="{chart}-title">' in figure and f'<desc id="{chart}-desc">' in figure
    for section in ("summary", "timeline", "scope", "mode", "infrastructure", "breaches", "evidence", "methods"):
        assert f'<section id="{section}">' in html and f'href="#{section}"' in html
    assert "@media print" in html
    assert page.stat().st_size < 1_000_000  # plotly.js alone was 4.8 MB


@pytest.mark.parametrize("name", SITES)
def test_stix_bundle_validates(hano: tuple[Path, dict[str, Any]], name: str) -> None:
    root, _ = hano
    text = (root / "out" / name / "indicators.stix.json").read_text()
    result = validate_string(text, ValidationOptions(version="2.1"))
    assert result.is_valid, [str(e) for e in result.errors]
    assert not result.warnings, [str(w) for w in result.warnings]
    kinds = {o["type"] for o in json.loads(text)["objects"]}
    assert {"identity", "indicator", "attack-pattern", "observed-data", "sighting", "ipv4-addr"} <= kinds
    report = json.loads((root / "out" / name / "report.json").read_text())
    patterns = {o["pattern"] for o in json.loads(text)["objects"] if o["type"] == "indicator"}
    for address in (a for i in report["incidents"] for a in i["attackers"] if ":" not in a and "/" not in a):
        assert f"[ipv4-addr:value = '{address}']" in patterns


def test_an_empty_account_renders(tmp_path: Path) -> None:
    """Nothing read (an empty log, or stdin that cannot be read twice): every writer still writes a sane file."""
    from datetime import UTC, datetime

    from floodwall.detect import DetectionResult
    from floodwall.forensics import Forensics
    from floodwall.report.outputs import write_account

    detection = DetectionResult.empty("quiet-site", datetime(2024, 1, 1, tzinfo=UTC))
    account = Forensics("quiet-site", detection, timezone="Europe/Budapest").finish()
    files = write_account(tmp_path, account, detection.incidents, detection.attackers, public=True)
    assert "No attack was found" in files["report.md"].read_text()
    assert 'id="chart-traffic"' in files["report.public.html"].read_text()
    assert validate_string(files["indicators.stix.json"].read_text()).is_valid
