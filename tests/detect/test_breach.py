"""Breach attempts: kinds from hits, distributed brute force, candidates for the signatures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from floodwall.detect import Engine
from floodwall.detect.breach import BREACH_SCHEMA, breach_groups, candidates
from floodwall.detect.kinds import decide_kind
from floodwall.detect.settings import DetectSettings
from floodwall.logs import LogReader
from floodwall.model import IncidentKind
from floodwall.simulate import load_scenario, simulate
from floodwall.testing import requests_frame

T0 = datetime(2024, 11, 12, 1, 0, tzinfo=UTC)


def _hits(rows: list[tuple[str, str, str, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "client": client,
                "family": family,
                "vector": vector,
                "bucket": T0,
                "hits": hits,
                "first_ts": T0 + timedelta(minutes=minute),
                "last_ts": T0 + timedelta(minutes=minute + 10),
                "rule_ids": ["x"],
                "matched": "m",
                "evidence_source": ["a.log"],
                "evidence_line": [1],
            }
            for client, family, vector, hits, minute in rows
        ],
        schema=BREACH_SCHEMA,
    ).drop("bucket", "rule_ids", "matched")


def test_kinds_scan_exploit_and_distributed_bruteforce():
    rows = [("198.51.100.1", "scanner", "scan", 300, 0), ("198.51.100.1", "sensitive-file", "scan", 90, 0)]
    rows += [("198.51.100.2", "sqli", "sqli", 40, 300), ("198.51.100.2", "scanner", "scan", 40, 300)]
    rows += [(f"203.0.113.{k}", "login", "login-bruteforce", 3, 900) for k in range(20)]
    rows += [("192.0.2.9", "login", "login-bruteforce", 1, 1500)]  # an editor logging in, later
    groups = {g.kind: g for g in breach_groups(_hits(rows), DetectSettings())}
    assert groups[IncidentKind.SCAN].clients == ("198.51.100.1",)
    assert groups[IncidentKind.EXPLOIT].clients == ("198.51.100.2",)
    assert len(groups[IncidentKind.BRUTEFORCE].clients) == 20
    assert all("192.0.2.9" not in g.clients for g in groups.values())


def test_plain_reader_requests_skip_the_signatures():
    frame = requests_frame(
        [
            {"path": "/2024/11/04/story/"},
            {"path": "/", "query": "id=1' or '1'='1"},
            {"path": "/.env"},
            {"path": "/", "user_agent": "sqlmap/1.8.11#stable (https://sqlmap.org)"},
            {"method": "POST", "path": "/wp-login.php"},
        ]
    )
    assert candidates(frame).to_list() == [False, True, True, True, True]


def test_a_sweep_of_files_and_injections_is_a_scan_and_targeted_payloads_an_exploit():
    """sqlmap-like probing that also asks for sensitive files is a scan (hano-like's scan was called an exploit);
    payloads of one or two kinds without file probing are an exploit, whatever the tool's user agent says."""
    sweep = [("198.51.100.7", "scanner", "scan", 200, 0), ("198.51.100.7", "sensitive-file", "scan", 12, 0)]
    sweep += [("198.51.100.7", "sqli", "sqli", 70, 0), ("198.51.100.7", "xss", "xss", 60, 0)]
    targeted = [("198.51.100.8", "scanner", "scan", 40, 600), ("198.51.100.8", "traversal", "path-traversal", 20, 600)]
    targeted += [("198.51.100.8", "command-injection", "rce", 20, 600), ("198.51.100.8", "probing", "scan", 35, 600)]
    groups = {g.kind: g for g in breach_groups(_hits(sweep + targeted), DetectSettings())}
    assert groups[IncidentKind.SCAN].clients == ("198.51.100.7",)
    assert groups[IncidentKind.EXPLOIT].clients == ("198.51.100.8",)


def _row(kind: str, **counts: object) -> dict[str, object]:
    base: dict[str, object] = {"kind": kind, "files": 0, "injection": 0, "brute": 0, "probe": 0}
    base.update({"family_names": [], "vectors": []})
    base.update(counts)
    return base


def test_kind_decisions_say_why():
    brute = decide_kind([_row("bruteforce", brute=40), _row("bruteforce", brute=12)])
    assert brute.kind is IncidentKind.BRUTEFORCE and "52 POSTs" in brute.reason and "2 clients" in brute.reason
    probing = decide_kind([_row("scan", probe=300, family_names=["probing"], vectors=["scan"])])
    assert probing.kind is IncidentKind.SCAN and "no payload" in probing.reason
    many = decide_kind([_row("scan", injection=30, vectors=["sqli", "xss", "rce"], family_names=["sqli"])])
    assert many.kind is IncidentKind.SCAN and "3 kinds" in many.reason
    files = decide_kind(
        [_row("scan", files=9, injection=80, family_names=["sensitive-file", "sqli"], vectors=["sqli"])]
    )
    assert files.kind is IncidentKind.SCAN and "9 requests for sensitive files" in files.reason
    exploit = decide_kind([_row("scan", injection=25, probe=25, family_names=["scanner"], vectors=["scan", "rce"])])
    assert exploit.kind is IncidentKind.EXPLOIT and "rce" in exploit.reason


def _kinds_found(folder: Path) -> list[tuple[str, str]]:
    """(truth kind, reported kind) of every breach incident of a simulated folder, matched by start time."""
    truth = json.loads((folder / "truth.json").read_text())
    pairs: list[tuple[str, str]] = []
    for site in truth["sites"]:
        if all(i["kind"] == "flood" for i in site["incidents"]):
            continue
        engine = Engine(site["name"])
        for frame in LogReader([folder / site["log"]], site=site["name"]):
            engine.feed(frame)
        reported = [i for i in engine.finish().incidents if i.kind is not IncidentKind.FLOOD]
        for incident in site["incidents"]:
            if incident["kind"] == "flood":
                continue
            start = datetime.fromisoformat(incident["start"].replace("Z", "+00:00"))
            near = [i for i in reported if abs((i.start - start).total_seconds()) <= 300]
            pairs.append((incident["kind"], near[0].kind.value if near else "missed"))
    return pairs


def test_scanner_scenario_kinds(tmp_path):
    """Every scanner is a scan, the credential stuffing a brute force, the exploits exploits (seed not tuned on)."""
    simulate(load_scenario("scanner"), tmp_path, seed=101, scale=0.05)
    pairs = _kinds_found(tmp_path)
    assert {t for t, _ in pairs} == {"scan", "bruteforce", "exploit"}
    assert all(t == r for t, r in pairs), pairs


def test_hano_like_scan_is_a_scan(tmp_path):
    """hano-like's sqlmap-like probing (files, SQL injection and XSS) is a scan, its credential stuffing a brute
    force and its traversal and code execution attempts an exploit (a seed not tuned on)."""
    scenario = load_scenario("hano-like")
    # The two outlets with breach attempts only (the three-day flood's log takes long to write and has none).
    sites = [s for s in scenario.sites if s.name != "szabad-hang"]
    campaigns = [
        c.model_copy(update={"incidents": [i for i in c.incidents if i.site != "szabad-hang"]})
        for c in scenario.campaigns
    ]
    simulate(scenario.model_copy(update={"sites": sites, "campaigns": campaigns}), tmp_path, seed=102, scale=0.05)
    assert sorted(_kinds_found(tmp_path)) == [("bruteforce",) * 2, ("exploit",) * 2, ("scan",) * 2]
