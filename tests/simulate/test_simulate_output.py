"""What `simulate` writes: valid nginx combined lines in time order, deterministic, scaled, and true to truth.json."""

from __future__ import annotations

import gzip
import ipaddress
import json
from collections import Counter, defaultdict
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from logcheck import parse, read_lines

from floodwall.simulate import load_scenario, simulate

SCALE = 0.02


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def coalition(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], dict[str, list[dict[str, Any]]]]:
    out = tmp_path_factory.mktemp("coalition")
    simulate(load_scenario("coalition"), out, scale=SCALE)
    truth = json.loads((out / "truth.json").read_text())
    rows = {site["name"]: parse(out / site["log"]) for site in truth["sites"]}
    return out, truth, rows


def test_every_line_is_nginx_combined_with_valid_addresses(coalition: Any) -> None:
    _, truth, rows = coalition
    for site in truth["sites"]:
        assert len(rows[site["name"]]) == site["lines"] > 1000
        for row in rows[site["name"]]:
            ipaddress.ip_address(row["client"])  # raises on a malformed address


def test_lines_are_in_time_order_with_the_site_s_offset(coalition: Any) -> None:
    _, truth, rows = coalition
    for site in truth["sites"]:
        times = [r["ts"] for r in rows[site["name"]]]
        assert times == sorted(times)
        zone = ZoneInfo(site["timezone"])
        for row in rows[site["name"]][:: max(1, len(times) // 200)]:
            local = datetime.fromtimestamp(float(row["ts"]), tz=zone)
            assert str(row["time"]).endswith(local.strftime("%z"))


def test_logs_look_like_a_news_site(coalition: Any) -> None:
    _, truth, rows = coalition
    site = truth["sites"][0]
    benign = [r for r in rows[site["name"]] if r["client"] in set(site["readers"])]
    statuses = Counter(r["status"] for r in benign)
    total = sum(statuses.values())
    assert 0.6 < statuses["200"] / total < 0.9
    assert 0.08 < statuses["304"] / total < 0.3
    assert statuses["301"] and statuses["404"]
    assert any(":" in str(r["client"]) for r in benign), "IPv6 readers"
    assert sum(1 for r in benign if r["protocol"] == "HTTP/2.0") > total * 0.9
    # Assets follow their page, with the page as referer.
    by_client: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in benign:
        by_client[str(r["client"])].append(r)
    followed = 0
    for visits in by_client.values():
        for page, asset in pairwise(visits):
            if (
                str(asset["target"]).endswith(".css?ver=2.3.1")
                and asset["referer"] == f"https://{site['host']}{page['target']}"
            ):
                followed += 1
    assert followed > 20
    # Readers come at night less than in the evening (local time).
    zone = ZoneInfo(site["timezone"])
    hours = Counter(datetime.fromtimestamp(float(r["ts"]), tz=zone).hour for r in benign)
    assert hours[21] > 3 * hours[4]


def test_every_truth_attacker_appears_in_its_incident_s_window(coalition: Any) -> None:
    _, truth, rows = coalition
    for site in truth["sites"]:
        for incident in site["incidents"]:
            start, end = _ts(incident["start"]), _ts(incident["end"])
            seen = {r["client"] for r in rows[site["name"]] if start <= float(r["ts"]) <= end + 1}
            assert incident["attackers"]
            assert set(incident["attackers"]) <= seen, incident["id"]
            assert not set(incident["attackers"]) & set(site["readers"])
            sent = sum(1 for r in rows[site["name"]] if r["client"] in set(incident["attackers"]))
            assert sent >= incident["requests"]


def test_an_incident_starts_and_ends_with_its_own_requests(coalition: Any) -> None:
    """Observed bounds, not planned ones: a slow attack starts when its first request went out."""
    _, truth, rows = coalition
    for site in truth["sites"]:
        for incident in site["incidents"]:
            start, end = _ts(incident["start"]), _ts(incident["end"])
            attackers = set(incident["attackers"])
            times = [
                float(r["ts"])
                for r in rows[site["name"]]
                if r["client"] in attackers and start <= float(r["ts"]) <= end
            ]
            assert start <= min(times) < start + 1, incident["id"]
            assert end - 1 <= max(times) <= end, incident["id"]


def test_flash_crowd_clients_and_robots_exist_and_markers_are_planted(coalition: Any) -> None:
    _, truth, rows = coalition
    site = truth["sites"][0]
    crowd = site["flash_crowds"][0]
    start, end = _ts(crowd["start"]), _ts(crowd["end"])
    during = [r for r in rows[site["name"]] if start <= float(r["ts"]) <= end + 5]
    assert set(crowd["clients"]) <= {r["client"] for r in during}
    breaking = {u.removeprefix(f"https://{site['host']}") for u in crowd["urls"]}
    crowd_rows = [r for r in during if r["target"] in breaking]
    assert len(crowd_rows) > 50
    networks = ("facebook", "t.co", "telegram", "instagram")
    social = sum(1 for r in crowd_rows if any(n in str(r["referer"]) for n in networks))
    assert social > len(crowd_rows) * 0.3
    kinds = {r["kind"] for r in site["automation"]}
    assert {"crawler", "monitor", "feed-reader", "link-expander"} <= kinds
    logged = {r["client"] for r in rows[site["name"]]}
    assert {r["address"] for r in site["automation"]} <= logged
    assert truth["markers"]
    everything = "\n".join(str(r["line"]).lower() for site_rows in rows.values() for r in site_rows)
    for marker in truth["markers"]:
        assert marker in everything


def test_campaign_pools_are_reused_across_incidents(coalition: Any) -> None:
    _, truth, _ = coalition
    incidents = {i["id"]: i for s in truth["sites"] for i in s["incidents"]}
    for campaign in truth["campaigns"]:
        floods = [incidents[m["id"]] for m in campaign["incidents"] if incidents[m["id"]]["kind"] == "flood"]
        shared = set(floods[0]["attackers"]) & set(floods[1]["attackers"])
        assert shared, campaign["id"]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    scenario = load_scenario("scanner")
    simulate(scenario, tmp_path / "a", seed=3, scale=0.05)
    simulate(scenario, tmp_path / "b", seed=3, scale=0.05)
    simulate(scenario, tmp_path / "c", seed=4, scale=0.05)
    for name in ("nasha-pravda.access.log", "truth.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()


def test_gzip_output_holds_the_same_lines(tmp_path: Path) -> None:
    scenario = load_scenario("scanner")
    simulate(scenario, tmp_path / "plain", seed=5, scale=0.03)
    simulate(scenario, tmp_path / "gz", seed=5, scale=0.03, compress=True)
    plain = (tmp_path / "plain" / "nasha-pravda.access.log").read_bytes()
    assert gzip.decompress((tmp_path / "gz" / "nasha-pravda.access.log.gz").read_bytes()) == plain
    assert read_lines(tmp_path / "gz" / "nasha-pravda.access.log.gz")[0] == plain.decode().splitlines()[0]


def test_scale_multiplies_volume(tmp_path: Path) -> None:
    """Everything scales but robots that poll on a clock (monitors, feed readers) or per article (link expanders)."""
    scenario = load_scenario("flash-crowd")

    def scaled_lines(scale: float, folder: Path) -> int:
        simulate(scenario, folder, scale=scale)
        truth = json.loads((folder / "truth.json").read_text())
        total = 0
        for site in truth["sites"]:
            fixed = {r["address"] for r in site["automation"] if r["kind"] != "crawler"}
            lines = read_lines(folder / site["log"])
            total += sum(1 for line in lines if line.split(" ", 1)[0] not in fixed)
        return total

    small = scaled_lines(0.02, tmp_path / "small")
    large = scaled_lines(0.06, tmp_path / "large")
    assert 2.7 < large / small < 3.3


def test_residential_proxies_send_no_faster_than_readers(tmp_path: Path) -> None:
    simulate(load_scenario("residential-proxies"), tmp_path, scale=0.05)
    truth = json.loads((tmp_path / "truth.json").read_text())
    site = truth["sites"][0]
    flood = site["incidents"][0]
    attackers = set(flood["attackers"])
    per_address: Counter[str] = Counter()
    reader_counts: Counter[str] = Counter()
    start, end = _ts(flood["start"]), _ts(flood["end"])
    readers = set(site["readers"])
    for row in parse(tmp_path / site["log"]):
        if start <= float(row["ts"]) <= end:
            if row["client"] in attackers:
                per_address[str(row["client"])] += 1
            elif row["client"] in readers:
                reader_counts[str(row["client"])] += 1
    assert len(attackers) > 500
    # Over the six hours, the median attacker sends fewer requests than the busiest readers do.
    median_attacker = sorted(per_address.values())[len(per_address) // 2]
    busiest_readers = sorted(reader_counts.values())[-len(reader_counts) // 100 :]
    assert median_attacker < min(busiest_readers)
    countries = {a.split(".")[0] for a in attackers if "." in a}
    assert len(countries) > 10  # thinly spread over many networks


def test_flood_phases_follow_each_other_inside_the_incident(coalition: Any) -> None:
    _, truth, _ = coalition
    floods = [i for s in truth["sites"] for i in s["incidents"] if i["kind"] == "flood"]
    for incident in floods:
        phases = incident["phases"]
        assert phases[0]["label"] == "test-flood" and phases[-1]["label"] == "tail"
        assert [p["label"] for p in phases[1:3]] == ["wave-1", "wave-2"]
        assert phases[1]["peak_rps"] < phases[2]["peak_rps"]  # waves step up
        assert _ts(incident["start"]) <= _ts(phases[0]["start"])
        assert _ts(phases[-1]["end"]) <= _ts(incident["end"])
        for before, after in pairwise(phases):
            assert _ts(before["end"]) <= _ts(after["start"])
