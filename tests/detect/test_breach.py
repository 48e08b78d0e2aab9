"""Breach attempts: kinds from hits, distributed brute force, candidates for the signatures."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from floodwall.detect import Engine
from floodwall.detect.breach import (
    BREACH_SCHEMA,
    breach_groups,
    candidates,
    collective_bruteforce,
    payload_senders,
)
from floodwall.detect.kinds import decide_kind
from floodwall.detect.settings import DetectSettings
from floodwall.logs import LogReader
from floodwall.model import IncidentKind, Vector
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
                "redirected": 0,
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


def _login_rows(rows: list[tuple[str, int, int, int]]) -> pl.DataFrame:
    """(client, POSTs, of which redirected, minute) login rows, each ten minutes long, as `_hits` makes them."""
    frame = _hits([(client, "login", "login-bruteforce", posts, minute) for client, posts, _, minute in rows])
    return frame.with_columns(pl.Series("redirected", [r for _, _, r, _ in rows], dtype=pl.UInt32))


def test_a_rotating_pool_is_one_login_fleet_to_its_last_addresses():
    """Credential stuffing over a pool whose addresses take turns (a few POSTs each, fresh ones every 15 minutes) is
    one fleet from its first try to its last: the last turn's four addresses are members though, on their own,
    they are fewer than `min_fleet` (fixed half hours missed them: scanner seed 102)."""
    turns = [[f"100.64.{turn}.{k}" for k in range(6 if turn < 4 else 4)] for turn in range(5)]
    rows = [(client, 3 if turn < 4 else 2, 0, 15 * turn) for turn, clients in enumerate(turns) for client in clients]
    editors = [(f"198.18.0.{k}", 1, 1, 20 + 10 * k) for k in range(6)]  # logged in during the attack, accepted
    fleet = collective_bruteforce(_login_rows(rows + editors), DetectSettings())
    assert fleet == sorted(client for clients in turns for client in clients)
    groups = [g for g in breach_groups(_login_rows(rows + editors), DetectSettings()) if g.clients]
    brute = [g for g in groups if g.kind is IncidentKind.BRUTEFORCE]
    assert len(brute) == 1 and set(brute[0].clients) == set(fleet)
    assert brute[0].breach_hits["100.64.4.0"] == (("login", 2),)


def test_editors_logging_in_are_no_login_fleet():
    """Many editors logging in through a long day, a few of them twice, succeed (a redirect): no fleet. Nor are four
    clients failing together (fewer than `min_fleet`), nor a crowd of one-try clients (a POST each is readers)."""
    editors = [(f"198.18.0.{k}", 2, 2, 25 * k) for k in range(12)]
    editors += [("198.18.0.99", 2, 1, 40)]  # mistyped once, then in
    few = [(f"100.64.0.{k}", 5, 0, 5) for k in range(4)]
    one_each = [(f"100.64.1.{k}", 1, 0, 600 + k) for k in range(30)]
    settings = DetectSettings()
    assert collective_bruteforce(_login_rows(editors), settings) == []
    assert collective_bruteforce(_login_rows(few), settings) == []
    assert collective_bruteforce(_login_rows(one_each), settings) == []


def _stuffing_log() -> pl.DataFrame:
    """Three hours of readers; editors who load the login form and get in (302), one after a typo; and a pool of
    stuffers POSTing to the same form (`/admin`, which no signature knows) with rotating browser agents, 1-4 tries
    each, in turns of 15 minutes, the last turn of four addresses with two tries each."""
    rng = random.Random(4)
    rows: list[dict[str, object]] = []
    for k in range(1500):
        reader = f"10.0.{k % 7}.{k % 211}"
        at = T0 + timedelta(seconds=rng.uniform(0, 3 * 3600))
        rows.append({"ts": at, "client": reader, "path": f"/be/2024/11/12/story-{k % 40}-about-things"})
        rows.append({"ts": at + timedelta(seconds=1), "client": reader, "path": "/static/site.css"})
    for k in range(6):
        editor, at = f"198.18.0.{k}", T0 + timedelta(minutes=50 + 9 * k)
        rows.append({"ts": at, "client": editor, "path": "/admin"})
        rows.append({"ts": at + timedelta(seconds=1), "client": editor, "path": "/static/admin.css"})
        if k == 5:
            rows.append({"ts": at + timedelta(seconds=25), "client": editor, "method": "POST", "path": "/admin"})
        rows.append(
            {"ts": at + timedelta(seconds=40), "client": editor, "method": "POST", "path": "/admin", "status": 302}
        )
        rows.append({"ts": at + timedelta(seconds=41), "client": editor, "path": "/admin/dashboard"})
    stuffers = []
    for turn in range(5):
        for k in range(6 if turn < 4 else 4):
            stuffer = f"100.64.{turn}.{k + 1}"
            stuffers.append(stuffer)
            for _ in range(rng.randint(1, 4) if turn < 4 else 2):
                at = T0 + timedelta(minutes=60 + 15 * turn, seconds=rng.uniform(0, 900))
                agent = f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/{rng.randint(100, 130)}.0.0.0 Safari/537.36"
                rows.append(
                    {"ts": at, "client": stuffer, "method": "POST", "path": "/admin", "user_agent": agent}
                    | {"referer": "https://example-news.test/admin"}
                )
    return requests_frame(rows).with_columns(pl.lit(",".join(stuffers)).alias("_stuffers"))


def test_the_engine_finds_every_stuffer_and_no_editor():
    log = _stuffing_log()
    stuffers = set(log.get_column("_stuffers")[0].split(","))
    engine = Engine("example-news", live=False)
    for start in range(0, log.height, 1000):
        engine.feed(log.drop("_stuffers").slice(start, 1000))
    result = engine.finish()
    brute = [i for i in result.incidents if i.kind is IncidentKind.BRUTEFORCE]
    flagged = {a for i in result.incidents for a in i.attackers}
    assert len(brute) == 1 and set(brute[0].attackers) == stuffers
    assert flagged == stuffers, flagged - stuffers
    assert all(f.breach_hits and f.families == {"login"} for f in result.findings if f.target in stuffers)


def test_clients_whose_requests_mostly_carry_payloads_are_breach_actors():
    """sqlmap (every request a payload, its user agent a scanner's) is a payload sender; a flood client whose agent a
    scanner rule names, and a reader whose search once looked like an injection, are not."""
    rows = [("198.51.100.2", "sqli", "sqli", 40, 0), ("198.51.100.2", "xss", "xss", 30, 0)]
    rows += [("198.51.100.2", "scanner", "scan", 108, 0)]
    rows += [("203.0.113.7", "scanner", "scan", 5000, 0)]  # a flood tool's user agent, on every request
    rows += [("192.0.2.9", "sqli", "sqli", 1, 0)]
    hits = [_hits(rows[:3]), _hits(rows[3:])]
    clients = pl.DataFrame({"client": ["198.51.100.2", "203.0.113.7", "192.0.2.9"], "requests": [108, 5000, 40]})
    assert payload_senders(hits, clients, T0, T0 + timedelta(hours=1)) == ["198.51.100.2"]
    assert payload_senders([], clients, T0, T0 + timedelta(hours=1)) == []
    # The day before, the same address was one of a flood's clients, and sent no payload then.
    assert payload_senders(hits, clients, T0 - timedelta(days=1), T0 - timedelta(hours=20)) == []


def test_an_exploit_in_a_quiet_hour_is_no_flood(tmp_path):
    """scanner seed 106: the SQL injection and XSS address makes a night surge of its own (33 requests in a minute);
    it is reported once, as the exploit attempt it is, and no flood incident is reported beside it."""
    simulate(load_scenario("scanner"), tmp_path, seed=106, scale=0.05)
    truth = json.loads((tmp_path / "truth.json").read_text())
    (site,) = truth["sites"]
    engine = Engine(site["name"], live=False)
    for frame in LogReader([tmp_path / site["log"]], site=site["name"]):
        engine.feed(frame)
    incidents = engine.finish().incidents
    assert [i.kind for i in incidents if i.kind is IncidentKind.FLOOD] == []
    (told,) = [i for i in site["incidents"] if set(i["vectors"]) == {"sqli", "xss"}]
    (exploit,) = [i for i in incidents if i.kind is IncidentKind.EXPLOIT and Vector.SQLI in i.vectors]
    assert set(exploit.attackers) == set(told["attackers"])
